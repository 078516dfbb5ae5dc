//! The plugin's only `unsafe`: reading one extended attribute without following symlinks.
#![allow(unsafe_code)] // the sys module: the one place `unsafe` is allowed

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Value of xattr `name` on `path` itself (not a symlink target); `None` when absent or unreadable.
pub fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let cpath = CString::new(path.as_os_str().as_bytes()).ok()?;
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and outlive the call; buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(buf)
}
