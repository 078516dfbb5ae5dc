//! Extended attributes of the inode behind an fd, reached by its `/proc/self/fd` path so
//! `O_PATH` fds (of any file type) work.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStringExt;

use super::{check, check_size, cstr, proc_path};

/// Reads xattr `name` of the inode behind `fd`; `Ok(None)` when it is absent.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let p = proc_path(fd);
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings, buffer of stated length.
        let r = unsafe {
            libc::getxattr(
                p.as_ptr(),
                n.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        match check_size(r) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 17 => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the filesystem of the inode behind `fd` has xattrs at all (listxattr does
/// not answer EOPNOTSUPP).
pub fn xattrs_supported(fd: BorrowedFd<'_>) -> bool {
    let p = proc_path(fd);
    // SAFETY: valid C string; a null buffer of size 0 only asks for the list's size.
    let r = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    !matches!(check_size(r), Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP))
}

/// Lists xattr names of the inode behind `fd`.
pub fn list_xattr(fd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let p = proc_path(fd);
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: valid C string, buffer of stated length.
        let r = unsafe {
            libc::listxattr(p.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
        };
        match check_size(r) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| OsString::from_vec(s.to_vec()))
                    .collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 => {
                let n = buf.len() * 4;
                buf.resize(n, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn set_xattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let p = proc_path(fd);
    let n = cstr(name)?;
    // SAFETY: valid C strings and value buffer.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            flags,
        )
    })?;
    Ok(())
}

pub fn remove_xattr(fd: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let p = proc_path(fd);
    let n = cstr(name)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })?;
    Ok(())
}
