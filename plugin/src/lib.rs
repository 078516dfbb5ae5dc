//! rebasefs-plugin: reads containers-storage, plans rebases and keeps the repository.
//!
//! Layout: [`storage`] reads a containers-storage tree without a daemon; [`chain`] computes
//! layer ids; [`tree`] walks layer directories (both whiteout encodings); [`base`] finds an
//! image's base and base updates; [`plan`] validates a rebase; [`conflict`] finds paths both
//! the base update and the app layers touched; [`resolve`] applies policies and materializes
//! resolutions; [`repo`] is the SQLite repository; [`rebase`] ties them together for the CLI;
//! [`serve`] is the mount program's fast lookup of the active rebased stack ([`pins`]: the
//! containers it keeps on their stack); [`holds`] keeps new bases from being removed under
//! rebased containers.

pub mod autoupdate;
pub mod base;
pub mod chain;
pub mod commit;
pub mod conflict;
pub mod error;
pub mod holds;
pub mod maintenance;
pub mod pins;
pub mod pkgdb;
pub mod plan;
pub mod rebase;
pub mod repair;
pub mod repo;
pub mod resolve;
pub mod rollback;
pub mod serve;
pub mod status;
pub mod storage;
mod sys;
pub mod tree;

#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
/// Re-exported so the binary can name `serde::Serialize` without its own dependency.
pub use serde;
