//! Where the mount program asks the rebase repository whether to serve a rebased stack.
//!
//! [`rewrite`] runs before mounting. [`watch`] serves a control socket so a live mount can
//! swap to the stack the repository now assigns: the `rebasefs hook` Podman precreate hook
//! asks for that at every container (re)start, before the container process exists, which
//! is what makes `podman restart` (which keeps the rootfs mounted) move a container. It
//! also leaves the mount record ([`rebasefs_plugin::mount_record`]) with which the hook
//! remounts a container whose daemon's socket does not answer. Socket and record live in
//! directories only root or the daemon's user can write, the socket is mode 0600 and only
//! answers root and that user (peer credentials).
//! Both are infallible on purpose: any repository problem is logged and the current stack
//! stays, so a broken repository never stops a container.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rebasefs_fuse::{OverlayConfig, StackHandle, StackSpec};
use rebasefs_plugin::trusted::{self, PrivateDir};
use rebasefs_plugin::{mount_record, mountinfo, serve};

/// Returns the stack to serve for the stack containers-storage asked for.
pub fn rewrite(stack: StackSpec) -> StackSpec {
    let asked = serve::StackSpec {
        lowers: stack.lowers.clone(),
        upper: stack.upper.clone(),
        work: stack.work.clone(),
    };
    match serve::rewrite_stack(&asked) {
        Ok(Some(rebased)) => {
            let rebased = StackSpec {
                lowers: rebased.lowers,
                upper: rebased.upper,
                work: rebased.work,
            };
            // A stack the filesystem would refuse (overlapping layers) must not stop the
            // container: it runs on the stack it asked for.
            if let Err(error) = rebasefs_fuse::validate(&OverlayConfig::new(rebased.clone())) {
                tracing::warn!(%error, "rebased stack refused; serving the original stack");
                return stack;
            }
            tracing::info!(lowers = ?rebased.lowers, "serving the rebased stack from the repository");
            rebased
        }
        Ok(None) => stack,
        Err(error) => {
            tracing::warn!(%error, "rebase repository unusable; serving the original stack");
            stack
        }
    }
}

/// How containers-storage started this mount program: what a remount repeats.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Every `-o` argument, in order.
    pub options: Vec<String>,
    /// The working directory (relative `lowerdir=` paths are relative to it).
    pub cwd: PathBuf,
}

/// What a live container mount left for `rebasefs hook`: its mount record and control
/// socket, both removed when this is dropped (the daemon is exiting).
pub struct Control {
    record: Option<mount_record::RecordFile>,
    socket: Option<SocketFile>,
}

/// The bound control socket: its directory, name and (device, inode).
struct SocketFile {
    dir: PrivateDir,
    name: String,
    identity: (u64, u64),
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(record) = &self.record {
            record.remove();
        }
        // Only our own socket: a daemon mounted here after us may have bound the name again.
        if let Some(socket) = &self.socket {
            if socket
                .dir
                .stat(&socket.name)
                .ok()
                .flatten()
                .is_some_and(|st| (st.st_dev, st.st_ino) == socket.identity)
            {
                socket.dir.remove(&socket.name);
            }
        }
    }
}

/// Leaves the mount record and serves the control socket of a container mount.
///
/// `original` is the stack containers-storage asked for, `served` what [`rewrite`] made of
/// it; on each `refresh` request from root or the daemon's own user the repository is
/// consulted again and, when it now assigns another stack, `handle` swaps it in. Only
/// container mounts (with an upper dir) in a containers-storage tree get either. The
/// mount program calls it right after mounting and keeps the result until it exits.
pub fn watch(
    original: StackSpec,
    served: StackSpec,
    mountpoint: &Path,
    handle: StackHandle,
    invocation: &Invocation,
) -> Option<Control> {
    original.upper.as_ref()?;
    let graphroot = original
        .lowers
        .first()
        .and_then(|l| rebasefs_plugin::storage::layer_of_path(l))
        .map(|(_, g)| g)?;
    let record = match write_record(&graphroot, &original, mountpoint, invocation) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(%error, "no mount record; `podman restart` cannot remount this container if its control socket fails");
            None
        }
    };
    let socket = match bind(&graphroot, mountpoint) {
        Ok((listener, socket)) => {
            serve_requests(listener, original, served, handle);
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(%error, "no control socket; `podman restart` moves this container by remounting it");
            None
        }
    };
    Some(Control { record, socket })
}

