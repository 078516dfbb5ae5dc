//! Opening layer entries: layer roots, one path component at a time with `O_NOFOLLOW`,
//! and the inode behind an `O_PATH` fd again with real access (through `/proc/self/fd`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{check_fd, cstr, proc_path};

/// Opens a layer root or other absolute path as an `O_PATH` directory fd (follows symlinks:
/// layer paths given by the caller, e.g. `overlay/l/<short>`, are symlinks).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string, flags only.
    check_fd(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// `O_PATH|O_NOFOLLOW` fd of one entry inside a directory.
pub fn open_path_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(dir, name, libc::O_PATH, 0)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`; `name` is one component.
pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let n = cstr(name)?;
    // SAFETY: valid fd and C string.
    check_fd(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// Opens the inode behind an `O_PATH` fd again with real access `flags`.
/// Callers only do this for regular files and directories (never symlinks).
pub fn reopen(fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let p = proc_path(fd);
    let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW);
    // SAFETY: valid C string.
    check_fd(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Opens a directory (given as an `O_PATH` fd) for reading its entries.
pub fn open_dir_for_read(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    openat(fd, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)
}
