//! The `rebasefs` binary: thin wiring over `rebasefs-fuse`, `rebasefs-hooks` and
//! `rebasefs-plugin`.
//!
//! Invoked as containers-storage's `mount_program` (`rebasefs -o lowerdir=...,upperdir=...
//! MOUNTPOINT`) it mounts and serves an overlay; invoked with a subcommand it is the
//! command-line tool for people (status, rebase, mount, ...).

mod cli;
mod logging;
mod stack_rewrite;

use std::any::Any;

use rebasefs_fuse::mount_program::{self, LiveMount, MountHooks};
use rebasefs_fuse::StackSpec;

/// What the binary adds to the fuse crate's mount program: its logging, and the rebase
/// repository (the stack to serve, and the refresh socket and mount record of a live mount).
struct MountProgram;

impl MountHooks for MountProgram {
    fn start_logging(&self, debug: bool) {
        logging::init(debug, logging::Mode::Service);
    }

    fn rewrite_stack(&self, asked: StackSpec) -> StackSpec {
        stack_rewrite::rewrite(asked)
    }

    fn mounted(&self, mount: LiveMount<'_>) -> Box<dyn Any> {
        // Lets `podman restart` move a running container's mount onto a rebased stack.
        Box::new(stack_rewrite::watch(mount))
    }
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = if cli::is_subcommand(&args) {
        cli::run(args)
    } else {
        mount_program::run(args, &MountProgram)
    };
    std::process::exit(code);
}
