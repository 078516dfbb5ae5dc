//! The operation vocabulary run identically on both mounts, and its execution against one
//! mount root (every path is relative to the root directory fd).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd};

use super::outcome::{Outcome, StatInfo, Value};
use super::sys;

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAt {
    /// pwrite at an offset (O_WRONLY).
    Offset(u64),
    /// write with O_APPEND.
    Append,
    /// write after O_TRUNC.
    Truncate,
}

/// Kind of node for mknod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Fifo,
    CharDev(u32, u32),
    Regular,
}

/// One operation. Paths are relative to the mount root ("" is the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Stat(String),
    Lstat(String),
    /// Sorted set of (name, d_type), including "." and "..".
    ReadDir(String),
    Read(String),
    ReadLink(String),
    GetXattr(String, String),
    /// Sorted attribute names.
    ListXattr(String),
    /// openat with flags/mode under `umask`; observes fstat of the new fd.
    Open {
        path: String,
        flags: i32,
        mode: u32,
        umask: u32,
    },
    /// Writes `len` bytes of `fill`; observes the count and fstat after the write.
    Write {
        path: String,
        at: WriteAt,
        len: usize,
        fill: u8,
    },
    /// truncate(2) by path.
    Truncate(String, u64),
    /// open O_WRONLY + ftruncate(2).
    Ftruncate(String, u64),
    Chmod(String, u32),
    Chown {
        path: String,
        uid: u32,
        gid: u32,
        nofollow: bool,
    },
    /// Explicit (sec, nsec) times; nsec may be UTIME_NOW / UTIME_OMIT.
    Utimens {
        path: String,
        atime: (i64, i64),
        mtime: (i64, i64),
        nofollow: bool,
    },
    Mkdir {
        path: String,
        mode: u32,
        umask: u32,
    },
    Mknod {
        path: String,
        kind: NodeKind,
        mode: u32,
        umask: u32,
    },
    Symlink {
        target: String,
        path: String,
    },
    Link {
        old: String,
        new: String,
    },
    Unlink(String),
    Rmdir(String),
    /// renameat2 flags: 0, RENAME_NOREPLACE (1), RENAME_EXCHANGE (2).
    Rename {
        old: String,
        new: String,
        flags: u32,
    },
    /// flags: 0, XATTR_CREATE (1), XATTR_REPLACE (2).
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
        flags: i32,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    /// open O_RDWR (O_RDONLY for directories) + fsync.
    Fsync(String),
    /// open O_RDONLY, unlink, then fstat and read through the still-open fd.
    OpenUnlinkFstat(String),
    /// open O_RDONLY, then rewrite the file through a second O_WRONLY|O_TRUNC open (copy-up
    /// while open), then read and fstat through the first fd.
    ReadDuringCopyUp {
        path: String,
        len: usize,
        fill: u8,
    },
    /// Runs `op` in a thread whose credentials are uid/gid with no supplementary groups.
    AsUser {
        uid: u32,
        gid: u32,
        op: Box<Op>,
    },
}

/// Added to every open: a FIFO must never block the harness (O_NONBLOCK changes nothing
/// for regular files and directories, and FIFOs then behave deterministically on both sides).
const NB: i32 = libc::O_NONBLOCK;

/// Limit on bytes read by one operation.
const READ_LIMIT: usize = 1 << 22;

fn stat_value(st: &libc::stat) -> Value {
    Value::Stat(StatInfo::from_stat(st))
}

fn open_path(
    root: BorrowedFd<'_>,
    path: &str,
    nofollow: bool,
) -> sys::SysResult<std::os::fd::OwnedFd> {
    let nf = if nofollow { libc::O_NOFOLLOW } else { 0 };
    sys::openat(root, path, libc::O_PATH | nf, 0)
}

fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let old = sys::umask(mask);
    let r = f();
    sys::umask(old);
    r
}

