//! Mounting the two sides: kernel overlayfs (the oracle) and a candidate mount program
//! driven exactly as containers-storage drives one. Guards unmount (and reap the candidate
//! daemon) on drop, also when a test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::sys;

/// Layer directories of one side.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Lower layers, topmost first.
    pub lowers: Vec<PathBuf>,
    /// None = read-only mount.
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub mountpoint: PathBuf,
    /// Mount options both sides get after the directories (and after [`KERNEL_OPTS`] on
    /// the kernel side: a later option wins there), e.g. `redirect_dir=off`.
    pub options: Vec<String>,
}

impl Dirs {
    fn lowerdir(&self) -> String {
        self.lowers
            .iter()
            .map(|p| p.to_string_lossy().replace(':', "\\:"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Kernel overlay mount options besides the dirs.
///
/// `redirect_dir=on` makes renaming a lower directory work (a redirect xattr in the upper)
/// as the issue requires; `index=on` keeps hard links one inode after copy-up of one of
/// their names (without it kernel overlay breaks the link on copy-up); the candidate must do
/// both. `index=on` needs no NFS export and works on the ext4 /var/tmp used here.
pub const KERNEL_OPTS: &str = "redirect_dir=on,index=on";

fn is_mounted(mp: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mp.to_string_lossy().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(want.as_str()))
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn fs_type(mp: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.to_string_lossy().to_string();
    info.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        if fields.get(4).map(|s| unescape_mountinfo(s)).as_deref() != Some(want.as_str()) {
            return None;
        }
        let sep = fields.iter().position(|f| *f == "-")?;
        fields.get(sep + 1).map(|s| s.to_string())
    })
}

fn unmount(mp: &Path) -> Result<()> {
    let quiet = |c: &mut Command| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    };
    // A plain unmount can fail transiently (EBUSY while another process on the machine
    // briefly looks into the tree); retry before detaching lazily, because a lazily
    // detached overlay keeps its upper/work dirs locked until the last user goes away.
    for attempt in 0..20 {
        if !is_mounted(mp) {
            return Ok(());
        }
        let fuse = fs_type(mp).is_some_and(|t| t.starts_with("fuse"));
        if fuse && quiet(Command::new("fusermount3").arg("-u").arg(mp)).is_ok_and(|s| s.success()) {
            return Ok(());
        }
        if quiet(Command::new("umount").arg(mp)).is_ok_and(|s| s.success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
    }
    if quiet(Command::new("umount").arg("-l").arg(mp)).is_ok_and(|s| s.success()) {
        return Ok(());
    }
    bail!("could not unmount {}", mp.display())
}

/// Throwaway filesystems mounted for one session (a tmpfs, a loop-mounted ext4 image),
/// unmounted on drop, last first.
#[derive(Debug, Default)]
pub struct ScratchFs {
    mounted: Vec<PathBuf>,
}

fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl ScratchFs {
    /// Mounts a fresh tmpfs (user.* and trusted.* xattrs of any size up to 64 KiB) at `at`.
    pub fn tmpfs(&mut self, at: &Path) -> Result<()> {
        std::fs::create_dir_all(at)?;
        run_tool(
            "mount",
            &[
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                "size=256m".as_ref(),
                "tmpfs".as_ref(),
                at.as_os_str(),
            ],
        )?;
        self.mounted.push(at.to_path_buf());
        Ok(())
    }

    /// Makes a `size_mib` ext4 with 4 KiB blocks in the file `image` (mkfs.ext4, from
    /// e2fsprogs) and loop-mounts it at `at`. ext4 keeps an xattr value in one block, so
    /// a value above about 4 KiB does not fit (ENOSPC).
    pub fn ext4_image(&mut self, image: &Path, at: &Path, size_mib: u64) -> Result<()> {
        std::fs::File::create(image)
            .and_then(|f| f.set_len(size_mib << 20))
            .with_context(|| format!("creating {}", image.display()))?;
        run_tool(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-b".as_ref(),
                "4096".as_ref(),
                image.as_os_str(),
            ],
        )?;
        std::fs::create_dir_all(at)?;
        run_tool(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                at.as_os_str(),
            ],
        )?;
        self.mounted.push(at.to_path_buf());
        Ok(())
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        while let Some(mp) = self.mounted.pop() {
            let _ = unmount(&mp);
        }
    }
}

/// A kernel overlayfs mount.
#[derive(Debug)]
pub struct KernelMount {
    pub dirs: Dirs,
    mounted: bool,
}

