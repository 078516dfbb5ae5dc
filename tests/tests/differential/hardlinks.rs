//! Hard links, in the upper and across a copy-up.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("hard_links", hard_links),
        Case::standard("hardlink_copy_up", hardlink_copy_up),
        Case::standard("hard_link_names_exchanged", hard_link_names_exchanged),
    ]
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

/// Names of a lower hard link moved by RENAME_EXCHANGE (and with their directory) to
/// names no lower layer shows, then removed: each removal drops the link count, wherever
/// the name is (kernel overlay with index=on keeps one count per inode). Random seed
/// 1796174741, minimised, is the first part.
fn hard_link_names_exchanged(t: &mut Session) {
    let ex = libc::RENAME_EXCHANGE;
    // rc/f0, rc/f1: one lower inode. rc moves (with a redirect) to rc/d0 via rb/d0/d1.
    expect(t, rename("rd", "tmp/f1", libc::RENAME_NOREPLACE), Ok(()));
    expect(t, rename("rc", "tmp/d0", ex), Ok(()));
    expect(t, rename("tmp/d0", "rb/d0/d1", 0), Ok(()));
    expect(t, mkdir("rd", 0o2775), Ok(()));
    expect(t, rename("rb/d0", "rd/d1", 0), Ok(()));
    expect(t, rename("rd/d1/d1", "rc/d0", 0), Ok(()));
    expect(t, create("rc/d0/f3", 0o600), Ok(()));
    expect(t, rename("rc/d0", "rd", ex), Ok(()));
    // The lower name f1 goes to f3, which no lower layer shows; then f3 goes.
    expect(t, rename("rd/f3", "rd/f1", ex), Ok(()));
    expect_nlink(t, "rd/f3", 2);
    expect(t, unlink("rd/f3"), Ok(()));
    expect_nlink(t, "rd/f0", 1);
    expect(t, write("rd/f0", WriteAt::Append, 2582, b'n'), Ok(()));
    expect_nlink(t, "rd/f0", 1);
    // hl/a,b,c: a lower name exchanged onto a new upper name, which is renamed over.
    expect(t, create("hl/n", 0o644), Ok(()));
    expect(t, rename("hl/a", "hl/n", ex), Ok(()));
    expect(t, rename("hl/solo", "hl/n", 0), Ok(()));
    expect_nlink(t, "hl/b", 2);
    expect(
        t,
        Op::Link {
            old: s("hl/b"),
            new: s("top/hl-b"),
        },
        Ok(()),
    );
    expect_nlink(t, "hl/c", 3);
    expect(t, unlink("hl/c"), Ok(()));
    expect_nlink(t, "top/hl-b", 2);
    // l2hl/a,b (middle layer): exchanged while neither is copied up; the new file that
    // took a lower name goes first (it is not in the group), then the moved name.
    expect(t, create("l2hl/c", 0o644), Ok(()));
    expect(t, rename("l2hl/c", "l2hl/a", ex), Ok(()));
    expect(t, unlink("l2hl/a"), Ok(()));
    expect_nlink(t, "l2hl/b", 2);
    expect(t, unlink("l2hl/c"), Ok(()));
    expect_nlink(t, "l2hl/b", 1);
    t.checkpoint("after the removals");
}
