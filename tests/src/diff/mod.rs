//! Differential testing of a mount program against kernel overlayfs: the same layers
//! mounted both ways, the same operations run on both, every observable compared.
//!
//! The harness is generic: it drives any fuse-overlayfs-compatible mount program
//! (`REBASEFS_BIN`) and knows nothing about its internals.

pub mod fixture;
pub mod mount;
pub mod op;
pub mod outcome;
pub mod random;
pub mod rng;
pub mod session;
pub mod standard;
pub mod sys;
pub mod tree;
pub mod upper;
