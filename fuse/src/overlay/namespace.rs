//! Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.
//!
//! New entries are built in the work directory with their final mode and owner and then
//! renamed into place (replacing a whiteout when there is one). Removing a name that a
//! lower layer still shows leaves a char 0/0 whiteout, like kernel overlayfs.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{Errno, FileAttr};

use super::inode::{Node, ROOT_ID};
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

enum UpperName {
    Absent,
    Whiteout,
    AufsWhiteout,
    Exists,
}

fn upper_name_state(dir: BorrowedFd<'_>, name: &OsStr) -> Res<UpperName> {
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

fn check_name(name: &OsStr) -> Res<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// Names a new entry may not have: `.wh.*` would turn into an AUFS whiteout or opaque
/// marker in the upper layer (AUFS itself refuses them with EPERM).
fn check_new_name(name: &OsStr) -> Res<()> {
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
fn clear_upper_dir(dir: BorrowedFd<'_>) -> Res<()> {
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
        let _t = self.tree.lock();
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
        let pres = self.copy_up(parent)?;
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
    fn known_node(&self, stack: &Stack, res: &Resolved) -> Option<Arc<Node>> {
        let id = self.nodes.id_for(res.identity(stack));
        self.nodes.get(id)
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&self, parent: &Node, name: &OsStr, dir: bool) -> Res<()> {
        check_name(name)?;
        let _t = self.tree.lock();
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
                res = (*self.copy_up(&n)?).clone();
            }
        }
        let pres = self.copy_up(parent)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let need_wh = lookup::lower_has(&stack, &pres, name).map_err(errno)?;
        let node = self.known_node(&stack, &res);
        if !dir {
            self.count_link_change(&stack, &res, need_wh, false);
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

    /// Keeps the kernel's view of a lower hard link's name count: a name a lower
    /// layer shows goes away (`shown_below`), or an upper-only name comes or goes.
    fn count_link_change(&self, stack: &Stack, res: &Resolved, shown_below: bool, added: bool) {
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
            } else if shown_below {
                c.gone += 1;
            } else {
                c.extra = c.extra.saturating_sub(1);
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
        let _t = self.tree.lock();
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
        let res = self.copy_up(node)?;
        let npres = self.copy_up(newparent)?;
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
        self.count_link_change(&stack, &res, false, true);
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

    /// The path of a directory in the lower layers, as kernel redirects spell it.
    fn lower_path(&self, stack: &Stack, node: &Node, depth: usize) -> Res<Vec<u8>> {
        if node.id == ROOT_ID {
            return Ok(Vec::new());
        }
        if depth > 4096 {
            return Err(Errno::ELOOP);
        }
        let (parent, name) = node.parent_and_name();
        let res = self.resolve(node)?;
        let redirect = match res.upper(stack) {
            Some(up) => whiteout::dir_marks(up.fd()).map_err(errno)?.redirect,
            None => None,
        };
        if let Some(r) = &redirect {
            if r.starts_with(b"/") {
                return Ok(r.clone());
            }
        }
        let p = self.node(parent)?;
        let mut path = self.lower_path(stack, &p, depth + 1)?;
        path.push(b'/');
        path.extend_from_slice(redirect.as_deref().unwrap_or(name.as_bytes()));
        Ok(path)
    }

    pub fn rename(
        &self,
        parent: &Node,
        name: &OsStr,
        newparent: &Node,
        newname: &OsStr,
        flags: u32,
    ) -> Res<()> {
        check_name(name)?;
        check_new_name(newname)?;
        let _t = self.tree.lock();
        let stack = self.stack();
        if !stack.has_upper {
            return Err(Errno::EROFS);
        }
        let pres = self.resolve(parent)?;
        let src = lookup::lookup_child(&stack, &pres, name)
            .map_err(errno)?
            .ok_or(Errno::ENOENT)?;
        let npres = self.resolve(newparent)?;
        let dst = lookup::lookup_child(&stack, &npres, newname).map_err(errno)?;
        let exchange = flags & sys::RENAME_EXCHANGE != 0;
        if flags & sys::RENAME_NOREPLACE != 0 && dst.is_some() {
            return Err(Errno::EEXIST);
        }
        if exchange && dst.is_none() {
            return Err(Errno::ENOENT);
        }
        if let Some(d) = &dst {
            if d.identity(&stack) == src.identity(&stack) && !exchange {
                return Ok(());
            }
            if !exchange {
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
        }
        // Without redirects a directory from lower layers cannot move (kernel
        // `redirect_dir=off`: EXDEV, and callers such as mv copy instead).
        let immovable =
            |r: &Resolved| !self.config.redirect_dir && r.is_dir() && r.has_lower(&stack);
        if immovable(&src) || (exchange && dst.as_ref().is_some_and(immovable)) {
            return Err(Errno::EXDEV);
        }
        if let (Some(d), false) = (&dst, exchange) {
            // Like the kernel, only a target merged with lower layers is checked here; a
            // pure-upper one is left to the upper rename, which (with RENAME_WHITEOUT on
            // ext4) touches the source parent before failing.
            if src.is_dir()
                && d.is_dir()
                && d.has_lower(&stack)
                && !super::readdir::merged_entries(&stack, d)
                    .map_err(errno)?
                    .is_empty()
            {
                return Err(Errno::ENOTEMPTY);
            }
        }
        let src_node = self.known_node(&stack, &src).ok_or(Errno::ENOENT)?;
        let dst_node = dst.as_ref().and_then(|d| self.known_node(&stack, d));
        if let (Some(d), false) = (&dst, exchange) {
            if !d.is_dir()
                && d.upper(&stack).is_none()
                && d.top().is_some_and(|t| t.lower_nlink > 1)
            {
                // A lower hard link loses this name: count it (and keep the count in the
                // link index, as kernel overlay with index=on does).
                let mut d = d.clone();
                if let (Some(n), true) = (&dst_node, stack.link_index.is_some()) {
                    n.state.lock().resolve_through(newparent.id, newname);
                    d = (*self.copy_up(n)?).clone();
                }
                self.count_link_change(&stack, &d, true, false);
            } else if !d.is_dir() && d.upper(&stack).is_some() {
                // An upper name of a (copied-up) lower hard link goes, as in unlink.
                let shown_below = lookup::lower_has(&stack, &npres, newname).map_err(errno)?;
                self.count_link_change(&stack, d, shown_below, false);
            }
        }
        // Redirect for a directory that has lower layers, computed at its old place.
        let src_redirect = if src.is_dir() && src.has_lower(&stack) {
            if parent.id == newparent.id {
                let existing = match src.upper(&stack) {
                    Some(up) => whiteout::dir_marks(up.fd()).map_err(errno)?.redirect,
                    None => None,
                };
                Some(existing.unwrap_or_else(|| name.as_bytes().to_vec()))
            } else {
                Some(self.lower_path(&stack, &src_node, 0)?)
            }
        } else {
            None
        };
        let dst_redirect = match (&dst, &dst_node, exchange) {
            (Some(d), Some(dn), true) if d.is_dir() && d.has_lower(&stack) => {
                if parent.id == newparent.id {
                    let existing = match d.upper(&stack) {
                        Some(up) => whiteout::dir_marks(up.fd()).map_err(errno)?.redirect,
                        None => None,
                    };
                    Some(existing.unwrap_or_else(|| newname.as_bytes().to_vec()))
                } else {
                    Some(self.lower_path(&stack, dn, 0)?)
                }
            }
            _ => None,
        };
        let pres = self.copy_up(parent)?;
        let npres = self.copy_up(newparent)?;
        src_node.state.lock().resolve_through(parent.id, name);
        let sres = self.copy_up(&src_node)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let nupper = npres.upper(&stack).ok_or(Errno::EIO)?;
        let sup = sres.upper(&stack).ok_or(Errno::EIO)?;
        if let Some(r) = &src_redirect {
            whiteout::set_redirect(sup.fd(), r).map_err(errno)?;
        }
        if exchange {
            let dn = dst_node.clone().ok_or(Errno::ENOENT)?;
            dn.state.lock().resolve_through(newparent.id, newname);
            let dres = self.copy_up(&dn)?;
            let dup = dres.upper(&stack).ok_or(Errno::EIO)?;
            if let Some(r) = &dst_redirect {
                whiteout::set_redirect(dup.fd(), r).map_err(errno)?;
            }
            // A pure-upper directory landing on a name lower layers show must hide them.
            if src.is_dir()
                && src_redirect.is_none()
                && lookup::lower_has(&stack, &npres, newname).map_err(errno)?
            {
                whiteout::set_opaque(sup.fd()).map_err(errno)?;
            }
            if dres.is_dir()
                && dst_redirect.is_none()
                && !dres.has_lower(&stack)
                && lookup::lower_has(&stack, &pres, name).map_err(errno)?
            {
                whiteout::set_opaque(dup.fd()).map_err(errno)?;
            }
            sys::rename_at(
                pupper.fd(),
                name,
                nupper.fd(),
                newname,
                sys::RENAME_EXCHANGE,
            )
            .map_err(errno)?;
            self.moved(&src_node, (parent.id, name), newparent.id, newname);
            self.moved(&dn, (newparent.id, newname), parent.id, name);
            return Ok(());
        }
        let need_wh = lookup::lower_has(&stack, &pres, name).map_err(errno)?;
        if !src.is_dir() && need_wh {
            // A lower name of a hard link moves to an upper-only name.
            self.count_link_change(&stack, &src, true, false);
            self.count_link_change(&stack, &src, false, true);
        }
        let dst_lower = lookup::lower_has(&stack, &npres, newname).map_err(errno)?;
        // A pure-upper directory landing on a name lower layers show must hide them.
        if src.is_dir() && src_redirect.is_none() && dst_lower {
            whiteout::set_opaque(sup.fd()).map_err(errno)?;
        }
        match upper_name_state(nupper.fd(), newname)? {
            UpperName::Exists => {
                if let Some(d) = &dst {
                    if let Some(dup) = d.upper(&stack) {
                        if d.is_dir() && d.has_lower(&stack) {
                            clear_upper_dir(dup.fd())?;
                        }
                    }
                }
            }
            UpperName::Whiteout if src.is_dir() => {
                sys::unlink_at(nupper.fd(), newname, false).map_err(errno)?;
            }
            UpperName::AufsWhiteout => {
                let _ = sys::unlink_at(nupper.fd(), &whiteout::aufs_whiteout_name(newname), false);
            }
            _ => {}
        }
        let wflag = if need_wh { sys::RENAME_WHITEOUT } else { 0 };
        let renamed = match sys::rename_at(pupper.fd(), name, nupper.fd(), newname, wflag) {
            Err(e) if need_wh && e.raw_os_error() == Some(libc::EINVAL) => {
                sys::rename_at(pupper.fd(), name, nupper.fd(), newname, 0)
                    .and_then(|()| whiteout::create_whiteout(pupper.fd(), name))
            }
            r => r,
        };
        if let Err(e) = renamed {
            // The upper rename may have touched the parents before failing (ext4 with
            // RENAME_WHITEOUT updates the source parent's times, as under the kernel).
            self.attrs_changed(&[parent.id, newparent.id]);
            return Err(errno(e));
        }
        if let Some(dn) = dst_node {
            if dn.id != src_node.id {
                let mut s = dn.state.lock();
                if !s.drop_name(newparent.id, newname) {
                    s.unlinked = true;
                }
            }
        }
        self.moved(&src_node, (parent.id, name), newparent.id, newname);
        Ok(())
    }

    fn moved(&self, node: &Node, from: (u64, &OsStr), parent: u64, name: &OsStr) {
        let mut s = node.state.lock();
        s.names.retain(|(p, n)| !(*p == from.0 && n == from.1));
        s.parent = parent;
        s.name = OsString::from(name);
        s.add_name(parent, name);
        s.res = None;
        s.unlinked = false;
    }
}
