//! Small system helpers: dropping caches, statfs, /proc readings, running commands.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// FUSE superblock magic as reported by statfs(2).
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// Flushes dirty data and drops the page, dentry and inode caches.
pub fn drop_caches() -> Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("writing /proc/sys/vm/drop_caches")?;
    Ok(())
}

/// The filesystem magic of `path`.
pub fn fs_magic(path: &Path) -> Result<i64> {
    let st =
        nix::sys::statfs::statfs(path).with_context(|| format!("statfs {}", path.display()))?;
    Ok(st.filesystem_type().0 as i64)
}

/// True when `path` is a mount point listed in /proc/self/mountinfo.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == wanted)
}

/// Mount points (from /proc/self/mountinfo) at or below `prefix`, deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = prefix.to_string_lossy().to_string();
    let mut out: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.len()));
    out
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Processes (other than us) whose argv contains `needle` as one whole argument.
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// True while /proc/PID exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(stat_field(&s, 3).as_deref(), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line; handles spaces in comm.
fn stat_field(stat: &str, n: usize) -> Option<String> {
    let close = stat.rfind(')')?;
    let rest = stat.get(close + 2..)?;
    // Field 3 (state) is the first after the comm.
    rest.split(' ').nth(n.checked_sub(3)?).map(str::to_string)
}

/// Peak resident set size (VmHWM) of PID in MiB.
pub fn vm_hwm_mib(pid: i32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmHWM:") {
            let kb: f64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .context("VmHWM value")?;
            return Ok(kb / 1024.0);
        }
    }
    bail!("no VmHWM in /proc/{pid}/status")
}

/// User+system CPU time of PID (all threads) in seconds.
pub fn cpu_seconds(pid: i32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let utime: f64 = stat_field(&stat, 14).context("utime")?.parse()?;
    let stime: f64 = stat_field(&stat, 15).context("stime")?.parse()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((utime + stime) / hz)
}

/// Runs a command to completion, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], but with stdout and stderr going to files in `dir` instead of pipes.
pub fn run_via_files(cmd: &mut Command, dir: &Path) -> Result<String> {
    let out_path = dir.join(".cmd.stdout");
    let err_path = dir.join(".cmd.stderr");
    let status = cmd
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .status()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
        bail!(
            "{cmd:?} failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(stdout)
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends SIGKILL to PID, ignoring a process that is already gone.
pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Disk usage in bytes of `path`, staying on one filesystem (skips mounts inside it).
pub fn disk_usage_bytes(path: &Path) -> Result<u64> {
    let out = run(Command::new("du").arg("-sxB1").arg(path))?;
    out.split_whitespace()
        .next()
        .context("du output")?
        .parse()
        .context("du number")
}

/// Bytes written to storage by reaped children of this process so far (ru_oublock * 512).
pub fn children_write_bytes() -> u64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => (u.block_writes().max(0) as u64) * 512,
        Err(_) => 0,
    }
}

/// First line of a command's combined output, or "unknown".
pub fn version_line(cmd: &mut Command) -> String {
    match cmd.output() {
        Ok(o) => {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown")
                .trim()
                .to_string()
        }
        Err(_) => "unknown".to_string(),
    }
}
