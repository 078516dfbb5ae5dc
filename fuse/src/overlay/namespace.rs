//! Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir (rename has its
//! own file, `rename.rs`, and uses the helpers here).
//!
//! New entries are built in the work directory with their final mode and owner and then
//! renamed into place (replacing a whiteout when there is one). Removing a name that a
//! lower layer still shows leaves a char 0/0 whiteout, like kernel overlayfs.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use fuser::{Errno, FileAttr};

use super::inode::Node;
use super::layer::Stack;
use super::lookup::{self, Resolved};
use super::whiteout;
use super::{errno, Overlay, Res, NAME_MAX};
use crate::sys;

/// What to create.
pub enum NewKind<'a> {
    File { flags: i32 },
    Dir,
    Node { fmt: u32, rdev: u64 },
    Symlink { target: &'a OsStr },
}

/// Who asks, for ownership and the umask.
#[derive(Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
}

pub(super) enum UpperName {
    Absent,
    Whiteout,
    AufsWhiteout,
    Exists,
}

pub(super) fn upper_name_state(dir: BorrowedFd<'_>, name: &OsStr) -> Res<UpperName> {
    match sys::stat_at(dir, name) {
        Ok(st) if whiteout::is_whiteout(&st) => Ok(UpperName::Whiteout),
        Ok(_) => Ok(UpperName::Exists),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if whiteout::has_aufs_whiteout(dir, name).map_err(errno)? {
                Ok(UpperName::AufsWhiteout)
            } else {
                Ok(UpperName::Absent)
            }
        }
        Err(e) => Err(errno(e)),
    }
}

