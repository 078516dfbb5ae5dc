//! The repository's single-writer lock.

use std::path::Path;

use super::home;
use crate::error::Result;

/// The repository's single writer: `rebase`, `rollback` and `gc` hold this exclusive
/// `flock` on `<graphroot>/rebasefs/writer.lock` from before they read the repository until
/// they are done, so two of them never compute the same thing twice or race for SQLite's
/// write lock; the second sees what the first recorded. The mount program never takes it.
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

impl WriterLock {
    /// Takes the lock; calls `waiting` once before blocking when another writer holds it.
    pub fn acquire(graphroot: &Path, waiting: impl FnOnce()) -> Result<WriterLock> {
        use rustix::fs::{flock, FlockOperation};
        use std::os::unix::fs::OpenOptionsExt;
        let dir = home(graphroot);
        std::fs::create_dir_all(&dir)
            .map_err(crate::error::io_err(format!("creating {}", dir.display())))?;
        let path = dir.join("writer.lock");
        let context = || format!("locking {}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(crate::error::io_err(context()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(WriterLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => waiting(),
            Err(e) => return Err(crate::error::io_err(context())(e.into())),
        }
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(WriterLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(crate::error::io_err(context())(e.into())),
            }
        }
    }
}
