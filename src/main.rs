//! The `rebasefs` binary: thin wiring over `rebasefs-fuse` and `rebasefs-plugin`.
//!
//! Invoked as containers-storage's `mount_program` (`rebasefs -o lowerdir=...,upperdir=...
//! MOUNTPOINT`) it mounts and serves an overlay; invoked with a subcommand it is the
//! command-line tool for people (status, rebase, mount, ...).

mod cli;
mod mount_program;
mod stack_rewrite;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = if cli::is_subcommand(&args) {
        cli::run(args)
    } else {
        mount_program::run(args)
    };
    std::process::exit(code);
}
