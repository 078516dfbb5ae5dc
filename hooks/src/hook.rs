//! `rebasefs hook`: the Podman `precreate` hook that moves a container onto the stack the
//! repository assigns when it (re)starts.
//!
//! `podman restart` keeps the rootfs mounted, so the mount program is not run again. At
//! `precreate` (Podman runs it before the runtime mounts /proc, /dev, ... inside the
//! rootfs, and before the container process exists) this hook checks whether the daemon
//! serving the rootfs serves the stack the repository now assigns. If not, it asks that
//! daemon to swap its stack through its control socket ([`crate::refresh`]), or, for
//! a daemon whose socket does not answer, unmounts the rootfs and runs this binary again as
//! the mount program with the options in the daemon's mount record, so it picks the
//! assigned stack up as at any mount. The hook runs as root: it believes only what root (or
//! its own user) wrote and the kernel confirms ([`crate::mount_record`]), never
//! another process's argv or executable. Repository questions go to the [`Repository`]
//! the binary passes in.
//!
//! A precreate hook gets the proposed config.json (an OCI runtime [`Spec`]) on stdin and
//! prints the config to use: it is printed back unchanged. Problems go to stderr; only a
//! failed remount (which would leave the container without a rootfs) fails the start.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use oci_spec::runtime::{Spec, State};
use rebasefs_fuse::StackSpec;

use crate::mount_record::{self, MountRecord};
use crate::{mountinfo, paths, refresh};

/// What the hook asks the rebase repository.
pub trait Repository {
    /// True when a live container mount of `stack` serves another stack than the
    /// repository now assigns (so a restarting container must be remounted).
    fn needs_remount(&self, stack: &StackSpec) -> anyhow::Result<bool>;
    /// Environment variables the remounting mount program must not inherit (ones that
    /// would keep it from asking the repository).
    fn remount_env_cleared(&self) -> &[&str];
}

/// What Podman hands a hook on stdin.
enum Input {
    /// The proposed config.json (precreate).
    Config(Box<Spec>),
    /// An OCI state: a later stage.
    State,
}

/// Reads stdin as an OCI state (it names a bundle) or else a runtime config.
fn parse(input: &[u8]) -> Option<Input> {
    if serde_json::from_slice::<State>(input)
        .is_ok_and(|state| !state.bundle().as_os_str().is_empty())
    {
        return Some(Input::State);
    }
    serde_json::from_slice::<Spec>(input)
        .ok()
        .map(|spec| Input::Config(Box::new(spec)))
}

/// Reads the config from stdin, refreshes the rootfs's stack if needed, echoes the config.
pub fn run(repository: &dyn Repository) -> anyhow::Result<i32> {
    // Bytes, not a String: whatever arrives (not UTF-8 too) is echoed unchanged.
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let mut code = 0;
    match parse(&input) {
        // A later stage, where swapping would pull mounts from under runc.
        Some(Input::State) => return Ok(0),
        Some(Input::Config(config)) => match refresh(&config, repository) {
            Ok(Some(what)) => tracing::info!(%what, "rootfs stack refreshed"),
            Ok(None) => {}
            Err(error) => {
                eprintln!("rebasefs hook: {error:#}");
                code = 1;
            }
        },
        None => eprintln!("rebasefs hook: stdin is not a JSON config"),
    }
    std::io::stdout().write_all(&input)?;
    Ok(code)
}

fn refresh(config: &Spec, repository: &dyn Repository) -> anyhow::Result<Option<String>> {
    let Some(root) = config
        .root()
        .as_ref()
        .map(|root| PathBuf::from(root.path()))
    else {
        return Ok(None);
    };
    // The daemon records its mountpoint canonicalized.
    let Ok(root) = mountinfo::canonical_mountpoint(&root) else {
        return Ok(None);
    };
    let Some(graphroot) = paths::graphroot_of_mountpoint(&root) else {
        return Ok(None); // not a containers-storage rootfs
    };
    let mount = match mountinfo::mount_at(&root) {
        Ok(Some(mount)) if mount.is_rebasefs() => mount,
        Ok(_) => return Ok(None), // not mounted, or by another mount program
        Err(error) => {
            eprintln!("rebasefs hook: {}: not moved: {error}", root.display());
            return Ok(None);
        }
    };
    let record = match mount_record::find_trusted(&graphroot, &root, &mount) {
        Ok(record) => record,
        Err(error) => {
            eprintln!("rebasefs hook: ignoring a mount record: {error}");
            None
        }
    };
    let socket = paths::refresh_socket(&graphroot, &root);
    match refresh::client::ask_daemon(&graphroot, &root, record.as_ref().map(|r| r.pid)) {
        Ok(Some(answer)) => return Ok(Some(answer)),
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(%error, socket = %socket.display(), "control socket unusable; trying a remount")
        }
    }
    let Some(record) = record else {
        eprintln!(
            "rebasefs hook: {}: no usable control socket and no trusted mount record of the daemon serving it; not moved (it moves at its next stop and start)",
            root.display()
        );
        return Ok(None);
    };
    remount(&root, &record, repository)
}

/// Unmounts `root` and mounts it again by running this very binary with the recorded
/// daemon's options, when the repository assigns the container another stack than the
/// one it was mounted with.
fn remount(
    root: &Path,
    record: &MountRecord,
    repository: &dyn Repository,
) -> anyhow::Result<Option<String>> {
    // A mount whose daemon died (SIGKILL, the OOM killer) is mounted again whatever the
    // repository says; the mount program detaches the dead mount itself.
    let dead = is_dead(root);
    if dead {
        tracing::warn!(
            "{}: the daemon serving it is gone; mounting it again",
            root.display()
        );
    } else {
        match repository.needs_remount(&record.stack()) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => {
                // A broken repository never stops a container: it keeps its current stack.
                eprintln!("rebasefs hook: {}: not moved: {error}", root.display());
                return Ok(None);
            }
        }
    }
    let unmounted = dead
        || ["fusermount3", "fusermount"].iter().any(|tool| {
            Command::new(tool)
                .arg("-u")
                .arg(root)
                .status()
                .is_ok_and(|s| s.success())
        });
    if !unmounted {
        bail!(
            "could not unmount {} to move it onto its new stack",
            root.display()
        );
    }
    let mut mount_program = Command::new("/proc/self/exe");
    mount_program
        .arg0("rebasefs")
        .args(record.options.iter().flat_map(|o| ["-o", o.as_str()]))
        .arg(&record.mountpoint)
        .current_dir(&record.cwd);
    for name in repository.remount_env_cleared() {
        mount_program.env_remove(name);
    }
    let out = mount_program
        .output()
        .context("running rebasefs to remount")?;
    if !out.status.success() {
        bail!(
            "remounting {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some("remounted".into()))
}

/// Whether the FUSE mount at `root` has lost its daemon (every access fails so).
fn is_dead(root: &Path) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, NotConnected};
    std::fs::symlink_metadata(root)
        .is_err_and(|e| matches!(e.kind(), NotConnected | ConnectionAborted))
}
