//! The mount-program contract of the built binary (`REBASEFS_BIN`, default the workspace's
//! rebasefs), driven the way containers-storage and people drive it: exit 0 only once the
//! mount is live; bad input is one line on stderr, exit 2, nothing mounted, no daemon left;
//! both lower path forms, escapes and quoting; every unmount style ends the daemon;
//! the daemon's descriptors stay bounded however many files the kernel caches.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use rebasefs_tests::diff::sys::{hard_nofile, limit_nofile_in_child};
use rebasefs_tests::podman::host::{self, CommandOutput};
use rebasefs_tests::podman::mount_program;

/// A scratch tree with layers and a mountpoint; unmounts and kills what is left on drop.
struct Scratch {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Scratch {
    fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rebasefs-cli-")
            .tempdir()
            .context("creating a scratch dir")?;
        for sub in ["lower1", "lower2", "upper", "work", "mnt", "out"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::write(dir.path().join("lower2/base.txt"), "base\n")?;
        std::fs::write(dir.path().join("lower2/shadowed.txt"), "lower2\n")?;
        std::fs::write(dir.path().join("lower1/shadowed.txt"), "lower1\n")?;
        std::fs::write(dir.path().join("lower1/top.txt"), "top\n")?;
        Ok(Self {
            dir,
            bin: mount_program()?,
        })
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn mnt(&self) -> PathBuf {
        self.path("mnt")
    }

    /// The standard read-write option string over lower1:lower2.
    fn rw_options(&self) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.path("lower1").display(),
            self.path("lower2").display(),
            self.path("upper").display(),
            self.path("work").display()
        )
    }

    /// Runs the mount program with `args` in `cwd`.
    fn run(&self, args: &[&str], cwd: &Path) -> Result<CommandOutput> {
        self.run_limited(args, cwd, None)
    }

    /// [`Scratch::run`] with RLIMIT_NOFILE (soft = hard) set to `nofile` for the program
    /// and so for its daemon.
    fn run_limited(&self, args: &[&str], cwd: &Path, nofile: Option<u64>) -> Result<CommandOutput> {
        let mut command = Command::new(&self.bin);
        command.args(args).current_dir(cwd);
        if let Some(limit) = nofile {
            limit_nofile_in_child(&mut command, limit);
        }
        host::run_with_timeout(command, Duration::from_secs(30), &self.path("out"))
    }

    /// Mounts [`Scratch::rw_options`] on the mountpoint with the program's RLIMIT_NOFILE
    /// set to `nofile`; returns the mountpoint.
    fn mount_rw_with_nofile(&self, nofile: u64) -> Result<PathBuf> {
        let mnt = self.mnt();
        let args = ["-o", &self.rw_options(), &mnt.display().to_string()];
        let output = self.run_limited(&args, Path::new("/"), Some(nofile))?;
        ensure!(output.success(), "mount failed: {output:?}");
        Ok(mnt)
    }

    /// Descriptors the (single) daemon serving this scratch tree has open.
    fn daemon_fds(&self) -> Result<usize> {
        let daemons = self.daemons();
        let [daemon] = daemons.as_slice() else {
            bail!("expected one daemon, found {daemons:?}");
        };
        Ok(std::fs::read_dir(format!("/proc/{}/fd", daemon.pid))
            .context("listing the daemon's descriptors")?
            .count())
    }

    fn mounts(&self) -> Vec<host::MountEntry> {
        host::mounts_under(self.dir.path()).unwrap_or_default()
    }

    fn daemons(&self) -> Vec<host::ProcessInfo> {
        host::processes_mentioning(&self.dir.path().to_string_lossy())
            .into_iter()
            .filter(|p| p.exe.as_deref() == Some(self.bin.as_path()))
            .collect()
    }

    /// Waits until nothing of this scratch tree is mounted or served.
    fn assert_nothing_left(&self) -> Result<()> {
        let mounts = host::wait_until_empty(Duration::from_secs(10), || self.mounts());
        let daemons = host::wait_until_empty(Duration::from_secs(10), || self.daemons());
        ensure!(
            mounts.is_empty() && daemons.is_empty(),
            "left behind: mounts {mounts:?}, daemons {daemons:?}"
        );
        Ok(())
    }

