//! Where the mount program asks the rebase repository whether to serve a rebased stack.
//!
//! [`rewrite`] runs before mounting. [`watch`] serves a control socket so a live mount can
//! swap to the stack the repository now assigns: the `rebasefs hook` Podman precreate hook
//! asks for that at every container (re)start, before the container process exists, which
//! is what makes `podman restart` (which keeps the rootfs mounted) move a container. (For
//! a daemon without the socket the hook unmounts and mounts the rootfs again instead.)
//! Both are infallible on purpose: any repository problem is logged and the current stack
//! stays, so a broken repository never stops a container.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use rebasefs_fuse::{StackHandle, StackSpec};
use rebasefs_plugin::serve;

/// Returns the stack to serve for the stack containers-storage asked for.
pub fn rewrite(stack: StackSpec) -> StackSpec {
    let asked = serve::StackSpec {
        lowers: stack.lowers.clone(),
        upper: stack.upper.clone(),
        work: stack.work.clone(),
    };
    match serve::rewrite_stack(&asked) {
        Ok(Some(rebased)) => {
            tracing::info!(lowers = ?rebased.lowers, "serving the rebased stack from the repository");
            StackSpec {
                lowers: rebased.lowers,
                upper: rebased.upper,
                work: rebased.work,
            }
        }
        Ok(None) => stack,
        Err(error) => {
            tracing::warn!(%error, "rebase repository unusable; serving the original stack");
            stack
        }
    }
}

/// Serves the control socket of a container mount in a background thread.
///
/// `original` is the stack containers-storage asked for, `served` what [`rewrite`] made of
/// it; on each `refresh` request the repository is consulted again and, when it now assigns
/// another stack, `handle` swaps it in. Only container mounts (with an upper dir) in a
/// containers-storage tree get a socket. The mount program calls it right after mounting:
/// `stack_rewrite::watch(original, served, &mountpoint, mount.stack_handle())`.
// Until src/mount_program.rs calls it after `Mount::new` (the front end's side of the hook).
#[allow(dead_code)]
pub fn watch(original: StackSpec, served: StackSpec, mountpoint: &Path, handle: StackHandle) {
    if original.upper.is_none() {
        return;
    }
    let Some(graphroot) = original
        .lowers
        .first()
        .and_then(|l| rebasefs_plugin::storage::layer_of_path(l))
        .map(|(_, g)| g)
    else {
        return;
    };
    let socket = serve::refresh_socket(&graphroot, mountpoint);
    let listener = match bind(&socket) {
        Ok(l) => l,
        Err(error) => {
            tracing::warn!(%error, socket = %socket.display(), "no refresh socket; `podman restart` will not move this container");
            return;
        }
    };
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

#[allow(dead_code)]
fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket left by a daemon that is gone.
    let _ = std::fs::remove_file(socket);
    UnixListener::bind(socket)
}

#[allow(dead_code)]
fn answer(
    stream: UnixStream,
    original: &StackSpec,
    current: &mut StackSpec,
    handle: &StackHandle,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut stream = stream;
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
