//! Lookup and read-only serving: every kind of entry, deep paths, long names, a mount without an upper dir.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("lookup_every_kind", lookup_every_kind),
        Case::standard("deep_paths", deep_paths),
        Case::standard("name_max", name_max),
        Case {
            name: "read_only_mount",
            setup: read_only_setup,
            script: read_only_mount,
        },
    ]
}

fn lookup_every_kind(t: &mut Session) {
    for p in [
        "etc/hosts",
        "etc/passwd",
        "etc/shadow",
        "etc/motd",
        "bin/su",
        "usr/lib/libc.so",
        "usr/bin/abs",
        "usr/bin/dangling",
        "usr/bin/dirlink",
        "hl/a",
        "hl/b",
        "dev/null",
        "dev/fifo",
        "dev/sda",
        "tmp",
        "wh/x",
        "wh/new",
        "top/f",
        "big/file",
        "etc/group",
        "etc/group/inner",
        "ren/other",
        "mixed/top",
    ] {
        expect(t, lstat(p), Ok(()));
        t.op(stat(p));
    }
    for p in [
        "ghost",
        ".wh.ghost",
        "wh/y",
        "wh/z",
        "wh/dir",
        "wh/dir/f",
        "wh/.wh.z",
        "opq/a",
        "opq/sub",
        "mixed/a",
        "mixed/b",
        "mixed/c",
        "ra/f1",
        "ra/d0/f0",
        "odd/exec",
        "opq/.wh..wh..opq",
        "mixed/.wh..wh..opq",
    ] {
        expect(t, lstat(p), Err(libc::ENOENT));
    }
    // ren/other is a file in l2 hiding the base layer's directory.
    expect(t, lstat("ren/other/o"), Err(libc::ENOTDIR));
    for p in [
        "etc/hosts",
        "etc/group/inner",
        "big/file",
        "dev/null",
        "usr/bin/abs",
        "wh/x",
        "opq/new",
        "opq/new2",
    ] {
        expect(t, read(p), Ok(()));
    }
    for p in [
        "", "etc", "wh", "opq", "mixed", "ra", "ra/d0", "rb", "rc", "usr/lib", "dev", "hl", "xa",
        "ren",
    ] {
        expect(t, readdir(p), Ok(()));
    }
    for p in ["usr/lib/libc.so", "usr/bin/abs", "usr/bin/dangling", "xa/l"] {
        expect(t, Op::ReadLink(s(p)), Ok(()));
    }
    t.op(Op::ReadLink(s("etc/hosts")));
    t.op(stat("usr/bin/dangling"));
    t.op(read("usr/bin/dirlink/libc.so.7"));
    t.op(lstat("etc/hosts/x"));
}

fn deep_paths(t: &mut Session) {
    // Copy-up of a file ~2.4 KiB of path deep in a lower layer.
    let deep = deep_dir();
    expect(t, chmod(&format!("{deep}/f"), 0o600), Ok(()));
    expect(
        t,
        write(&format!("{deep}/f"), WriteAt::Append, 4, b'd'),
        Ok(()),
    );
    // New directories up to PATH_MAX: 4095 bytes works, 4096 is ENAMETOOLONG.
    let comp = "p".repeat(200);
    let mut p = String::from("top");
    while 4095 - p.len() - 1 > 255 {
        p = format!("{p}/{comp}");
        expect(t, mkdir(&p, 0o755), Ok(()));
    }
    let room = 4095 - p.len() - 1;
    let ok_path = format!("{p}/{}", "f".repeat(room));
    expect(t, create(&ok_path, 0o644), Ok(()));
    expect(t, lstat(&ok_path), Ok(()));
    let long_path = format!("{p}/{}", "g".repeat(room + 1));
    expect(t, create(&long_path, 0o644), Err(libc::ENAMETOOLONG));
    expect(
        t,
        rename(&ok_path, &format!("{p}/{}", "h".repeat(room)), 0),
        Ok(()),
    );
    expect(t, readdir(&p), Ok(()));
}

fn name_max(t: &mut Session) {
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    expect(t, create(&format!("top/{n255}"), 0o644), Ok(()));
    expect(
        t,
        create(&format!("top/{n256}"), 0o644),
        Err(libc::ENAMETOOLONG),
    );
    expect(t, mkdir(&format!("etc/{n255}"), 0o755), Ok(()));
    expect(
        t,
        mkdir(&format!("etc/{n256}"), 0o755),
        Err(libc::ENAMETOOLONG),
    );
    expect(t, lstat(&format!("top/{n256}")), Err(libc::ENAMETOOLONG));
    expect(
        t,
        Op::Symlink {
            target: s("x"),
            path: format!("wh/{n256}"),
        },
        Err(libc::ENAMETOOLONG),
    );
    expect(
        t,
        Op::Symlink {
            target: s("x"),
            path: format!("wh/{n255}"),
        },
        Ok(()),
    );
    expect(
        t,
        rename("etc/hosts", &format!("etc/{}", "h".repeat(255)), 0),
        Ok(()),
    );
    expect(
        t,
        rename("etc/passwd", &format!("etc/{}", "h".repeat(256)), 0),
        Err(libc::ENAMETOOLONG),
    );
    expect(
        t,
        Op::Link {
            old: s("etc/motd"),
            new: format!("top/{}", "k".repeat(256)),
        },
        Err(libc::ENAMETOOLONG),
    );
    expect(t, readdir("top"), Ok(()));
    expect(t, readdir("etc"), Ok(()));
}

/// Read-only mount (no upperdir): the same tree, EROFS for every write.
fn read_only_mount(t: &mut Session) {
    t.checkpoint("ro");
    expect(t, create("top/x", 0o644), Err(libc::EROFS));
    expect(t, open("etc/hosts", libc::O_WRONLY), Err(libc::EROFS));
    expect(t, mkdir("newdir", 0o755), Err(libc::EROFS));
    expect(t, unlink("etc/hosts"), Err(libc::EROFS));
    expect(t, rmdir("xa/d"), Err(libc::EROFS));
    expect(t, chmod("etc/hosts", 0o600), Err(libc::EROFS));
    expect(t, chown("etc/hosts", 1, 1), Err(libc::EROFS));
    expect(t, rename("etc/hosts", "etc/h2", 0), Err(libc::EROFS));
    expect(
        t,
        Op::Symlink {
            target: s("x"),
            path: s("sl"),
        },
        Err(libc::EROFS),
    );
    expect(
        t,
        Op::Link {
            old: s("etc/hosts"),
            new: s("hl2"),
        },
        Err(libc::EROFS),
    );
    expect(t, setx("xa/f", "user.x", "1", 0), Err(libc::EROFS));
    expect(
        t,
        Op::RemoveXattr {
            path: s("xa/f"),
            name: s("user.color"),
        },
        Err(libc::EROFS),
    );
    expect(t, Op::Truncate(s("etc/hosts"), 0), Err(libc::EROFS));
    expect(
        t,
        Op::Utimens {
            path: s("etc/hosts"),
            atime: (1, 0),
            mtime: (1, 0),
            nofollow: false,
        },
        Err(libc::EROFS),
    );
    expect(
        t,
        Op::Mknod {
            path: s("fifo"),
            kind: NodeKind::Fifo,
            mode: 0o644,
            umask: 0,
        },
        Err(libc::EROFS),
    );
    expect(t, read("etc/hosts"), Ok(()));
    expect(t, getx("xa/f", "user.color"), Ok(()));
}

/// The standard fixture mounted without an upper dir.
fn read_only_setup() -> Setup {
    Setup {
        read_only: true,
        ..Setup::new(standard())
    }
}
