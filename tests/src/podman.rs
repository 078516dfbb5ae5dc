//! A real Podman on a throwaway store whose overlay driver uses a mount program.
//!
//! [`Podman`] runs `podman --root R --runroot RR --tmpdir T --storage-driver overlay
//! --storage-opt overlay.mount_program=BIN ...` on a [`store::Store`] (the throwaway store
//! the bench uses too) with `tests/containers.conf`. [`Podman::finish`] removes containers
//! and image mounts and fails if a mount of the store or a process mentioning it is left;
//! `Drop` cleans up by force (lazy unmount, SIGKILL) whatever a failing test left behind.

pub mod host;
pub mod images;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

pub use host::{CommandOutput, MountEntry, ProcessInfo};
pub use store::Store;

/// Any single podman command taking longer than this is a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the mount program may take to exit after its mount is gone.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// The workspace root (parent of the tests crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The mount program under test: `REBASEFS_BIN`, else the workspace's release build,
/// else its debug build.
pub fn mount_program() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("REBASEFS_BIN") {
        return std::fs::canonicalize(&path)
            .with_context(|| format!("REBASEFS_BIN={}", PathBuf::from(path).display()));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join("rebasefs");
        if candidate.is_file() {
            return std::fs::canonicalize(&candidate)
                .with_context(|| format!("resolving {}", candidate.display()));
        }
    }
    bail!(
        "no rebasefs binary in {}/{{release,debug}}: run `cargo build --release` or set REBASEFS_BIN",
        target.display()
    )
}

/// The project's hooks.d file (`hooks/rebasefs.json`) with `hook.path` set to `binary`.
pub fn hooks_d_json(binary: &Path) -> Result<String> {
    let mut hook: serde_json::Value =
        serde_json::from_str(include_str!("../../hooks/rebasefs.json"))
            .context("parsing hooks/rebasefs.json")?;
    *hook
        .pointer_mut("/hook/path")
        .context("hooks/rebasefs.json has no hook.path")? = serde_json::json!(binary);
    Ok(serde_json::to_string_pretty(&hook)?)
}

/// Podman on a private store; see the module docs.
pub struct Podman {
    dir: StoreDir,
    store: Store,
    mount_program: PathBuf,
    /// Where the store names its mount program; see [`Setup`].
    setup: Setup,
    finished: bool,
}

/// How a [`Podman`] store is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `--storage-opt overlay.mount_program=BIN` on every podman command line.
    CommandLine,
    /// The mount program in the store's storage.conf and `rebasefs hook` in its
    /// containers.conf, so any podman given only the two files (as `rebasefs auto-update`
    /// runs it) uses both.
    Configured,
    /// Kernel overlayfs, no mount program (a host without rebasefs).
    KernelOverlay,
}

impl Podman {
    /// A fresh store using [`mount_program`].
    pub fn new() -> Result<Self> {
        Self::with_mount_program(mount_program()?)
    }

    /// A fresh store using `mount_program`.
    pub fn with_mount_program(mount_program: PathBuf) -> Result<Self> {
        Self::with_setup(mount_program, Setup::CommandLine)
    }

    /// A fresh store set up as `setup` says (`rebasefs` = the binary under test).
    pub fn with_setup(rebasefs: PathBuf, setup: Setup) -> Result<Self> {
        let mount_program = rebasefs;
        let dir = StoreDir::create()?;
        for sub in ["tmp", "work"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        // The mount program goes on the command line, as containers-storage users pass it.
        let store = Store::create(
            dir.path(),
            &store::Config {
                mount_program: (setup == Setup::Configured).then_some(mount_program.as_path()),
                hook: (setup == Setup::Configured).then_some(mount_program.as_path()),
                runroot: None,
                containers_conf: store::TESTS_CONTAINERS_CONF,
            },
        )?;
        Ok(Self {
            dir,
            store,
            mount_program,
            setup,
            finished: false,
        })
    }

    /// The store's directory; every path and process of this store mentions it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containers-storage graph root.
    pub fn root(&self) -> PathBuf {
        self.store.root()
    }

    /// Scratch space for build contexts and files to copy.
    pub fn work(&self) -> PathBuf {
        self.dir().join("work")
    }

    pub fn mount_program_path(&self) -> &Path {
        &self.mount_program
    }

    /// `podman` with this store's global options and environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.store.command(Path::new("podman"));
        // `--root`, `--runroot` and `--storage-driver` make Podman ignore storage.conf's
        // options (mount_program): a configured store is named by its storage.conf only.
        if self.setup != Setup::Configured {
            command
                .arg("--root")
                .arg(self.root())
                .arg("--runroot")
                .arg(self.store.runroot())
                .args(["--storage-driver", "overlay"]);
        }
        command.arg("--tmpdir").arg(self.dir().join("tmp"));
        if self.setup == Setup::CommandLine {
            command.arg("--storage-opt").arg(format!(
                "overlay.mount_program={}",
                self.mount_program.display()
            ));
        }
        command
            .args(args)
            .env("TMPDIR", self.dir().join("tmp"))
            .current_dir(self.dir());
        command
    }

