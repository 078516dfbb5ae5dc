//! The daemon's end: the mount record and the control socket of a live container mount.
//!
//! Right after mounting, the mount program leaves the mount record
//! ([`crate::mount_record`]) with which the hook remounts a container whose daemon's socket
//! does not answer, and serves the control socket: on each request from root or the
//! daemon's own user (peer credentials) it asks its caller which stack the repository
//! assigns now and, when that is another stack, swaps it in through the filesystem's
//! [`StackHandle`]. Socket and record live in directories only root or the daemon's user
//! can write. Both are infallible on purpose: a problem is logged and the current stack
//! stays, so a broken repository never stops a container.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rebasefs_fuse::{StackHandle, StackSpec};

use crate::mount_record::{self, MountRecord, RecordFile};
use crate::trusted::{self, PrivateDir};
use crate::{mountinfo, paths};

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
    record: Option<RecordFile>,
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

/// Leaves the mount record and serves the control socket of the container mount at
/// `mountpoint` of the store at `graphroot`.
///
/// `original` is the stack containers-storage asked for, `served` what is served; on each
/// refresh request `assigned(original)` says what to serve now and, when it differs,
/// `handle` swaps it in. The mount program calls it right after mounting and keeps the
/// result until it exits.
pub fn watch(
    graphroot: &Path,
    mountpoint: &Path,
    invocation: &Invocation,
    original: StackSpec,
    served: StackSpec,
    handle: StackHandle,
    assigned: impl Fn(StackSpec) -> StackSpec + Send + 'static,
) -> Control {
    let record = match write_record(graphroot, &original, mountpoint, invocation) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(%error, "no mount record; `podman restart` cannot remount this container if its control socket fails");
            None
        }
    };
    let socket = match bind(graphroot, mountpoint) {
        Ok((listener, socket)) => {
            serve_requests(listener, original, served, handle, assigned);
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(%error, "no control socket; `podman restart` moves this container by remounting it");
            None
        }
    };
    Control { record, socket }
}

fn write_record(
    graphroot: &Path,
    original: &StackSpec,
    mountpoint: &Path,
    invocation: &Invocation,
) -> anyhow::Result<RecordFile> {
    let mount = mountinfo::mount_at(mountpoint)?
        .filter(mountinfo::Mount::is_rebasefs)
        .context("the new mount is not in /proc/self/mountinfo")?;
    let record = MountRecord {
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
    let dir = PrivateDir::create(&paths::sockets_dir(graphroot))?;
    let name = paths::socket_name(mountpoint);
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
    assigned: impl Fn(StackSpec) -> StackSpec + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("rebasefs-refresh".into())
        .spawn(move || {
            let mut current = served;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let wanted = || assigned(original.clone());
                if let Err(error) = answer(stream, &wanted, &mut current, &handle) {
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
    wanted: &dyn Fn() -> StackSpec,
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
    if line != super::REQUEST {
        return writeln!(stream, "error: unknown request");
    }
    let wanted = wanted();
    if wanted == *current {
        return writeln!(stream, "{}", super::UNCHANGED);
    }
    match handle.replace(wanted.clone()) {
        Ok(()) => {
            tracing::info!(lowers = ?wanted.lowers, "swapped the served stack");
            *current = wanted;
            writeln!(stream, "{}", super::SWAPPED)
        }
        Err(error) => writeln!(stream, "error: {error}"),
    }
}
