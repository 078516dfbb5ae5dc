//! Podman measurements: container start latency per mount program (a throwaway store each) and
//! the rebase figure (rebasefs rebase + restart vs podman build --no-cache + recreate).

use crate::sys;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Flags the issue prescribes for `podman run` on this machine.
pub const RUN_FLAGS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The bench's containers.conf: the flags above, no network settings (unlike the tests',
/// which run without a network).
const CONTAINERS_CONF: &str =
    "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
     [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";

/// A throwaway containers-storage store (the tests crate's), configured through
/// CONTAINERS_STORAGE_CONF so that podman and rebasefs find the same graphroot.
pub struct Store(rebasefs_tests::podman::Store);

impl Store {
    /// Creates (or reuses) the store under `dir`; `mount_program` None = native kernel overlay.
    /// With `hook`, that rebasefs binary is installed as the Podman precreate hook (`rebasefs
    /// hook`), which moves a restarting container onto the stack its rebase assigned.
    pub fn new(dir: &Path, mount_program: Option<&Path>, hook: Option<&Path>) -> Result<Store> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config = rebasefs_tests::podman::store::Config {
            mount_program,
            hook,
            // Podman refuses runroots longer than 50 characters, so it lives under /run.
            runroot: Some(PathBuf::from("/run/rebasefs-bench").join(name)),
            containers_conf: CONTAINERS_CONF,
        };
        Ok(Store(rebasefs_tests::podman::Store::create(dir, &config)?))
    }

    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    pub fn runroot(&self) -> &Path {
        self.0.runroot()
    }

    /// A command with this store's configuration in the environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = self.0.command(program);
        c.stdin(Stdio::null());
        c
    }

    pub fn podman(&self) -> Command {
        self.command(Path::new("podman"))
    }

    /// Runs podman with `args`, failing with its stderr. Output goes through files, not pipes:
    /// a mount program spawned by podman inherits podman's stdio and would hold a pipe open.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        sys::run_via_files(self.podman().args(args), self.dir())
    }

    /// True when the store already holds image `name`.
    pub fn has_image(&self, name: &str) -> bool {
        self.podman()
            .args(["image", "exists", name])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Imports a rootfs tarball as `name` unless present.
    pub fn import(&self, tar: &Path, name: &str) -> Result<()> {
        if !self.has_image(name) {
            self.run(&["import", &tar.to_string_lossy(), name])
                .with_context(|| format!("podman import {name}"))?;
        }
        Ok(())
    }

    /// Removes every container and unmounts whatever the store still has mounted.
    pub fn teardown(&self) {
        self.0.remove_containers(|args| {
            let mut podman = self.podman();
            podman.args(args);
            podman
        });
        self.0.unmount_and_kill();
    }
}

/// Wall time of one `podman run --rm IMAGE true`.
pub fn run_latency(store: &Store, image: &str) -> Result<Duration> {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(RUN_FLAGS);
    args.extend_from_slice(&[image, "true"]);
    let start = Instant::now();
    store.run(&args)?;
    Ok(start.elapsed())
}

/// Measured cost of one path of the rebase figure.
pub struct Cost {
    pub seconds: f64,
    pub process_write_bytes: f64,
    pub store_growth_bytes: f64,
    /// Per step: "name time / bytes written by its processes".
    pub breakdown: Vec<String>,
}

/// Runs one named step, appending its time and process writes to `breakdown`.
fn step(breakdown: &mut Vec<String>, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let io = sys::children_write_bytes();
    let start = Instant::now();
    f()?;
    let secs = start.elapsed().as_secs_f64();
    let mib = sys::children_write_bytes().saturating_sub(io) as f64 / (1024.0 * 1024.0);
    breakdown.push(format!("{name} {secs:.2} s / {mib:.1} MiB"));
    Ok(())
}

/// Runs `steps` and measures wall time, bytes written by reaped children and store growth.
pub fn measure_steps(store: &Store, steps: &mut dyn FnMut() -> Result<()>) -> Result<Cost> {
    nix::unistd::sync();
    let du_before = sys::disk_usage_bytes(store.dir())?;
    let io_before = sys::children_write_bytes();
    let start = Instant::now();
    steps()?;
    let seconds = start.elapsed().as_secs_f64();
    nix::unistd::sync();
    let io_after = sys::children_write_bytes();
    let du_after = sys::disk_usage_bytes(store.dir())?;
    Ok(Cost {
        seconds,
        process_write_bytes: io_after.saturating_sub(io_before) as f64,
        store_growth_bytes: du_after.saturating_sub(du_before) as f64,
        breakdown: Vec::new(),
    })
}

