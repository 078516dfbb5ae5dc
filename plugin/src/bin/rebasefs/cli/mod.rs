//! The command-line tool for people: status, rebase, commit, auto-update, rollback,
//! mount/umount, gc, check.
//!
//! Storage is found like Podman finds it (`CONTAINERS_STORAGE_CONF`, storage.conf), and
//! `--root`/`--runroot` override it. Every failure is one line on stderr and exit code 1
//! (2 for bad usage); `--format json` prints machine-readable results on stdout.

mod auto_update;
mod commit;
mod maintenance;
mod man;
mod mount;
mod output;
mod progress;
mod rebase;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rebasefs_plugin::storage::{Overrides, StorageConfig, Store};

/// Subcommands this binary answers to; anything else is the mount-program grammar.
const SUBCOMMANDS: &[&str] = &[
    "status",
    "rebase",
    "commit",
    "auto-update",
    "rollback",
    "mount",
    "umount",
    "gc",
    "check",
    "hook",
    "man",
    "help",
];

/// True when argv names a subcommand rather than mount-program options.
pub fn is_subcommand(args: &[OsString]) -> bool {
    args.get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| SUBCOMMANDS.contains(&a))
}

#[derive(Debug, Parser)]
#[command(
    name = "rebasefs",
    version,
    about = "Move Podman containers onto an updated base image without rebuilding",
    long_about = "Move Podman containers onto an updated base image without rebuilding.\n\n\
        `rebasefs rebase IMAGE --onto NEWBASE` records a rebased stack (new base layers + the \
        unchanged app layers + resolved conflicts). With rebasefs as the store's mount_program, \
        a container of IMAGE runs on the new base from its next start (`podman stop` + \
        `podman start`; `podman restart` keeps the rootfs mounted and needs `rebasefs hook` \
        installed as a Podman precreate hook). `rebasefs rollback IMAGE` goes back."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// containers-storage graphroot (default: from storage.conf, like Podman).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// containers-storage runroot.
    #[arg(long, global = true, value_name = "DIR")]
    runroot: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Images, their base and available base updates; containers and the base each runs on.
    Status,
    /// Plan a rebase of IMAGE onto a new base, report conflicts, and record it.
    Rebase(rebase::RebaseArgs),
    /// Write IMAGE rebased onto a new base into containers-storage as a real image NAME.
    Commit(commit::CommitArgs),
    /// Move opted-in containers onto their base's update by rebase (like `podman auto-update`).
    AutoUpdate(auto_update::AutoUpdateArgs),
    /// Put IMAGE back on the stack it ran on before its last rebase.
    Rollback {
        /// Image name or id.
        image: String,
    },
    /// Mount IMAGE's (rebased) root filesystem read-only at DIR, without running anything.
    Mount(mount::MountArgs),
    /// Unmount a `rebasefs mount`.
    Umount {
        /// The mount point.
        dir: PathBuf,
    },
    /// Remove repository records and directories nothing can use any more.
    Gc,
    /// Check the repository's integrity and its agreement with the store.
    Check {
        /// First repair what cannot be served: move a corrupt repo.db aside, drop
        /// resolutions whose directory is gone (with their stacks), unassign stacks whose
        /// layers are gone.
        #[arg(long)]
        repair: bool,
    },
    /// OCI precreate hook: move a (re)starting container onto its assigned stack.
    ///
    /// Annotation io.rebasefs.pin=true keeps a container on the stack it runs on.
    #[command(hide = true)]
    Hook {
        /// Move only containers annotated io.rebasefs.rebase=true; pin all others.
        #[arg(long)]
        opt_in: bool,
    },
    /// Write the man pages (generated from these definitions) into DIR.
    #[command(hide = true)]
    Man {
        /// Directory to write rebasefs.1, rebasefs-SUBCOMMAND.1, ... into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Runs a subcommand; returns the process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // The hook runs under Podman like the mount program: its messages go to the journal too.
    let mode = match cli.command {
        Command::Hook { .. } => crate::logging::Mode::Service,
        _ => crate::logging::Mode::Cli,
    };
    crate::logging::init(false, mode);
    let result = match &cli.command {
        Command::Status => status::run(&cli.global),
        Command::Rebase(a) => rebase::run(&cli.global, a),
        Command::Commit(a) => commit::run(&cli.global, a),
        Command::AutoUpdate(a) => auto_update::run(&cli.global, a),
        Command::Rollback { image } => rebase::rollback(&cli.global, image),
        Command::Mount(a) => mount::mount(&cli.global, a),
        Command::Umount { dir } => mount::umount(dir),
        Command::Gc => maintenance::gc(&cli.global),
        Command::Check { repair } => maintenance::check(&cli.global, *repair),
        Command::Hook { opt_in } => {
            use rebasefs_hooks::hook::SiteDefault;
            let site = if *opt_in {
                SiteDefault::Stay
            } else {
                SiteDefault::Move
            };
            rebasefs_hooks::hook::run(&crate::stack_rewrite::Repository, site)
        }
        Command::Man { out } => man::run(out),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            match advice(&e) {
                Some(advice) => eprintln!("rebasefs: {line}; {advice}"),
                None => eprintln!("rebasefs: {line}"),
            }
            1
        }
    }
}

/// What to type about a library error, for the errors a flag or command answers.
fn advice(error: &anyhow::Error) -> Option<&'static str> {
    match error.downcast_ref::<rebasefs_plugin::Error>()? {
        rebasefs_plugin::Error::NoBase(_) => Some("pass --base"),
        rebasefs_plugin::Error::NoUpdate { .. } => Some("pass --onto NEWBASE"),
        rebasefs_plugin::Error::BrokenDependencies { .. } => Some(
            "install what they need in the new base, or pass --allow-broken-deps to rebase anyway",
        ),
        rebasefs_plugin::Error::CorruptRepository { .. } => {
            Some("run `rebasefs check --repair` to move it aside and start over")
        }
        _ => None,
    }
}

impl Global {
    fn storage(&self) -> anyhow::Result<StorageConfig> {
        Ok(StorageConfig::discover(&Overrides {
            root: self.root.clone(),
            runroot: self.runroot.clone(),
            driver: None,
        })?)
    }

    fn open_store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(self.storage()?)?)
    }
}
