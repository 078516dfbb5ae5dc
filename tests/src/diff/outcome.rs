//! What an operation observed (a value or an errno), and how two observations from the
//! kernel and the candidate are compared.

use std::collections::BTreeSet;
use std::fmt;

use super::sys::Errno;

/// File type as stat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileType {
    Reg,
    Dir,
    Lnk,
    Fifo,
    Chr,
    Blk,
    Sock,
    Unknown,
}

impl FileType {
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFREG => FileType::Reg,
            libc::S_IFDIR => FileType::Dir,
            libc::S_IFLNK => FileType::Lnk,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFCHR => FileType::Chr,
            libc::S_IFBLK => FileType::Blk,
            libc::S_IFSOCK => FileType::Sock,
            _ => FileType::Unknown,
        }
    }
}

/// The stat fields that carry semantics (no st_dev/st_ino/atime/ctime/blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatInfo {
    pub kind: FileType,
    /// Permission bits including setuid/setgid/sticky.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub mtime: (i64, i64),
    /// (major, minor) for devices.
    pub rdev: Option<(u32, u32)>,
    /// Not compared across sides (only used for internal consistency checks).
    pub ino: u64,
}

impl StatInfo {
    pub fn from_stat(st: &libc::stat) -> Self {
        let kind = FileType::from_mode(st.st_mode);
        StatInfo {
            kind,
            perm: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            nlink: st.st_nlink,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            rdev: matches!(kind, FileType::Chr | FileType::Blk)
                .then(|| (super::sys::major(st.st_rdev), super::sys::minor(st.st_rdev))),
            ino: st.st_ino,
        }
    }

    /// Differences from `other` (kernel = self), under the comparison rules:
    /// - directory st_size is ignored: it is the backing filesystem's block accounting,
    ///   not overlay semantics (kernel overlay itself reports whichever layer's dir size);
    /// - mtimes set explicitly (fixture times and utimensat values, all before `recent`)
    ///   must be equal to the nanosecond; times the filesystem sets itself ("now") must both
    ///   be recent and within `MTIME_SLACK_S` of each other, since the two sides run the same
    ///   operation a few microseconds apart but never at the same instant.
    pub fn diff(&self, cand: &StatInfo, recent: i64) -> Vec<String> {
        let mut d = Vec::new();
        if self.kind != cand.kind {
            d.push(format!("type {:?} vs {:?}", self.kind, cand.kind));
            return d;
        }
        if self.perm != cand.perm {
            d.push(format!("mode {:04o} vs {:04o}", self.perm, cand.perm));
        }
        if (self.uid, self.gid) != (cand.uid, cand.gid) {
            d.push(format!(
                "owner {}:{} vs {}:{}",
                self.uid, self.gid, cand.uid, cand.gid
            ));
        }
        if self.kind != FileType::Dir && self.size != cand.size {
            d.push(format!("size {} vs {}", self.size, cand.size));
        }
        if self.nlink != cand.nlink {
            d.push(format!("nlink {} vs {}", self.nlink, cand.nlink));
        }
        if self.rdev != cand.rdev {
            d.push(format!("rdev {:?} vs {:?}", self.rdev, cand.rdev));
        }
        if !mtime_same(self.mtime, cand.mtime, recent) {
            d.push(format!(
                "mtime {} vs {}",
                fmt_time(self.mtime),
                fmt_time(cand.mtime)
            ));
        }
        d
    }
}

/// Slack between two filesystem-chosen ("now") timestamps.
pub const MTIME_SLACK_S: i64 = 2;

pub fn mtime_same(k: (i64, i64), c: (i64, i64), recent: i64) -> bool {
    if k.0 < recent || c.0 < recent {
        k == c
    } else {
        (k.0 - c.0).abs() <= MTIME_SLACK_S
    }
}

pub fn fmt_time(t: (i64, i64)) -> String {
    format!("{}.{:09}", t.0, t.1)
}

/// A successful operation's observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Unit,
    Stat(StatInfo),
    /// Length and FNV-1a hash of the bytes, plus a short printable prefix for reports.
    Bytes {
        len: usize,
        hash: u64,
        head: String,
    },
    /// Sorted (name, d_type) set.
    Names(BTreeSet<(String, u8)>),
    Text(String),
    Count(usize),
    /// Several observations of one compound operation.
    Seq(Vec<Outcome>),
}

impl Value {
    pub fn bytes(data: &[u8]) -> Value {
        let head: String = String::from_utf8_lossy(data.get(..24).unwrap_or(data))
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        Value::Bytes {
            len: data.len(),
            hash: fnv1a(data),
            head,
        }
    }
}

pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Result of one operation.
pub type Outcome = Result<Value, Errno>;

/// Differences between the kernel's and the candidate's outcome (empty = same).
pub fn outcome_diff(k: &Outcome, c: &Outcome, recent: i64) -> Vec<String> {
    match (k, c) {
        (Err(a), Err(b)) if a == b => Vec::new(),
        (Ok(a), Ok(b)) => value_diff(a, b, recent),
        _ => vec![format!("{} vs {}", show(k), show(c))],
    }
}

fn value_diff(k: &Value, c: &Value, recent: i64) -> Vec<String> {
    match (k, c) {
        (Value::Stat(a), Value::Stat(b)) => a.diff(b, recent),
        (Value::Seq(a), Value::Seq(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| {
                outcome_diff(x, y, recent)
                    .into_iter()
                    .map(move |s| format!("[step {i}] {s}"))
            })
            .collect(),
        (Value::Names(a), Value::Names(b)) if a != b => {
            let only_k: Vec<_> = a.difference(b).collect();
            let only_c: Vec<_> = b.difference(a).collect();
            vec![format!(
                "readdir: only kernel {only_k:?}, only candidate {only_c:?}"
            )]
        }
        _ if k == c => Vec::new(),
        _ => vec![format!("{} vs {}", show_value(k), show_value(c))],
    }
}

pub fn errno_name(e: Errno) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::ENOTSUP => "EOPNOTSUPP",
        libc::ERANGE => "ERANGE",
        libc::EBUSY => "EBUSY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOSYS => "ENOSYS",
        libc::ENXIO => "ENXIO",
        libc::ENOTCONN => "ENOTCONN",
        libc::E2BIG => "E2BIG",
        libc::EFBIG => "EFBIG",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ECONNABORTED => "ECONNABORTED",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

pub fn show(o: &Outcome) -> String {
    match o {
        Ok(v) => show_value(v),
        Err(e) => errno_name(*e),
    }
}

pub fn show_value(v: &Value) -> String {
    match v {
        Value::Unit => "ok".into(),
        Value::Stat(s) => format!(
            "{:?} {:04o} {}:{} size={} nlink={} mtime={}{}",
            s.kind,
            s.perm,
            s.uid,
            s.gid,
            s.size,
            s.nlink,
            fmt_time(s.mtime),
            s.rdev
                .map(|(a, b)| format!(" rdev={a}:{b}"))
                .unwrap_or_default()
        ),
        Value::Bytes { len, hash, head } => format!("{len} bytes {hash:016x} {head:?}"),
        Value::Names(n) => format!(
            "{:?}",
            n.iter()
                .map(|(a, t)| format!("{a}/{t}"))
                .collect::<Vec<_>>()
        ),
        Value::Text(t) => format!("{t:?}"),
        Value::Count(n) => format!("{n}"),
        Value::Seq(s) => format!("[{}]", s.iter().map(show).collect::<Vec<_>>().join(", ")),
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show_value(self))
    }
}