/// Prepares a store for the rebase figure: base v1 and v2 imported, app image built on v1,
/// container `app-ctr` running on it.
pub fn prepare_app(store: &Store, data: &Path) -> Result<()> {
    store.teardown();
    store.import(&data.join("tar/base-v1.tar"), "bench-base:v1")?;
    store.import(&data.join("tar/base-v2.tar"), "bench-base:v2")?;
    let ctx = data.join("ctx");
    store
        .run(&[
            "build",
            "-q",
            "--no-cache",
            "--build-arg",
            "BASE=bench-base:v1",
            "-t",
            "bench-app:1",
            &ctx.to_string_lossy(),
        ])
        .context("building the app image on base v1")?;
    let mut args = vec!["run", "-d", "--name", "app-ctr"];
    args.extend_from_slice(RUN_FLAGS);
    args.extend_from_slice(&["bench-app:1", "sleep", "infinity"]);
    store.run(&args).context("starting the app container")?;
    check_base(store, "v1")?;
    Ok(())
}

/// The container sees base `want` (the marker file written by build-data.sh).
pub fn check_base(store: &Store, want: &str) -> Result<()> {
    let out = store.run(&["exec", "app-ctr", "cat", "/etc/bench-base-version"])?;
    if out.trim() != want {
        bail!("container sees base {:?}, expected {want}", out.trim());
    }
    Ok(())
}

/// Rebuild-and-recreate: podman build --no-cache of the app on base v2, then recreate the container.
pub fn rebuild_and_recreate(store: &Store, data: &Path) -> Result<Cost> {
    let ctx = data.join("ctx").to_string_lossy().into_owned();
    let mut breakdown = Vec::new();
    let mut cost = measure_steps(store, &mut || {
        step(&mut breakdown, "build", || {
            store.run(&[
                "build",
                "-q",
                "--no-cache",
                "--build-arg",
                "BASE=bench-base:v2",
                "-t",
                "bench-app:1",
                &ctx,
            ])?;
            Ok(())
        })?;
        step(&mut breakdown, "rm", || {
            store.run(&["rm", "-f", "-t", "0", "app-ctr"])?;
            Ok(())
        })?;
        step(&mut breakdown, "run", || {
            let mut args = vec!["run", "-d", "--name", "app-ctr"];
            args.extend_from_slice(RUN_FLAGS);
            args.extend_from_slice(&["bench-app:1", "sleep", "infinity"]);
            store.run(&args)?;
            Ok(())
        })
    })?;
    cost.breakdown = breakdown;
    check_base(store, "v2")?;
    Ok(cost)
}

/// Rebase-and-restart: `rebasefs rebase bench-app:1 --onto bench-base:v2`, then `podman restart`
/// (or stop + start when the mount program serves no refresh socket for the hook). Returns the
/// cost and how the container was restarted.
pub fn rebase_and_restart(store: &Store, rebasefs: &Path) -> Result<(Cost, String)> {
    let restart_in_place = has_refresh_socket(&store.dir().join("root/rebasefs/sockets"));
    let mut breakdown = Vec::new();
    let mut cost = measure_steps(store, &mut || {
        step(&mut breakdown, "rebasefs rebase", || {
            sys::run_via_files(
                store.command(rebasefs).args([
                    "rebase",
                    "localhost/bench-app:1",
                    "--onto",
                    "localhost/bench-base:v2",
                ]),
                store.dir(),
            )
            .context("rebasefs rebase")?;
            Ok(())
        })?;
        if restart_in_place {
            step(&mut breakdown, "podman restart", || {
                store.run(&["restart", "-t", "0", "app-ctr"])?;
                Ok(())
            })
        } else {
            step(&mut breakdown, "podman stop + start", || {
                store.run(&["stop", "-t", "0", "app-ctr"])?;
                store.run(&["start", "app-ctr"])?;
                Ok(())
            })
        }
    })?;
    cost.breakdown = breakdown;
    check_base(store, "v2")?;
    let how = if restart_in_place {
        "podman restart (precreate hook)"
    } else {
        "podman stop + start (no refresh socket served)"
    };
    Ok((cost, how.to_string()))
}

fn has_refresh_socket(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "sock"))
        })
        .unwrap_or(false)
}
