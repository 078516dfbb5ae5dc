//! Every system call the filesystem makes, wrapped safely, by concern: opening
//! ([`open`]), inode attributes ([`attr`]), directory entries ([`dir`]), extended
//! attributes ([`xattr`]), file data ([`io`]) and the process ([`process`]).
//!
//! These are the only modules with `unsafe`. All layer access is relative to a directory
//! fd and a single path component opened with `O_NOFOLLOW`, so nothing resolves outside
//! a layer. Already-resolved `O_PATH` fds are reached through `/proc/self/fd/N`, which
//! names exactly that inode (no path walk inside a layer happens there). Callers use the
//! calls as `sys::name`: every module's items are re-exported here.

#![allow(unsafe_code)] // the sys modules: the one place `unsafe` is allowed

mod attr;
mod dir;
mod io;
mod open;
mod process;
mod xattr;

pub use attr::*;
pub use dir::*;
pub use io::*;
pub use open::*;
pub use process::*;
pub use xattr::*;

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

pub type Stat = libc::stat;

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_fd(ret: libc::c_int) -> std::io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `/proc/self/fd/N` for an fd, used to reach an `O_PATH` fd's inode exactly.
pub fn proc_path(fd: BorrowedFd<'_>) -> CString {
    // Digits only: cannot contain NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// The result of a call that returns a size or `-1` with errno.
fn check_size(ret: isize) -> std::io::Result<usize> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
