//! A throwaway containers-storage store for a real Podman, shared by the e2e suites
//! ([`super::Podman`]) and the benchmark.
//!
//! A directory holds the graph root (`root/`), by default the runroot (`runroot/`; Podman
//! wants its path under ~50 characters), a private `storage.conf` (so host settings such as
//! additional stores stay out, and so rebasefs finds the same graph root) and a private
//! `containers.conf` whose `hooks_dir` names the store's own `hooks.d/`, which installs
//! `rebasefs hook` ([`super::hooks_d_json`]) when asked (else an empty `no-hooks.d/`). [`Store::command`] points a program at both
//! files; [`Store::remove_containers`] and [`Store::unmount_and_kill`] take down whatever a
//! run left (containers, image mounts, mounts below the store, processes naming it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::host;

/// The containers.conf of the tests and the demo (`tests/containers.conf`: runc, ulimits,
/// no network; see README "Podman quirks").
pub const TESTS_CONTAINERS_CONF: &str = include_str!("../../containers.conf");

/// How a store is set up.
pub struct Config<'a> {
    /// The overlay driver's `mount_program` in storage.conf; `None` for kernel overlayfs
    /// (or for callers that pass `--storage-opt` themselves).
    pub mount_program: Option<&'a Path>,
    /// A rebasefs binary to install as the Podman precreate hook (through `hooks_dir`).
    pub hook: Option<&'a Path>,
    /// The runroot, when `DIR/runroot` would be too long a path for Podman.
    pub runroot: Option<PathBuf>,
    /// The containers.conf to use (its last table must be `[engine]`: `hooks_dir` is appended).
    pub containers_conf: &'a str,
}

/// A store's files; see the module docs.
pub struct Store {
    dir: PathBuf,
    runroot: PathBuf,
    storage_conf: PathBuf,
    containers_conf: PathBuf,
}

impl Store {
    /// Creates (or reuses) the store in `dir` and writes its configuration.
    pub fn create(dir: &Path, config: &Config<'_>) -> Result<Store> {
        let runroot = config
            .runroot
            .clone()
            .unwrap_or_else(|| dir.join("runroot"));
        for sub in [dir.join("root"), runroot.clone()] {
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        }
        let mut storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            runroot.display()
        );
        if let Some(program) = config.mount_program {
            storage.push_str(&format!(
                "[storage.options.overlay]\nmount_program = \"{}\"\n",
                program.display()
            ));
        }
        let storage_conf = dir.join("storage.conf");
        std::fs::write(&storage_conf, storage)?;
        let mut containers = config.containers_conf.to_string();
        // Without a hook the store still names its own (empty) hooks.d, so a hook installed
        // on the host (the .deb that CI installs) does not run in tests that expect none.
        // (Not `hooks.d`: tests write that one themselves and pass it with --hooks-dir.)
        let hooks = dir.join(match config.hook {
            Some(_) => "hooks.d",
            None => "no-hooks.d",
        });
        std::fs::create_dir_all(&hooks)?;
        if let Some(binary) = config.hook {
            std::fs::write(hooks.join("rebasefs.json"), super::hooks_d_json(binary)?)?;
        }
        containers.push_str(&format!("hooks_dir = [\"{}\"]\n", hooks.display()));
        let containers_conf = dir.join("containers.conf");
        std::fs::write(&containers_conf, containers)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            runroot,
            storage_conf,
            containers_conf,
        })
    }

    /// The store's directory; every path and process of this store mentions it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containers-storage graph root.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    pub fn runroot(&self) -> &Path {
        &self.runroot
    }

    /// `program` with the store's storage.conf and containers.conf in its environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env("CONTAINERS_CONF", &self.containers_conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf);
        command
    }

    /// Removes every container and image mount through `podman` (how this store is
    /// reached: [`Store::command`] plus any global flags), quietly and with time limits.
    pub fn remove_containers(&self, podman: impl Fn(&[&str]) -> Command) {
        for (args, timeout) in [
            (&["rm", "--all", "--force", "--time", "0"][..], 60),
            (&["image", "umount", "--all", "--force"][..], 30),
        ] {
            let _ = host::run_with_timeout(podman(args), Duration::from_secs(timeout), &self.dir);
        }
    }

    /// Lazily unmounts whatever is still mounted below the store or its runroot and kills
    /// every process naming the store (cleanup after a failure).
    pub fn unmount_and_kill(&self) {
        host::unmount_all_under(&self.dir);
        if !self.runroot.starts_with(&self.dir) {
            host::unmount_all_under(&self.runroot);
        }
        host::kill_all(&host::processes_mentioning(&self.dir.to_string_lossy()));
    }
}
