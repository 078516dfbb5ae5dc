//! containers-storage's POSIX `fcntl` locks (`layers.lock`, `images.lock`, `containers.lock`).
//!
//! Locks are process-owned record locks over the whole file; holding the file open keeps the
//! lock, dropping the guard releases it (closing *any* descriptor of the file in this
//! process would too, so a process holds one guard per lock file at a time). A holder that
//! keeps its lock longer than the timeout turns into [`Error::StoreLocked`] instead of
//! hanging forever. A writer also leaves containers-storage's 64-byte "last writer" token
//! at offset 0 ([`WriteLock::record_write`]), which tells other processes to reload.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use crate::error::{io_err, Error, Result};

/// A held shared lock; released on drop (closing the file releases the record lock).
#[derive(Debug)]
pub struct ReadLock {
    _file: File,
    pub path: PathBuf,
}

/// A held exclusive lock; released on drop.
#[derive(Debug)]
pub struct WriteLock {
    file: File,
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
    lock(&file, path, libc::F_RDLCK, timeout)?;
    Ok(Some(ReadLock {
        _file: file,
        path: path.to_path_buf(),
    }))
}

/// Takes an exclusive lock on `path`; `Ok(None)` when the lock file does not exist.
pub fn write_lock(path: &Path, timeout: Duration) -> Result<Option<WriteLock>> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("opening lock {}", path.display()))(e)),
    };
    lock(&file, path, libc::F_WRLCK, timeout)?;
    Ok(Some(WriteLock {
        file,
        path: path.to_path_buf(),
    }))
}

fn lock(file: &File, path: &Path, kind: libc::c_int, timeout: Duration) -> Result<()> {
    let request = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let deadline = Instant::now() + timeout;
    loop {
        match fcntl(file.as_raw_fd(), FcntlArg::F_SETLK(&request)) {
            Ok(_) => return Ok(()),
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

impl WriteLock {
    /// Writes a new last-writer token, as containers-storage's `RecordWrite` does: time in
    /// nanoseconds and a counter (little-endian u64s), the pid (u32), then random bytes.
    pub fn record_write(&self) -> Result<()> {
        let mut token = [0u8; 64];
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        token[..8].copy_from_slice(&nanos.to_le_bytes());
        token[8..16].copy_from_slice(&1u64.to_le_bytes());
        token[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        let mut urandom =
            File::open("/dev/urandom").map_err(io_err("opening /dev/urandom".to_string()))?;
        std::io::Read::read_exact(&mut urandom, &mut token[20..])
            .map_err(io_err("reading /dev/urandom".to_string()))?;
        self.file
            .write_all_at(&token, 0)
            .map_err(io_err(format!("writing {}", self.path.display())))
    }
}
