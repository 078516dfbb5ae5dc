//! Whiteouts, opaque directories and redirects, in both on-disk encodings.
//!
//! Read: char device 0/0 and `.wh.<name>` files hide a name; `trusted.overlay.opaque`,
//! `user.overlay.opaque`, `user.fuseoverlayfs.opaque` = "y" and a `.wh..wh..opq` file make
//! a directory opaque. Write: the kernel overlay encoding (char 0/0, `trusted.overlay.*`),
//! falling back to the `user.overlay.*` / `.wh.` forms when the upper refuses them.
//! The vocabulary (the AUFS names, the marker xattr names, the name functions) is public,
//! re-exported at the crate root for other readers of layer directories.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use crate::sys::{self, Stat};

/// AUFS whiteout names: `.wh.<name>` hides `<name>`; `.wh..wh.*` are meta files.
pub const WH_PREFIX: &[u8] = b".wh.";
/// The AUFS opaque-directory marker file.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The xattrs that mark a directory opaque (value "y").
pub const OPAQUE_XATTRS: [&str; 3] = [
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];
/// The xattrs that redirect a renamed directory to its lower path.
pub const REDIRECT_XATTRS: [&str; 2] = ["trusted.overlay.redirect", "user.overlay.redirect"];

/// True for a char device 0/0 (kernel overlay whiteout).
pub fn is_whiteout(st: &Stat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == 0
}

/// Names users never see: AUFS whiteouts and their meta files.
pub fn is_aufs_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// `.wh.<name>`.
pub fn aufs_whiteout_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    std::os::unix::ffi::OsStringExt::from_vec(v)
}

/// The name an AUFS whiteout hides, if `name` is one (not the meta files `.wh..wh.*`).
pub fn aufs_hidden_name(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    let rest = b.strip_prefix(WH_PREFIX)?;
    if rest.starts_with(WH_PREFIX) || rest.is_empty() {
        return None;
    }
    Some(OsStr::from_bytes(rest))
}

/// Whether an AUFS whiteout for `name` exists in `dir`.
pub fn has_aufs_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    exists(dir, &aufs_whiteout_name(name))
}

fn exists(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match sys::stat_at(dir, name) {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// What the overlay xattrs of one layer directory say.
#[derive(Debug, Default, Clone)]
pub struct DirMarks {
    pub opaque: bool,
    pub redirect: Option<Vec<u8>>,
}

/// Reads opaque/redirect markers of a directory (an `O_PATH` fd).
pub fn dir_marks(dir: BorrowedFd<'_>) -> io::Result<DirMarks> {
    let mut marks = DirMarks::default();
    let names = sys::list_xattr(dir)?;
    for n in &names {
        let Some(s) = n.to_str() else { continue };
        if OPAQUE_XATTRS.contains(&s) {
            if let Some(v) = sys::get_xattr(dir, n)? {
                if v == b"y" {
                    marks.opaque = true;
                }
            }
        } else if REDIRECT_XATTRS.contains(&s) && marks.redirect.is_none() {
            marks.redirect = sys::get_xattr(dir, n)?.filter(|v| !v.is_empty());
        }
    }
    if !marks.opaque && exists(dir, OsStr::new(OPAQUE_MARKER))? {
        marks.opaque = true;
    }
    Ok(marks)
}

/// Writes a whiteout for `name` in the upper directory `dir`.
pub fn create_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match sys::mknod_at(dir, name, libc::S_IFCHR, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let fd = sys::openat(
                dir,
                &aufs_whiteout_name(name),
                libc::O_CREAT | libc::O_WRONLY | libc::O_EXCL,
                0o600,
            )?;
            drop(fd);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Marks an upper directory opaque.
pub fn set_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    match sys::set_xattr(dir, OsStr::new("trusted.overlay.opaque"), b"y", 0) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP)) => {
            sys::set_xattr(dir, OsStr::new("user.overlay.opaque"), b"y", 0)
        }
        Err(e) => Err(e),
    }
}

