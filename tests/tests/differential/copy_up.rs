//! Copy-up: while a file is open, of special files and directory metadata, and one the upper refuses.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("copy_up_while_open", copy_up_while_open),
        Case::standard("special_files_copy_up", special_files_copy_up),
        Case::standard("dir_metadata_copy_up", dir_metadata_copy_up),
        Case {
            name: "copy_up_xattr_upper_refuses",
            setup: big_xattr_setup,
            script: copy_up_xattr_upper_refuses,
        },
    ]
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

/// tmpfs lowers (any xattr size) and a loop-mounted ext4 upper (4 KiB of xattrs).
fn big_xattr_setup() -> Setup {
    Setup {
        backing: Backing::TmpfsLowersExt4Upper,
        ..Setup::new(big_xattr_fixture())
    }
}
