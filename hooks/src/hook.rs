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
//! A container annotated `io.rebasefs.pin=true` is pinned instead: it stays on the stack it
//! runs on, also at later mounts (the repository remembers the pin). A site that moves
//! nothing by default runs `rebasefs hook --opt-in`; then only containers annotated
//! `io.rebasefs.rebase=true` move and the others are pinned.
//!
//! A precreate hook gets the proposed config.json (an OCI runtime [`Spec`]) on stdin and
//! prints the config to use: it is printed back unchanged (also when it is not JSON). Problems go to stderr; only a
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
    /// Pins (or unpins) the container whose read-write layer is `container_layer`: a pinned
    /// container is served the stack it was last mounted with at every later mount.
    fn set_pinned(
        &self,
        graphroot: &Path,
        container_layer: &str,
        pinned: bool,
    ) -> anyhow::Result<()>;
}

/// Annotation that pins a container to the stack it runs on (`true`).
pub const PIN_ANNOTATION: &str = "io.rebasefs.pin";
/// Annotation that opts a container in (`true`) when the site runs the hook with `--opt-in`.
pub const OPT_IN_ANNOTATION: &str = "io.rebasefs.rebase";

/// Which containers the hook moves when no annotation says otherwise (the site's choice,
/// made in the hooks.d file's `args`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteDefault {
    /// Every container moves onto its image's assigned stack (`rebasefs hook`).
    Move,
    /// Only containers annotated `io.rebasefs.rebase=true` move; the others stay pinned
    /// (`rebasefs hook --opt-in`).
    Stay,
}

/// True when the container with `config` stays on the stack it runs on.
fn pinned(config: &Spec, site: SiteDefault) -> bool {
    let annotation = |name: &str| {
        config
            .annotations()
            .as_ref()
            .and_then(|a| a.get(name))
            .map(|v| v.eq_ignore_ascii_case("true"))
    };
    match annotation(PIN_ANNOTATION) {
        Some(true) => true,
        _ => site == SiteDefault::Stay && annotation(OPT_IN_ANNOTATION) != Some(true),
    }
}

/// What Podman hands a hook on stdin.
enum Input {
    /// The proposed config.json (precreate).
    Config(Box<Spec>),
    /// An OCI state: a later stage.
    State,
}

/// Reads stdin as an OCI state (it names a bundle) or else a runtime config.
fn parse(input: &[u8]) -> Result<Input, serde_json::Error> {
    if serde_json::from_slice::<State>(input)
        .is_ok_and(|state| !state.bundle().as_os_str().is_empty())
    {
        return Ok(Input::State);
    }
    serde_json::from_slice::<Spec>(input).map(|spec| Input::Config(Box::new(spec)))
}

/// Reads the config from stdin, refreshes the rootfs's stack if needed, echoes the config.
pub fn run(repository: &dyn Repository, site: SiteDefault) -> anyhow::Result<i32> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the config from stdin")?;
    let mut code = 0;
    match parse(&input) {
        // A later stage, where swapping would pull mounts from under runc.
        Ok(Input::State) => return Ok(0),
        Ok(Input::Config(config)) => match refresh(&config, repository, site) {
            Ok(Some(what)) => tracing::info!(%what, "rootfs stack refreshed"),
            Ok(None) => {}
            Err(error) => {
                eprintln!("rebasefs hook: {error:#}");
                code = 1;
            }
        },
        Err(error) => eprintln!(
            "rebasefs hook: stdin is not an OCI config ({error}); passed through unchanged"
        ),
    }
    std::io::stdout().write_all(&input)?;
    Ok(code)
}

fn refresh(
    config: &Spec,
    repository: &dyn Repository,
    site: SiteDefault,
) -> anyhow::Result<Option<String>> {
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
    // `<graphroot>/overlay/<container layer>/merged`.
    let layer = root
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy());
    if let Some(layer) = layer {
        let pinned = pinned(config, site);
        repository
            .set_pinned(&graphroot, &layer, pinned)
            .with_context(|| format!("{}: recording whether it is pinned", root.display()))?;
        if pinned {
            return Ok(Some("pinned: keeps the stack it runs on".into()));
        }
    }
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