/// Stores a redirect on an upper directory (kernel `redirect_dir=on` format).
pub fn set_redirect(dir: BorrowedFd<'_>, target: &[u8]) -> io::Result<()> {
    match sys::set_xattr(dir, OsStr::new("trusted.overlay.redirect"), target, 0) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOTSUP)) => {
            sys::set_xattr(dir, OsStr::new("user.overlay.redirect"), target, 0)
        }
        Err(e) => Err(e),
    }
}

const TRUSTED_OVL: &[u8] = b"trusted.overlay.";
const ESCAPED_OVL: &[u8] = b"trusted.overlay.overlay.";

/// Overlay-private xattrs never shown to users as they are stored.
pub fn is_private_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(TRUSTED_OVL) || b.starts_with(b"user.fuseoverlayfs.")
}

/// The stored name for a name a user sets. Like kernel overlayfs, `trusted.overlay.X`
/// set through the mount is stored escaped as `trusted.overlay.overlay.X`.
/// None: refused (`user.fuseoverlayfs.*`).
pub fn xattr_to_stored(name: &OsStr) -> Option<OsString> {
    let b = name.as_bytes();
    if let Some(rest) = b.strip_prefix(TRUSTED_OVL) {
        let mut v = ESCAPED_OVL.to_vec();
        v.extend_from_slice(rest);
        return Some(std::os::unix::ffi::OsStringExt::from_vec(v));
    }
    if b.starts_with(b"user.fuseoverlayfs.") {
        return None;
    }
    Some(name.to_os_string())
}

/// Whether `name` is an overlay marker this filesystem interprets on directories
/// (`user.overlay.opaque`/`redirect`: layers written in the userxattr form).
pub fn is_dir_marker_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b == b"user.overlay.opaque" || b == b"user.overlay.redirect"
}

/// The name users see for a stored xattr; None for overlay-private ones.
pub fn xattr_to_user(name: &OsStr, is_dir: bool) -> Option<OsString> {
    let b = name.as_bytes();
    if is_dir && is_dir_marker_xattr(name) {
        return None;
    }
    if let Some(rest) = b.strip_prefix(ESCAPED_OVL) {
        let mut v = TRUSTED_OVL.to_vec();
        v.extend_from_slice(rest);
        return Some(std::os::unix::ffi::OsStringExt::from_vec(v));
    }
    if is_private_xattr(name) {
        return None;
    }
    Some(name.to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aufs_names() {
        assert_eq!(
            aufs_hidden_name(OsStr::new(".wh.foo")),
            Some(OsStr::new("foo"))
        );
        assert_eq!(aufs_hidden_name(OsStr::new(".wh..wh..opq")), None);
        assert_eq!(aufs_hidden_name(OsStr::new(".wh.")), None);
        assert_eq!(aufs_hidden_name(OsStr::new("foo")), None);
        assert!(is_aufs_name(OsStr::new(".wh..wh.plnk")));
        assert_eq!(aufs_whiteout_name(OsStr::new("x")), OsString::from(".wh.x"));
    }

    #[test]
    fn overlay_xattrs_are_escaped_like_the_kernel() {
        let stored = xattr_to_stored(OsStr::new("trusted.overlay.opaque")).unwrap();
        assert_eq!(stored, OsString::from("trusted.overlay.overlay.opaque"));
        assert_eq!(
            xattr_to_user(&stored, false),
            Some(OsString::from("trusted.overlay.opaque"))
        );
        assert_eq!(
            xattr_to_user(OsStr::new("trusted.overlay.opaque"), false),
            None
        );
        assert_eq!(
            xattr_to_user(OsStr::new("user.fuseoverlayfs.x"), false),
            None
        );
        assert_eq!(xattr_to_stored(OsStr::new("user.fuseoverlayfs.x")), None);
        assert_eq!(xattr_to_user(OsStr::new("user.overlay.opaque"), true), None);
        assert_eq!(
            xattr_to_user(OsStr::new("user.overlay.opaque"), false),
            Some(OsString::from("user.overlay.opaque"))
        );
        assert_eq!(
            xattr_to_user(OsStr::new("user.a"), true),
            Some(OsString::from("user.a"))
        );
    }
}
