//! The binary's answers to "which stack does the rebase repository assign?", for the mount
//! program (through its `MountHooks`) and for `rebasefs hook` (both ask rebasefs-plugin's
//! [`serve`]).
//!
//! [`rewrite`] runs before mounting. [`watch`] hands a live container mount to the refresh
//! server of rebasefs-hooks, which leaves the mount record and serves the control socket
//! through which the hook asks for [`rewrite`]'s answer again at every container
//! (re)start. [`Repository`] answers the hook's own question. All of them are infallible on
//! purpose: any repository problem is logged and the current stack stays, so a broken
//! repository never stops a container.

use rebasefs_fuse::mount_program::LiveMount;
use rebasefs_fuse::{OverlayConfig, StackSpec};
use rebasefs_hooks::refresh::server::{self, Control, Invocation};
use rebasefs_plugin::serve;

/// Returns the stack to serve for the stack containers-storage asked for.
pub fn rewrite(stack: StackSpec) -> StackSpec {
    match serve::rewrite_stack(&stack) {
        Ok(Some(rebased)) => {
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

/// Leaves the mount record and serves the control socket of a live container mount (see
/// [`server::watch`]); only container mounts (with an upper dir) in a containers-storage
/// tree get either. The result takes its files away when dropped (the daemon is done).
pub fn watch(mount: LiveMount<'_>) -> Option<Control> {
    mount.asked.upper.as_ref()?;
    let graphroot = mount
        .asked
        .lowers
        .first()
        .and_then(|l| rebasefs_plugin::storage::layer_of_path(l))
        .map(|(_, g)| g)?;
    let invocation = Invocation {
        options: mount.options.to_vec(),
        cwd: mount.cwd.to_path_buf(),
    };
    Some(server::watch(
        &graphroot,
        mount.mountpoint,
        &invocation,
        mount.asked.clone(),
        mount.served.clone(),
        mount.handle,
        rewrite,
    ))
}

/// The repository as `rebasefs hook` asks it.
pub struct Repository;

impl rebasefs_hooks::hook::Repository for Repository {
    fn needs_remount(&self, stack: &StackSpec) -> anyhow::Result<bool> {
        Ok(serve::needs_remount(stack)?)
    }

    fn remount_env_cleared(&self) -> &[&str] {
        &[serve::NO_REWRITE_ENV]
    }

    fn set_pinned(
        &self,
        graphroot: &std::path::Path,
        container_layer: &str,
        pinned: bool,
    ) -> anyhow::Result<()> {
        Ok(rebasefs_plugin::pins::set(
            graphroot,
            container_layer,
            pinned,
        )?)
    }
}
