//! Every system call the filesystem makes on layer directories, wrapped safely.
//!
//! This is the only module with `unsafe`. All layer access is relative to a directory
//! fd and a single path component opened with `O_NOFOLLOW`, so nothing resolves outside
//! a layer. Already-resolved `O_PATH` fds are reached through `/proc/self/fd/N`, which
//! names exactly that inode (no path walk inside a layer happens there).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

pub type Stat = libc::stat;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_fd(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `/proc/self/fd/N` for an fd, used to reach an `O_PATH` fd's inode exactly.
pub fn proc_path(fd: BorrowedFd<'_>) -> CString {
    // Digits only: cannot contain NUL.
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// An all-zero `stat` (valid bit pattern for the plain C struct).
pub fn zero_stat() -> Stat {
    // SAFETY: `struct stat` is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

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

/// One directory entry as read from a layer directory.
#[derive(Debug, Clone)]
pub struct RawDirEntry {
    pub name: OsString,
    pub ino: u64,
    pub dtype: u8,
}

/// All entries of the directory behind `dir` (an `O_PATH` fd), without `.` and `..`.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<RawDirEntry>> {
    let fd = open_dir_for_read(dir)?;
    // fdopendir takes ownership of the fd.
    let raw = fd.as_raw_fd();
    // SAFETY: raw is a valid directory fd we own; on success DIR owns it.
    let dp = unsafe { libc::fdopendir(raw) };
    if dp.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(fd);
    let mut out = Vec::new();
    loop {
        // SAFETY: errno reset then readdir on a valid DIR*.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dp is a valid open DIR*.
        let ent = unsafe { libc::readdir64(dp) };
        if ent.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: dp valid, closed once.
            unsafe { libc::closedir(dp) };
            if err.raw_os_error().unwrap_or(0) != 0 {
                return Err(err);
            }
            return Ok(out);
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated.
        let (name, ino, dtype) = unsafe {
            let e = &*ent;
            (
                CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(),
                e.d_ino,
                e.d_type,
            )
        };
        if name == b"." || name == b".." {
            continue;
        }
        out.push(RawDirEntry {
            name: OsString::from_vec(name),
            ino,
            dtype,
        });
    }
}

/// `readlinkat(fd, "")` on an `O_PATH` symlink fd.
pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, empty path, buffer of stated length.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn xattr_result(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

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
        match xattr_result(r) {
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
    !matches!(xattr_result(r), Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP))
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
        match xattr_result(r) {
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

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn mknod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            n.as_ptr(),
            mode as libc::mode_t,
            rdev as libc::dev_t,
        )
    })?;
    Ok(())
}

pub fn symlink_at(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let n = cstr(name)?;
    // SAFETY: valid fd and C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) })?;
    Ok(())
}

/// Hard-links the inode behind `fd` (an `O_PATH` fd) as `dir/name`.
pub fn link_fd_at(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// `linkat(olddir, oldname, newdir, newname, 0)`: both names single components.
pub fn link_at(
    olddir: BorrowedFd<'_>,
    oldname: &OsStr,
    newdir: BorrowedFd<'_>,
    newname: &OsStr,
) -> io::Result<()> {
    let o = cstr(oldname)?;
    let n = cstr(newname)?;
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let n = cstr(name)?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid fd and C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), flags) })?;
    Ok(())
}

pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
pub const RENAME_WHITEOUT: u32 = libc::RENAME_WHITEOUT;

pub fn rename_at(
    olddir: BorrowedFd<'_>,
    oldname: &OsStr,
    newdir: BorrowedFd<'_>,
    newname: &OsStr,
    flags: u32,
) -> io::Result<()> {
    let o = cstr(oldname)?;
    let n = cstr(newname)?;
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            o.as_ptr(),
            newdir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    })?;
    Ok(())
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

/// A timestamp for [`set_times`]: `None` leaves it unchanged.
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

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain struct out-parameter.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    rl.rlim_cur
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    Ok(())
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })?;
    Ok(())
}

pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: valid fd, buffer of stated length.
    let r = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            offset as libc::off_t,
        )
    };
    xattr_result(r)
}

pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    // SAFETY: valid fd, buffer of stated length.
    let r = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            offset as libc::off_t,
        )
    };
    xattr_result(r)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: valid fd.
    check(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    })?;
    Ok(())
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: valid fd.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Copies all data from `src` to `dst` (both regular files): reflink first, then
/// `copy_file_range`, then plain read/write.
pub fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    // SAFETY: FICLONE takes the source fd as its argument.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        return Ok(());
    }
    let mut copied: u64 = 0;
    let mut use_cfr = true;
    let mut buf = Vec::new();
    while copied < len {
        if use_cfr {
            let mut off_in = copied as libc::loff_t;
            let mut off_out = copied as libc::loff_t;
            let chunk = (len - copied).min(1 << 30) as usize;
            // SAFETY: valid fds and offset pointers.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    chunk,
                    0,
                )
            };
            if n > 0 {
                copied += n as u64;
                continue;
            }
            if n == 0 {
                break;
            }
            use_cfr = false;
            buf = vec![0u8; 1 << 20];
            continue;
        }
        let n = pread(src, &mut buf, copied)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            let slice = buf.get(w..n).unwrap_or(&[]);
            let k = pwrite(dst, slice, copied + w as u64)?;
            if k == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            w += k;
        }
        copied += n as u64;
    }
    Ok(())
}
