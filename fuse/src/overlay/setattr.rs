//! setattr: owner, mode, size and times, applied to the upper copy (copied up first).
//! With `xattr_permissions=` owner and mode of a file carrying the override xattr change
//! the xattr, not the file; a size change goes through the open handle when there is one.

use std::os::fd::AsFd;
use std::time::UNIX_EPOCH;

use fuser::{Errno, FileAttr, TimeOrNow};

use super::handles::Handle;
use super::{errno, Overlay, Res};
use crate::sys::{self, TimeSpec};

/// What a setattr request asks to change (`None`: leave it).
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// The open file the request came through, if any.
    pub fh: Option<u64>,
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::Omit,
        Some(TimeOrNow::Now) => TimeSpec::Now,
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                let mut s = -(d.as_secs() as i64);
                let mut ns = d.subsec_nanos() as i64;
                if ns > 0 {
                    s -= 1;
                    ns = 1_000_000_000 - ns;
                }
                TimeSpec::At(s, ns)
            }
        },
    }
}

impl Overlay {
    /// Applies `change` to node `ino`; returns its new attributes.
    pub fn setattr(&self, ino: u64, change: SetAttr) -> Res<FileAttr> {
        let node = self.node(ino)?;
        let stack = self.stack();
        {
            let tree = self.tree.lock();
            let res = self.copy_up(&tree, &node)?;
            let up = res.upper(&stack).ok_or(Errno::EIO)?;
            let is_link = up.st.st_mode & libc::S_IFMT == libc::S_IFLNK;
            let overridden =
                (change.uid.is_some() || change.gid.is_some() || change.mode.is_some())
                    && self.update_override(
                        up.fd(),
                        change.uid.map(|u| self.ids.uid_disk(u)),
                        change.gid.map(|g| self.ids.gid_disk(g)),
                        change.mode,
                    )?;
            if overridden {
                // Owner and mode live in the override xattr; the file keeps its own.
            } else if change.uid.is_some() || change.gid.is_some() {
                sys::chown_fd(
                    up.fd(),
                    change.uid.map(|u| self.ids.uid_disk(u)),
                    change.gid.map(|g| self.ids.gid_disk(g)),
                )
                .map_err(errno)?;
            }
            if let (Some(m), false) = (change.mode, overridden) {
                if is_link {
                    return Err(Errno::EOPNOTSUPP);
                }
                sys::chmod_fd(up.fd(), m).map_err(errno)?;
            }
            if let Some(sz) = change.size {
                if up.is_dir() {
                    return Err(Errno::EISDIR);
                }
                let via_fh =
                    change
                        .fh
                        .and_then(|fh| self.handle(fh).ok())
                        .and_then(|h| match &*h {
                            Handle::File { fd, .. } => Some(sys::ftruncate(fd.read().as_fd(), sz)),
                            Handle::Dir { .. } => None,
                        });
                match via_fh {
                    Some(Ok(())) => {}
                    _ => {
                        let f = sys::reopen(up.fd(), libc::O_WRONLY).map_err(errno)?;
                        sys::ftruncate(f.as_fd(), sz).map_err(errno)?;
                    }
                }
            }
            if change.atime.is_some() || change.mtime.is_some() {
                let (a, m) = (timespec(change.atime), timespec(change.mtime));
                if is_link {
                    let (parent, name) = node.parent_and_name();
                    let p = self.node(parent)?;
                    let pres = self.resolve(&p)?;
                    let pup = pres.upper(&stack).ok_or(Errno::EIO)?;
                    sys::set_times_at(pup.fd(), &name, a, m).map_err(errno)?;
                } else {
                    sys::set_times_fd(up.fd(), a, m).map_err(errno)?;
                }
            }
        }
        let res = self.resolve(&node)?;
        self.attr(&node, &res)
    }
}