    fn assert_mounted(&self) -> Result<host::MountEntry> {
        let entry = self
            .mounts()
            .into_iter()
            .rfind(|m| m.mount_point == self.mnt())
            .context("the mountpoint is not mounted")?;
        ensure!(
            entry.fs_type.starts_with("fuse"),
            "not a FUSE mount: {}",
            entry.line
        );
        ensure!(!self.daemons().is_empty(), "mounted but no daemon runs");
        Ok(entry)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        host::unmount_all_under(self.dir.path());
        host::kill_all(&self.daemons());
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(())
}

#[test]
fn help_and_version_exit_zero() -> Result<()> {
    let scratch = Scratch::new()?;
    let help = scratch.run(&["--help"], scratch.dir.path())?;
    ensure!(
        help.success() && help.stdout.contains("lowerdir="),
        "{help:?}"
    );
    let version = scratch.run(&["--version"], scratch.dir.path())?;
    ensure!(
        version.success() && version.stdout.starts_with("rebasefs "),
        "{version:?}"
    );
    Ok(())
}

#[test]
fn bad_invocations_fail_with_one_line_and_leave_nothing() -> Result<()> {
    let scratch = Scratch::new()?;
    std::fs::write(scratch.path("a-file"), "x")?;
    let lower = scratch.path("lower1").display().to_string();
    let lower2 = scratch.path("lower2").display().to_string();
    let mnt = scratch.mnt().display().to_string();
    let upper = scratch.path("upper").display().to_string();
    let work = scratch.path("work").display().to_string();
    // Overlapping layouts kernel overlayfs refuses (see overlapping_layers_*).
    for dir in ["upper/in-upper", "work/in-work", "lower1/in-lower", "mnt2"] {
        std::fs::create_dir_all(scratch.path(dir))?;
    }
    std::os::unix::fs::symlink(scratch.path("lower1"), scratch.path("lower1-link"))?;
    let inside = |d: &str| scratch.path(d).display().to_string();
    let overlapping = |what: &'static str, o: String| (what, vec!["-o".into(), o, mnt.clone()]);
    let cases: Vec<(&str, Vec<String>)> = vec![
        overlapping(
            "same lowerdir twice",
            format!("lowerdir={lower}:{lower2}:{lower}"),
        ),
        overlapping(
            "same lowerdir twice through a symlink",
            format!("lowerdir={lower}:{}", inside("lower1-link")),
        ),
        overlapping(
            "upperdir is a lowerdir",
            format!("lowerdir={lower},upperdir={lower},workdir={work}"),
        ),
        overlapping(
            "workdir is a lowerdir",
            format!("lowerdir={lower2},upperdir={upper},workdir={lower2}"),
        ),
        overlapping(
            "upperdir inside workdir",
            format!(
                "lowerdir={lower},upperdir={},workdir={work}",
                inside("work/in-work")
            ),
        ),
        overlapping(
            "workdir inside upperdir",
            format!(
                "lowerdir={lower},upperdir={upper},workdir={}",
                inside("upper/in-upper")
            ),
        ),
        overlapping(
            "lowerdir inside upperdir",
            format!(
                "lowerdir={},upperdir={upper},workdir={work}",
                inside("upper/in-upper")
            ),
        ),
        overlapping(
            "lowerdir inside workdir",
            format!(
                "lowerdir={},upperdir={upper},workdir={work}",
                inside("work/in-work")
            ),
        ),
        overlapping(
            "lowerdir inside a lowerdir",
            format!("lowerdir={}:{lower}", inside("lower1/in-lower")),
        ),
        (
            "two mountpoints",
            vec![
                "-o".into(),
                format!("lowerdir={lower}"),
                inside("mnt2"),
                mnt.clone(),
            ],
        ),
        ("no options", vec![mnt.clone()]),
        (
            "no mountpoint",
            vec!["-o".into(), format!("lowerdir={lower}")],
        ),
        (
            "missing lowerdir",
            vec![
                "-o".into(),
                format!("upperdir={upper},workdir={work}"),
                mnt.clone(),
            ],
        ),
        (
            "missing layer",
            vec![
                "-o".into(),
                format!("lowerdir={lower}:/nonexistent/layer"),
                mnt.clone(),
            ],
        ),
        (
            "layer is a file",
            vec![
                "-o".into(),
                format!("lowerdir={}", scratch.path("a-file").display()),
                mnt.clone(),
            ],
        ),
        (
            "missing mountpoint",
            vec![
                "-o".into(),
                format!("lowerdir={lower}"),
                scratch.path("no-such-mnt").display().to_string(),
            ],
        ),
        (
            "upperdir without workdir",
            vec![
                "-o".into(),
                format!("lowerdir={lower},upperdir={upper}"),
                mnt.clone(),
            ],
        ),
        (
            "missing upperdir",
            vec![
                "-o".into(),
                format!("lowerdir={lower},upperdir=/nonexistent/u,workdir={work}"),
                mnt.clone(),
            ],
        ),
        (
            "bad uidmapping",
            vec![
                "-o".into(),
                format!("lowerdir={lower},uidmapping=0:1"),
                mnt.clone(),
            ],
        ),
        (
            "bad xattr_permissions",
            vec![
                "-o".into(),
                format!("lowerdir={lower},xattr_permissions=7"),
                mnt.clone(),
            ],
        ),
        (
            "unbalanced quote",
            vec![
                "-o".into(),
                format!("lowerdir={lower},context=\"a,b"),
                mnt.clone(),
            ],
        ),
        (
            "unknown flag",
            vec![
                "-x".into(),
                "-o".into(),
                format!("lowerdir={lower}"),
                mnt.clone(),
            ],
        ),
    ];
    for (what, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = scratch.run(&args, scratch.dir.path())?;
        ensure!(
            output.status.code() == Some(2),
            "{what}: exit {:?}, stderr {:?}",
            output.status.code(),
            output.stderr
        );
        let lines: Vec<&str> = output.stderr.lines().collect();
        ensure!(
            lines.len() == 1 && lines.first().is_some_and(|l| l.starts_with("rebasefs: ")),
            "{what}: stderr must be one rebasefs line, got {:?}",
            output.stderr
        );
        ensure!(scratch.mounts().is_empty(), "{what}: something got mounted");
    }
    scratch.assert_nothing_left()
}

#[test]
fn daemonizes_only_once_live_and_fusermount_ends_it() -> Result<()> {
    let scratch = Scratch::new()?;
    let options = scratch.rw_options();
    let mnt = scratch.mnt().display().to_string();
    let output = scratch.run(&["-o", &options, &mnt], Path::new("/"))?;
    ensure!(output.success(), "mount failed: {output:?}");
    // Exit 0 means live: no polling allowed here.
    scratch.assert_mounted()?;
    assert_eq!(read(&scratch.mnt().join("shadowed.txt"))?, "lower1\n");
    assert_eq!(read(&scratch.mnt().join("base.txt"))?, "base\n");
    std::fs::write(scratch.mnt().join("new.txt"), "new\n")?;
    assert_eq!(read(&scratch.path("upper/new.txt"))?, "new\n");
    run_tool("fusermount3", &["-u", &mnt])?;
    scratch.assert_nothing_left()
}

#[test]
fn umount_lazy_umount_and_sigterm_end_the_daemon() -> Result<()> {
    let scratch = Scratch::new()?;
    let options = scratch.rw_options();
    let mnt = scratch.mnt().display().to_string();
    for style in ["umount", "umount -l", "SIGTERM"] {
        let output = scratch.run(&["-o", &options, &mnt], Path::new("/"))?;
        ensure!(output.success(), "{style}: mount failed: {output:?}");
        scratch.assert_mounted()?;
        match style {
            "umount" => run_tool("umount", &[&mnt])?,
            "umount -l" => run_tool("umount", &["-l", &mnt])?,
            _ => {
                for daemon in scratch.daemons() {
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(daemon.pid),
                        nix::sys::signal::Signal::SIGTERM,
                    )?;
                }
            }
        }
        scratch
            .assert_nothing_left()
            .with_context(|| format!("after {style}"))?;
    }
    Ok(())
}

