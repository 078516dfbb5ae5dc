//! Dropping a file's S_ISGID when someone outside its group writes or truncates it.
//!
//! Linux (since 6.2, `setattr_should_drop_sgid`) drops S_ISGID from a regular file on
//! write, truncate and `O_TRUNC` when the writer is neither in the file's group nor holds
//! CAP_FSETID, also without S_IXGRP; kernel overlayfs does the same. The FUSE kernel client,
//! left to clear set-id bits itself (no `FUSE_HANDLE_KILLPRIV*`), clears S_ISUID and
//! S_ISGID|S_IXGRP but keeps S_ISGID without S_IXGRP, so that one case is done here: a
//! truncate gets the mode change added, and a file in that state opened for writing is
//! served by the daemon (not FUSE passthrough, whose writes never reach us) and watched, so
//! its first write by a non-member drops the bit.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use fuser::{FileAttr, FileType};
use parking_lot::Mutex;

use super::setattr::SetAttr;
use super::Overlay;

const CAP_FSETID: u32 = 4;

/// Who sent a write or truncate request (the FUSE request header).
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub gid: u32,
    pub pid: u32,
}

/// Open file handles of files with S_ISGID and no S_IXGRP, whose writes must be checked.
#[derive(Debug, Default)]
pub struct SgidWatch {
    /// How many handles are watched: the write path's lock-free "none" check.
    count: AtomicUsize,
    fhs: Mutex<HashSet<u64>>,
}

/// A regular file whose S_ISGID the kernel FUSE client would keep on a non-member's write.
fn setgid_without_group_exec(a: &FileAttr) -> bool {
    let perm = u32::from(a.perm);
    a.kind == FileType::RegularFile && perm & libc::S_ISGID != 0 && perm & libc::S_IXGRP == 0
}

impl Writer {
    /// Whether this writer keeps the S_ISGID of a file owned by group `gid`: it is in the
    /// group (fsgid or a supplementary group) or holds CAP_FSETID in our user namespace.
    /// A request without a task (pid 0) is not judged: the bit is kept.
    fn keeps_setgid(&self, gid: u32) -> bool {
        if self.gid == gid || self.pid == 0 {
            return true;
        }
        let status = match std::fs::read_to_string(format!("/proc/{}/status", self.pid)) {
            Ok(s) => s,
            // The task is gone: judge by the request's ids alone.
            Err(_) => return false,
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
        };
        let in_group = field("Groups:")
            .split_whitespace()
            .any(|g| g.parse::<u32>() == Ok(gid));
        let cap_fsetid = u64::from_str_radix(field("CapEff:"), 16)
            .is_ok_and(|caps| caps & (1 << CAP_FSETID) != 0);
        in_group || (cap_fsetid && self.in_our_user_namespace())
    }

    fn in_our_user_namespace(&self) -> bool {
        let ns = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
        match (
            ns(format!("/proc/{}/ns/user", self.pid)),
            ns("/proc/self/ns/user".to_owned()),
        ) {
            (Ok(theirs), Ok(ours)) => theirs == ours,
            _ => false,
        }
    }
}

impl Overlay {
    /// Before opening `ino` with `flags`: true when it is a file whose writes must be
    /// watched (opened for writing, S_ISGID without S_IXGRP); the open must then not use
    /// passthrough.
    pub fn setgid_watch_wanted(&self, ino: u64, flags: i32) -> bool {
        flags & libc::O_ACCMODE != libc::O_RDONLY
            && self
                .getattr(ino, None)
                .is_ok_and(|a| setgid_without_group_exec(&a))
    }

    /// After such an open succeeded as handle `fh`. When the kernel still made it a
    /// passthrough open (another passthrough open of the file was live), its writes will
    /// not reach us: the bit is then judged at the open, by the opener.
    pub fn setgid_watch_opened(&self, ino: u64, fh: u64, passthrough: bool, opener: Writer) {
        if passthrough {
            self.drop_setgid_for(ino, None, opener);
            return;
        }
        if self.setgid_watch.fhs.lock().insert(fh) {
            self.setgid_watch.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Handle `fh` is released.
    pub fn setgid_watch_released(&self, fh: u64) {
        if self.setgid_watch.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.setgid_watch.fhs.lock().remove(&fh) {
            self.setgid_watch.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Before a write (or fallocate) through handle `fh` of node `ino` by `writer`.
    pub fn setgid_before_write(&self, ino: u64, fh: u64, writer: Writer) {
        if self.setgid_watch.count.load(Ordering::Relaxed) == 0
            || !self.setgid_watch.fhs.lock().contains(&fh)
        {
            return;
        }
        if self.drop_setgid_for(ino, Some(fh), writer) {
            // Dropped (or no longer set): nothing left to watch on this handle.
            self.setgid_watch_released(fh);
        }
    }

    /// Before a setattr: a size change by a non-member also drops S_ISGID.
    pub fn setgid_on_truncate(&self, ino: u64, change: &mut SetAttr, writer: Writer) {
        if change.size.is_none() || change.mode.is_some() {
            return;
        }
        let Ok(a) = self.getattr(ino, change.fh) else {
            return;
        };
        if setgid_without_group_exec(&a) && !writer.keeps_setgid(a.gid) {
            change.mode = Some(u32::from(a.perm) & !libc::S_ISGID);
        }
    }

    /// Drops the S_ISGID of `ino` if `writer` may not keep it and tells the kernel its
    /// cached mode is stale; returns false while the bit stays set.
    fn drop_setgid_for(&self, ino: u64, fh: Option<u64>, writer: Writer) -> bool {
        let Ok(a) = self.getattr(ino, fh) else {
            return false;
        };
        if !setgid_without_group_exec(&a) {
            return true;
        }
        if writer.keeps_setgid(a.gid) {
            return false;
        }
        let change = SetAttr {
            mode: Some(u32::from(a.perm) & !libc::S_ISGID),
            uid: None,
            gid: None,
            size: None,
            atime: None,
            mtime: None,
            fh,
        };
        match self.setattr(ino, change) {
            Ok(_) => {
                self.attrs_changed(&[ino]);
                true
            }
            Err(e) => {
                tracing::warn!("dropping S_ISGID of inode {ino} on a write: {e:?}");
                false
            }
        }
    }
}
