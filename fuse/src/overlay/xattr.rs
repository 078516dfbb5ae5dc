//! Extended attributes as users see them: overlay-private names hidden, the
//! `xattr_permissions=` stat override (`uid:gid:mode[:type]` stored in an xattr), changes
//! made on the upper copy, and what a copy-up carries over.

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use fuser::{Errno, FileAttr};

use super::inode::Node;
use super::lookup::Resolved;
use super::tree::TreeGuard;
use super::whiteout::{xattr_to_stored, xattr_to_user};
use super::{errno, Overlay, Res};
use crate::config::XattrPermissions;
use crate::sys;

fn override_name(p: XattrPermissions) -> Option<&'static str> {
    match p {
        XattrPermissions::Passthrough => None,
        XattrPermissions::Security => Some("security.fuseoverlayfs.override_stat"),
        XattrPermissions::ContainersUser => Some("user.containers.override_stat"),
    }
}

/// Parses `uid:gid:octal-mode[:type]`.
fn parse_override(v: &[u8]) -> Option<(u32, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.trim_end_matches('\0').split(':');
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    let mode = u32::from_str_radix(it.next()?, 8).ok()?;
    Some((uid, gid, mode))
}

impl Overlay {
    /// Applies the stat override xattr, when that mode is configured and it is present.
    pub fn apply_override(&self, fd: BorrowedFd<'_>, a: &mut FileAttr) {
        let Some(name) = override_name(self.config.xattr_permissions) else {
            return;
        };
        if let Ok(Some(v)) = sys::get_xattr(fd, OsStr::new(name)) {
            if let Some((uid, gid, mode)) = parse_override(&v) {
                a.uid = self.ids.uid_shown(uid);
                a.gid = self.ids.gid_shown(gid);
                a.perm = (mode & 0o7777) as u16;
            }
        }
    }

    /// chown/chmod of a file carrying the stat-override xattr (`xattr_permissions=`)
    /// update the xattr instead of the file. Returns whether it did.
    pub fn update_override(
        &self,
        fd: BorrowedFd<'_>,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    ) -> Res<bool> {
        let Some(name) = override_name(self.config.xattr_permissions) else {
            return Ok(false);
        };
        let Some(v) = sys::get_xattr(fd, OsStr::new(name)).map_err(errno)? else {
            return Ok(false);
        };
        let Some((ou, og, om)) = parse_override(&v) else {
            return Ok(false);
        };
        let rest: Vec<&str> = std::str::from_utf8(&v)
            .unwrap_or("")
            .trim_end_matches('\0')
            .split(':')
            .skip(3)
            .collect();
        let mut new = format!(
            "{}:{}:{:o}",
            uid.unwrap_or(ou),
            gid.unwrap_or(og),
            mode.map_or(om, |m| m & 0o7777)
        );
        for r in rest {
            new.push(':');
            new.push_str(r);
        }
        sys::set_xattr(fd, OsStr::new(name), new.as_bytes(), 0).map_err(errno)?;
        Ok(true)
    }

    /// Whether the stat-override xattr name is hidden from users.
    pub fn xattr_hidden(&self, name: &OsStr) -> bool {
        override_name(self.config.xattr_permissions)
            .is_some_and(|n| name.as_bytes() == n.as_bytes())
    }

