//! containers-storage's POSIX `fcntl` read locks (`layers.lock`, `images.lock`, `containers.lock`).
//!
//! Locks are process-owned record locks over the whole file; holding the file open keeps the
//! lock, dropping the guard releases it. A writer that holds its lock longer than the timeout
//! turns into [`Error::StoreLocked`] instead of hanging forever.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use crate::error::{io_err, Error, Result};

/// A held shared lock; released on drop (closing the file releases the record lock).
#[derive(Debug)]
pub struct ReadLock {
    _file: File,
    pub path: PathBuf,
}

/// How long to wait for a writer before reporting the store as locked.
pub fn default_timeout() -> Duration {
    std::env::var("REBASEFS_LOCK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Takes a shared lock on `path`; `Ok(None)` when the lock file does not exist (empty store).
pub fn read_lock(path: &Path, timeout: Duration) -> Result<Option<ReadLock>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("opening lock {}", path.display()))(e)),
    };
    let request = libc::flock {
        l_type: libc::F_RDLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        match fcntl(file.as_raw_fd(), FcntlArg::F_SETLK(&request)) {
            Ok(_) => {
                return Ok(Some(ReadLock {
                    _file: file,
                    path: path.to_path_buf(),
                }))
            }
            Err(Errno::EAGAIN | Errno::EACCES) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(Errno::EAGAIN | Errno::EACCES) => {
                return Err(Error::StoreLocked(path.to_path_buf()))
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                return Err(io_err(format!("locking {}", path.display()))(
                    std::io::Error::from(e),
                ))
            }
        }
    }
}
