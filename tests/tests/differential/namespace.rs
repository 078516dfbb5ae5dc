//! Creating and removing names: directories, device nodes, symlinks, unlink, rmdir, and the `.wh.` names rebasefs refuses.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("mkdir_rmdir", mkdir_rmdir),
        Case::standard("mknod_special", mknod_special),
        Case::standard("symlink_readlink", symlink_readlink),
        Case::standard("symlink_replaced_after_read", symlink_replaced_after_read),
        Case::standard("unlink_files", unlink_files),
        Case::standard("rmdir_merged", rmdir_merged),
        Case::standard("aufs_looking_names", aufs_looking_names),
    ]
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

/// Targets read once (cached by the kernel where the mount caches symlinks), then the
/// names replaced: every later read must see the new target.
fn symlink_replaced_after_read(t: &mut Session) {
    let symlink = |target: &str, path: &str| Op::Symlink {
        target: s(target),
        path: s(path),
    };
    // A lower symlink whose upper layer has a newer one, and a base-only one.
    for path in ["usr/lib/libc.so", "usr/bin/dangling", "ra/f3"] {
        expect(t, Op::ReadLink(s(path)), Ok(()));
        expect(t, unlink(path), Ok(()));
        expect(t, symlink("new-target", path), Ok(()));
        expect(t, Op::ReadLink(s(path)), Ok(()));
    }
    // An upper symlink renamed over another one that was read.
    expect(t, symlink("first", "top/s1"), Ok(()));
    expect(t, symlink("second", "top/s2"), Ok(()));
    expect(t, Op::ReadLink(s("top/s1")), Ok(()));
    expect(t, Op::ReadLink(s("top/s2")), Ok(()));
    expect(t, rename("top/s1", "top/s2", 0), Ok(()));
    expect(t, Op::ReadLink(s("top/s2")), Ok(()));
    expect(t, Op::ReadLink(s("top/s1")), Err(libc::ENOENT));
    // A read symlink replaced by a regular file, then by a symlink again.
    expect(t, Op::ReadLink(s("usr/bin/abs")), Ok(()));
    expect(t, rename("top/f", "usr/bin/abs", 0), Ok(()));
    expect(t, Op::ReadLink(s("usr/bin/abs")), Err(libc::EINVAL));
    expect(t, unlink("usr/bin/abs"), Ok(()));
    expect(t, symlink("../../etc/hosts", "usr/bin/abs"), Ok(()));
    expect(t, Op::ReadLink(s("usr/bin/abs")), Ok(()));
    expect(t, read("usr/bin/abs"), Ok(()));
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
