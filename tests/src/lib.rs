//! Shared support for the rebasefs test suites.
