//! The command-line tool for people: status, rebase, rollback, mount/umount, gc, check.

use std::ffi::OsString;

/// Subcommands this binary answers to; anything else is the mount-program grammar.
const SUBCOMMANDS: &[&str] = &[
    "status", "rebase", "rollback", "mount", "umount", "gc", "check", "help",
];

/// True when argv names a subcommand rather than mount-program options.
pub fn is_subcommand(args: &[OsString]) -> bool {
    args.get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| SUBCOMMANDS.contains(&a))
}

/// Runs a subcommand; returns the process exit code.
pub fn run(_args: Vec<OsString>) -> i32 {
    eprintln!("rebasefs: subcommands are not implemented yet");
    2
}