impl KernelMount {
    pub fn mount(dirs: &Dirs) -> Result<Self> {
        let mut opts = format!("lowerdir={}", dirs.lowerdir());
        if let (Some(u), Some(w)) = (&dirs.upper, &dirs.work) {
            opts.push_str(&format!(
                ",upperdir={},workdir={},{KERNEL_OPTS}",
                u.display(),
                w.display()
            ));
        }
        for o in &dirs.options {
            opts.push(',');
            opts.push_str(o);
        }
        // Retried: right after an unmount the upper/work "in use" lock may not be released yet.
        let mut attempt = 0;
        loop {
            let out = Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&dirs.mountpoint)
                .output()
                .context("running mount -t overlay")?;
            if out.status.success() {
                break;
            }
            attempt += 1;
            if attempt >= 10 {
                bail!(
                    "kernel overlay mount failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100 * attempt));
        }
        Ok(KernelMount {
            dirs: dirs.clone(),
            mounted: true,
        })
    }

    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            self.mounted = false;
            unmount(&self.dirs.mountpoint)?;
        }
        Ok(())
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

/// `REBASEFS_BIN=kernel` runs the suites kernel-vs-kernel (a self-check of the harness).
pub const KERNEL_SELF_CHECK: &str = "kernel";

/// The candidate binary: `REBASEFS_BIN`, else `<workspace>/target/{release,debug}/rebasefs`.
pub fn candidate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REBASEFS_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t));
    }
    dirs.push(ws.join("target"));
    for d in &dirs {
        for profile in ["release", "debug"] {
            let p = d.join(profile).join("rebasefs");
            if p.is_file() {
                return p;
            }
        }
    }
    ws.join("target/release/rebasefs")
}

/// Processes whose command line names `mountpoint` (the daemonized mount program).
fn daemons_for(mountpoint: &Path) -> Vec<i32> {
    let want = mountpoint.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|arg| arg == want.as_slice()))
                .unwrap_or(false)
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie has exited; its parent (not us after daemonizing) reaps it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A candidate mount-program mount.
#[derive(Debug)]
pub struct CandidateMount {
    pub dirs: Dirs,
    pub daemons: Vec<i32>,
    mounted: bool,
}

impl CandidateMount {
    /// Runs `BIN -o lowerdir=..,upperdir=..,workdir=.. MOUNTPOINT` and waits for it to exit
    /// 0 with the mount live, as containers-storage does.
    pub fn mount(bin: &Path, dirs: &Dirs) -> Result<Self> {
        Self::mount_with(bin, dirs, None)
    }

    /// [`CandidateMount::mount`] with the program's RLIMIT_NOFILE set to `nofile`.
    pub fn mount_with(bin: &Path, dirs: &Dirs, nofile: Option<u64>) -> Result<Self> {
        if bin == Path::new(KERNEL_SELF_CHECK) {
            // Harness self-check: the "candidate" is kernel overlayfs itself, so every
            // reported divergence is a harness false positive.
            let mut k = KernelMount::mount(dirs)?;
            k.mounted = false;
            return Ok(CandidateMount {
                dirs: dirs.clone(),
                daemons: Vec::new(),
                mounted: true,
            });
        }
        let mut opts = format!("lowerdir={}", dirs.lowerdir());
        if let (Some(u), Some(w)) = (&dirs.upper, &dirs.work) {
            opts.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        for o in &dirs.options {
            opts.push(',');
            opts.push_str(o);
        }
        // stderr goes to a file: a daemon that keeps it open must not block us.
        let log = dirs.mountpoint.with_extension("stderr");
        let mut cmd = Command::new(bin);
        cmd.arg("-o")
            .arg(&opts)
            .arg(&dirs.mountpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(&log)
                    .with_context(|| format!("creating {}", log.display()))?,
            );
        if let Some(n) = nofile {
            sys::limit_nofile_in_child(&mut cmd, n);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let mut g = CandidateMount {
                    dirs: dirs.clone(),
                    daemons: daemons_for(&dirs.mountpoint),
                    mounted: true,
                };
                let _ = g.unmount();
                bail!("{} did not exit within 30 s of mounting", bin.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let mut guard = CandidateMount {
            dirs: dirs.clone(),
            daemons: daemons_for(&dirs.mountpoint),
            mounted: true,
        };
        if !status.success() {
            let _ = guard.unmount();
            bail!("{} exited with {status}: {}", bin.display(), stderr.trim());
        }
        if !is_mounted(&dirs.mountpoint) {
            let _ = guard.unmount();
            bail!(
                "{} exited 0 but {} is not mounted",
                bin.display(),
                dirs.mountpoint.display()
            );
        }
        Ok(guard)
    }

    /// Unmounts and checks that the daemon exits by itself (killing it if not, with an error).
    pub fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        let r = unmount(&self.dirs.mountpoint);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.daemons.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left: Vec<i32> = self.daemons.iter().copied().filter(|p| alive(*p)).collect();
        for p in &left {
            let _ = sys::kill(*p, libc::SIGKILL);
        }
        r?;
        if !left.is_empty() {
            bail!("mount program daemon(s) {left:?} still running 10 s after unmount (killed)");
        }
        Ok(())
    }
}

impl Drop for CandidateMount {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}
