//! Inode attributes: stat and statfs, owner, mode and times, of an `O_PATH` fd or of one
//! entry of a directory (never following symlinks).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{check, cstr, open_dir_for_read, proc_path, Stat};

/// An all-zero `stat` (valid bit pattern for the plain C struct).
pub fn zero_stat() -> Stat {
    // SAFETY: `struct stat` is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    let n = cstr(name)?;
    let mut st = zero_stat();
    // SAFETY: valid fd, C string and out pointer.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            n.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// `fstat` of any fd, including `O_PATH` ones.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = zero_stat();
    // SAFETY: valid fd, empty C string and out pointer.
    check(unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn statfs_fd(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    // SAFETY: all-zero statvfs is valid; fd valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let f = reopen_dir_or_self(fd)?;
    // SAFETY: valid fd and out pointer.
    check(unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn reopen_dir_or_self(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_dir_for_read(fd)
}

/// `fchownat(fd, "", AT_EMPTY_PATH)`: works on `O_PATH` fds, symlinks included.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let u = uid.unwrap_or(u32::MAX);
    let g = gid.unwrap_or(u32::MAX);
    // SAFETY: valid fd, empty C string.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            u,
            g,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// chmod of the inode behind an `O_PATH` fd (not for symlinks).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let p = proc_path(fd);
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), (mode & 0o7777) as libc::mode_t) })?;
    Ok(())
}

/// A timestamp for [`set_times_at`] and [`set_times_fd`]: `Omit` leaves it unchanged.
#[derive(Debug, Clone, Copy)]
pub enum TimeSpec {
    Omit,
    Now,
    At(i64, i64),
}

fn timespec(t: TimeSpec) -> libc::timespec {
    match t {
        TimeSpec::Omit => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        TimeSpec::Now => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        TimeSpec::At(s, ns) => libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        },
    }
}

/// Sets atime/mtime of the entry `name` in `dir` without following symlinks.
pub fn set_times_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    atime: TimeSpec,
    mtime: TimeSpec,
) -> io::Result<()> {
    let n = cstr(name)?;
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: valid fd, C string, two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            n.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// Sets atime/mtime of the inode behind an `O_PATH` fd of a non-symlink.
pub fn set_times_fd(fd: BorrowedFd<'_>, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let p = proc_path(fd);
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: valid C string, two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) })?;
    Ok(())
}
