//! Scripted differential cases: each case runs a short operation script on kernel
//! overlayfs and on the candidate mount program (`REBASEFS_BIN`) over identical layers and
//! compares every outcome, the whole tree, the upper dirs after unmount and a remount.
//!
//! One test runs the whole table and reports every failing case; `DIFF_CASE=name[,name]`
//! runs a subset. Needs root (mount, mknod, trusted.* xattrs).

use std::time::Instant;

use rebasefs_tests::diff::fixture::Fixture;
use rebasefs_tests::diff::op::{NodeKind, Op, WriteAt};
use rebasefs_tests::diff::outcome::{Outcome, Value};
use rebasefs_tests::diff::session::{Backing, Session, Setup};
use rebasefs_tests::diff::standard::{deep_dir, standard};
use rebasefs_tests::diff::tree::tree_diff;

type CaseFn = fn(&mut Session);
type FixtureFn = fn() -> Fixture;
type Case = (&'static str, CaseFn);

fn s(p: &str) -> String {
    p.to_string()
}
fn lstat(p: &str) -> Op {
    Op::Lstat(s(p))
}
fn stat(p: &str) -> Op {
    Op::Stat(s(p))
}
fn readdir(p: &str) -> Op {
    Op::ReadDir(s(p))
}
fn read(p: &str) -> Op {
    Op::Read(s(p))
}
fn create(p: &str, mode: u32) -> Op {
    Op::Open {
        path: s(p),
        flags: libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL,
        mode,
        umask: 0o022,
    }
}
fn open(p: &str, flags: i32) -> Op {
    Op::Open {
        path: s(p),
        flags,
        mode: 0o644,
        umask: 0o022,
    }
}
fn write(p: &str, at: WriteAt, len: usize, fill: u8) -> Op {
    Op::Write {
        path: s(p),
        at,
        len,
        fill,
    }
}
fn mkdir(p: &str, mode: u32) -> Op {
    Op::Mkdir {
        path: s(p),
        mode,
        umask: 0o022,
    }
}
fn unlink(p: &str) -> Op {
    Op::Unlink(s(p))
}
fn rmdir(p: &str) -> Op {
    Op::Rmdir(s(p))
}
fn rename(a: &str, b: &str, flags: u32) -> Op {
    Op::Rename {
        old: s(a),
        new: s(b),
        flags,
    }
}
fn chmod(p: &str, mode: u32) -> Op {
    Op::Chmod(s(p), mode)
}
fn chown(p: &str, uid: u32, gid: u32) -> Op {
    Op::Chown {
        path: s(p),
        uid,
        gid,
        nofollow: false,
    }
}
fn setx(p: &str, name: &str, value: &str, flags: i32) -> Op {
    Op::SetXattr {
        path: s(p),
        name: s(name),
        value: value.as_bytes().to_vec(),
        flags,
    }
}
fn getx(p: &str, name: &str) -> Op {
    Op::GetXattr(s(p), s(name))
}
fn as_user(op: Op) -> Op {
    Op::AsUser {
        uid: 1000,
        gid: 1000,
        op: Box::new(op),
    }
}
fn ok(o: &Outcome) -> bool {
    o.is_ok()
}
fn err(o: &Outcome, e: i32) -> bool {
    *o == Err(e)
}
/// Runs `op` and requires the kernel to give `want` (Ok(()) = any success).
fn expect(t: &mut Session, op: Op, want: Result<(), i32>) {
    let what = format!("{op:?} -> {want:?}");
    let o = t.run(op);
    let good = match want {
        Ok(()) => ok(&o),
        Err(e) => err(&o, e),
    };
    t.require(good, &format!("{what}, got {o:?}"));
}
fn stat_perm(o: &Outcome) -> Option<u32> {
    match o {
        Ok(Value::Stat(st)) => Some(st.perm),
        _ => None,
    }
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

fn xattrs_read(t: &mut Session) {
    expect(t, getx("xa/f", "user.color"), Ok(()));
    expect(t, getx("xa/f", "trusted.secret"), Ok(()));
    expect(t, getx("xa/l", "trusted.l"), Ok(()));
    expect(t, getx("xa/d", "user.d"), Ok(()));
    expect(t, getx("xa/f2", "user.layer"), Ok(()));
    expect(t, getx("xa/f", "user.missing"), Err(libc::ENODATA));
    for p in [
        "opq", "mixed", "ra/d0", "xa/f", "xa/l", "xa/d", "", "wh", "dev/null", "dev/fifo",
    ] {
        t.op(Op::ListXattr(s(p)));
    }
    // Overlay-private attributes of opaque dirs are hidden in both encodings.
    for (p, n) in [
        ("opq", "trusted.overlay.opaque"),
        ("ra/d0", "user.overlay.opaque"),
        ("mixed", "trusted.overlay.opaque"),
        ("ra/d0", "trusted.overlay.opaque"),
    ] {
        t.op(getx(p, n));
    }
}

fn create_and_open_flags(t: &mut Session) {
    expect(t, create("top/new", 0o640), Ok(()));
    expect(t, create("top/new", 0o640), Err(libc::EEXIST));
    expect(t, create("etc/hosts", 0o600), Err(libc::EEXIST));
    expect(t, open("etc/hosts", libc::O_CREAT | libc::O_WRONLY), Ok(()));
    expect(
        t,
        open("etc/passwd", libc::O_WRONLY | libc::O_TRUNC),
        Ok(()),
    );
    expect(
        t,
        open("etc/hosts", libc::O_RDONLY | libc::O_DIRECTORY),
        Err(libc::ENOTDIR),
    );
    expect(t, open("etc", libc::O_WRONLY), Err(libc::EISDIR));
    expect(
        t,
        open("usr/lib/libc.so", libc::O_RDONLY | libc::O_NOFOLLOW),
        Err(libc::ELOOP),
    );
    expect(
        t,
        open("nodir/x", libc::O_CREAT | libc::O_WRONLY),
        Err(libc::ENOENT),
    );
    // O_CREAT through a dangling symlink creates its target.
    expect(
        t,
        open("usr/bin/dangling", libc::O_CREAT | libc::O_WRONLY),
        Ok(()),
    );
    expect(t, lstat("usr/nowhere"), Ok(()));
    expect(
        t,
        open("dev/fifo", libc::O_RDONLY | libc::O_NONBLOCK),
        Ok(()),
    );
    expect(t, open("dev/null", libc::O_WRONLY), Ok(()));
    t.op(Op::Open {
        path: s("ra/new"),
        flags: libc::O_CREAT | libc::O_RDWR,
        mode: 0o4777,
        umask: 0,
    });
    t.op(readdir("top"));
    t.checkpoint("created");
}

fn umask_applies(t: &mut Session) {
    for (i, um) in [0o000u32, 0o022, 0o077, 0o027, 0o002].iter().enumerate() {
        t.op(Op::Open {
            path: format!("top/f{i}"),
            flags: libc::O_CREAT | libc::O_WRONLY,
            mode: 0o777,
            umask: *um,
        });
        t.op(Op::Mkdir {
            path: format!("top/d{i}"),
            mode: 0o777,
            umask: *um,
        });
        t.op(Op::Mknod {
            path: format!("top/p{i}"),
            kind: NodeKind::Fifo,
            mode: 0o666,
            umask: *um,
        });
        t.op(Op::Mknod {
            path: format!("ra/n{i}"),
            kind: NodeKind::Regular,
            mode: 0o2777,
            umask: *um,
        });
        t.op(lstat(&format!("top/f{i}")));
        t.op(lstat(&format!("top/d{i}")));
        t.op(lstat(&format!("top/p{i}")));
    }
    // The umask must have been applied by the kernel side at all.
    let o = t.run(lstat("top/f2"));
    t.require(stat_perm(&o) == Some(0o700), "umask 077 gives 0700");
}

fn write_pwrite_append(t: &mut Session) {
    expect(t, write("etc/hosts", WriteAt::Offset(4), 10, b'w'), Ok(()));
    expect(t, write("etc/hosts", WriteAt::Append, 7, b'a'), Ok(()));
    expect(
        t,
        write("etc/motd", WriteAt::Offset(100_000), 3, b'h'),
        Ok(()),
    );
    expect(
        t,
        write("big/file", WriteAt::Offset(70_000), 5000, b'b'),
        Ok(()),
    );
    expect(t, write("wh/new", WriteAt::Truncate, 3, b't'), Ok(()));
    expect(t, write("etc", WriteAt::Append, 1, b'x'), Err(libc::EISDIR));
    t.op(write("usr/lib/libc.so", WriteAt::Append, 4, b'l'));
    for p in [
        "etc/hosts",
        "etc/motd",
        "big/file",
        "wh/new",
        "usr/lib/libc.so.7",
        "usr/lib/libc.so.6",
    ] {
        t.op(read(p));
    }
}

fn truncate_ftruncate(t: &mut Session) {
    expect(t, Op::Truncate(s("etc/hosts"), 3), Ok(()));
    expect(t, Op::Truncate(s("etc/passwd"), 50_000), Ok(()));
    expect(t, Op::Ftruncate(s("big/file"), 1000), Ok(()));
    expect(t, Op::Ftruncate(s("etc/motd"), 0), Ok(()));
    expect(t, Op::Truncate(s("etc"), 0), Err(libc::EISDIR));
    t.op(Op::Truncate(s("usr/lib/libc.so"), 2));
    t.op(Op::Truncate(s("missing"), 2));
    for p in [
        "etc/hosts",
        "etc/passwd",
        "big/file",
        "etc/motd",
        "usr/lib/libc.so.7",
    ] {
        t.op(read(p));
        t.op(lstat(p));
    }
}

fn chmod_chown(t: &mut Session) {
    expect(t, chmod("etc/hosts", 0o600), Ok(()));
    expect(t, chmod("etc", 0o700), Ok(()));
    expect(t, chmod("odd/zero", 0o4644), Ok(()));
    expect(t, chown("etc/passwd", 1000, 1001), Ok(()));
    expect(t, chown("bin/su", 1000, 1000), Ok(()));
    expect(t, chown("bin/wall", 0, 0), Ok(()));
    expect(
        t,
        Op::Chown {
            path: s("usr/lib/libc.so"),
            uid: 1001,
            gid: 1001,
            nofollow: true,
        },
        Ok(()),
    );
    expect(t, chown("usr/bin/abs", 1002, 1002), Ok(()));
    expect(t, chown("dev/sda", 0, 7), Ok(()));
    expect(t, chmod("dev/fifo", 0o600), Ok(()));
    expect(t, chmod("missing", 0o600), Err(libc::ENOENT));
    for p in [
        "etc/hosts",
        "etc",
        "odd/zero",
        "etc/passwd",
        "bin/su",
        "bin/wall",
        "usr/lib/libc.so",
        "usr/lib/libc.so.7",
        "dev/sda",
        "dev/fifo",
    ] {
        t.op(lstat(p));
    }
}

fn utimensat_times(t: &mut Session) {
    let t1 = (1_234_567_890, 123_456_789);
    let t2 = (1_000_000_001, 999_999_999);
    expect(
        t,
        Op::Utimens {
            path: s("etc/hosts"),
            atime: t1,
            mtime: t2,
            nofollow: false,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Utimens {
            path: s("etc"),
            atime: t2,
            mtime: t1,
            nofollow: false,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Utimens {
            path: s("usr/lib/libc.so"),
            atime: t1,
            mtime: t1,
            nofollow: true,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Utimens {
            path: s("usr/bin/abs"),
            atime: t2,
            mtime: t2,
            nofollow: false,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Utimens {
            path: s("hl/b"),
            atime: (0, libc::UTIME_OMIT),
            mtime: t1,
            nofollow: false,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Utimens {
            path: s("dev/fifo"),
            atime: t1,
            mtime: t2,
            nofollow: false,
        },
        Ok(()),
    );
    t.op(Op::Utimens {
        path: s("wh/new"),
        atime: (0, libc::UTIME_NOW),
        mtime: (0, libc::UTIME_NOW),
        nofollow: false,
    });
    for p in [
        "etc/hosts",
        "etc",
        "usr/lib/libc.so",
        "etc/passwd",
        "hl/a",
        "hl/c",
        "dev/fifo",
        "wh/new",
    ] {
        t.op(lstat(p));
    }
}

fn mkdir_rmdir(t: &mut Session) {
    expect(t, mkdir("top/nd", 0o755), Ok(()));
    expect(t, mkdir("top/nd", 0o755), Err(libc::EEXIST));
    expect(t, mkdir("etc", 0o755), Err(libc::EEXIST));
    expect(t, mkdir("etc/hosts/x", 0o755), Err(libc::ENOTDIR));
    expect(t, rmdir("etc"), Err(libc::ENOTEMPTY));
    expect(t, rmdir("odd/dir0711"), Err(libc::ENOTEMPTY));
    expect(t, rmdir("etc/hosts"), Err(libc::ENOTDIR));
    expect(t, rmdir("top/nd"), Ok(()));
    expect(t, rmdir("xa/d"), Ok(()));
    expect(t, rmdir("rc/d1"), Err(libc::ENOTEMPTY));
    expect(t, unlink("rc/d1/f3"), Ok(()));
    expect(t, rmdir("rc/d1"), Ok(()));
    expect(t, lstat("rc/d1"), Err(libc::ENOENT));
    expect(t, mkdir("rc/d1", 0o700), Ok(()));
    expect(t, readdir("rc/d1"), Ok(()));
    expect(t, rmdir(""), Err(libc::EINVAL));
}

fn mknod_special(t: &mut Session) {
    expect(
        t,
        Op::Mknod {
            path: s("top/fifo"),
            kind: NodeKind::Fifo,
            mode: 0o640,
            umask: 0o022,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Mknod {
            path: s("top/null"),
            kind: NodeKind::CharDev(1, 3),
            mode: 0o666,
            umask: 0o022,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Mknod {
            path: s("top/reg"),
            kind: NodeKind::Regular,
            mode: 0o644,
            umask: 0o022,
        },
        Ok(()),
    );
    expect(
        t,
        Op::Mknod {
            path: s("dev/null"),
            kind: NodeKind::CharDev(1, 3),
            mode: 0o666,
            umask: 0o022,
        },
        Err(libc::EEXIST),
    );
    expect(t, write("top/null", WriteAt::Append, 10, b'n'), Ok(()));
    expect(t, read("dev/null"), Ok(()));
    for p in ["top/fifo", "top/null", "top/reg"] {
        t.op(lstat(p));
    }
}

fn symlink_readlink(t: &mut Session) {
    expect(
        t,
        Op::Symlink {
            target: s("../etc/hosts"),
            path: s("top/l"),
        },
        Ok(()),
    );
    expect(
        t,
        Op::Symlink {
            target: s("x"),
            path: s("etc/hosts"),
        },
        Err(libc::EEXIST),
    );
    expect(
        t,
        Op::Symlink {
            target: "t".repeat(4000),
            path: s("top/long"),
        },
        Ok(()),
    );
    expect(t, Op::ReadLink(s("top/l")), Ok(()));
    expect(t, read("top/l"), Ok(()));
    t.op(Op::ReadLink(s("top/long")));
    t.op(lstat("top/long"));
    t.op(Op::Symlink {
        target: s(""),
        path: s("top/empty"),
    });
}

fn hard_links(t: &mut Session) {
    expect(
        t,
        Op::Link {
            old: s("etc/hosts"),
            new: s("top/hosts-link"),
        },
        Ok(()),
    );
    expect(
        t,
        Op::Link {
            old: s("etc"),
            new: s("top/etc-link"),
        },
        Err(libc::EPERM),
    );
    expect(
        t,
        Op::Link {
            old: s("etc/hosts"),
            new: s("etc/passwd"),
        },
        Err(libc::EEXIST),
    );
    expect(
        t,
        Op::Link {
            old: s("usr/lib/libc.so"),
            new: s("top/symlink-link"),
        },
        Ok(()),
    );
    expect(
        t,
        Op::Link {
            old: s("hl/a"),
            new: s("top/hl-a"),
        },
        Ok(()),
    );
    for p in [
        "etc/hosts",
        "top/hosts-link",
        "top/symlink-link",
        "hl/a",
        "hl/b",
        "hl/c",
        "top/hl-a",
    ] {
        t.op(lstat(p));
    }
    expect(t, write("top/hosts-link", WriteAt::Append, 5, b'L'), Ok(()));
    expect(t, read("etc/hosts"), Ok(()));
    expect(t, unlink("etc/hosts"), Ok(()));
    expect(t, lstat("top/hosts-link"), Ok(()));
}

fn unlink_files(t: &mut Session) {
    expect(t, unlink("etc/hosts"), Ok(()));
    expect(t, unlink("etc/hosts"), Err(libc::ENOENT));
    expect(t, unlink("etc"), Err(libc::EISDIR));
    expect(t, unlink("usr/lib/libc.so"), Ok(()));
    expect(t, unlink("dev/null"), Ok(()));
    expect(t, unlink("wh/new"), Ok(()));
    expect(t, unlink("top/f"), Ok(()));
    expect(t, readdir("top"), Ok(()));
    expect(t, rmdir("top"), Ok(()));
    for p in ["etc", "usr/lib", "dev", "wh", ""] {
        t.op(readdir(p));
    }
}

fn rename_files(t: &mut Session) {
    expect(t, rename("etc/hosts", "etc/hosts.new", 0), Ok(()));
    expect(t, rename("etc/passwd", "etc/motd", 0), Ok(()));
    expect(
        t,
        rename("etc/shadow", "etc/group/inner", libc::RENAME_NOREPLACE),
        Err(libc::EEXIST),
    );
    expect(t, rename("bin/sh", "bin/su", libc::RENAME_EXCHANGE), Ok(()));
    expect(
        t,
        rename("bin/sh", "bin/missing", libc::RENAME_EXCHANGE),
        Err(libc::ENOENT),
    );
    expect(t, rename("bin/wall", "bin/wall", 0), Ok(()));
    expect(t, rename("hl/b", "top/b", 0), Ok(()));
    expect(t, rename("hl/a", "hl/c", 0), Ok(()));
    expect(t, rename("usr/lib/libc.so", "top/so", 0), Ok(()));
    expect(t, rename("etc/hosts.new", "xa/d", 0), Err(libc::EISDIR));
    expect(
        t,
        rename("etc/shadow", "ren/other", libc::RENAME_NOREPLACE),
        Err(libc::EEXIST),
    );
    expect(t, rename("top/f", "nodir/f", 0), Err(libc::ENOENT));
    for p in ["etc", "bin", "hl", "top", "usr/lib"] {
        t.op(readdir(p));
    }
    for p in ["bin/sh", "bin/su", "top/b", "hl/c", "top/so"] {
        t.op(read(p));
        t.op(lstat(p));
    }
}

fn rename_dirs_from_lower(t: &mut Session) {
    expect(t, rename("ren/sub", "ren/moved", 0), Ok(()));
    expect(t, read("ren/moved/deep/f"), Ok(()));
    expect(t, lstat("ren/sub"), Err(libc::ENOENT));
    expect(t, rename("ren/moved", "top/elsewhere", 0), Ok(()));
    expect(t, read("top/elsewhere/g"), Ok(()));
    expect(t, create("top/elsewhere/new", 0o644), Ok(()));
    expect(t, mkdir("ren/sub", 0o755), Ok(()));
    expect(t, readdir("ren/sub"), Ok(()));
    // A merged directory (l0 over l2's opaque dir) moved under another lower directory.
    expect(t, rename("opq", "etc/opq", 0), Ok(()));
    expect(t, readdir("etc/opq"), Ok(()));
    expect(t, rename("etc", "etc/opq/x", 0), Err(libc::EINVAL));
    expect(t, mkdir("top/empty", 0o755), Ok(()));
    expect(t, rename("usr", "top/empty", 0), Ok(()));
    expect(t, readdir("top/empty/lib"), Ok(()));
    expect(t, rename("xa", "hl", 0), Err(libc::ENOTEMPTY));
    expect(t, rename("ra", "rc", libc::RENAME_EXCHANGE), Ok(()));
    expect(t, readdir("ra"), Ok(()));
    expect(t, readdir("rc/d0"), Ok(()));
    t.checkpoint("renamed");
    expect(t, rename("top/elsewhere", "ren/sub2", 0), Ok(()));
    expect(t, rename("ren/sub2/deep", "deepmoved", 0), Ok(()));
    expect(t, read("deepmoved/f"), Ok(()));
}

/// Both sides mounted with `redirect_dir=off`: a directory with lower layers (pure lower or
/// merged) cannot be renamed (EXDEV, after the VFS's own checks and before the overlay's
/// emptiness check); files and upper-only directories still move.
fn rename_dirs_redirect_dir_off(t: &mut Session) {
    expect(t, rename("ren/sub", "ren/moved", 0), Err(libc::EXDEV));
    expect(t, rename("opq", "etc/opq", 0), Err(libc::EXDEV));
    expect(t, rename("xa", "hl", 0), Err(libc::EXDEV));
    expect(
        t,
        rename("ra", "rc", libc::RENAME_EXCHANGE),
        Err(libc::EXDEV),
    );
    expect(t, rename("ren/sub", "ren/file", 0), Err(libc::ENOTDIR));
    expect(t, rename("ren/sub", "ren/sub", 0), Ok(()));
    expect(t, chmod("ren/sub", 0o700), Ok(()));
    expect(t, rename("ren/sub", "ren/moved", 0), Err(libc::EXDEV));
    expect(t, rename("ren/file", "ren/file2", 0), Ok(()));
    expect(t, mkdir("top/newdir", 0o755), Ok(()));
    expect(t, create("top/newdir/f", 0o644), Ok(()));
    expect(t, rename("top/newdir", "top/nd2", 0), Ok(()));
    expect(t, rename("top/nd2", "ren/sub", 0), Err(libc::ENOTEMPTY));
    expect(
        t,
        rename("top/nd2", "ren/nd3", libc::RENAME_NOREPLACE),
        Ok(()),
    );
    expect(
        t,
        rename("ren/nd3", "ren/sub", libc::RENAME_EXCHANGE),
        Err(libc::EXDEV),
    );
    expect(t, readdir("ren"), Ok(()));
    t.checkpoint("after refused directory renames");
}

fn xattrs_write(t: &mut Session) {
    expect(t, setx("etc/hosts", "user.new", "1", 0), Ok(()));
    expect(
        t,
        setx("xa/f", "user.color", "blue", libc::XATTR_CREATE),
        Err(libc::EEXIST),
    );
    expect(
        t,
        setx("xa/f", "user.nothere", "x", libc::XATTR_REPLACE),
        Err(libc::ENODATA),
    );
    expect(
        t,
        setx("xa/f", "user.color", "blue", libc::XATTR_REPLACE),
        Ok(()),
    );
    expect(t, setx("xa/d", "trusted.dirx", "d", 0), Ok(()));
    expect(t, setx("xa/l", "trusted.l2", "l", 0), Ok(()));
    expect(t, setx("xa/l", "user.l", "l", 0), Err(libc::EPERM));
    t.op(setx("dev/fifo", "user.f", "f", 0));
    expect(
        t,
        Op::RemoveXattr {
            path: s("xa/f"),
            name: s("trusted.secret"),
        },
        Ok(()),
    );
    expect(
        t,
        Op::RemoveXattr {
            path: s("xa/f"),
            name: s("user.none"),
        },
        Err(libc::ENODATA),
    );
    t.op(setx("etc/motd", "trusted.overlay.opaque", "y", 0));
    t.op(setx("etc/motd", "user.overlay.redirect", "/x", 0));
    t.op(setx("etc", "trusted.overlay.redirect", "/bin", 0));
    t.op(readdir("etc"));
    t.op(setx("etc/motd", "user.big", &"v".repeat(3000), 0));
    for p in [
        "etc/hosts",
        "xa/f",
        "xa/d",
        "xa/l",
        "dev/fifo",
        "etc/motd",
        "etc",
    ] {
        t.op(Op::ListXattr(s(p)));
    }
}

fn fsync_files(t: &mut Session) {
    expect(t, Op::Fsync(s("etc/hosts")), Ok(()));
    expect(t, Op::Fsync(s("etc")), Ok(()));
    expect(t, create("top/synced", 0o644), Ok(()));
    expect(t, Op::Fsync(s("top/synced")), Ok(()));
    t.op(Op::Fsync(s("missing")));
}

fn open_unlink_fstat(t: &mut Session) {
    expect(t, Op::OpenUnlinkFstat(s("etc/hosts")), Ok(()));
    expect(t, create("top/tmpfile", 0o600), Ok(()));
    expect(t, write("top/tmpfile", WriteAt::Append, 100, b'u'), Ok(()));
    expect(t, Op::OpenUnlinkFstat(s("top/tmpfile")), Ok(()));
    expect(t, Op::OpenUnlinkFstat(s("hl/c")), Ok(()));
    expect(t, lstat("hl/a"), Ok(()));
}

fn whiteout_then_recreate(t: &mut Session) {
    expect(t, unlink("wh/keep"), Ok(()));
    expect(t, lstat("wh/keep"), Err(libc::ENOENT));
    expect(t, create("wh/keep", 0o600), Ok(()));
    expect(t, read("wh/keep"), Ok(()));
    expect(t, unlink("wh/x"), Ok(()));
    expect(t, mkdir("wh/x", 0o755), Ok(()));
    expect(t, readdir("wh/x"), Ok(()));
    // A lower directory removed and made again must come back empty (opaque).
    expect(t, unlink("opq/sub/c"), Err(libc::ENOENT));
    expect(t, unlink("ren/sub/deep/f"), Ok(()));
    expect(t, rmdir("ren/sub/deep"), Ok(()));
    expect(t, mkdir("ren/sub/deep", 0o700), Ok(()));
    expect(t, readdir("ren/sub/deep"), Ok(()));
    expect(t, unlink("ren/sub/g"), Ok(()));
    expect(
        t,
        Op::Symlink {
            target: s("deep"),
            path: s("ren/sub/g"),
        },
        Ok(()),
    );
    expect(t, readdir("ren/sub"), Ok(()));
    expect(t, readdir("wh"), Ok(()));
}

fn opaque_over_nonempty_lower(t: &mut Session) {
    expect(t, readdir("opq"), Ok(()));
    expect(t, readdir("mixed"), Ok(()));
    expect(t, readdir("ra/d0"), Ok(()));
    expect(t, create("mixed/made", 0o644), Ok(()));
    expect(t, create("mixed/a", 0o644), Ok(()));
    expect(t, read("mixed/a"), Ok(()));
    expect(t, unlink("opq/new"), Ok(()));
    expect(t, readdir("opq"), Ok(()));
    expect(t, lstat("opq/a"), Err(libc::ENOENT));
    expect(t, chmod("mixed", 0o700), Ok(()));
    expect(t, readdir("mixed"), Ok(()));
}

fn rename_over_whiteout(t: &mut Session) {
    expect(t, unlink("wh/keep"), Ok(()));
    expect(t, rename("wh/new", "wh/keep", 0), Ok(()));
    expect(t, read("wh/keep"), Ok(()));
    expect(t, lstat("wh/new"), Err(libc::ENOENT));
    expect(
        t,
        rename("etc/motd", "wh/y", libc::RENAME_NOREPLACE),
        Ok(()),
    );
    expect(t, rename("etc/hosts", "wh/z", 0), Ok(()));
    expect(t, unlink("ren/other"), Ok(()));
    expect(
        t,
        rename("ren/sub", "ren/other", libc::RENAME_NOREPLACE),
        Ok(()),
    );
    expect(t, readdir("ren/other"), Ok(()));
    expect(t, readdir("wh"), Ok(()));
}

fn hardlink_copy_up(t: &mut Session) {
    expect(t, chmod("hl/a", 0o600), Ok(()));
    for p in ["hl/a", "hl/b", "hl/c"] {
        expect(t, lstat(p), Ok(()));
    }
    expect(t, write("hl/b", WriteAt::Append, 9, b'h'), Ok(()));
    for p in ["hl/a", "hl/b", "hl/c"] {
        expect(t, read(p), Ok(()));
    }
    t.checkpoint("after copy-up");
    expect(t, unlink("hl/c"), Ok(()));
    expect(t, lstat("hl/a"), Ok(()));
    expect(t, setx("l2hl/b", "user.x", "1", 0), Ok(()));
    expect(t, lstat("l2hl/a"), Ok(()));
    expect(t, getx("l2hl/a", "user.x"), Ok(()));
    expect(
        t,
        Op::Link {
            old: s("rc/f1"),
            new: s("rc/f3"),
        },
        Ok(()),
    );
    expect(t, lstat("rc/f0"), Ok(()));
}

fn copy_up_while_open(t: &mut Session) {
    expect(
        t,
        Op::ReadDuringCopyUp {
            path: s("etc/hosts"),
            len: 3,
            fill: b'c',
        },
        Ok(()),
    );
    expect(
        t,
        Op::ReadDuringCopyUp {
            path: s("big/file"),
            len: 100_000,
            fill: b'C',
        },
        Ok(()),
    );
    expect(
        t,
        Op::ReadDuringCopyUp {
            path: s("hl/b"),
            len: 5,
            fill: b'H',
        },
        Ok(()),
    );
    expect(t, read("hl/a"), Ok(()));
}

fn rmdir_merged(t: &mut Session) {
    expect(t, unlink("mixed/top"), Ok(()));
    expect(t, rmdir("mixed"), Ok(()));
    expect(t, lstat("mixed"), Err(libc::ENOENT));
    expect(t, unlink("ra/d0/f3"), Ok(()));
    expect(t, rmdir("ra/d0"), Ok(()));
    expect(t, mkdir("ra/d0", 0o755), Ok(()));
    expect(t, readdir("ra/d0"), Ok(()));
    for p in ["opq/new", "opq/new2"] {
        expect(t, unlink(p), Ok(()));
    }
    expect(t, readdir("opq"), Ok(()));
    expect(t, rmdir("opq"), Ok(()));
    expect(t, mkdir("opq", 0o755), Ok(()));
    expect(t, readdir("opq"), Ok(()));
    expect(t, rmdir("rb"), Err(libc::ENOTEMPTY));
}

fn readdir_after_deletes(t: &mut Session) {
    for p in ["etc/hosts", "etc/passwd", "etc/shadow", "etc/motd"] {
        expect(t, unlink(p), Ok(()));
        expect(t, readdir("etc"), Ok(()));
    }
    expect(t, unlink("etc/group/inner"), Ok(()));
    expect(t, rmdir("etc/group"), Ok(()));
    expect(t, readdir("etc"), Ok(()));
    expect(t, rmdir("etc"), Ok(()));
    expect(t, readdir(""), Ok(()));
    expect(t, mkdir("etc", 0o755), Ok(()));
    expect(t, readdir("etc"), Ok(()));
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

fn sticky_dir(t: &mut Session) {
    expect(t, as_user(unlink("tmp/own1001")), Err(libc::EPERM));
    expect(t, as_user(unlink("tmp/rootf")), Err(libc::EPERM));
    expect(
        t,
        as_user(rename("tmp/own1001", "tmp/stolen", 0)),
        Err(libc::EPERM),
    );
    expect(
        t,
        as_user(rename("tmp/own1000", "tmp/rootf", 0)),
        Err(libc::EPERM),
    );
    expect(t, as_user(create("tmp/mine", 0o644)), Ok(()));
    expect(t, as_user(unlink("tmp/mine")), Ok(()));
    expect(t, as_user(unlink("tmp/own1000")), Ok(()));
    expect(t, as_user(rmdir("tmp/d1000")), Ok(()));
    expect(t, as_user(unlink("shared/by1001")), Ok(()));
    expect(t, as_user(mkdir("tmp/udir", 0o755)), Ok(()));
    expect(t, as_user(rename("tmp/udir", "tmp/udir2", 0)), Ok(()));
    expect(t, readdir("tmp"), Ok(()));
}

fn suid_clearing(t: &mut Session) {
    // Write by the unprivileged owner clears setuid and (group-executable) setgid.
    expect(
        t,
        as_user(write("bin/both", WriteAt::Append, 3, b's')),
        Ok(()),
    );
    let o = t.run(lstat("bin/both"));
    t.require(
        stat_perm(&o) == Some(0o775),
        "write by owner clears 06775 -> 0775",
    );
    // setgid without group-exec is not a setgid-executable: kept.
    expect(
        t,
        as_user(write("bin/sgid-nox", WriteAt::Offset(0), 3, b's')),
        Ok(()),
    );
    expect(t, lstat("bin/sgid-nox"), Ok(()));
    // Root (CAP_FSETID) keeps the bits.
    expect(t, write("bin/su", WriteAt::Append, 3, b'r'), Ok(()));
    expect(t, lstat("bin/su"), Ok(()));
    // chown by the unprivileged owner clears them.
    expect(t, chmod("bin/both", 0o6755), Ok(()));
    expect(t, as_user(chown("bin/both", u32::MAX, 1000)), Ok(()));
    expect(t, lstat("bin/both"), Ok(()));
    // Truncate by the owner clears them too.
    expect(t, chmod("rb/f0", 0o6775), Ok(()));
    expect(t, as_user(Op::Truncate(s("rb/f0"), 2)), Ok(()));
    expect(t, lstat("rb/f0"), Ok(()));
    // chmod g+s by an owner not in the group drops the setgid bit.
    expect(t, chown("rb/f1", 1000, 0), Ok(()));
    expect(t, as_user(chmod("rb/f1", 0o2755)), Ok(()));
    expect(t, lstat("rb/f1"), Ok(()));
    // Root chown of a setuid file clears setuid.
    expect(t, chown("bin/su", 0, 0), Ok(()));
    expect(t, lstat("bin/su"), Ok(()));
}

fn unprivileged_permissions(t: &mut Session) {
    expect(t, as_user(read("etc/shadow")), Err(libc::EACCES));
    expect(
        t,
        as_user(write("etc/passwd", WriteAt::Append, 1, b'x')),
        Err(libc::EACCES),
    );
    expect(t, as_user(read("odd/zero")), Err(libc::EACCES));
    expect(t, as_user(read("odd/dir0711/inside")), Ok(()));
    expect(t, as_user(readdir("odd/dir0711")), Err(libc::EACCES));
    expect(t, as_user(mkdir("newdir", 0o755)), Err(libc::EACCES));
    expect(t, as_user(chmod("etc/hosts", 0o777)), Err(libc::EPERM));
    expect(
        t,
        as_user(chown("home/user/.profile", 1001, 1001)),
        Err(libc::EPERM),
    );
    expect(t, as_user(create("home/user/new", 0o644)), Ok(()));
    expect(t, as_user(readdir("home/user")), Ok(()));
    expect(
        t,
        as_user(Op::Utimens {
            path: s("etc/hosts"),
            atime: (5, 0),
            mtime: (5, 0),
            nofollow: false,
        }),
        Err(libc::EPERM),
    );
    expect(
        t,
        as_user(Op::Utimens {
            path: s("tmp/own1001"),
            atime: (0, libc::UTIME_NOW),
            mtime: (0, libc::UTIME_NOW),
            nofollow: false,
        }),
        Ok(()),
    );
    expect(
        t,
        as_user(setx("home/user/.profile", "user.mine", "1", 0)),
        Ok(()),
    );
    expect(
        t,
        as_user(setx("home/user/.profile", "trusted.no", "1", 0)),
        Err(libc::EPERM),
    );
    expect(
        t,
        as_user(setx("etc/hosts", "user.no", "1", 0)),
        Err(libc::EACCES),
    );
    t.op(as_user(getx("xa/f", "trusted.secret")));
    t.op(as_user(Op::ListXattr(s("xa/f"))));
    // fs.protected_hardlinks: no linking to a file one cannot write.
    expect(
        t,
        as_user(Op::Link {
            old: s("etc/hosts"),
            new: s("tmp/hosts"),
        }),
        Err(libc::EPERM),
    );
    expect(
        t,
        as_user(Op::Link {
            old: s("home/user/.profile"),
            new: s("tmp/profile"),
        }),
        Ok(()),
    );
    expect(
        t,
        as_user(rename("home/user/sub", "home/user/sub2", 0)),
        Ok(()),
    );
    expect(t, lstat("home/user/.profile"), Ok(()));
}

fn special_files_copy_up(t: &mut Session) {
    expect(t, chmod("dev/fifo", 0o666), Ok(()));
    expect(t, chown("dev/null", 1000, 1000), Ok(()));
    expect(t, setx("dev/sda", "trusted.dev", "1", 0), Ok(()));
    expect(t, rename("dev/null", "dev/null2", 0), Ok(()));
    expect(
        t,
        Op::Link {
            old: s("dev/fifo"),
            new: s("dev/fifo2"),
        },
        Ok(()),
    );
    expect(t, readdir("dev"), Ok(()));
    for p in ["dev/fifo", "dev/null2", "dev/sda", "dev/fifo2"] {
        expect(t, lstat(p), Ok(()));
    }
}

fn dir_metadata_copy_up(t: &mut Session) {
    expect(t, chmod("xa/d", 0o700), Ok(()));
    expect(t, chown("odd/dir0711", 1000, 1000), Ok(()));
    expect(t, setx("ren", "user.dir", "1", 0), Ok(()));
    let tm = (1_111_111_111, 111);
    expect(
        t,
        Op::Utimens {
            path: s("usr"),
            atime: tm,
            mtime: tm,
            nofollow: false,
        },
        Ok(()),
    );
    expect(t, lstat("usr"), Ok(()));
    expect(t, create("usr/new", 0o644), Ok(()));
    expect(t, lstat("usr"), Ok(()));
    expect(t, lstat("ren"), Ok(()));
    expect(t, lstat("odd/dir0711"), Ok(()));
}

/// README "Intended differences": rebasefs refuses new names starting with `.wh.` (EPERM),
/// because in its upper dir (read by containers-storage as an AUFS-format layer) they
/// would turn into whiteouts / opaque markers. Kernel overlayfs accepts them as ordinary
/// names; its result is undone on the kernel side so the trees stay comparable.
const WH_REASON: &str = "names starting with .wh. are refused (README)";

/// Runs a `.wh.`-name creation: the kernel must accept it (then it is undone there with
/// `undo`), rebasefs must refuse it with EPERM.
fn wh_refused(t: &mut Session, op: Op, undo: Op) {
    let what = format!("{op:?} succeeds");
    let o = t.run_intended(op, Err(libc::EPERM), Some(undo), WH_REASON);
    t.require(o.is_ok(), &what);
}

fn aufs_looking_names(t: &mut Session) {
    // The kernel side's undo leaves traces (copy-ups, parent mtimes), so the trees are
    // compared candidate-before vs candidate-after instead: a refused name changes nothing.
    // (In the kernel self-check both sides create and undo, so they stay comparable.)
    let self_check = t.is_self_check();
    if !self_check {
        t.stop_tree_comparison();
    }
    let before = if self_check { None } else { t.candidate_tree() };
    wh_refused(t, create("top/.wh.f", 0o644), unlink("top/.wh.f"));
    wh_refused(
        t,
        create("wh/.wh..wh..opq", 0o644),
        unlink("wh/.wh..wh..opq"),
    );
    wh_refused(t, mkdir("top/.wh.d", 0o755), rmdir("top/.wh.d"));
    wh_refused(
        t,
        Op::Symlink {
            target: s("f"),
            path: s("top/.wh.l"),
        },
        unlink("top/.wh.l"),
    );
    wh_refused(
        t,
        Op::Mknod {
            path: s("top/.wh.p"),
            kind: NodeKind::Fifo,
            mode: 0o644,
            umask: 0o022,
        },
        unlink("top/.wh.p"),
    );
    wh_refused(
        t,
        Op::Link {
            old: s("top/f"),
            new: s("top/.wh.h"),
        },
        unlink("top/.wh.h"),
    );
    wh_refused(
        t,
        rename("etc/hosts", "etc/.wh.hosts", 0),
        rename("etc/.wh.hosts", "etc/hosts", 0),
    );
    // Looking such names up is fine (nothing of the kind exists in the merged view), and
    // the names they would have hidden are all still there.
    for p in ["top/.wh.f", "wh/.wh..wh..opq", "etc/.wh.hosts"] {
        expect(t, lstat(p), Err(libc::ENOENT));
    }
    expect(t, readdir("top"), Ok(()));
    expect(t, readdir("wh"), Ok(()));
    expect(t, lstat("top/f"), Ok(()));
    expect(t, read("etc/hosts"), Ok(()));
    let after = t.candidate_tree();
    if let (Some(b), Some(a)) = (before, after) {
        let d = tree_diff(&b, &a, t.recent());
        t.record("candidate tree changed by refused .wh. names", d);
    }
}

fn cases() -> Vec<Case> {
    vec![
        ("lookup_every_kind", lookup_every_kind),
        ("xattrs_read", xattrs_read),
        ("create_and_open_flags", create_and_open_flags),
        ("umask_applies", umask_applies),
        ("write_pwrite_append", write_pwrite_append),
        ("truncate_ftruncate", truncate_ftruncate),
        ("chmod_chown", chmod_chown),
        ("utimensat_times", utimensat_times),
        ("mkdir_rmdir", mkdir_rmdir),
        ("mknod_special", mknod_special),
        ("symlink_readlink", symlink_readlink),
        ("hard_links", hard_links),
        ("unlink_files", unlink_files),
        ("rename_files", rename_files),
        ("rename_dirs_from_lower", rename_dirs_from_lower),
        ("xattrs_write", xattrs_write),
        ("fsync_files", fsync_files),
        ("open_unlink_fstat", open_unlink_fstat),
        ("whiteout_then_recreate", whiteout_then_recreate),
        ("opaque_over_nonempty_lower", opaque_over_nonempty_lower),
        ("rename_over_whiteout", rename_over_whiteout),
        ("hardlink_copy_up", hardlink_copy_up),
        ("copy_up_while_open", copy_up_while_open),
        ("rmdir_merged", rmdir_merged),
        ("readdir_after_deletes", readdir_after_deletes),
        ("deep_paths", deep_paths),
        ("name_max", name_max),
        ("sticky_dir", sticky_dir),
        ("suid_clearing", suid_clearing),
        ("unprivileged_permissions", unprivileged_permissions),
        ("special_files_copy_up", special_files_copy_up),
        ("dir_metadata_copy_up", dir_metadata_copy_up),
        ("aufs_looking_names", aufs_looking_names),
    ]
}

/// Name of the `i`th entry of the large directory: long, so one readdir needs many
/// getdents calls (and FUSE readdir replies) and offsets are exercised.
fn big_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:04}-{}", "x".repeat(90))
}

/// The standard fixture plus a 1500-entry directory spread over all layers with whiteouts
/// in both encodings.
fn large_dir_fixture() -> Fixture {
    let mut f = standard();
    let n = f.layers.len();
    if let Some(base) = f.layers.get_mut(n - 1) {
        for i in 0..1500 {
            base.file(&format!("many/{}", big_name("e", i)), "e", 0o644);
        }
    }
    if let Some(l2) = f.layers.get_mut(2) {
        for i in (0..1500).step_by(7) {
            l2.whiteout(&format!("many/{}", big_name("e", i)));
        }
    }
    if let Some(l1) = f.layers.get_mut(1) {
        for i in 0..300 {
            l1.file(&format!("many/{}", big_name("n", i)), "n", 0o600);
        }
    }
    if let Some(l0) = f.layers.get_mut(0) {
        for i in (0..1500).step_by(11) {
            l0.whiteout(&format!("many/{}", big_name("e", i)));
        }
        for i in (0..300).step_by(13) {
            l0.whiteout(&format!("many/{}", big_name("n", i)));
        }
    }
    f
}

fn readdir_large_dir(t: &mut Session) {
    expect(t, readdir("many"), Ok(()));
    for i in (0..1500).step_by(5) {
        t.op(unlink(&format!("many/{}", big_name("e", i))));
    }
    expect(t, readdir("many"), Ok(()));
    for i in 0..200 {
        t.op(create(&format!("many/{}", big_name("u", i)), 0o644));
    }
    for i in (1..300).step_by(3) {
        t.op(rename(
            &format!("many/{}", big_name("n", i)),
            &format!("many/{}", big_name("r", i)),
            0,
        ));
    }
    expect(t, readdir("many"), Ok(()));
    t.checkpoint("large dir");
}

/// RLIMIT_NOFILE of the mount program in `many_nodes_few_fds`: far below the number of
/// nodes the case makes the kernel look up.
const MANY_NODES_NOFILE: u64 = 64;

/// The standard fixture plus 3,600 files in 400 directories over two layers.
fn many_nodes_fixture() -> Fixture {
    let mut f = standard();
    let n = f.layers.len();
    if let Some(base) = f.layers.get_mut(n - 1) {
        for d in 0..400 {
            for i in 0..8 {
                base.file(&format!("wide/d{d:03}/f{i}"), "w", 0o644);
            }
        }
    }
    if let Some(l0) = f.layers.get_mut(0) {
        for d in (0..400).step_by(2) {
            for i in 0..2 {
                l0.file(&format!("wide/d{d:03}/t{i}"), "t", 0o644);
            }
        }
    }
    f
}

/// A daemon that keeps a descriptor per node runs out (EMFILE) on real images; here the
/// mount program gets 64 descriptors and the tree has about 4,000 nodes, all looked up,
/// read and stat'ed by the whole-tree checks (twice, plus after remount), with copy-ups:
/// almost every resolution is evicted and redone from its parent.
fn many_nodes_few_fds(t: &mut Session) {
    t.checkpoint("all nodes once");
    for d in (0..400).step_by(37) {
        expect(t, chmod(&format!("wide/d{d:03}/f1"), 0o600), Ok(()));
        expect(
            t,
            write(&format!("wide/d{d:03}/f2"), WriteAt::Append, 3, b'm'),
            Ok(()),
        );
    }
    for d in (0..400).step_by(3) {
        expect(t, read(&format!("wide/d{d:03}/f0")), Ok(()));
    }
}

/// The standard fixture plus lower entries with xattrs an ext4 upper cannot store (a
/// 64 KiB value; ext4 keeps one in a 4 KiB block) and one it can (3,000 bytes). Runs with
/// tmpfs lowers and an ext4 upper ([`Backing::TmpfsLowersExt4Upper`]).
fn big_xattr_fixture() -> Fixture {
    let mut f = standard();
    let n = f.layers.len();
    let big = "v".repeat(65536);
    if let Some(base) = f.layers.get_mut(n - 1) {
        base.file("bx/f", "big\n", 0o644)
            .xattr("user.big", &big)
            .xattr("user.small", "s");
        base.dir("bx/d", 0o755).xattr("user.big", &big);
        base.file("bx/d/g", "g\n", 0o644);
        base.file("bx/ok", "ok\n", 0o644)
            .xattr("user.mid", &"m".repeat(3000));
    }
    f
}

/// Kernel overlayfs fails a copy-up whose xattrs the upper refuses (ovl_copy_xattr: only a
/// side without xattr support, overlay-private names and EOPNOTSUPP on names that need not
/// be copied are skipped), with the upper's errno and nothing left half-copied; rebasefs
/// used to copy up without the xattr, losing it silently.
fn copy_up_xattr_upper_refuses(t: &mut Session) {
    expect(t, open("bx/f", libc::O_WRONLY), Err(libc::ENOSPC));
    expect(t, chmod("bx/f", 0o600), Err(libc::ENOSPC));
    expect(t, setx("bx/f", "user.new", "1", 0), Err(libc::ENOSPC));
    expect(t, rename("bx/f", "bx/f2", 0), Err(libc::ENOSPC));
    expect(t, create("bx/d/new", 0o644), Err(libc::ENOSPC));
    expect(t, chmod("bx/d", 0o700), Err(libc::ENOSPC));
    expect(t, unlink("bx/d/g"), Err(libc::ENOSPC));
    expect(t, read("bx/f"), Ok(()));
    expect(t, getx("bx/f", "user.big"), Ok(()));
    expect(t, getx("bx/d", "user.big"), Ok(()));
    t.checkpoint("after refused copy-ups");
    let (kernel_left, candidate_left) = t.work_leftovers();
    t.require(
        kernel_left.is_empty(),
        &format!("kernel work dir empty after failed copy-ups, has {kernel_left:?}"),
    );
    t.record(
        "candidate work dir after failed copy-ups",
        candidate_left
            .iter()
            .map(|p| format!("left behind: {p}"))
            .collect(),
    );
    // What fits is copied with the file; a name can still be whited out.
    expect(t, chmod("bx/ok", 0o600), Ok(()));
    expect(t, getx("bx/ok", "user.mid"), Ok(()));
    expect(t, unlink("bx/f"), Ok(()));
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

#[test]
fn scripted_cases() {
    let filter: Option<Vec<String>> = std::env::var("DIFF_CASE")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |name: &str| filter.as_ref().is_none_or(|f| f.iter().any(|x| x == name));
    let mut all: Vec<(&'static str, bool, FixtureFn, CaseFn)> = cases()
        .into_iter()
        .map(|(n, f)| (n, false, standard as fn() -> Fixture, f))
        .collect();
    all.push(("read_only_mount", true, standard, read_only_mount));
    all.push((
        "readdir_large_dir",
        false,
        large_dir_fixture,
        readdir_large_dir,
    ));
    all.push((
        "rename_dirs_redirect_dir_off",
        false,
        standard,
        rename_dirs_redirect_dir_off,
    ));
    all.push((
        "copy_up_xattr_upper_refuses",
        false,
        big_xattr_fixture,
        copy_up_xattr_upper_refuses,
    ));
    all.push((
        "many_nodes_few_fds",
        false,
        many_nodes_fixture,
        many_nodes_few_fds,
    ));
    let bin = Setup::new(standard()).bin;
    eprintln!("differential: candidate {}", bin.display());
    let start = Instant::now();
    let mut failed = Vec::new();
    let mut ran = 0;
    let mut ops = 0;
    for (name, read_only, fixture, f) in all {
        if !wanted(name) {
            continue;
        }
        ran += 1;
        let mut setup = Setup::new(fixture());
        setup.read_only = read_only;
        match name {
            "many_nodes_few_fds" => setup.candidate_nofile = Some(MANY_NODES_NOFILE),
            "copy_up_xattr_upper_refuses" => setup.backing = Backing::TmpfsLowersExt4Upper,
            "rename_dirs_redirect_dir_off" => setup.options = vec!["redirect_dir=off".into()],
            _ => {}
        }
        let t0 = Instant::now();
        let mut sess = match Session::start(setup) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("case {name}: setup failed: {e:#}");
                failed.push(name);
                continue;
            }
        };
        f(&mut sess);
        ops += sess.ops;
        let divs = sess.finish();
        if divs.is_empty() {
            eprintln!("case {name}: ok ({:.2}s)", t0.elapsed().as_secs_f64());
        } else {
            eprintln!("case {name}: {} divergence(s)", divs.len());
            for d in &divs {
                eprintln!("  {d}");
            }
            eprintln!("  reproduce: DIFF_CASE={name} cargo test -p rebasefs-tests --test differential -- --nocapture");
            failed.push(name);
        }
    }
    eprintln!(
        "differential: {ran} cases, {ops} ops, {} failed, {:.1}s",
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(ran > 0, "no case matched DIFF_CASE");
    assert!(failed.is_empty(), "divergent cases: {failed:?}");
}
