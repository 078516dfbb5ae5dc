//! Logging setup, once per process, for every mode of the binary (mount program, CLI,
//! hook): tracing to stderr, filtered by `REBASEFS_LOG`, else `RUST_LOG`, else `warn`
//! (`debug` with the mount program's `-d`).
//!
//! A daemon's stderr is redirected to `REBASEFS_LOG_FILE` or /dev/null (by the mount
//! program front end, `rebasefs_fuse::mount_program`), so the same subscriber serves both
//! the foreground and the daemonized case.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `debug` (`-d`) lowers the default level to debug.
///
/// Creates no threads, so it is safe before the fork.
pub fn init(debug: bool) {
    let default_level = if debug { "debug" } else { "warn" };
    let directives = std::env::var("REBASEFS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_level.to_string());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("rebasefs: ignoring bad log filter {directives:?}: {error}");
        EnvFilter::new(default_level)
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(debug)
        .try_init();
}
