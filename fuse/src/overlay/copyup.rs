//! Copy-up: giving a lower entry an upper copy before it is changed.
//!
//! The copy (data by reflink / copy_file_range / read-write, then owner, xattrs, mode,
//! times — in that order so chown does not clear set-id bits or capabilities) is built
//! in the work directory and renamed into the upper in one step. Parents first.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use fuser::Errno;

use super::inode::Node;
use super::lookup::{LayerEntry, Resolved};
use super::tree::TreeGuard;
use super::xattr::copy_xattrs;
use super::{errno, Overlay, Res};
use crate::sys::{self, TimeSpec};

impl Overlay {
    /// Ensures `node` exists in the upper layer; returns its fresh resolution.
    /// `tree`: the tree lock, which the calling operation holds for its whole change.
    // `tree` is proof that the lock is held: passed on, never read.
    #[allow(clippy::only_used_in_recursion)]
    pub fn copy_up(&self, tree: &TreeGuard<'_>, node: &Node) -> Res<Arc<Resolved>> {
        let stack = self.stack();
        if !stack.has_upper {
            return Err(Errno::EROFS);
        }
        let res = self.resolve(node)?;
        let linkup = match res.upper(&stack) {
            Some(up) if up.indexed => true,
            Some(_) => return Ok(res),
            None => false,
        };
        let (parent_id, name) = node.parent_and_name();
        let parent = self.node(parent_id)?;
        let pres = self.copy_up(tree, &parent)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let top = res.top().ok_or(Errno::ENOENT)?;
        if linkup {
            // This name of a copied-up hard link gets its own link to the copy.
            let pst = sys::stat_fd(pupper.fd()).map_err(errno)?;
            sys::link_fd_at(top.fd(), pupper.fd(), &name).map_err(errno)?;
            restore_times(pupper.fd(), &pst);
            return self.refresh(node);
        }
        if top.lower_nlink > 1 {
            let links = top.lower_nlink;
            self.nodes.update_link_count(node.identity, |c| {
                if c.lower_links == 0 {
                    c.lower_links = links;
                }
            });
        }
        let work = self.work(&stack)?;
        let tmp = self.tmp_name();
        if let Err(e) = copy_entry(top, work.as_fd(), &tmp) {
            cleanup(work.as_fd(), &tmp);
            return Err(e);
        }
        if let (true, Some(ix)) = (top.lower_nlink > 1, &stack.link_index) {
            let lc = self.nodes.link_count(node.identity);
            let _ = sys::set_xattr(
                sys::open_path_at(work.as_fd(), &tmp)
                    .map_err(errno)?
                    .as_fd(),
                std::ffi::OsStr::new(super::inode::LINKS_XATTR),
                lc.encode().as_bytes(),
                0,
            );
            let key = stack.link_key(top.layer, top.st.st_ino);
            if let Err(e) = sys::link_at(work.as_fd(), &tmp, ix.as_fd(), &key) {
                tracing::warn!("hard-link index entry {key:?}: {e}");
            }
        }
        // Like the kernel, copy-up leaves the parent's times as they were.
        let pst = sys::stat_fd(pupper.fd()).map_err(errno)?;
        if let Err(e) = sys::rename_at(
            work.as_fd(),
            &tmp,
            pupper.fd(),
            &name,
            sys::RENAME_NOREPLACE,
        ) {
            cleanup(work.as_fd(), &tmp);
            return Err(errno(e));
        }
        restore_times(pupper.fd(), &pst);
        if let Ok(st) = sys::stat_at(pupper.fd(), &name) {
            self.nodes.add_origin((st.st_dev, st.st_ino), node.identity);
        }
        let res = self.refresh(node)?;
        if top.is_dir() {
            // A directory from one lower layer now merges with its upper copy: its link
            // count becomes 1, which the kernel's cached attributes do not know.
            self.attrs_changed(&[node.id]);
        } else if let Some(up) = res.upper(&stack) {
            self.swap_open_handles(node, up.fd());
        }
        Ok(res)
    }
}

fn restore_times(dir: BorrowedFd<'_>, st: &sys::Stat) {
    let _ = sys::set_times_fd(
        dir,
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    );
}

fn cleanup(work: BorrowedFd<'_>, tmp: &std::ffi::OsStr) {
    if sys::unlink_at(work, tmp, false).is_err() {
        let _ = sys::unlink_at(work, tmp, true);
    }
}

/// Builds a copy of `top` named `tmp` in the work directory.
fn copy_entry(top: &LayerEntry, work: BorrowedFd<'_>, tmp: &std::ffi::OsStr) -> Res<()> {
    let st = sys::stat_fd(top.fd()).map_err(errno)?;
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFDIR => sys::mkdir_at(work, tmp, 0o700).map_err(errno)?,
        libc::S_IFREG => {
            let src = sys::reopen(top.fd(), libc::O_RDONLY).map_err(errno)?;
            let dst = sys::openat(
                work,
                tmp,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o600,
            )
            .map_err(errno)?;
            sys::copy_data(src.as_fd(), dst.as_fd(), st.st_size as u64).map_err(errno)?;
        }
        libc::S_IFLNK => {
            let target = sys::readlink_fd(top.fd()).map_err(errno)?;
            use std::os::unix::ffi::OsStrExt;
            sys::symlink_at(std::ffi::OsStr::from_bytes(&target), work, tmp).map_err(errno)?;
        }
        _ => sys::mknod_at(work, tmp, fmt | 0o600, st.st_rdev).map_err(errno)?,
    }
    let fd = sys::open_path_at(work, tmp).map_err(errno)?;
    sys::chown_fd(fd.as_fd(), Some(st.st_uid), Some(st.st_gid)).map_err(errno)?;
    copy_xattrs(top.fd(), fd.as_fd(), fmt == libc::S_IFDIR)?;
    if fmt != libc::S_IFLNK {
        sys::chmod_fd(fd.as_fd(), st.st_mode).map_err(errno)?;
    }
    sys::set_times_at(
        work,
        tmp,
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    )
    .map_err(errno)?;
    Ok(())
}
