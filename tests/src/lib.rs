//! Shared support for the rebasefs test suites.
pub mod diff;
pub mod faults;
pub mod pkg_fixtures;
pub mod podman;
pub mod rebase_story;
pub mod registry;
pub mod tree_hash;
