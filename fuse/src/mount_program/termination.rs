//! SIGTERM/SIGINT/SIGHUP end the mount cleanly: lazily unmount, so `serve` returns.
//!
//! The signals are blocked in the calling thread before the filesystem starts threads
//! (which inherit the mask), and one dedicated thread waits for them with `sigwait`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{SigSet, Signal};

/// Set once the mount is live: before that a signal just exits the process.
#[derive(Clone, Default)]
pub struct MountLive(Arc<AtomicBool>);

impl MountLive {
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Blocks the termination signals and starts the thread that handles them.
pub fn install(mountpoint: PathBuf) -> Result<MountLive> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals
        .thread_block()
        .context("blocking termination signals")?;
    let live = MountLive::default();
    let flag = live.clone();
    std::thread::Builder::new()
        .name("rebasefs-signals".into())
        .spawn(move || loop {
            let Ok(signal) = signals.wait() else { continue };
            if !flag.0.load(Ordering::SeqCst) {
                tracing::warn!(?signal, "terminated before the mount was live");
                std::process::exit(2);
            }
            tracing::info!(?signal, mountpoint = %mountpoint.display(), "unmounting");
            if let Err(error) = umount2(&mountpoint, MntFlags::MNT_DETACH) {
                // Already gone: nothing will end `serve` for us.
                tracing::warn!(%error, "unmount on signal failed; exiting");
                std::process::exit(1);
            }
        })
        .context("starting the signal thread")?;
    Ok(live)
}
