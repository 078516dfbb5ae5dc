//! rebasefs-fuse: an overlay filesystem served through FUSE.
//!
//! It merges an ordered stack of read-only lower directories, an optional upper
//! directory and a work directory with Linux overlayfs semantics, lazily on lookup.
//! It knows nothing of containers-storage: callers hand it a [`StackSpec`], and the
//! stack it serves can be replaced while mounted ([`StackHandle`]).

pub mod config;
mod copyup;
mod core;
mod dirindex;
mod fs;
mod idmap;
mod inode;
mod layer;
mod lookup;
mod mount;
mod ops;
mod readdir;
mod sys;
mod whiteout;
mod xattr;

pub use config::{IdRange, OverlayConfig, StackSpec, XattrPermissions};
pub use mount::{validate, Error, Mount, StackHandle};
