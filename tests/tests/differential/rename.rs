//! Renames of files and directories, over whiteouts, with and without redirect_dir.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("rename_files", rename_files),
        Case::standard("rename_dirs_from_lower", rename_dirs_from_lower),
        Case {
            name: "rename_dirs_redirect_dir_off",
            setup: redirect_dir_off_setup,
            script: rename_dirs_redirect_dir_off,
        },
        Case::standard("rename_over_whiteout", rename_over_whiteout),
    ]
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

/// Both sides mounted with `redirect_dir=off`.
fn redirect_dir_off_setup() -> Setup {
    Setup {
        options: vec!["redirect_dir=off".into()],
        ..Setup::new(standard())
    }
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