fn write_record(
    graphroot: &Path,
    original: &StackSpec,
    mountpoint: &Path,
    invocation: &Invocation,
) -> anyhow::Result<mount_record::RecordFile> {
    let mount = mountinfo::mount_at(mountpoint)?
        .filter(mountinfo::Mount::is_rebasefs)
        .context("the new mount is not in /proc/self/mountinfo")?;
    let record = mount_record::MountRecord {
        pid: std::process::id(),
        mountpoint: mountpoint.to_path_buf(),
        device: mount.device,
        cwd: invocation.cwd.clone(),
        options: invocation.options.clone(),
        lowers: original.lowers.clone(),
        upper: original.upper.clone(),
        work: original.work.clone(),
    };
    Ok(mount_record::write(graphroot, &record)?)
}

/// Binds the control socket in the private sockets directory, mode 0600.
fn bind(graphroot: &Path, mountpoint: &Path) -> anyhow::Result<(UnixListener, SocketFile)> {
    let dir = PrivateDir::create(&serve::sockets_dir(graphroot))?;
    let name = serve::socket_name(mountpoint);
    // A socket left by a daemon that is gone.
    dir.remove(&name);
    let listener = UnixListener::bind(dir.fd_path(&name))
        .with_context(|| format!("binding {}", dir.path().join(&name).display()))?;
    std::fs::set_permissions(dir.fd_path(&name), std::fs::Permissions::from_mode(0o600))?;
    let st = dir.stat(&name)?.context("the socket vanished")?;
    let identity = (st.st_dev, st.st_ino);
    Ok((
        listener,
        SocketFile {
            dir,
            name,
            identity,
        },
    ))
}

/// Answers refresh requests in a background thread.
fn serve_requests(
    listener: UnixListener,
    original: StackSpec,
    served: StackSpec,
    handle: StackHandle,
) {
    let spawned = std::thread::Builder::new()
        .name("rebasefs-refresh".into())
        .spawn(move || {
            let mut current = served;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Err(error) = answer(stream, &original, &mut current, &handle) {
                    tracing::warn!(%error, "refresh request failed");
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the refresh thread");
    }
}

fn answer(
    stream: UnixStream,
    original: &StackSpec,
    current: &mut StackSpec,
    handle: &StackHandle,
) -> std::io::Result<()> {
    let mut stream = stream;
    // Swapping a running container's stack is for its own (re)start only: root or our user.
    let peer = rustix::net::sockopt::socket_peercred(&stream)?;
    if !trusted::trusted_uid(peer.uid.as_raw()) {
        tracing::warn!(
            uid = peer.uid.as_raw(),
            pid = peer.pid.as_raw_nonzero().get(),
            "refresh request from an untrusted user refused"
        );
        return writeln!(stream, "error: not allowed");
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line != serve::refresh::REQUEST {
        return writeln!(stream, "error: unknown request");
    }
    let wanted = rewrite(original.clone());
    if wanted == *current {
        return writeln!(stream, "{}", serve::refresh::UNCHANGED);
    }
    match handle.replace(wanted.clone()) {
        Ok(()) => {
            tracing::info!(lowers = ?wanted.lowers, "swapped the served stack");
            *current = wanted;
            writeln!(stream, "{}", serve::refresh::SWAPPED)
        }
        Err(error) => writeln!(stream, "error: {error}"),
    }
}
