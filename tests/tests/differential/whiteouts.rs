//! Whiteouts and opaque directories.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("whiteout_then_recreate", whiteout_then_recreate),
        Case::standard("opaque_over_nonempty_lower", opaque_over_nonempty_lower),
    ]
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
