//! Thin, errno-returning wrappers over the Linux system calls the differential harness needs.
//!
//! All `unsafe` of the harness lives here. Every path-taking call is relative to a directory
//! file descriptor (the mount root), so both sides of a comparison see byte-identical paths
//! whatever their mountpoints are, and paths near PATH_MAX behave the same on both.
#![allow(unsafe_code)] // the sys module: the one place `unsafe` is allowed

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// An errno value.
pub type Errno = i32;
/// Result of a system call: the value or the errno.
pub type SysResult<T> = Result<T, Errno>;

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// A path as a C string; the empty path means the directory itself (used with AT_EMPTY_PATH
/// or turned into ".").
pub fn cpath(path: &str) -> SysResult<CString> {
    let p = if path.is_empty() { "." } else { path };
    CString::new(p.as_bytes()).map_err(|_| libc::EINVAL)
}

fn cbytes(b: &[u8]) -> SysResult<CString> {
    CString::new(b).map_err(|_| libc::EINVAL)
}

pub fn openat(dir: BorrowedFd<'_>, path: &str, flags: i32, mode: u32) -> SysResult<OwnedFd> {
    let p = cpath(path)?;
    // SAFETY: valid C string, plain syscall; the returned fd is owned by us.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), p.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_abs(path: &std::path::Path, flags: i32) -> SysResult<OwnedFd> {
    let p = cbytes(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string; fd ownership taken below.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstatat(dir: BorrowedFd<'_>, path: &str, flags: i32) -> SysResult<libc::stat> {
    let p = cpath(path)?;
    // SAFETY: zeroed stat is a valid value; the kernel fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), p.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

pub fn fstat(fd: BorrowedFd<'_>) -> SysResult<libc::stat> {
    // SAFETY: as above.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Reads up to `limit` bytes from the current offset.
pub fn read_to_end(fd: BorrowedFd<'_>, limit: usize) -> SysResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while out.len() < limit {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(errno());
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(buf.get(..n as usize).unwrap_or(&[]));
    }
    Ok(out)
}

pub fn pread_all(fd: BorrowedFd<'_>, limit: usize) -> SysResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while out.len() < limit {
        // SAFETY: buf valid; offset within i64.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                out.len() as i64,
            )
        };
        if n < 0 {
            return Err(errno());
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(buf.get(..n as usize).unwrap_or(&[]));
    }
    Ok(out)
}

pub fn write(fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<usize> {
    // SAFETY: data valid for its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn pwrite(fd: BorrowedFd<'_>, data: &[u8], off: u64) -> SysResult<usize> {
    // SAFETY: data valid for its length.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), off as i64) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }).map(|_| ())
}

pub fn fsync(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::fsync(fd.as_raw_fd()) }).map(|_| ())
}

/// `/proc/self/fd/N` for an fd: path-only syscalls (truncate, xattrs) follow this magic link
/// to the inode itself, even for an O_PATH|O_NOFOLLOW descriptor of a symlink.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

pub fn truncate_path(p: &CStr, len: u64) -> SysResult<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::truncate(p.as_ptr(), len as i64) }).map(|_| ())
}

pub fn fchmodat(dir: BorrowedFd<'_>, path: &str, mode: u32) -> SysResult<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), p.as_ptr(), mode, 0) }).map(|_| ())
}

pub fn fchownat(dir: BorrowedFd<'_>, path: &str, uid: u32, gid: u32, flags: i32) -> SysResult<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::fchownat(dir.as_raw_fd(), p.as_ptr(), uid, gid, flags) }).map(|_| ())
}

/// utimensat with (seconds, nanoseconds) pairs; nanoseconds may be UTIME_NOW/UTIME_OMIT.
pub fn utimensat(
    dir: BorrowedFd<'_>,
    path: &str,
    atime: (i64, i64),
    mtime: (i64, i64),
    flags: i32,
) -> SysResult<()> {
    let p = cpath(path)?;
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid C string and a two-element array.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), p.as_ptr(), ts.as_ptr(), flags) }).map(|_| ())
}

pub fn mkdirat(dir: BorrowedFd<'_>, path: &str, mode: u32) -> SysResult<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), p.as_ptr(), mode) }).map(|_| ())
}

pub fn mknodat(dir: BorrowedFd<'_>, path: &str, mode: u32, dev: u64) -> SysResult<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), p.as_ptr(), mode, dev) }).map(|_| ())
}

pub fn symlinkat(target: &str, dir: BorrowedFd<'_>, path: &str) -> SysResult<()> {
    let t = cbytes(target.as_bytes())?;
    let p = cpath(path)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), p.as_ptr()) }).map(|_| ())
}

