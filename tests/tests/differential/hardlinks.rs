//! Hard links, in the upper and across a copy-up.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("hard_links", hard_links),
        Case::standard("hardlink_copy_up", hardlink_copy_up),
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