#[test]
fn foreground_mode_exits_zero_when_unmounted() -> Result<()> {
    let scratch = Scratch::new()?;
    let options = scratch.rw_options();
    let mut child = Command::new(&scratch.bin)
        .args(["-f", "-o", &options])
        .arg(scratch.mnt())
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("starting rebasefs -f")?;
    let mounted = host::wait_until_empty(Duration::from_secs(20), || {
        if scratch.mounts().is_empty() {
            vec![()]
        } else {
            Vec::new()
        }
    });
    if !mounted.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        bail!("rebasefs -f did not mount within 20s");
    }
    ensure!(
        child.try_wait()?.is_none(),
        "rebasefs -f returned while mounted"
    );
    assert_eq!(read(&scratch.mnt().join("top.txt"))?, "top\n");
    run_tool("fusermount3", &["-u", &scratch.mnt().display().to_string()])?;
    let status = child.wait()?;
    ensure!(status.success(), "rebasefs -f exited with {status}");
    scratch.assert_nothing_left()
}

#[test]
fn containers_storage_layer_forms_escapes_and_options() -> Result<()> {
    let scratch = Scratch::new()?;
    // <home>/<id>/diff layers with l/<short> links, as containers-storage lays them out.
    let home = scratch.path("overlay");
    for (id, file) in [("aaa", "from-aaa"), ("b:b", "from-bb")] {
        let diff = home.join(id).join("diff");
        std::fs::create_dir_all(&diff)?;
        std::fs::write(diff.join(file), format!("{id}\n"))?;
    }
    std::fs::create_dir_all(home.join("l"))?;
    std::os::unix::fs::symlink("../aaa/diff", home.join("l/SHORTA"))?;
    std::fs::create_dir_all(home.join("ctr/diff"))?;
    std::fs::create_dir_all(home.join("ctr/work"))?;
    std::fs::create_dir_all(home.join("ctr/merged"))?;
    // Relative short link (cwd = <home>), then a full path with an escaped colon.
    let options = format!(
        "lowerdir=l/SHORTA:{}/b\\:b/diff,upperdir={}/ctr/diff,workdir={}/ctr/work,\
         context=\"system_u:object_r:container_file_t:s0:c1,c2\",xattr_permissions=0,volatile,\
         fsync=0,timeout=1,rw,dev,suid,exec,noatime,allow_other,default_permissions,some_future_option=1",
        home.display(),
        home.display(),
        home.display()
    );
    let output = scratch.run(&["-o", &options, "ctr/merged"], &home)?;
    ensure!(output.success(), "mount failed: {output:?}");
    ensure!(
        output.stderr.lines().count() == 1 && output.stderr.contains("some_future_option"),
        "expected one warning about the unknown option, got {:?}",
        output.stderr
    );
    let merged = home.join("ctr/merged");
    assert_eq!(read(&merged.join("from-aaa"))?, "aaa\n");
    assert_eq!(read(&merged.join("from-bb"))?, "b:b\n");
    run_tool("fusermount3", &["-u", &merged.display().to_string()])?;
    scratch.assert_nothing_left()
}

