//! Rename: moving a name within the merged tree (and RENAME_EXCHANGE / NOREPLACE).
//!
//! The source, both parents and, for an exchange, the target are copied up; then the upper
//! entries are renamed. A name lower layers still show at the old place gets a whiteout
//! (`RENAME_WHITEOUT`, or a rename and a char 0/0 whiteout where the upper refuses it); a
//! directory with lower layers moved elsewhere gets a redirect to its lower path (kernel
//! `redirect_dir=on`), or EXDEV with `redirect_dir=off`; a pure-upper directory landing on a
//! name lower layers show becomes opaque.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use fuser::Errno;

use super::inode::{Node, ROOT_ID};
use super::layer::Stack;
use super::lookup::{self, Resolved};
use super::namespace::{check_name, check_new_name, clear_upper_dir, upper_name_state, UpperName};
use super::{errno, whiteout, Overlay, Res};
use crate::sys;

impl Overlay {
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
        let tree = self.tree.lock();
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
                    d = (*self.copy_up(&tree, n)?).clone();
                }
                self.count_link_change(&stack, &d, false);
            } else if !d.is_dir() && d.upper(&stack).is_some() {
                // An upper name of a (copied-up) lower hard link goes, as in unlink.
                self.count_link_change(&stack, d, false);
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
        let pres = self.copy_up(&tree, parent)?;
        let npres = self.copy_up(&tree, newparent)?;
        src_node.state.lock().resolve_through(parent.id, name);
        let sres = self.copy_up(&tree, &src_node)?;
        let pupper = pres.upper(&stack).ok_or(Errno::EIO)?;
        let nupper = npres.upper(&stack).ok_or(Errno::EIO)?;
        let sup = sres.upper(&stack).ok_or(Errno::EIO)?;
        if let Some(r) = &src_redirect {
            whiteout::set_redirect(sup.fd(), r).map_err(errno)?;
        }
        if exchange {
            let dn = dst_node.clone().ok_or(Errno::ENOENT)?;
            dn.state.lock().resolve_through(newparent.id, newname);
            let dres = self.copy_up(&tree, &dn)?;
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