/// Executes `op` against the mount whose root directory is `root`.
///
/// The calling thread must have its own fs struct (see [`sys::unshare_fs`]) because
/// umask-carrying operations change the umask for their duration.
pub fn execute(op: &Op, root: BorrowedFd<'_>) -> Outcome {
    match op {
        Op::Stat(p) => sys::fstatat(root, p, 0).map(|s| stat_value(&s)),
        Op::Lstat(p) => sys::fstatat(root, p, libc::AT_SYMLINK_NOFOLLOW).map(|s| stat_value(&s)),
        Op::ReadDir(p) => {
            let fd = sys::openat(root, p, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let ents = sys::readdir(fd)?;
            Ok(Value::Names(
                ents.into_iter()
                    .map(|e| (e.name, e.d_type))
                    .collect::<BTreeSet<_>>(),
            ))
        }
        Op::Read(p) => {
            let fd = sys::openat(root, p, libc::O_RDONLY | NB, 0)?;
            sys::read_to_end(fd.as_fd(), READ_LIMIT).map(|d| Value::bytes(&d))
        }
        Op::ReadLink(p) => {
            sys::readlinkat(root, p).map(|t| Value::Text(String::from_utf8_lossy(&t).into_owned()))
        }
        Op::GetXattr(p, name) => {
            let fd = open_path(root, p, true)?;
            sys::getxattr(&sys::proc_fd_path(fd.as_fd()), name).map(|v| Value::bytes(&v))
        }
        Op::ListXattr(p) => {
            let fd = open_path(root, p, true)?;
            let mut names = sys::listxattr(&sys::proc_fd_path(fd.as_fd()))?;
            names.sort();
            Ok(Value::Text(names.join(",")))
        }
        Op::Open {
            path,
            flags,
            mode,
            umask,
        } => with_umask(*umask, || {
            let fd = sys::openat(root, path, *flags | NB, *mode)?;
            sys::fstat(fd.as_fd()).map(|s| stat_value(&s))
        }),
        Op::Write {
            path,
            at,
            len,
            fill,
        } => {
            let data = vec![*fill; *len];
            let flags = libc::O_WRONLY
                | match at {
                    WriteAt::Offset(_) => 0,
                    WriteAt::Append => libc::O_APPEND,
                    WriteAt::Truncate => libc::O_TRUNC,
                };
            let fd = sys::openat(root, path, flags | NB, 0)?;
            let n = match at {
                WriteAt::Offset(off) => sys::pwrite(fd.as_fd(), &data, *off),
                _ => sys::write(fd.as_fd(), &data),
            };
            let st = sys::fstat(fd.as_fd()).map(|s| stat_value(&s));
            Ok(Value::Seq(vec![n.map(Value::Count), st]))
        }
        Op::Truncate(p, len) => {
            let fd = open_path(root, p, false)?;
            sys::truncate_path(&sys::proc_fd_path(fd.as_fd()), *len).map(|_| Value::Unit)
        }
        Op::Ftruncate(p, len) => {
            let fd = sys::openat(root, p, libc::O_WRONLY | NB, 0)?;
            sys::ftruncate(fd.as_fd(), *len)?;
            sys::fstat(fd.as_fd()).map(|s| stat_value(&s))
        }
        Op::Chmod(p, mode) => sys::fchmodat(root, p, *mode).map(|_| Value::Unit),
        Op::Chown {
            path,
            uid,
            gid,
            nofollow,
        } => {
            let f = if *nofollow {
                libc::AT_SYMLINK_NOFOLLOW
            } else {
                0
            };
            sys::fchownat(root, path, *uid, *gid, f).map(|_| Value::Unit)
        }
        Op::Utimens {
            path,
            atime,
            mtime,
            nofollow,
        } => {
            let f = if *nofollow {
                libc::AT_SYMLINK_NOFOLLOW
            } else {
                0
            };
            sys::utimensat(root, path, *atime, *mtime, f).map(|_| Value::Unit)
        }
        Op::Mkdir { path, mode, umask } => {
            with_umask(*umask, || sys::mkdirat(root, path, *mode)).map(|_| Value::Unit)
        }
        Op::Mknod {
            path,
            kind,
            mode,
            umask,
        } => {
            let (t, dev) = match kind {
                NodeKind::Fifo => (libc::S_IFIFO, 0),
                NodeKind::CharDev(a, b) => (libc::S_IFCHR, sys::makedev(*a, *b)),
                NodeKind::Regular => (libc::S_IFREG, 0),
            };
            with_umask(*umask, || sys::mknodat(root, path, t | *mode, dev)).map(|_| Value::Unit)
        }
        Op::Symlink { target, path } => sys::symlinkat(target, root, path).map(|_| Value::Unit),
        Op::Link { old, new } => sys::linkat(root, old, new).map(|_| Value::Unit),
        Op::Unlink(p) => sys::unlinkat(root, p, 0).map(|_| Value::Unit),
        Op::Rmdir(p) => sys::unlinkat(root, p, libc::AT_REMOVEDIR).map(|_| Value::Unit),
        Op::Rename { old, new, flags } => {
            sys::renameat2(root, old, new, *flags).map(|_| Value::Unit)
        }
        Op::SetXattr {
            path,
            name,
            value,
            flags,
        } => {
            let fd = open_path(root, path, true)?;
            sys::setxattr(&sys::proc_fd_path(fd.as_fd()), name, value, *flags).map(|_| Value::Unit)
        }
        Op::RemoveXattr { path, name } => {
            let fd = open_path(root, path, true)?;
            sys::removexattr(&sys::proc_fd_path(fd.as_fd()), name).map(|_| Value::Unit)
        }
        Op::Fsync(p) => {
            let fd = match sys::openat(root, p, libc::O_RDWR | NB, 0) {
                Err(libc::EISDIR) => sys::openat(root, p, libc::O_RDONLY | NB, 0)?,
                r => r?,
            };
            sys::fsync(fd.as_fd()).map(|_| Value::Unit)
        }
        Op::OpenUnlinkFstat(p) => {
            let fd = sys::openat(root, p, libc::O_RDONLY | NB, 0)?;
            let unlinked = sys::unlinkat(root, p, 0).map(|_| Value::Unit);
            let st = sys::fstat(fd.as_fd()).map(|s| stat_value(&s));
            let data = sys::pread_all(fd.as_fd(), READ_LIMIT).map(|d| Value::bytes(&d));
            Ok(Value::Seq(vec![unlinked, st, data]))
        }
        Op::ReadDuringCopyUp { path, len, fill } => {
            let reader = sys::openat(root, path, libc::O_RDONLY | NB, 0)?;
            let before = sys::pread_all(reader.as_fd(), READ_LIMIT).map(|d| Value::bytes(&d));
            let written = sys::openat(root, path, libc::O_WRONLY | libc::O_TRUNC | NB, 0)
                .and_then(|w| sys::write(w.as_fd(), &vec![*fill; *len]))
                .map(Value::Count);
            let after = sys::pread_all(reader.as_fd(), READ_LIMIT).map(|d| Value::bytes(&d));
            let st = sys::fstat(reader.as_fd()).map(|s| stat_value(&s));
            Ok(Value::Seq(vec![before, written, after, st]))
        }
        Op::AsUser { uid, gid, op } => std::thread::scope(|s| {
            s.spawn(|| {
                sys::drop_thread_creds(*uid, *gid)?;
                execute(op, root)
            })
            .join()
            .unwrap_or(Err(libc::EIO))
        }),
    }
}

impl Op {
    /// The paths an operation names (for reports and for minimising a failing sequence).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Op::Stat(p)
            | Op::Lstat(p)
            | Op::ReadDir(p)
            | Op::Read(p)
            | Op::ReadLink(p)
            | Op::GetXattr(p, _)
            | Op::ListXattr(p)
            | Op::Truncate(p, _)
            | Op::Ftruncate(p, _)
            | Op::Chmod(p, _)
            | Op::Unlink(p)
            | Op::Rmdir(p)
            | Op::Fsync(p)
            | Op::OpenUnlinkFstat(p) => vec![p],
            Op::Open { path, .. }
            | Op::Write { path, .. }
            | Op::Chown { path, .. }
            | Op::Utimens { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Mknod { path, .. }
            | Op::Symlink { path, .. }
            | Op::SetXattr { path, .. }
            | Op::RemoveXattr { path, .. }
            | Op::ReadDuringCopyUp { path, .. } => vec![path],
            Op::Link { old, new } | Op::Rename { old, new, .. } => vec![old, new],
            Op::AsUser { op, .. } => op.paths(),
        }
    }

    /// Paths whose inode the operation may replace by another (delete, create, rename):
    /// a path keeping its st_ino across such an op is coincidence (inode number reuse),
    /// not stability, so stability is not checked for them.
    pub fn replaced_paths(&self) -> Vec<&str> {
        match self {
            Op::Unlink(p) | Op::Rmdir(p) | Op::OpenUnlinkFstat(p) => vec![p],
            Op::Rename { old, new, .. } => vec![old, new],
            Op::Link { new, .. } => vec![new],
            Op::Open { path, flags, .. } if flags & libc::O_CREAT != 0 => vec![path],
            Op::Mkdir { path, .. } | Op::Mknod { path, .. } | Op::Symlink { path, .. } => {
                vec![path]
            }
            Op::AsUser { op, .. } => op.replaced_paths(),
            _ => Vec::new(),
        }
    }

    /// Whether the operation can change the filesystem (read-only ones need not be replayed
    /// when minimising, except the failing one itself).
    pub fn mutates(&self) -> bool {
        match self {
            Op::Stat(_)
            | Op::Lstat(_)
            | Op::ReadDir(_)
            | Op::Read(_)
            | Op::ReadLink(_)
            | Op::GetXattr(..)
            | Op::ListXattr(_) => false,
            Op::AsUser { op, .. } => op.mutates(),
            _ => true,
        }
    }
}

/// Readable open(2) flags.
pub fn flags_name(flags: i32) -> String {
    let mut s = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY".to_string(),
        libc::O_WRONLY => "O_WRONLY".to_string(),
        _ => "O_RDWR".to_string(),
    };
    for (f, n) in [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
    ] {
        if flags & f != 0 {
            s.push('|');
            s.push_str(n);
        }
    }
    s
}
