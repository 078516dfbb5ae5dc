//! What every case file uses: the [`Case`] type, the operation shorthands and `expect`.

pub use rebasefs_tests::diff::fixture::Fixture;
pub use rebasefs_tests::diff::op::{NodeKind, Op, WriteAt};
pub use rebasefs_tests::diff::outcome::{Outcome, Value};
pub use rebasefs_tests::diff::session::{Backing, Session, Setup};
pub use rebasefs_tests::diff::standard::{deep_dir, standard};
pub use rebasefs_tests::diff::tree::tree_diff;

/// One scripted case: its name, the setup it runs on (fixture and mount knobs, declared by
/// the case itself) and its operation script.
pub struct Case {
    pub name: &'static str,
    pub setup: fn() -> Setup,
    pub script: fn(&mut Session),
}

impl Case {
    /// A case on the standard fixture, mounted the default way.
    pub fn standard(name: &'static str, script: fn(&mut Session)) -> Case {
        Case {
            name,
            setup: || Setup::new(standard()),
            script,
        }
    }
}

pub fn s(p: &str) -> String {
    p.to_string()
}
pub fn lstat(p: &str) -> Op {
    Op::Lstat(s(p))
}
pub fn stat(p: &str) -> Op {
    Op::Stat(s(p))
}
pub fn readdir(p: &str) -> Op {
    Op::ReadDir(s(p))
}
pub fn read(p: &str) -> Op {
    Op::Read(s(p))
}
pub fn create(p: &str, mode: u32) -> Op {
    Op::Open {
        path: s(p),
        flags: libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL,
        mode,
        umask: 0o022,
    }
}
pub fn open(p: &str, flags: i32) -> Op {
    Op::Open {
        path: s(p),
        flags,
        mode: 0o644,
        umask: 0o022,
    }
}
pub fn write(p: &str, at: WriteAt, len: usize, fill: u8) -> Op {
    Op::Write {
        path: s(p),
        at,
        len,
        fill,
    }
}
pub fn mkdir(p: &str, mode: u32) -> Op {
    Op::Mkdir {
        path: s(p),
        mode,
        umask: 0o022,
    }
}
pub fn unlink(p: &str) -> Op {
    Op::Unlink(s(p))
}
pub fn rmdir(p: &str) -> Op {
    Op::Rmdir(s(p))
}
pub fn rename(a: &str, b: &str, flags: u32) -> Op {
    Op::Rename {
        old: s(a),
        new: s(b),
        flags,
    }
}
pub fn chmod(p: &str, mode: u32) -> Op {
    Op::Chmod(s(p), mode)
}
pub fn chown(p: &str, uid: u32, gid: u32) -> Op {
    Op::Chown {
        path: s(p),
        uid,
        gid,
        nofollow: false,
    }
}
pub fn setx(p: &str, name: &str, value: &str, flags: i32) -> Op {
    Op::SetXattr {
        path: s(p),
        name: s(name),
        value: value.as_bytes().to_vec(),
        flags,
    }
}
pub fn getx(p: &str, name: &str) -> Op {
    Op::GetXattr(s(p), s(name))
}
pub fn as_user(op: Op) -> Op {
    Op::AsUser {
        uid: 1000,
        gid: 1000,
        op: Box::new(op),
    }
}
pub fn ok(o: &Outcome) -> bool {
    o.is_ok()
}
pub fn err(o: &Outcome, e: i32) -> bool {
    *o == Err(e)
}
/// Runs `op` and requires the kernel to give `want` (Ok(()) = any success).
pub fn expect(t: &mut Session, op: Op, want: Result<(), i32>) {
    let what = format!("{op:?} -> {want:?}");
    let o = t.run(op);
    let good = match want {
        Ok(()) => ok(&o),
        Err(e) => err(&o, e),
    };
    t.require(good, &format!("{what}, got {o:?}"));
}
pub fn stat_perm(o: &Outcome) -> Option<u32> {
    match o {
        Ok(Value::Stat(st)) => Some(st.perm),
        _ => None,
    }
}

/// lstat `p` on both sides; the kernel must report `nlink` links.
pub fn expect_nlink(t: &mut Session, p: &str, nlink: u64) {
    let o = t.run(lstat(p));
    let got = match &o {
        Ok(Value::Stat(st)) => Some(st.nlink),
        _ => None,
    };
    t.require(
        got == Some(nlink),
        &format!("lstat {p}: kernel nlink {nlink}, got {o:?}"),
    );
}