pub fn linkat(dir: BorrowedFd<'_>, old: &str, new: &str) -> SysResult<()> {
    let o = cpath(old)?;
    let n = cpath(new)?;
    // SAFETY: valid C strings.
    check(unsafe { libc::linkat(dir.as_raw_fd(), o.as_ptr(), dir.as_raw_fd(), n.as_ptr(), 0) })
        .map(|_| ())
}

pub fn unlinkat(dir: BorrowedFd<'_>, path: &str, flags: i32) -> SysResult<()> {
    let p = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), p.as_ptr(), flags) }).map(|_| ())
}

pub fn renameat2(dir: BorrowedFd<'_>, old: &str, new: &str, flags: u32) -> SysResult<()> {
    let o = cpath(old)?;
    let n = cpath(new)?;
    // SAFETY: valid C strings; raw syscall so no libc version dependency.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            o.as_ptr(),
            dir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn readlinkat(dir: BorrowedFd<'_>, path: &str) -> SysResult<Vec<u8>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 8192];
    // SAFETY: buf valid for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            p.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// getxattr through a (magic-link) path, following it.
pub fn getxattr(p: &CStr, name: &str) -> SysResult<Vec<u8>> {
    let n = cbytes(name.as_bytes())?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf valid for its length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn listxattr(p: &CStr) -> SysResult<Vec<String>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf valid for its length.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

pub fn setxattr(p: &CStr, name: &str, value: &[u8], flags: i32) -> SysResult<()> {
    let n = cbytes(name.as_bytes())?;
    // SAFETY: valid pointers and lengths.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(|_| ())
}

pub fn removexattr(p: &CStr, name: &str) -> SysResult<()> {
    let n = cbytes(name.as_bytes())?;
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) }).map(|_| ())
}

/// lsetxattr on an absolute path (fixture building only).
pub fn lsetxattr_abs(path: &std::path::Path, name: &str, value: &[u8]) -> SysResult<()> {
    let p = cbytes(path.as_os_str().as_bytes())?;
    let n = cbytes(name.as_bytes())?;
    // SAFETY: valid pointers and lengths.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(|_| ())
}

/// One directory entry as readdir reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDirent {
    pub name: String,
    pub d_type: u8,
    pub d_ino: u64,
}

/// Reads a whole directory (including "." and "..") from an fd opened with O_DIRECTORY.
pub fn readdir(dirfd: OwnedFd) -> SysResult<Vec<RawDirent>> {
    let raw: RawFd = std::os::fd::IntoRawFd::into_raw_fd(dirfd);
    // SAFETY: raw is a directory fd we own; fdopendir takes ownership of it.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        let e = errno();
        // SAFETY: fdopendir failed, so we still own raw.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    let result = loop {
        // SAFETY: errno reset so end-of-directory and errors can be told apart.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dir is a valid DIR*.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let e = errno();
            break if e == 0 { Ok(()) } else { Err(e) };
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let (name, d_type, d_ino) = unsafe {
            let e = &*ent;
            (
                CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(),
                e.d_type,
                e.d_ino,
            )
        };
        out.push(RawDirent {
            name: String::from_utf8_lossy(OsStr::from_bytes(&name).as_bytes()).into_owned(),
            d_type,
            d_ino,
        });
    };
    // SAFETY: dir valid; closes the fd too.
    unsafe { libc::closedir(dir) };
    result.map(|_| out)
}

/// Sets the calling thread's umask (the thread must have unshared CLONE_FS first for it to
/// be private), returning the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: always succeeds.
    unsafe { libc::umask(mask) }
}

/// Gives the calling thread its own cwd/root/umask, so umask changes do not leak to
/// other test threads.
pub fn unshare_fs() -> SysResult<()> {
    // SAFETY: plain syscall affecting only this thread.
    check(unsafe { libc::unshare(libc::CLONE_FS) }).map(|_| ())
}

/// Drops the calling THREAD (not process) to uid/gid with no supplementary groups, via raw
/// syscalls: glibc's wrappers would broadcast the change to every thread of the process.
/// Irreversible for the thread: call it only in a thread spawned for the purpose.
pub fn drop_thread_creds(uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: raw credential syscalls on the current thread only.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) < 0 {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0 {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

pub fn major(dev: u64) -> u32 {
    libc::major(dev)
}

pub fn minor(dev: u64) -> u32 {
    libc::minor(dev)
}

/// Sends a signal to a process id.
pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid, sig) }).map(|_| ())
}

/// This process's hard RLIMIT_NOFILE.
pub fn hard_nofile() -> SysResult<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    Ok(rl.rlim_max)
}

/// Makes `cmd`'s process start with RLIMIT_NOFILE soft = hard = `limit` (so a daemon that
/// holds one descriptor per node runs out on a tree of moderate size).
pub fn limit_nofile_in_child(cmd: &mut std::process::Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls setrlimit, which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
