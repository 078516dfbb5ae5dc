//! Extended attributes: reading markers and values, writing them.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("xattrs_read", xattrs_read),
        Case::standard("xattrs_write", xattrs_write),
    ]
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
