//! Opening, creating, writing, truncating and syncing files.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("create_and_open_flags", create_and_open_flags),
        Case::standard("umask_applies", umask_applies),
        Case::standard("write_pwrite_append", write_pwrite_append),
        Case::standard("truncate_ftruncate", truncate_ftruncate),
        Case::standard("fsync_files", fsync_files),
        Case::standard("open_unlink_fstat", open_unlink_fstat),
    ]
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
