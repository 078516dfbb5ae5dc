//! The contenders (kernel overlayfs and FUSE mount programs), how to mount and unmount each,
//! and the daemon process behind a FUSE mount.

use crate::sys;
use anyhow::{bail, Context, Result};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a contender mounts an overlay.
#[derive(Debug, Clone)]
pub enum Kind {
    /// mount(2) of kernel overlayfs, as containers-storage does natively.
    Kernel,
    /// A mount program with fuse-overlayfs's command line: `BIN -o lowerdir=..,upperdir=..,workdir=.. MNT`.
    Fuse { bin: PathBuf },
}

/// One filesystem under test.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Short stable key (file names, JSON).
    pub key: String,
    /// Name shown in tables.
    pub name: String,
    pub kind: Kind,
    pub version: String,
}

impl Contender {
    pub fn is_fuse(&self) -> bool {
        matches!(self.kind, Kind::Fuse { .. })
    }

    pub fn mount_program(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Kernel => None,
            Kind::Fuse { bin } => Some(bin),
        }
    }
}

/// A lower stack, top layer first (kernel overlay order).
#[derive(Debug, Clone)]
pub struct Stack {
    /// Directory the layer names are relative to; the kernel mount is done from there so that a
    /// 100-layer option string stays under one page.
    pub base: PathBuf,
    pub layers: Vec<String>,
}

impl Stack {
    fn lowerdir_relative(&self) -> String {
        self.layers.join(":")
    }

    fn lowerdir_absolute(&self) -> String {
        self.layers
            .iter()
            .map(|l| self.base.join(l).to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Per-contender scratch directories: upper, work and the mount point, recreated per session.
#[derive(Debug, Clone)]
pub struct SessionDirs {
    pub root: PathBuf,
}

impl SessionDirs {
    pub fn upper(&self) -> PathBuf {
        self.root.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn mnt(&self) -> PathBuf {
        self.root.join("mnt")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// Empties upper and work and makes sure nothing is mounted on the mount point.
    pub fn reset(&self) -> Result<()> {
        for m in sys::mounts_under(&self.root) {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for d in [self.upper(), self.work()] {
            if d.exists() {
                std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
        for d in [self.upper(), self.work(), self.mnt()] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }
}

/// A live mount; unmounts (and reaps the daemon) on drop.
pub struct Mounted {
    pub mnt: PathBuf,
    pub daemon: Option<i32>,
    /// The mount program itself when it did not daemonize (still our child).
    foreground: Option<Child>,
    kernel: bool,
    done: bool,
}

impl Mounted {
    /// The FUSE connection number under /sys/fs/fuse/connections (anonymous device minor).
    pub fn fuse_connection(&self) -> Option<u64> {
        if self.kernel {
            return None;
        }
        nix::sys::stat::stat(&self.mnt).ok().map(|st| st.st_dev)
    }

    /// Unmounts as containers-storage does (fusermount3 -u, then a lazy unmount), waits for the
    /// daemon to exit and kills it if it lingers.
    pub fn unmount(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let mut problem = None;
        if self.kernel {
            if nix::mount::umount2(&self.mnt, nix::mount::MntFlags::empty()).is_err() {
                nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH)
                    .context("lazy unmount of kernel overlay")?;
            }
            return Ok(());
        }
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok && sys::is_mountpoint(&self.mnt) {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
            problem = Some("fusermount3 -u failed; lazily unmounted".to_string());
        }
        if let Some(pid) = self.daemon {
            if !sys::wait_until(Duration::from_secs(10), || !sys::pid_alive(pid)) {
                sys::kill9(pid);
                problem = Some(format!("daemon {pid} did not exit after unmount; killed"));
            }
        }
        if let Some(mut child) = self.foreground.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        match problem {
            Some(p) => bail!(p),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("[bench] cleanup of {}: {e:#}", self.mnt.display());
        }
    }
}

/// Mounts `stack` for `contender` on fresh session dirs; returns the mount and the time until
/// it was usable (for a mount program: until it exited 0 with the FUSE mount live).
pub fn mount(
    contender: &Contender,
    stack: &Stack,
    dirs: &SessionDirs,
) -> Result<(Mounted, Duration)> {
    dirs.reset()?;
    let mnt = dirs.mnt();
    match &contender.kind {
        Kind::Kernel => {
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                stack.lowerdir_relative(),
                dirs.upper().display(),
                dirs.work().display()
            );
            let old_cwd = std::env::current_dir()?;
            std::env::set_current_dir(&stack.base)?;
            let start = Instant::now();
            let res = nix::mount::mount(
                Some("overlay"),
                &mnt,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            );
            let took = start.elapsed();
            std::env::set_current_dir(old_cwd)?;
            res.with_context(|| format!("mount -t overlay ({} layers)", stack.layers.len()))?;
            let m = Mounted {
                mnt,
                daemon: None,
                foreground: None,
                kernel: true,
                done: false,
            };
            Ok((m, took))
        }
        Kind::Fuse { bin } => {
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                stack.lowerdir_absolute(),
                dirs.upper().display(),
                dirs.work().display()
            );
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dirs.log())?;
            let start = Instant::now();
            let mut child = Command::new(bin)
                .arg("-o")
                .arg(&opts)
                .arg(&mnt)
                .current_dir(&stack.base)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {}", bin.display()))?;
            let mut exited_ok = false;
            let mut live_at: Option<Instant> = None;
            let took = loop {
                if !exited_ok {
                    if let Some(status) = child.try_wait()? {
                        if !status.success() {
                            bail!(
                                "{} exited {status}: {}",
                                bin.display(),
                                log_tail(&dirs.log())
                            );
                        }
                        exited_ok = true;
                    }
                }
                let live = sys::fs_magic(&mnt)
                    .map(|m| m == sys::FUSE_SUPER_MAGIC)
                    .unwrap_or(false);
                if live && live_at.is_none() {
                    live_at = Some(Instant::now());
                }
                if live && exited_ok {
                    break start.elapsed();
                }
                if let Some(t) = live_at {
                    // Mounted but still in the foreground: accept, it is the daemon.
                    if t.elapsed() > Duration::from_secs(5) {
                        break t.duration_since(start);
                    }
                }
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    let _ = child.wait();
                    if sys::is_mountpoint(&mnt) {
                        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
                    }
                    bail!(
                        "{} did not mount within 30 s: {}",
                        bin.display(),
                        log_tail(&dirs.log())
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let mnt_arg = mnt.to_string_lossy().into_owned();
            let (daemon, foreground) = if exited_ok {
                (sys::pids_with_arg(&mnt_arg).into_iter().next(), None)
            } else {
                (Some(child.id() as i32), Some(child))
            };
            let m = Mounted {
                mnt,
                daemon,
                foreground,
                kernel: false,
                done: false,
            };
            Ok((m, took))
        }
    }
}

/// Last lines of a daemon log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}
