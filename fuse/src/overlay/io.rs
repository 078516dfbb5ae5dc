//! Reading and writing what the merged tree holds: file data through open handles (read,
//! write, sync, allocate, seek), symlink targets, directory sync and statfs.

use std::os::fd::AsFd;

use fuser::Errno;

use super::{errno, Overlay, Res};
use crate::sys;

impl Overlay {
    /// Reads up to `size` bytes at `offset` (short only at the end of the file).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Res<Vec<u8>> {
        self.file_fd(fh, |fd| {
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let slice = buf.get_mut(got..).unwrap_or(&mut []);
                let n = sys::pread(fd.as_fd(), slice, offset + got as u64).map_err(errno)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        })
    }

    /// Writes `data` at `offset`; returns how much was written.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Res<usize> {
        self.file_fd(fh, |fd| {
            let mut done = 0;
            while done < data.len() {
                let slice = data.get(done..).unwrap_or(&[]);
                let n = sys::pwrite(fd.as_fd(), slice, offset + done as u64).map_err(errno)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        })
    }

    /// fsync of an open file (nothing with `fsync=0`/`volatile`).
    pub fn fsync(&self, fh: u64, datasync: bool) -> Res<()> {
        if !self.config.fsync {
            return Ok(());
        }
        self.file_fd(fh, |fd| sys::fsync(fd.as_fd(), datasync).map_err(errno))
    }

    /// fsync of a directory: its upper copy, if it has one.
    pub fn fsyncdir(&self, ino: u64, datasync: bool) -> Res<()> {
        if !self.config.fsync {
            return Ok(());
        }
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        let stack = self.stack();
        if let Some(up) = res.upper(&stack) {
            let d = sys::open_dir_for_read(up.fd()).map_err(errno)?;
            sys::fsync(d.as_fd(), datasync).map_err(errno)?;
        }
        Ok(())
    }

    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Res<()> {
        self.file_fd(fh, |fd| {
            sys::fallocate(fd.as_fd(), mode, offset, length).map_err(errno)
        })
    }

    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> Res<i64> {
        self.file_fd(fh, |fd| {
            sys::lseek(fd.as_fd(), offset, whence).map_err(errno)
        })
    }

    /// The target of a symlink.
    pub fn readlink(&self, ino: u64) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        let top = res.top().ok_or(Errno::ENOENT)?;
        sys::readlink_fd(top.fd()).map_err(errno)
    }

    /// statfs of the filesystem of the top layer (the upper when there is one).
    pub fn statfs(&self) -> Res<libc::statvfs> {
        let stack = self.stack();
        let root = stack.layers.first().map(|l| l.root.clone());
        root.ok_or(Errno::EIO)
            .and_then(|fd| sys::statfs_fd(fd.as_fd()).map_err(errno))
    }
}
