//! Daemonizing so that the launching process exits 0 only once the mount is live.
//!
//! containers-storage runs the mount program and waits for it, so the parent must not
//! return before the child has mounted. The child reports through a pipe: `0` = live,
//! `1` + message = failed; EOF without a byte means the child died.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;

use crate::sys::{self, Forked};

/// Environment variable naming a file the daemon appends its stderr (its log) to.
pub const LOG_FILE_ENV: &str = "REBASEFS_LOG_FILE";

const LIVE: u8 = b'0';
const FAILED: u8 = b'1';

/// Which side of the fork we are on.
pub enum Side {
    /// The launching process: wait with [`wait_for_child`] and exit with its result.
    Parent(File),
    /// The daemon: detach, mount, then report through the [`StatusPipe`].
    Child(StatusPipe),
}

/// The daemon's end of the status pipe.
pub struct StatusPipe(File);

impl StatusPipe {
    /// Tells the parent the mount is live; it exits 0.
    pub fn report_live(mut self) {
        // If the parent is gone there is nobody to tell; keep serving.
        let _ = self.0.write_all(&[LIVE]);
    }

    /// Tells the parent why mounting failed; it prints `message` and exits 2.
    pub fn report_failure(mut self, message: &str) {
        let mut bytes = vec![FAILED];
        bytes.extend_from_slice(message.as_bytes());
        let _ = self.0.write_all(&bytes);
    }
}

/// Forks (refused unless the process has a single thread).
pub fn fork_with_status_pipe() -> Result<Side> {
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).context("creating the status pipe")?;
    match sys::fork_single_threaded()? {
        Forked::Parent => {
            drop(write_end);
            Ok(Side::Parent(File::from(read_end)))
        }
        Forked::Child => {
            drop(read_end);
            Ok(Side::Child(StatusPipe(File::from(write_end))))
        }
    }
}

/// Waits for the daemon's report: `Ok(())` once the mount is live, `Err(message)` otherwise.
pub fn wait_for_child(mut pipe: File) -> Result<(), String> {
    let mut report = Vec::new();
    if let Err(error) = pipe.read_to_end(&mut report) {
        return Err(format!("reading the mount daemon's status: {error}"));
    }
    match report.split_first() {
        Some((&LIVE, _)) => Ok(()),
        Some((&FAILED, message)) => Err(String::from_utf8_lossy(message).into_owned()),
        _ => Err("the mount daemon exited before the mount was live".to_string()),
    }
}

/// Detaches the daemon: new session, cwd `/`, stdin/stdout to /dev/null, stderr to
/// `log_file` (appended) or /dev/null.
pub fn detach(log_file: Option<&Path>) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    nix::unistd::chdir("/").context("chdir /")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let log = match log_file {
        Some(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening log file {}", path.display()))?,
        None => null.try_clone().context("duplicating /dev/null")?,
    };
    for (source, target) in [(&null, 0), (&null, 1), (&log, 2)] {
        nix::unistd::dup2(source.as_raw_fd(), target)
            .with_context(|| format!("redirecting fd {target}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_with(bytes: &[u8]) -> Result<File> {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut writer = File::from(write_end);
        writer.write_all(bytes)?;
        drop(writer);
        Ok(File::from(read_end))
    }

    #[test]
    fn status_protocol() -> Result<()> {
        assert_eq!(wait_for_child(pipe_with(b"0")?), Ok(()));
        assert_eq!(
            wait_for_child(pipe_with(b"1layer /x: gone")?),
            Err("layer /x: gone".to_string())
        );
        assert!(wait_for_child(pipe_with(b"")?).is_err());
        assert!(wait_for_child(pipe_with(b"?")?).is_err());
        Ok(())
    }

    #[test]
    fn status_pipe_writes_what_the_parent_reads() -> Result<()> {
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        StatusPipe(File::from(write_end)).report_failure("boom");
        assert_eq!(
            wait_for_child(File::from(read_end)),
            Err("boom".to_string())
        );
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        StatusPipe(File::from(write_end)).report_live();
        assert_eq!(wait_for_child(File::from(read_end)), Ok(()));
        Ok(())
    }
}
