//! Attributes of merged files as the kernel is given them: a fresh stat of the top layer
//! entry (or of the open fd), link counts of lower hard links as kernel overlayfs
//! (`index=on`) counts them, and the `xattr_permissions=` stat override.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use fuser::{Errno, FileAttr};

use super::handles::Handle;
use super::inode::{LinkCount, Node, LINKS_XATTR};
use super::lookup::{self, Resolved};
use super::{errno, idmap, Overlay, Res};
use crate::sys;

impl Overlay {
    /// getattr: through the open file when `fh` names one, else the top layer entry.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Res<FileAttr> {
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        if let Some(fh) = fh {
            if let Ok(h) = self.handle(fh) {
                if let Handle::File { fd, .. } = &*h {
                    let fd = fd.read().clone();
                    let st = sys::stat_fd(fd.as_fd()).map_err(errno)?;
                    return Ok(self.attr_from_stat(&node, &res, &st));
                }
            }
        }
        self.attr(&node, &res)
    }

    /// Attributes of a node from a fresh stat of its top layer entry.
    pub fn attr(&self, node: &Node, res: &Resolved) -> Res<FileAttr> {
        let top = res.top().ok_or(Errno::ENOENT)?;
        let st = sys::stat_fd(top.fd()).map_err(errno)?;
        Ok(self.attr_from_stat(node, res, &st))
    }

    /// Attributes from a stat of the node's top file (or of an open fd of it).
    pub fn attr_from_stat(&self, node: &Node, res: &Resolved, st: &sys::Stat) -> FileAttr {
        let merged = lookup::is_dir(st) && res.entries.len() > 1;
        let mut a = idmap::file_attr(node.id, st, merged, &self.ids);
        if !lookup::is_dir(st) {
            // Kernel overlay (index=on) counts a lower hard link's names: the lower
            // ones still there plus the ones added by link().
            let mut lc = self.nodes.link_count(node.identity);
            if lc.lower_links == 0 && (st.st_nlink > 1 || res.top().is_some_and(|t| t.indexed)) {
                // A copied-up hard link seen first after a remount: counts from its xattr.
                let stored = res.upper(&self.stack()).and_then(|up| {
                    sys::get_xattr(up.fd(), OsStr::new(LINKS_XATTR))
                        .ok()
                        .flatten()
                        .and_then(|v| LinkCount::decode(&v))
                });
                if let Some(s) = stored {
                    lc = self.nodes.update_link_count(node.identity, |c| *c = s);
                }
            }
            let lower = if lc.lower_links > 0 {
                lc.lower_links
            } else {
                res.top().map_or(0, |t| t.lower_nlink)
            };
            if lower > 1 {
                a.nlink = (lower + lc.extra).saturating_sub(lc.gone);
            }
        }
        if let Some(top) = res.top() {
            self.apply_override(top.fd(), &mut a);
        }
        a
    }
}
