//! `rebasefs hook`: the Podman `precreate` hook that moves a container onto the stack the
//! repository assigns when it (re)starts.
//!
//! `podman restart` keeps the rootfs mounted, so the mount program is not run again. At
//! `precreate` (Podman runs it before the runtime mounts /proc, /dev, ... inside the
//! rootfs, and before the container process exists) this hook checks whether the daemon
//! serving the rootfs serves the stack the repository now assigns. If not, it asks that
//! daemon to swap its stack through its control socket (`stack_rewrite::watch`), or, for
//! a daemon whose socket does not answer, unmounts the rootfs and runs this binary again as
//! the mount program with the options in the daemon's mount record, so it picks the
//! assigned stack up as at any mount. The hook runs as root: it believes only what root (or
//! its own user) wrote and the kernel confirms ([`rebasefs_plugin::mount_record`]), never
//! another process's argv or executable.
//!
//! A precreate hook gets the proposed config.json on stdin and prints the config to use:
//! it is printed back unchanged. Problems go to stderr; only a failed remount (which would
//! leave the container without a rootfs) fails the start.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use rebasefs_plugin::mount_record::{self, MountRecord};
use rebasefs_plugin::trusted::{self, PrivateDir};
use rebasefs_plugin::{mountinfo, serve};

/// Reads the config from stdin, refreshes the rootfs's stack if needed, echoes the config.
pub fn run() -> anyhow::Result<i32> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let parsed: Option<serde_json::Value> = serde_json::from_str(&input).ok();
    let mut code = 0;
    match &parsed {
        // An OCI state: a later stage, where swapping would pull mounts from under runc.
        Some(v) if v.get("bundle").is_some() => return Ok(0),
        Some(config) => match refresh(config) {
            Ok(Some(what)) => tracing::info!(%what, "rootfs stack refreshed"),
            Ok(None) => {}
            Err(error) => {
                eprintln!("rebasefs hook: {error:#}");
                code = 1;
            }
        },
        None => eprintln!("rebasefs hook: stdin is not a JSON config"),
    }
    std::io::stdout().write_all(input.as_bytes())?;
    Ok(code)
}

fn refresh(config: &serde_json::Value) -> anyhow::Result<Option<String>> {
    let Some(root) = config["root"]["path"].as_str().map(PathBuf::from) else {
        return Ok(None);
    };
    // The daemon records its mountpoint canonicalized.
    let Ok(root) = mountinfo::canonical_mountpoint(&root) else {
        return Ok(None);
    };
    let Some(graphroot) = serve::graphroot_of_mountpoint(&root) else {
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
    let socket = serve::refresh_socket(&graphroot, &root);
    match ask_daemon(&graphroot, &root, record.as_ref().map(|r| r.pid)) {
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
    remount(&root, &record)
}

/// Asks the daemon serving `root` to serve its assigned stack; `Ok(None)` without a socket.
///
/// The socket must sit in a directory only root or this user can write, and its peer must
/// run as root or this user (and be the recorded daemon, when there is a record): a socket
/// someone else bound could otherwise tell the hook that a move happened when it did not.
fn ask_daemon(
    graphroot: &Path,
    root: &Path,
    daemon: Option<u32>,
) -> anyhow::Result<Option<String>> {
    let Some(dir) = PrivateDir::open(&serve::sockets_dir(graphroot))? else {
        return Ok(None);
    };
    let name = serve::socket_name(root);
    if dir.stat(&name)?.is_none() {
        return Ok(None);
    }
    let mut stream = UnixStream::connect(dir.fd_path(&name))?;
    let peer = rustix::net::sockopt::socket_peercred(&stream)?;
    let peer_pid = u32::try_from(peer.pid.as_raw_nonzero().get()).unwrap_or(0);
    if !trusted::trusted_uid(peer.uid.as_raw()) || daemon.is_some_and(|pid| pid != peer_pid) {
        bail!(
            "the control socket is served by pid {peer_pid} (uid {}), not by the daemon of this mount",
            peer.uid.as_raw()
        );
    }
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(serve::refresh::REQUEST.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim().to_string();
    if answer.starts_with("error") || answer.is_empty() {
        bail!("daemon answered {answer:?}");
    }
    Ok(Some(answer))
}

/// Unmounts `root` and mounts it again by running this very binary with the recorded
/// daemon's options, when the repository assigns the container another stack than the
/// one it was mounted with.
fn remount(root: &Path, record: &MountRecord) -> anyhow::Result<Option<String>> {
    match serve::needs_remount(&record.stack()) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(error) => {
            // A broken repository never stops a container: it keeps its current stack.
            eprintln!("rebasefs hook: {}: not moved: {error}", root.display());
            return Ok(None);
        }
    }
    let unmounted = ["fusermount3", "fusermount"].iter().any(|tool| {
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
    let out = Command::new("/proc/self/exe")
        .arg0("rebasefs")
        .args(record.options.iter().flat_map(|o| ["-o", o.as_str()]))
        .arg(&record.mountpoint)
        .current_dir(&record.cwd)
        .env_remove(serve::NO_REWRITE_ENV)
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
