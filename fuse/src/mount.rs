//! The public mount lifecycle: validate a config, mount it, serve until unmounted.
//!
//! Two phases on purpose: a daemonizing caller forks, mounts in the child with
//! [`Mount::new`], tells the parent the mount is live, then calls [`Mount::serve`].

use std::path::{Path, PathBuf};

use crate::config::{OverlayConfig, StackSpec};

/// Why a mount could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer {path}: {reason}")]
    BadLayer { path: PathBuf, reason: String },
    #[error("mountpoint {path}: {reason}")]
    BadMountpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Checks the config before anything is mounted: layers exist and are directories.
pub fn validate(config: &OverlayConfig) -> Result<(), Error> {
    let _ = config;
    Err(Error::Config("not implemented yet".into()))
}

/// A live FUSE mount that is not serving requests yet.
#[derive(Debug)]
pub struct Mount {
    _private: (),
}

/// Replaces the stack a live mount serves (from any thread).
#[derive(Debug, Clone)]
pub struct StackHandle {
    _private: (),
}

impl Mount {
    /// Validates `config` and mounts it at `mountpoint`; the mount is live on return.
    pub fn new(config: OverlayConfig, mountpoint: &Path) -> Result<Mount, Error> {
        let _ = (config, mountpoint);
        Err(Error::Config("not implemented yet".into()))
    }

    /// A handle that can swap the served stack while [`Mount::serve`] runs.
    pub fn stack_handle(&self) -> StackHandle {
        StackHandle { _private: () }
    }

    /// Serves requests until the filesystem is unmounted.
    pub fn serve(self) -> Result<(), Error> {
        Err(Error::Config("not implemented yet".into()))
    }
}

impl StackHandle {
    /// Serves `stack` from now on and drops the kernel's cached entries and attributes.
    pub fn replace(&self, stack: StackSpec) -> Result<(), Error> {
        let _ = stack;
        Err(Error::Config("not implemented yet".into()))
    }
}
