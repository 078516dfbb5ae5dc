//! Host inspection and process running for the Podman tests: mountinfo, /proc, timeouts.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One line of /proc/self/mountinfo that matters to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub mount_options: String,
    /// The raw line, for messages and the demo.
    pub line: String,
}

/// Every mount in /proc/self/mountinfo.
pub fn mounts() -> Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
}

/// Mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Result<Vec<MountEntry>> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect())
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (before, after) = line.split_once(" - ")?;
    let mut left = before.split(' ');
    let mount_point = left.nth(4)?;
    let mount_options = left.next()?;
    let mut right = after.split(' ');
    let fs_type = right.next()?;
    let source = right.next()?;
    Some(MountEntry {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        fs_type: fs_type.to_string(),
        source: unescape_octal(source),
        mount_options: mount_options.to_string(),
        line: line.to_string(),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(value)) => {
                out.push(value);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A live (non-zombie) process.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub pid: i32,
    /// Arguments joined by spaces.
    pub cmdline: String,
    /// Target of /proc/PID/exe, when readable.
    pub exe: Option<PathBuf>,
}

/// Every live process whose command line mentions `needle` (zombies have no cmdline).
pub fn processes_mentioning(needle: &str) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let cmdline = args.join(" ");
            if cmdline.is_empty() || !cmdline.contains(needle) {
                return None;
            }
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            Some(ProcessInfo { pid, cmdline, exe })
        })
        .collect()
}

/// Lazily unmounts every mount at or below `dir`, deepest first (cleanup after failures).
pub fn unmount_all_under(dir: &Path) {
    let mut mounts = mounts_under(dir).unwrap_or_default();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_point.as_os_str().len()));
    for mount in mounts {
        let _ = nix::mount::umount2(&mount.mount_point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Sends SIGKILL to `processes` (cleanup after failures).
pub fn kill_all(processes: &[ProcessInfo]) {
    for process in processes {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(process.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `command` with stdin closed, killing it after `timeout`.
///
/// Output goes through files in `scratch` so a chatty child can never block on a full pipe.
pub fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
    scratch: &Path,
) -> Result<CommandOutput> {
    let described = describe(&command);
    let stdout_path = scratch.join("last-command.stdout");
    let stderr_path = scratch.join("last-command.stderr");
    let stdout = File::create(&stdout_path).context("creating stdout capture")?;
    let stderr = File::create(&stderr_path).context("creating stderr capture")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {described}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a command")? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}: {described}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(CommandOutput {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    })
}

/// A command line for error messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a: &OsStr| String::from_utf8_lossy(a.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `check` until it returns an empty list or `timeout` passes; returns the last list.
pub fn wait_until_empty<T>(timeout: Duration, mut check: impl FnMut() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = check();
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fuse_mountinfo_line() {
        let line = "43 42 0:39 / /tmp/a\\040b/merged rw,nodev,noatime - fuse.rebasefs rebasefs rw,user_id=0";
        let entry = parse_mountinfo_line(line);
        assert_eq!(
            entry.as_ref().map(|e| e.mount_point.clone()),
            Some(PathBuf::from("/tmp/a b/merged"))
        );
        assert_eq!(
            entry.as_ref().map(|e| e.fs_type.as_str()),
            Some("fuse.rebasefs")
        );
        assert_eq!(entry.as_ref().map(|e| e.source.as_str()), Some("rebasefs"));
        assert_eq!(
            entry.as_ref().map(|e| e.mount_options.as_str()),
            Some("rw,nodev,noatime")
        );
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn sees_its_own_mounts() -> Result<()> {
        assert!(mounts()?.iter().any(|m| m.mount_point == Path::new("/")));
        Ok(())
    }

    #[test]
    fn timeout_kills() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut sleep = Command::new("sleep");
        sleep.arg("5");
        let started = Instant::now();
        assert!(run_with_timeout(sleep, Duration::from_millis(200), dir.path()).is_err());
        assert!(started.elapsed() < Duration::from_secs(4));
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2; exit 3"]);
        let output = run_with_timeout(echo, Duration::from_secs(5), dir.path())?;
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, "out\n");
        assert_eq!(output.stderr, "err\n");
        Ok(())
    }
}
