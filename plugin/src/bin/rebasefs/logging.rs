//! Logging setup, once per process, for every mode of the binary (mount program, CLI,
//! hook): tracing to stderr, filtered by `REBASEFS_LOG`, else `RUST_LOG`, else `warn`
//! (`debug` with the mount program's `-d`).
//!
//! A daemon's stderr is redirected to `REBASEFS_LOG_FILE` or /dev/null (by the mount
//! program front end, `rebasefs_fuse::mount_program`), so the same subscriber serves both
//! the foreground and the daemonized case. So that a person finds what a daemon or the hook
//! said without having set anything up, the same events also go to the systemd journal
//! (`journalctl -t rebasefs`) when [`Mode::Service`] runs without a terminal and without
//! `-d`; without a journald socket that part is quietly left out.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Who is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The command-line tool: a person reads its stderr.
    Cli,
    /// The mount program and the hook: started by Podman, their stderr reaches nobody.
    Service,
}

/// Installs the global subscriber; `debug` (`-d`) lowers the default level to debug (and,
/// being a foreground run, keeps the journal out).
///
/// Creates no threads (the journal layer is one unbound datagram socket), so it is safe
/// before the fork.
pub fn init(debug: bool, mode: Mode) {
    let default_level = if debug { "debug" } else { "warn" };
    let directives = std::env::var("REBASEFS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_level.to_string());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|error| {
        eprintln!("rebasefs: ignoring bad log filter {directives:?}: {error}");
        EnvFilter::new(default_level)
    });
    let to_journal = mode == Mode::Service && !debug && !std::io::stderr().is_terminal();
    // No journald (a container, a minimal host): stderr alone, as before.
    let journal = to_journal
        .then(|| tracing_journald::layer().ok())
        .flatten()
        .map(|layer| layer.with_syslog_identifier("rebasefs".to_string()));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(debug);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(journal)
        .try_init();
}
