//! File data through open fds: positional read and write, truncate, sync, allocate, seek,
//! and the whole-file copy of a copy-up (reflink, `copy_file_range`, read/write).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{check, check_size};

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
    check_size(r)
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
    check_size(r)
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