pub(super) fn check_name(name: &OsStr) -> Res<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// Names a new entry may not have: `.wh.*` would turn into an AUFS whiteout or opaque
/// marker in the upper layer (AUFS itself refuses them with EPERM).
pub(super) fn check_new_name(name: &OsStr) -> Res<()> {
    check_name(name)?;
    if whiteout::is_aufs_name(name) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

fn remove_any(dir: BorrowedFd<'_>, name: &OsStr) {
    if sys::unlink_at(dir, name, false).is_err() {
        let _ = clear_upper_dir_at(dir, name);
        let _ = sys::unlink_at(dir, name, true);
    }
}

fn clear_upper_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Res<()> {
    let fd = sys::open_path_at(dir, name).map_err(errno)?;
    clear_upper_dir(fd.as_fd())
}

/// Empties an upper directory whose merged view is empty: only whiteouts remain in it.
pub(super) fn clear_upper_dir(dir: BorrowedFd<'_>) -> Res<()> {
    for e in sys::read_dir(dir).map_err(errno)? {
        let st = sys::stat_at(dir, &e.name).map_err(errno)?;
        if whiteout::is_whiteout(&st) || whiteout::is_aufs_name(&e.name) {
            sys::unlink_at(dir, &e.name, lookup::is_dir(&st)).map_err(errno)?;
        } else {
            return Err(Errno::ENOTEMPTY);
        }
    }
    Ok(())
}

impl Overlay {
    /// Moves `work/tmp` to `dir/name`, replacing a whiteout there.
    fn install(
        &self,
        work: BorrowedFd<'_>,
        tmp: &OsStr,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        is_dir: bool,
    ) -> Res<()> {
        let r = match upper_name_state(dir, name)? {
            UpperName::Absent => sys::rename_at(work, tmp, dir, name, sys::RENAME_NOREPLACE),
            UpperName::Whiteout if is_dir => {
                sys::rename_at(work, tmp, dir, name, sys::RENAME_EXCHANGE).map(|_| {
                    let _ = sys::unlink_at(work, tmp, false);
                })
            }
            UpperName::Whiteout => sys::rename_at(work, tmp, dir, name, 0),
            UpperName::AufsWhiteout => sys::rename_at(work, tmp, dir, name, sys::RENAME_NOREPLACE)
                .map(|_| {
                    let _ = sys::unlink_at(dir, &whiteout::aufs_whiteout_name(name), false);
                }),
            UpperName::Exists => Err(std::io::Error::from_raw_os_error(libc::EEXIST)),
        };
        r.map_err(errno)
    }

    /// Creates a new entry under `parent`; returns its node (one lookup counted), its
    /// attributes and, for files, the open fd.
    pub fn create_entry(
        &self,
        parent: &Node,
        name: &OsStr,
        mode: u32,
        kind: NewKind<'_>,
        caller: Caller,
    ) -> Res<(Arc<Node>, FileAttr, Option<OwnedFd>)> {
        check_new_name(name)?;
        let tree = self.tree.lock();
        let stack = self.stack();
        if !stack.has_upper {
            return Err(Errno::EROFS);
        }
        let pres = self.resolve(parent)?;
        if !pres.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if lookup::lookup_child(&stack, &pres, name)
            .map_err(errno)?
            .is_some()
        {
            return Err(Errno::EEXIST);
        }
        let pres = self.copy_up(&tree, parent)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let pst = sys::stat_fd(pupper.fd()).map_err(errno)?;
        let mut perm = mode & 0o7777 & !caller.umask;
        let uid = self.ids.uid_disk(caller.uid);
        let gid = if pst.st_mode & libc::S_ISGID != 0 {
            if matches!(kind, NewKind::Dir) {
                perm |= libc::S_ISGID;
            }
            pst.st_gid
        } else {
            self.ids.gid_disk(caller.gid)
        };
        let work = self.work(&stack)?;
        let tmp = self.tmp_name();
        // Like the kernel: a new directory is opaque when lower layers could show
        // something under its name (merged parent, or replacing a whiteout).
        let opaque = matches!(kind, NewKind::Dir)
            && (pres.has_lower(&stack)
                || !matches!(upper_name_state(pupper.fd(), name)?, UpperName::Absent));
        let built = self.build_new(work.as_fd(), &tmp, perm, &kind, uid, gid, opaque);
        let file = match built {
            Ok(f) => f,
            Err(e) => {
                remove_any(work.as_fd(), &tmp);
                return Err(e);
            }
        };
        let is_dir = matches!(kind, NewKind::Dir);
        if let Err(e) = self.install(work.as_fd(), &tmp, pupper.fd(), name, is_dir) {
            remove_any(work.as_fd(), &tmp);
            return Err(e);
        }
        let res = lookup::lookup_child(&stack, &pres, name)
            .map_err(errno)?
            .ok_or(Errno::EIO)?;
        let identity = res.identity(&stack);
        let res = Arc::new(res);
        let node = self
            .nodes
            .lookup(identity, parent.id, &name.to_os_string(), res.clone(), true);
        let attr = self.attr(&node, &res)?;
        Ok((node, attr, file))
    }

    #[allow(clippy::too_many_arguments)]
    fn build_new(
        &self,
        work: BorrowedFd<'_>,
        tmp: &OsStr,
        perm: u32,
        kind: &NewKind<'_>,
        uid: u32,
        gid: u32,
        opaque: bool,
    ) -> Res<Option<OwnedFd>> {
        let mut file = None;
        match kind {
            NewKind::File { flags } => {
                let acc = flags & libc::O_ACCMODE;
                let acc = if acc == libc::O_RDONLY {
                    libc::O_RDWR
                } else {
                    acc
                };
                let fd = sys::openat(work, tmp, libc::O_CREAT | libc::O_EXCL | acc, perm & 0o777)
                    .map_err(errno)?;
                file = Some(fd);
            }
            NewKind::Dir => sys::mkdir_at(work, tmp, perm & 0o777).map_err(errno)?,
            NewKind::Node { fmt, rdev } => {
                sys::mknod_at(work, tmp, (fmt & libc::S_IFMT) | (perm & 0o777), *rdev)
                    .map_err(errno)?
            }
            NewKind::Symlink { target } => sys::symlink_at(target, work, tmp).map_err(errno)?,
        }
        let fd = sys::open_path_at(work, tmp).map_err(errno)?;
        sys::chown_fd(fd.as_fd(), Some(uid), Some(gid)).map_err(errno)?;
        match kind {
            NewKind::Symlink { .. } => {}
            NewKind::Node { .. } => {
                // Special files cannot be reopened through /proc; set bits by name.
                sys::chmod_fd(fd.as_fd(), perm).map_err(errno)?;
            }
            _ => sys::chmod_fd(fd.as_fd(), perm).map_err(errno)?,
        }
        if opaque {
            whiteout::set_opaque(fd.as_fd()).map_err(errno)?;
        }
        Ok(file)
    }

    /// The node a resolved entry belongs to, if the kernel knows it.
    pub(super) fn known_node(&self, stack: &Stack, res: &Resolved) -> Option<Arc<Node>> {
        let id = self.nodes.id_for(res.identity(stack));
        self.nodes.get(id)
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&self, parent: &Node, name: &OsStr, dir: bool) -> Res<()> {
        check_name(name)?;
        let tree = self.tree.lock();
        let stack = self.stack();
        if !stack.has_upper {
            return Err(Errno::EROFS);
        }
        let pres = self.resolve(parent)?;
        let res = lookup::lookup_child(&stack, &pres, name)
            .map_err(errno)?
            .ok_or(Errno::ENOENT)?;
        if dir && !res.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !dir && res.is_dir() {
            return Err(Errno::EISDIR);
        }
        if dir
            && !super::readdir::merged_entries(&stack, &res)
                .map_err(errno)?
                .is_empty()
        {
            return Err(Errno::ENOTEMPTY);
        }
        let mut res = res;
        let lower_link = !dir
            && stack.link_index.is_some()
            && res.upper(&stack).is_none()
            && res.top().is_some_and(|t| t.lower_nlink > 1);
        if lower_link {
            // Like kernel overlay with index=on: a lower hard link is copied up (into
            // the link index) before one of its names goes, so the count persists.
            if let Some(n) = self.known_node(&stack, &res) {
                n.state.lock().resolve_through(parent.id, name);
                res = (*self.copy_up(&tree, &n)?).clone();
            }
        }
        let pres = self.copy_up(&tree, parent)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let need_wh = lookup::lower_has(&stack, &pres, name).map_err(errno)?;
        let node = self.known_node(&stack, &res);
        if !dir {
            self.count_link_change(&stack, &res, false);
        }
        match (res.upper(&stack), need_wh) {
            (Some(up), true) => {
                let work = self.work(&stack)?;
                let tmp = self.tmp_name();
                whiteout::create_whiteout(work.as_fd(), &tmp).map_err(errno)?;
                if dir {
                    clear_upper_dir(up.fd())?;
                    sys::rename_at(work.as_fd(), &tmp, pupper.fd(), name, sys::RENAME_EXCHANGE)
                        .map_err(errno)?;
                    let _ = sys::unlink_at(work.as_fd(), &tmp, true);
                } else {
                    sys::rename_at(work.as_fd(), &tmp, pupper.fd(), name, 0).map_err(errno)?;
                }
            }
            (Some(up), false) => {
                if dir {
                    clear_upper_dir(up.fd())?;
                }
                sys::unlink_at(pupper.fd(), name, dir).map_err(errno)?;
            }
            (None, _) => {
                whiteout::create_whiteout(pupper.fd(), name).map_err(errno)?;
            }
        }
        if let Some(n) = node {
            let mut s = n.state.lock();
            if s.drop_name(parent.id, name) {
                s.res = None;
            } else {
                // Keep serving fstat on an open unlinked file from what it was.
                s.unlinked = true;
                s.res = Some(Arc::new(res));
            }
        }
        Ok(())
    }

    /// Keeps the kernel's view of a lower hard link's name count: a name is `added`
    /// (link) or removed (unlink, renamed over), wherever it is; renames move names
    /// and count nothing.
    pub(super) fn count_link_change(&self, stack: &Stack, res: &Resolved, added: bool) {
        let identity = self.nodes.canonical(res.identity(stack));
        let lower = res.top().map_or(0, |t| t.lower_nlink);
        let lc = self.nodes.link_count(identity);
        if lc.lower_links <= 1 && lower <= 1 {
            return;
        }
        let lc = self.nodes.update_link_count(identity, |c| {
            if c.lower_links == 0 {
                c.lower_links = lower;
            }
            if added {
                c.extra += 1;
            } else {
                c.gone += 1;
            }
        });
        if let Some(up) = res.upper(stack) {
            let _ = sys::set_xattr(
                up.fd(),
                OsStr::new(super::inode::LINKS_XATTR),
                lc.encode().as_bytes(),
                0,
            );
        }
    }

    /// Hard-links `node` as `newparent/newname`.
    pub fn link(
        &self,
        node: &Node,
        newparent: &Node,
        newname: &OsStr,
    ) -> Res<(Arc<Node>, FileAttr)> {
        check_new_name(newname)?;
        let tree = self.tree.lock();
        let stack = self.stack();
        if self.resolve(node)?.is_dir() {
            return Err(Errno::EPERM);
        }
        let npres = self.resolve(newparent)?;
        if lookup::lookup_child(&stack, &npres, newname)
            .map_err(errno)?
            .is_some()
        {
            return Err(Errno::EEXIST);
        }
        let res = self.copy_up(&tree, node)?;
        let npres = self.copy_up(&tree, newparent)?;
        let up = res.upper(&stack).ok_or(Errno::EIO)?;
        let nupper = npres.upper(&stack).ok_or(Errno::EIO)?;
        match upper_name_state(nupper.fd(), newname)? {
            UpperName::Absent => sys::link_fd_at(up.fd(), nupper.fd(), newname).map_err(errno)?,
            _ => {
                let work = self.work(&stack)?;
                let tmp = self.tmp_name();
                sys::link_fd_at(up.fd(), work.as_fd(), &tmp).map_err(errno)?;
                if let Err(e) = self.install(work.as_fd(), &tmp, nupper.fd(), newname, false) {
                    let _ = sys::unlink_at(work.as_fd(), &tmp, false);
                    return Err(e);
                }
            }
        }
        self.count_link_change(&stack, &res, true);
        let nres = lookup::lookup_child(&stack, &npres, newname)
            .map_err(errno)?
            .ok_or(Errno::EIO)?;
        let nres = Arc::new(nres);
        let n = self.nodes.lookup(
            node.identity,
            newparent.id,
            &newname.to_os_string(),
            nres.clone(),
            true,
        );
        let attr = self.attr(&n, &nres)?;
        Ok((n, attr))
    }
}