#[test]
fn no_upperdir_is_read_only() -> Result<()> {
    let scratch = Scratch::new()?;
    let options = format!(
        "lowerdir={}:{}",
        scratch.path("lower1").display(),
        scratch.path("lower2").display()
    );
    let mnt = scratch.mnt().display().to_string();
    let output = scratch.run(&["-o", &options, &mnt], Path::new("/"))?;
    ensure!(output.success(), "mount failed: {output:?}");
    assert_eq!(read(&scratch.mnt().join("shadowed.txt"))?, "lower1\n");
    match std::fs::write(scratch.mnt().join("x"), "x") {
        Ok(()) => bail!("wrote into a mount without upperdir"),
        Err(error) => ensure!(
            error.raw_os_error() == Some(libc::EROFS),
            "expected EROFS, got {error}"
        ),
    }
    run_tool("fusermount3", &["-u", &mnt])?;
    scratch.assert_nothing_left()
}

/// Creates `dir/t{from..to}` through the mount, each closed again, as a container
/// creating many files does (the kernel keeps every new inode cached).
fn create_files(dir: &Path, from: usize, to: usize, content: bool) -> Result<()> {
    for i in from..to {
        let path = dir.join(format!("t{i}"));
        let text = if content {
            format!("file {i}\n")
        } else {
            String::new()
        };
        std::fs::write(&path, text).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// Under the RLIMIT_NOFILE the issue met (20,000), 100,000 created files (each kept in the
/// kernel's inode cache) do not exhaust the daemon's descriptors: a lower file stays
/// readable, the daemon stays below its limit. (It used to hold one fd per cached inode and
/// answered EMFILE to everything from about 20,000 files on.)
#[test]
fn descriptors_stay_bounded_with_100k_cached_inodes() -> Result<()> {
    let scratch = Scratch::new()?;
    let limit = hard_nofile()
        .map_err(std::io::Error::from_raw_os_error)?
        .min(20_000);
    let mnt = scratch.mount_rw_with_nofile(limit)?;
    for (from, to) in [(0, 30_000), (30_000, 100_000)] {
        create_files(&mnt, from, to, false)?;
        assert_eq!(
            read(&mnt.join("base.txt"))?,
            "base\n",
            "lower file after {to} files"
        );
        let fds = scratch.daemon_fds()?;
        eprintln!("daemon holds {fds} descriptors after {to} created files (limit {limit})");
        ensure!(
            fds < limit as usize,
            "{fds} descriptors open, limit {limit}"
        );
    }
    let names = std::fs::read_dir(&mnt)?.count();
    ensure!(names == 100_000 + 3, "readdir shows {names} names");
    for i in (0..100_000).step_by(997) {
        std::fs::metadata(mnt.join(format!("t{i}")))?;
    }
    run_tool("fusermount3", &["-u", &mnt.display().to_string()])?;
    scratch.assert_nothing_left()
}

/// A daemon started with RLIMIT_NOFILE 64 serves 5,000 files: create, then stat and read
/// every one, with a few files held open meanwhile (open files need an fd each; cached
/// resolutions give way). It used to fail after about 50 files.
#[test]
fn daemon_under_nofile_64_serves_5000_files() -> Result<()> {
    const LIMIT: u64 = 64;
    let scratch = Scratch::new()?;
    let mnt = scratch.mount_rw_with_nofile(LIMIT)?;
    create_files(&mnt, 0, 5_000, true)?;
    let kept_open: Vec<std::fs::File> = (0..8)
        .map(|i| std::fs::File::open(mnt.join(format!("t{i}"))))
        .collect::<std::io::Result<_>>()
        .context("holding files open")?;
    for i in 0..5_000 {
        let path = mnt.join(format!("t{i}"));
        let md = std::fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        ensure!(md.is_file(), "{} is not a file", path.display());
        ensure!(
            read(&path)? == format!("file {i}\n"),
            "{} has other content",
            path.display()
        );
    }
    assert_eq!(read(&mnt.join("shadowed.txt"))?, "lower1\n");
    let fds = scratch.daemon_fds()?;
    eprintln!("daemon holds {fds} descriptors under RLIMIT_NOFILE {LIMIT}");
    ensure!(
        fds <= LIMIT as usize,
        "{fds} descriptors open, limit {LIMIT}"
    );
    drop(kept_open);
    run_tool("fusermount3", &["-u", &mnt.display().to_string()])?;
    scratch.assert_nothing_left()
}

/// What `stat` of each path under `root` gives: "ok" or the errno name.
fn stat_outcomes(root: &Path, paths: &[&str]) -> Vec<String> {
    paths
        .iter()
        .map(|p| match std::fs::symlink_metadata(root.join(p)) {
            Ok(_) => format!("{p}: ok"),
            Err(e) => format!("{p}: errno {}", e.raw_os_error().unwrap_or(0)),
        })
        .collect()
}

/// Kernel overlayfs mounts an upperdir and workdir inside a lowerdir but answers ELOOP for
/// them in the merged tree (they are "traps"); rebasefs does the same, checked against a
/// kernel mount of the same layout.
#[test]
fn overlapping_layers_upper_inside_a_lowerdir_mounts_and_traps_like_the_kernel() -> Result<()> {
    let scratch = Scratch::new()?;
    let paths = ["sub", "sub/up", "sub/wk", "top.txt", "sub/up/x"];
    let mut seen = Vec::new();
    for side in ["kernel", "rebasefs"] {
        let lower = scratch.path(&format!("{side}/lower"));
        for dir in ["sub/up", "sub/wk"] {
            std::fs::create_dir_all(lower.join(dir))?;
        }
        std::fs::write(lower.join("top.txt"), "top\n")?;
        let mnt = scratch.path(&format!("{side}/mnt"));
        std::fs::create_dir_all(&mnt)?;
        let options = format!(
            "lowerdir={0},upperdir={0}/sub/up,workdir={0}/sub/wk",
            lower.display()
        );
        let mnt_arg = mnt.display().to_string();
        if side == "kernel" {
            run_tool(
                "mount",
                &["-t", "overlay", "overlay", "-o", &options, &mnt_arg],
            )?;
        } else {
            let output = scratch.run(&["-o", &options, &mnt_arg], Path::new("/"))?;
            ensure!(
                output.success(),
                "rebasefs refused what the kernel mounts: {output:?}"
            );
        }
        std::fs::write(mnt.join("new.txt"), "new\n")?;
        let outcomes = stat_outcomes(&mnt, &paths);
        ensure!(
            read(&lower.join("sub/up/new.txt"))? == "new\n",
            "{side}: a write did not land in the upperdir"
        );
        let unmount = if side == "kernel" {
            "umount"
        } else {
            "fusermount3"
        };
        let args: &[&str] = if side == "kernel" {
            &[&mnt_arg]
        } else {
            &["-u", &mnt_arg]
        };
        run_tool(unmount, args)?;
        seen.push(outcomes);
    }
    ensure!(
        seen[0]
            .iter()
            .any(|o| o == &format!("sub/up: errno {}", libc::ELOOP)),
        "the kernel does not trap the upperdir as assumed: {:?}",
        seen[0]
    );
    ensure!(
        seen[0] == seen[1],
        "kernel {:?} vs rebasefs {:?}",
        seen[0],
        seen[1]
    );
    scratch.assert_nothing_left()
}

/// containers-storage's image mount: `lowerdir=` of `l/<short>` links (relative, cwd =
/// `<home>`) and `<id>/diff` paths, no upperdir; the overlap checks compare the directories
/// the links resolve to, so distinct layers pass.
#[test]
fn image_mount_form_with_short_links_passes_the_overlap_checks() -> Result<()> {
    let scratch = Scratch::new()?;
    let home = scratch.path("overlay");
    for (id, short) in [("aaa", "A"), ("bbb", "B"), ("ccc", "C")] {
        std::fs::create_dir_all(home.join(id).join("diff"))?;
        std::fs::write(home.join(id).join("diff").join(id), format!("{id}\n"))?;
        std::fs::create_dir_all(home.join("l"))?;
        std::os::unix::fs::symlink(format!("../{id}/diff"), home.join("l").join(short))?;
    }
    let mnt = home.join("image-merged");
    std::fs::create_dir_all(&mnt)?;
    let options = format!("lowerdir=l/A:l/B:{}/ccc/diff", home.display());
    let output = scratch.run(&["-o", &options, "image-merged"], &home)?;
    ensure!(output.success(), "image mount failed: {output:?}");
    for id in ["aaa", "bbb", "ccc"] {
        assert_eq!(read(&mnt.join(id))?, format!("{id}\n"));
    }
    run_tool("fusermount3", &["-u", &mnt.display().to_string()])?;
    scratch.assert_nothing_left()
}

/// SIGKILLs every daemon of this scratch tree and waits until they are gone.
fn kill_daemons(scratch: &Scratch) -> Result<()> {
    for daemon in scratch.daemons() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
    }
    let left = host::wait_until_empty(Duration::from_secs(10), || scratch.daemons());
    ensure!(left.is_empty(), "daemons survived SIGKILL: {left:?}");
    Ok(())
}

#[test]
fn a_dead_mount_of_ours_on_the_mountpoint_is_detached_before_mounting_again() -> Result<()> {
    let scratch = Scratch::new()?;
    let options = scratch.rw_options();
    let mnt = scratch.mnt().display().to_string();
    for round in 0..3 {
        let output = scratch.run(&["-o", &options, &mnt], Path::new("/"))?;
        ensure!(output.success(), "round {round}: mount failed: {output:?}");
        let file = scratch.mnt().join(format!("synced-{round}"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&file)?;
            f.write_all(format!("round {round}\n").as_bytes())?;
            f.sync_all()?;
        }
        kill_daemons(&scratch)?;
        let dead = std::fs::metadata(scratch.mnt()).map(|_| ());
        ensure!(
            matches!(
                dead.as_ref().err().and_then(|e| e.raw_os_error()),
                Some(libc::ENOTCONN | libc::ECONNABORTED)
            ),
            "round {round}: a killed daemon's mount answers {dead:?}"
        );
    }
    // The fourth mount detaches the third's dead mount; the earlier ones were detached too,
    // so exactly one mount is left, live, with every fsynced file.
    let output = scratch.run(&["-o", &options, &mnt], Path::new("/"))?;
    ensure!(
        output.success(),
        "mount over a dead mount failed: {output:?}"
    );
    let at_mnt = scratch
        .mounts()
        .into_iter()
        .filter(|m| m.mount_point == scratch.mnt())
        .count();
    ensure!(at_mnt == 1, "{at_mnt} mounts stacked on the mountpoint");
    for round in 0..3 {
        assert_eq!(
            read(&scratch.mnt().join(format!("synced-{round}")))?,
            format!("round {round}\n")
        );
    }
    run_tool("umount", &[&mnt])?;
    scratch.assert_nothing_left()
}

#[test]
fn a_dead_mount_of_another_filesystem_is_left_alone() -> Result<()> {
    let scratch = Scratch::new()?;
    let mnt = scratch.mnt().display().to_string();
    let fo = Command::new("fuse-overlayfs")
        .args([
            "-o",
            &format!("lowerdir={}", scratch.path("lower2").display()),
            &mnt,
        ])
        .status()
        .context("running fuse-overlayfs")?;
    ensure!(fo.success(), "fuse-overlayfs failed: {fo}");
    let theirs: Vec<_> = host::processes_mentioning(&mnt)
        .into_iter()
        .filter(|p| p.cmdline.starts_with("fuse-overlayfs"))
        .collect();
    ensure!(!theirs.is_empty(), "no fuse-overlayfs daemon");
    host::kill_all(&theirs);
    host::wait_until_empty(Duration::from_secs(10), || {
        host::processes_mentioning(&mnt)
            .into_iter()
            .filter(|p| p.cmdline.starts_with("fuse-overlayfs"))
            .collect()
    });
    let output = scratch.run(&["-o", &scratch.rw_options(), &mnt], Path::new("/"))?;
    ensure!(
        !output.success(),
        "mounted over a dead fuse-overlayfs mount"
    );
    ensure!(
        output.stderr.trim().lines().count() == 1 && output.stderr.contains("not connected"),
        "not one line naming the dead mount: {:?}",
        output.stderr
    );
    let kinds: Vec<String> = scratch.mounts().into_iter().map(|m| m.fs_type).collect();
    ensure!(kinds == ["fuse.fuse-overlayfs"], "mounts now: {kinds:?}");
    Ok(())
}