    /// getxattr of node `ino` (its top layer entry).
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        let top = res.top().ok_or(Errno::ENOENT)?;
        self.get_xattr(top.fd(), name, top.is_dir())
    }

    /// listxattr of node `ino`; `privileged`: the caller is root.
    pub fn listxattr(&self, ino: u64, privileged: bool) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        let top = res.top().ok_or(Errno::ENOENT)?;
        self.list_xattr(top.fd(), privileged, top.is_dir())
    }

    /// setxattr of node `ino`, on its upper copy.
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> Res<()> {
        if self.xattr_hidden(name) {
            return Err(Errno::EPERM);
        }
        let stored = xattr_to_stored(name).ok_or(Errno::EPERM)?;
        let tree = self.tree.lock();
        let stack = self.stack();
        let (_, res) = self.upper_of(&tree, ino)?;
        let up = res.upper(&stack).ok_or(Errno::EIO)?;
        sys::set_xattr(up.fd(), &stored, value, flags).map_err(errno)
    }

    /// removexattr of node `ino`, on its upper copy.
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> Res<()> {
        if self.xattr_hidden(name) {
            return Err(Errno::ENODATA);
        }
        let name = &xattr_to_stored(name).ok_or(Errno::ENODATA)?;
        let tree = self.tree.lock();
        let stack = self.stack();
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        // Removing an absent xattr must not copy up.
        let top = res.top().ok_or(Errno::ENOENT)?;
        if sys::get_xattr(top.fd(), name).map_err(errno)?.is_none() {
            return Err(Errno::ENODATA);
        }
        let (_, res) = self.upper_of(&tree, ino)?;
        let up = res.upper(&stack).ok_or(Errno::EIO)?;
        sys::remove_xattr(up.fd(), name).map_err(errno)
    }

    /// The upper copy to change an xattr on. Like the kernel's xattr ops, an inode
    /// already copied up (a lower name of a copied-up hard link, reaching the copy
    /// through the link index) is changed in place: this name is not linked up.
    fn upper_of(&self, tree: &TreeGuard<'_>, ino: u64) -> Res<(Arc<Node>, Arc<Resolved>)> {
        let node = self.node(ino)?;
        let stack = self.stack();
        let res = self.resolve(&node)?;
        if res.upper(&stack).is_some() {
            return Ok((node, res));
        }
        let res = self.copy_up(tree, &node)?;
        Ok((node, res))
    }

    fn get_xattr(&self, fd: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> Res<Vec<u8>> {
        if self.xattr_hidden(name) || (is_dir && super::whiteout::is_dir_marker_xattr(name)) {
            return Err(Errno::ENODATA);
        }
        let Some(stored) = xattr_to_stored(name) else {
            return Err(Errno::ENODATA);
        };
        match sys::get_xattr(fd, &stored).map_err(errno)? {
            Some(v) => Ok(v),
            None => Err(Errno::ENODATA),
        }
    }

    /// The NUL-separated name list users see (`trusted.*` only for privileged callers,
    /// as the kernel filters it).
    fn list_xattr(&self, fd: BorrowedFd<'_>, privileged: bool, is_dir: bool) -> Res<Vec<u8>> {
        let names: Vec<OsString> = sys::list_xattr(fd).map_err(errno)?;
        let mut out = Vec::new();
        for n in names {
            if self.xattr_hidden(&n) {
                continue;
            }
            let Some(n) = xattr_to_user(&n, is_dir) else {
                continue;
            };
            if !privileged && n.as_bytes().starts_with(b"trusted.") {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }
}

/// Names a copy-up must carry over even where the upper says EOPNOTSUPP (the kernel's
/// `ovl_must_copy_xattr`): POSIX ACLs and `security.*`.
fn must_copy(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b == b"system.posix_acl_access"
        || b == b"system.posix_acl_default"
        || b.starts_with(b"security.")
}

/// Copies xattrs from `src` to `dst` (copy-up) with kernel overlayfs's rule
/// (`ovl_copy_xattr`): nothing when either side has no xattr support at all;
/// overlay-private names stay behind (and so do a lower directory's overlay markers,
/// `user.overlay.*` included: they describe the lower layer, not the copy); a name the
/// upper refuses with EOPNOTSUPP is skipped unless it must be copied; any other failure
/// (a value too big for the upper: ENOSPC/E2BIG on ext4) fails the copy-up, so nothing
/// is lost quietly.
pub fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, is_dir: bool) -> Res<()> {
    if !sys::xattrs_supported(src) || !sys::xattrs_supported(dst) {
        return Ok(());
    }
    let names = sys::list_xattr(src).map_err(errno)?;
    for n in names {
        if xattr_to_user(&n, is_dir).is_none() {
            continue;
        }
        if is_dir && n.as_bytes().starts_with(b"user.overlay.") {
            continue;
        }
        let Some(v) = sys::get_xattr(src, &n).map_err(errno)? else {
            continue;
        };
        match sys::set_xattr(dst, &n, &v, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && !must_copy(&n) => {
                tracing::debug!("copy-up: upper does not take xattr {n:?}: {e}");
            }
            Err(e) => {
                tracing::debug!("copy-up fails: xattr {n:?} ({} bytes): {e}", v.len());
                return Err(errno(e));
            }
        }
    }
    Ok(())
}