    /// Runs podman and returns what it printed, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<CommandOutput> {
        host::run_with_timeout(self.command(args), COMMAND_TIMEOUT, self.dir())
    }

    /// Runs podman, requires success, returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        if !output.success() {
            bail!(
                "podman {} failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                output.stdout,
                output.stderr
            );
        }
        Ok(output.stdout)
    }

    /// Runs podman, requires failure, returns stderr.
    pub fn run_failing(&self, args: &[&str]) -> Result<String> {
        let output = self.output(args)?;
        if output.success() {
            bail!(
                "podman {} succeeded but should fail:\n{}",
                args.join(" "),
                output.stdout
            );
        }
        Ok(output.stderr)
    }

    /// Imports the busybox-static base image ([`images::BASE_IMAGE`]).
    pub fn import_base_image(&self) -> Result<()> {
        let tar = images::base_rootfs_tar(&self.work())?;
        let tar = tar.to_string_lossy().into_owned();
        self.run(&[
            "import",
            "--change",
            "CMD=[\"/bin/sh\"]",
            &tar,
            images::BASE_IMAGE,
        ])?;
        Ok(())
    }

    /// Builds `tag` from `containerfile` with the context `files`.
    pub fn build(&self, tag: &str, containerfile: &str, files: &[(&str, &str)]) -> Result<()> {
        let context = self
            .work()
            .join(format!("context-{}", tag.replace(['/', ':'], "_")));
        std::fs::create_dir_all(&context)?;
        images::write_files(&context, files)?;
        std::fs::write(context.join("Containerfile"), containerfile)?;
        let context = context.to_string_lossy().into_owned();
        self.run(&[
            "build",
            "--quiet",
            "--network",
            "none",
            "--tag",
            tag,
            &context,
        ])?;
        Ok(())
    }

    /// Makes `to` from `from` plus one hand-made layer of `files` (names taken literally,
    /// so `.wh.` whiteouts and opaque markers go in as registry layers carry them).
    pub fn add_layer(&self, from: &str, to: &str, files: &[(&str, &str)]) -> Result<()> {
        let name = to.replace(['/', ':'], "_");
        let layout = self.work().join(format!("oci-{name}"));
        let layout_arg = layout.to_string_lossy().into_owned();
        self.run(&["save", "--format", "oci-dir", "--output", &layout_arg, from])?;
        let tar = images::layer_tar(&self.work(), &name, files)?;
        images::append_layer_to_oci_layout(&layout, &tar, &format!("rebasefs e2e layer {name}"))?;
        let pulled = self.run(&["pull", "--quiet", &format!("oci:{layout_arg}")])?;
        let id = pulled
            .lines()
            .last()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .with_context(|| format!("podman pull printed no image id: {pulled:?}"))?;
        self.run(&["tag", id, to])?;
        Ok(())
    }

    /// Imports the base, adds the patch layer and builds the app image
    /// ([`images::APP_IMAGE`]).
    pub fn build_sample_images(&self) -> Result<()> {
        self.import_base_image()?;
        self.add_layer(
            images::BASE_IMAGE,
            images::PATCHED_IMAGE,
            images::PATCH_LAYER_FILES,
        )?;
        self.build(
            images::APP_IMAGE,
            images::APP_CONTAINERFILE,
            images::APP_CONTEXT,
        )
    }

    /// Paths below the store's layer diffs whose file name is `name` (e.g. `.wh..wh..opq`).
    pub fn layer_files_named(&self, name: &str) -> Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        let overlay = self.root().join("overlay");
        for layer in std::fs::read_dir(&overlay).context("listing overlay/")? {
            let diff = layer?.path().join("diff");
            if diff.is_dir() {
                find_named(&diff, name, &mut found)?;
            }
        }
        Ok(found)
    }

    /// A container's `GraphDriver` directory (`MergedDir`, `UpperDir`, ...).
    pub fn container_dir(&self, container: &str, which: &str) -> Result<PathBuf> {
        let format = format!("{{{{.GraphDriver.Data.{which}}}}}");
        let out = self.run(&["inspect", "--format", &format, container])?;
        let path = out.trim();
        if path.is_empty() || path == "<no value>" {
            bail!("container {container} has no {which}");
        }
        Ok(PathBuf::from(path))
    }

    /// Mounts of this store still in the mount table.
    pub fn store_mounts(&self) -> Result<Vec<MountEntry>> {
        host::mounts_under(self.dir())
    }

    /// Waits until no FUSE mount of this store is left (what the mount program mounted).
    ///
    /// Only FUSE mounts: a `podman container cleanup` process that conmon starts after
    /// `stop` briefly bind-mounts the store's `overlay/` home on itself (containers-storage
    /// makes it a private mount), which [`Podman::finish`] waits out as well.
    pub fn wait_fuse_mounts_gone(&self) -> Result<()> {
        let left = host::wait_until_empty(EXIT_GRACE, || {
            self.store_mounts()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.fs_type.starts_with("fuse"))
                .collect()
        });
        if !left.is_empty() {
            let lines: Vec<&str> = left.iter().map(|m| m.line.as_str()).collect();
            bail!("FUSE mounts of the store left: {lines:#?}");
        }
        Ok(())
    }

    /// Live mount-program processes serving this store.
    pub fn mount_program_processes(&self) -> Vec<ProcessInfo> {
        let needle = self.dir().to_string_lossy().into_owned();
        host::processes_mentioning(&needle)
            .into_iter()
            .filter(|p| p.exe.as_deref() == Some(self.mount_program.as_path()))
            .collect()
    }

    /// Pids of the mount-program processes serving `merged` (its last argument).
    pub fn serving_daemons(&self, merged: &Path) -> Vec<i32> {
        let needle = merged.to_string_lossy().into_owned();
        self.mount_program_processes()
            .into_iter()
            .filter(|p| p.cmdline.ends_with(needle.as_str()))
            .map(|p| p.pid)
            .collect()
    }

    /// Live processes of any kind mentioning this store (podman, conmon, mount program).
    fn store_processes(&self) -> Vec<ProcessInfo> {
        host::processes_mentioning(&self.dir().to_string_lossy())
    }

    /// Checks that `path` is a FUSE mount served by our mount program: the mount table
    /// entry is `fuse*` and a mount-program process of this store names it.
    pub fn assert_served_by_mount_program(&self, path: &Path) -> Result<MountEntry> {
        let entry = host::mounts()?
            .into_iter()
            .rfind(|m| m.mount_point == path)
            .with_context(|| format!("{} is not a mount point", path.display()))?;
        if !entry.fs_type.starts_with("fuse") {
            bail!(
                "{} is mounted as {}, not FUSE",
                path.display(),
                entry.fs_type
            );
        }
        let needle = path.to_string_lossy();
        let processes = self.mount_program_processes();
        if !processes
            .iter()
            .any(|p| p.cmdline.contains(needle.as_ref()))
        {
            bail!(
                "no {} process serves {}: {processes:?}",
                self.mount_program.display(),
                path.display()
            );
        }
        Ok(entry)
    }

    /// Removes every container and image mount, then requires that no mount of the store
    /// and no process mentioning it is left.
    pub fn finish(mut self) -> Result<()> {
        self.finished = true;
        self.run(&["rm", "--all", "--force", "--time", "0"])?;
        self.run(&["image", "umount", "--all", "--force"])?;
        // Processes first: conmon's exit command (`podman container cleanup`) may still be
        // running, and it sets the store's overlay home bind mount up again while it works.
        host::wait_until_empty(EXIT_GRACE, || self.store_processes());
        // containers-storage makes its overlay home a private bind mount of itself and
        // does not always take it down when a cleanup process exits; that mount is
        // Podman's own, not the mount program's, so drop it like `podman system reset` would.
        let home = self.root().join("overlay");
        for m in self.store_mounts().unwrap_or_default() {
            if m.mount_point == home && !m.fs_type.starts_with("fuse") {
                let _ = nix::mount::umount2(&home, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let mounts = host::wait_until_empty(EXIT_GRACE, || self.store_mounts().unwrap_or_default());
        let processes = host::wait_until_empty(EXIT_GRACE, || self.store_processes());
        if !mounts.is_empty() || !processes.is_empty() {
            let mounts: Vec<&str> = mounts.iter().map(|m| m.line.as_str()).collect();
            let processes: Vec<String> = processes
                .iter()
                .map(|p| format!("{} {}", p.pid, p.cmdline))
                .collect();
            bail!("left behind: mounts {mounts:#?}, processes {processes:#?}");
        }
        Ok(())
    }

    /// Forced cleanup: podman first, then lazy unmounts and SIGKILL.
    fn force_cleanup(&self) {
        if !self.finished {
            self.store.remove_containers(|args| self.command(args));
        }
        self.store.unmount_and_kill();
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.force_cleanup();
    }
}

/// Appends every path below `dir` named `name` (no symlinks followed).
fn find_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type()?.is_dir() {
            find_named(&path, name, found)?;
        }
    }
    Ok(())
}

/// The store's directory, removed on drop. Lowercase on purpose: `podman pull oci:DIR`
/// derives an image name from DIR, and image names must be lowercase.
struct StoreDir(PathBuf);

impl StoreDir {
    fn create() -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rebasefs-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let path = scratch_parent().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the store directory {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parent directory of the throwaway stores: `REBASEFS_E2E_TMP` or the system temp dir.
fn scratch_parent() -> PathBuf {
    std::env::var_os("REBASEFS_E2E_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}
