//! The standard fixture shared by the scripted cases and the random run: four lower layers
//! covering every kind of entry, odd modes and owners, xattrs, hard links, whiteouts and
//! opaque directories (including whiteout-then-recreate across layers, a file replaced by a
//! directory and the reverse, and a stray whiteout in the base layer).

use super::fixture::{Fixture, Layer};

/// Top-level directories the random run works in (plus the sticky `tmp`).
pub const RANDOM_TOPS: &[&str] = &["ra", "rb", "rc", "rd", "tmp"];
/// Names the random run uses at each level, so operations collide.
pub const RANDOM_NAMES: &[&str] = &["f0", "f1", "f2", "f3", "d0", "d1", "own1000"];

/// Builds the standard fixture (layers topmost first).
pub fn standard() -> Fixture {
    let mut base = Layer::default();
    base.dir("etc", 0o755);
    base.file(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        0o644,
    );
    base.file_owned("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, 0, 42);
    base.file("etc/hosts", "127.0.0.1 localhost\n", 0o644);
    base.file("etc/group", "root:x:0:\n", 0o644);
    base.dir("bin", 0o755);
    base.file("bin/sh", "#!binary sh\n", 0o755);
    base.file("bin/su", "#!binary su\n", 0o4755);
    base.file_owned("bin/wall", "#!binary wall\n", 0o2755, 0, 5);
    base.file_owned("bin/both", "#!binary both\n", 0o6775, 1000, 1000);
    base.file_owned(
        "bin/sgid-nox",
        "not executable, setgid\n",
        0o2664,
        1000,
        1000,
    );
    base.dir("usr", 0o755);
    base.dir("usr/lib", 0o755);
    base.file("usr/lib/libc.so.6", "ELF libc 6\n", 0o755);
    base.symlink("usr/lib/libc.so", "libc.so.6");
    base.dir("usr/bin", 0o755);
    base.symlink("usr/bin/abs", "/etc/passwd");
    base.symlink("usr/bin/dangling", "../nowhere");
    base.symlink("usr/bin/dirlink", "../lib");
    base.dir("hl", 0o755);
    base.file("hl/a", "shared content of a hard-link group\n", 0o644);
    base.hardlink("hl/b", "hl/a");
    base.hardlink("hl/c", "hl/a");
    base.file("hl/solo", "single\n", 0o644);
    base.dir("dev", 0o755);
    base.chardev("dev/null", 1, 3);
    base.fifo("dev/fifo", 0o644);
    base.blockdev("dev/sda", 8, 0);
    base.dir("tmp", 0o1777);
    base.file_owned("tmp/own1000", "owned by 1000\n", 0o644, 1000, 1000);
    base.file_owned("tmp/own1001", "owned by 1001\n", 0o666, 1001, 1001);
    base.file("tmp/rootf", "owned by root\n", 0o666);
    base.dir_owned("tmp/d1000", 0o755, 1000, 1000);
    base.dir("home", 0o755);
    base.dir_owned("home/user", 0o700, 1000, 1000);
    base.file_owned("home/user/.profile", "export PS1=x\n", 0o644, 1000, 1000);
    base.dir_owned("home/user/sub", 0o755, 1000, 1000);
    base.file_owned("home/user/sub/f", "user file\n", 0o664, 1000, 1000);
    base.dir("shared", 0o777);
    base.file_owned("shared/by1001", "not sticky\n", 0o644, 1001, 1001);
    base.dir("opq", 0o755);
    base.file("opq/a", "opq a\n", 0o644);
    base.file("opq/b", "opq b\n", 0o644);
    base.file("opq/sub/c", "opq sub c\n", 0o644);
    base.dir("wh", 0o755);
    base.file("wh/x", "x\n", 0o644);
    base.file("wh/y", "y\n", 0o644);
    base.file("wh/z", "z\n", 0o644);
    base.file("wh/keep", "keep\n", 0o644);
    base.file("wh/dir/f", "in a dir that a later layer deletes\n", 0o644);
    base.dir("ren", 0o755);
    base.dir("ren/sub", 0o750);
    base.file("ren/sub/deep/f", "deep file\n", 0o644);
    base.file("ren/sub/g", "g\n", 0o600).xattr("user.tag", "g");
    base.dir("ren/other", 0o755);
    base.file("ren/other/o", "o\n", 0o644);
    base.file("ren/file", "plain file\n", 0o644);
    base.dir("xa", 0o755);
    base.file("xa/f", "xattrs\n", 0o644)
        .xattr("user.color", "red")
        .xattr("trusted.secret", "s3cr3t");
    base.dir("xa/d", 0o755).xattr("user.d", "1");
    base.symlink("xa/l", "f").xattr("trusted.l", "on-link");
    base.dir("odd", 0o755);
    base.file("odd/zero", "mode 0000\n", 0o000);
    base.file("odd/ro", "read only\n", 0o444);
    base.file_owned("odd/nobody", "nobody's\n", 0o640, 65534, 65534);
    base.dir("odd/dir0711", 0o711);
    base.file("odd/dir0711/inside", "inside 0711\n", 0o644);
    base.file("odd/exec", "exec only\n", 0o111);
    base.file("big/file", &"0123456789abcdef".repeat(16 * 1024), 0o644);
    base.dir("ra", 0o755);
    base.file("ra/f0", "ra f0 base\n", 0o644)
        .xattr("user.k", "base");
    base.file("ra/f1", "ra f1 base\n", 0o644);
    base.file("ra/d0/f0", "ra d0 f0\n", 0o644);
    base.file("ra/d0/f1", "ra d0 f1\n", 0o600);
    base.dir_owned("rb", 0o755, 1000, 1000);
    base.file_owned("rb/f0", "rb f0\n", 0o664, 1000, 1000);
    base.dir("rc", 0o755);
    base.file("rc/f0", "rc linked\n", 0o644);
    base.hardlink("rc/f1", "rc/f0");
    base.dir("rc/d1", 0o755);
    base.file("rc/d1/f3", "rc d1 f3\n", 0o644);
    base.symlink("ra/f3", "f0");
    base.fifo("ra/d1/own1000", 0o640);
    base.file("mixed/a", "mixed a\n", 0o644);
    // A whiteout in the bottom layer hides nothing but must itself stay invisible.
    base.whiteout("ghost");
    base.file(&format!("{}/f", deep_dir()), "deep lower file\n", 0o644);

    let mut l2 = Layer::default();
    l2.file("etc/hosts", "127.0.0.1 localhost l2\n", 0o644);
    l2.dir("etc/group", 0o755);
    l2.file("etc/group/inner", "a dir replacing a lower file\n", 0o644);
    l2.whiteout("wh/x");
    l2.whiteout("wh/dir");
    l2.opaque_dir("opq", 0o755);
    l2.file("opq/new", "opq new in l2\n", 0o644);
    l2.file("usr/lib/libc.so.7", "ELF libc 7\n", 0o755);
    l2.symlink("usr/lib/libc.so", "libc.so.7");
    l2.whiteout("ra/f1");
    l2.file("ra/f2", "ra f2 l2\n", 0o640);
    l2.file("ra/d1/f0", "ra d1 f0 l2\n", 0o644);
    l2.file_owned("rb/f1", "rb f1 l2\n", 0o644, 1000, 1000);
    l2.dir("l2hl", 0o755);
    l2.file("l2hl/a", "middle-layer link group\n", 0o644);
    l2.hardlink("l2hl/b", "l2hl/a");
    l2.file("ren/other", "a file replacing a lower dir\n", 0o644);
    l2.file("mixed/b", "mixed b l2\n", 0o644);
    l2.dir("tmp", 0o1777);
    l2.file("tmp/d0/f1", "tmp d0 f1 l2\n", 0o666)
        .xattr("user.k", "l2");
    l2.opaque_dir("rd", 0o755);

    let mut l1 = Layer::default();
    l1.file("wh/x", "x recreated in l1\n", 0o600);
    l1.whiteout("wh/y");
    l1.opaque_dir("ra/d0", 0o755);
    l1.file("ra/d0/f3", "ra d0 f3 l1\n", 0o644);
    l1.file_owned("rb/d0/f0", "rb d0 f0 l1\n", 0o644, 1000, 1000);
    l1.file("xa/f2", "xattr in l1\n", 0o644)
        .xattr("user.layer", "l1");
    l1.file("etc/motd", "hello from l1\n", 0o644);
    l1.dir("mixed", 0o755);
    l1.file("mixed/c", "mixed c l1\n", 0o644);

    let mut l0 = Layer::default();
    l0.whiteout("wh/z");
    l0.file("wh/new", "new in l0\n", 0o644);
    l0.dir("opq", 0o755);
    l0.file("opq/new2", "opq new2 l0\n", 0o644);
    l0.file("top/f", "top layer file\n", 0o644);
    l0.file("rc/f2", "rc f2 l0\n", 0o644);
    l0.opaque_dir("mixed", 0o755);
    l0.file("mixed/top", "only this survives\n", 0o644);
    l0.whiteout("odd/exec");
    l0.file("rd/d1/f2", "rd exists only in the top layer\n", 0o644);
    l0.whiteout("ra/d1/own1000");
    l0.dir("tmp", 0o1777);
    l0.opaque_dir("tmp/d0", 0o1777);

    Fixture {
        layers: vec![l0, l1, l2, base],
    }
}

/// Length of each component of the deep lower path in the standard fixture.
pub const DEEP_COMPONENT: usize = 200;
/// Number of components of the deep lower path.
pub const DEEP_LEVELS: usize = 12;

/// The deep directory path of the fixture (`deep/ddd...d/ddd...d/...`).
pub fn deep_dir() -> String {
    let comp = "d".repeat(DEEP_COMPONENT);
    let mut p = String::from("deep");
    for _ in 0..DEEP_LEVELS {
        p.push('/');
        p.push_str(&comp);
    }
    p
}
