//! Shared support for the rebasefs test suites.
pub mod podman;
pub mod diff;
pub mod rebase_story;
