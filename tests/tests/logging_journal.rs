//! Where a person finds what the mount program said: its warnings go to the systemd
//! journal (identifier `rebasefs`) when it runs without a terminal and without `-d`
//! (on a host without journald it logs as before: every other mount-program test).
//!
//! On a host without journald the test listens on journald's socket itself (a real Unix
//! datagram socket at `/run/systemd/journal/socket`, the path the journal protocol fixes)
//! and reads the entry the daemon sends; on a host with journald it asks `journalctl`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rebasefs_tests::podman::host;
use rebasefs_tests::podman::mount_program;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The fields of one entry in the journal's native (and export) encoding: `KEY=value\n`,
/// or `KEY\n` + 64-bit little-endian length + value + `\n`; an empty line ends the entry
/// (export). Returns the fields and what follows the entry.
fn fields(mut entry: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut out = Vec::new();
    while let Some(end) = entry.iter().position(|&b| b == b'\n' || b == b'=') {
        if end == 0 {
            return (out, &entry[1..]);
        }
        let key = String::from_utf8_lossy(&entry[..end]).into_owned();
        let rest = &entry[end + 1..];
        let (value, after) = if entry[end] == b'=' {
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (&rest[..stop], rest.get(stop + 1..).unwrap_or_default())
        } else {
            let Some(len) = rest.get(..8).and_then(|l| <[u8; 8]>::try_from(l).ok()) else {
                break;
            };
            let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
            let Some(value) = rest.get(8..8usize.saturating_add(len)) else {
                break;
            };
            (value, rest.get(9 + len..).unwrap_or_default())
        };
        out.push((key, String::from_utf8_lossy(value).into_owned()));
        entry = after;
    }
    (out, &[])
}

/// Where the test reads journal entries from.
enum Journal {
    /// Our own listener on the socket (removed on drop).
    Listener(UnixDatagram),
    /// A real journald: read back with journalctl.
    Real,
}

impl Journal {
    fn open() -> Result<Journal> {
        if Path::new(JOURNAL_SOCKET).exists() {
            return Ok(Journal::Real);
        }
        std::fs::create_dir_all("/run/systemd/journal")?;
        let socket = UnixDatagram::bind(JOURNAL_SOCKET).context("binding the journal socket")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Journal::Listener(socket))
    }

    /// Every entry (a listener's) or the rebasefs entries since `since` (journalctl's)
    /// whose message contains `text`, as fields.
    fn entries_with(&self, text: &str, since: &str) -> Result<Vec<Vec<(String, String)>>> {
        let says = |entry: &Vec<(String, String)>| {
            entry
                .iter()
                .any(|(k, v)| k == "MESSAGE" && v.contains(text))
        };
        match self {
            Journal::Listener(socket) => {
                let mut found = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if let Ok(n) = socket.recv(&mut buf) {
                        found.push(fields(&buf[..n]).0);
                    }
                }
                Ok(found.into_iter().filter(says).collect())
            }
            Journal::Real => {
                let out = Command::new("journalctl")
                    .args(["-t", "rebasefs", "--since", since, "-o", "export"])
                    .output()
                    .context("running journalctl (a journald socket exists)")?;
                // Export format: entries separated by an empty line.
                let mut entries = Vec::new();
                let mut rest = &out.stdout[..];
                while !rest.is_empty() {
                    let (entry, after) = fields(rest);
                    entries.push(entry);
                    rest = after;
                }
                Ok(entries.into_iter().filter(says).collect())
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Journal::Listener(_) = self {
            let _ = std::fs::remove_file(JOURNAL_SOCKET);
            // The directories too, when empty (as they were: no journald here).
            let _ = std::fs::remove_dir("/run/systemd/journal");
            let _ = std::fs::remove_dir("/run/systemd");
        }
    }
}

/// Mounts lower/upper/work on mnt with `extra` options (daemonized), then unmounts.
fn mount_once(dir: &Path, extra: &str) -> Result<host::CommandOutput> {
    for sub in ["lower", "upper", "work", "mnt"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        dir.join("lower").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let mnt = dir.join("mnt");
    let mut command = Command::new(mount_program()?);
    command
        .arg("-o")
        .arg(&options)
        .arg(&mnt)
        .env_remove("REBASEFS_LOG")
        .env_remove("RUST_LOG");
    let out = host::run_with_timeout(command, Duration::from_secs(30), dir)?;
    let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
    host::wait_until_empty(Duration::from_secs(10), || {
        host::processes_mentioning(&mnt.to_string_lossy())
    });
    Ok(out)
}

#[test]
fn daemon_warnings_reach_the_journal() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("rebasefs-install-journal-")
        .tempdir()?;
    let journal = Journal::open()?;
    let since = String::from_utf8(Command::new("date").arg("+%F %T").output()?.stdout)?;
    // `writeback` is accepted and ignored with a warning.
    let out = mount_once(dir.path(), ",writeback")?;
    ensure!(out.success(), "mount failed: {out:?}");
    let entries = journal.entries_with("writeback", since.trim())?;
    let Some(entry) = entries.first() else {
        bail!(
            "no journal entry names the ignored option (stderr: {:?})",
            out.stderr
        );
    };
    let field = |key: &str| {
        entry
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    ensure!(
        field("SYSLOG_IDENTIFIER") == Some("rebasefs") && field("PRIORITY") == Some("4"),
        "the entry is not a rebasefs warning: {entry:?}"
    );
    Ok(())
}
