//! containers-storage `mount_program` front end: `rebasefs [-f] [-d] -o OPTS MOUNTPOINT`.
//!
//! Parses the fuse-overlayfs command line, checks every path before anything is mounted,
//! then (unless `-f`/`-d`) forks a daemon that mounts, reports success through a pipe and
//! serves until unmounted. Any failure before the mount is live: one line on stderr, exit 2.
//! What the embedding program adds (logging, a rewritten stack, work with the live mount)
//! comes in through [`MountHooks`]; this module knows nothing of containers-storage.

mod cmdline;
mod daemon;
mod layers;
mod options;
mod stale;
mod termination;

/// The `--help` text (the binary renders it as a man page too).
pub use cmdline::usage;

use std::any::Any;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{Mount, OverlayConfig, StackHandle, StackSpec};
use cmdline::Command;
use options::ParsedOptions;

/// What the program embedding the mount program adds around one mount. The front end
/// parses, checks, mounts and serves; the `rebasefs` binary uses these to set up logging,
/// serve a rebased stack and keep the live mount reachable (refresh socket, mount record).
pub trait MountHooks {
    /// Called once argv asks for a mount, before anything is logged (`debug`: `-d`). The
    /// front end sets up no logging of its own.
    fn start_logging(&self, debug: bool) {
        let _ = debug;
    }

    /// The stack to serve for `asked`, the one the command line named (paths resolved).
    fn rewrite_stack(&self, asked: StackSpec) -> StackSpec {
        asked
    }

    /// Called once the mount is live, before the launching process is told so. What it
    /// returns is kept until the daemon is done serving, then dropped.
    fn mounted(&self, mount: LiveMount<'_>) -> Box<dyn Any> {
        let _ = mount;
        Box::new(())
    }
}

/// A mount that has just gone live, as [`MountHooks::mounted`] sees it.
pub struct LiveMount<'a> {
    /// The stack the command line asked for, paths resolved.
    pub asked: &'a StackSpec,
    /// What [`MountHooks::rewrite_stack`] made of `asked` (before `ro` moves an upper
    /// on top of the lowers).
    pub served: &'a StackSpec,
    /// The mountpoint, resolved.
    pub mountpoint: &'a Path,
    /// Replaces the served stack while the mount is live.
    pub handle: StackHandle,
    /// Every `-o` argument as given, in order.
    pub options: &'a [String],
    /// The directory relative paths were resolved against (the launcher's cwd).
    pub cwd: &'a Path,
}

/// Exit code for bad usage or a mount that could not be set up (fuse-overlayfs uses 1;
/// containers-storage only checks for non-zero).
const EXIT_FAILED: i32 = 2;

/// Parses the fuse-overlayfs command line, mounts, daemonizes; returns the exit code.
pub fn run(args: Vec<OsString>, hooks: &dyn MountHooks) -> i32 {
    let request = match cmdline::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cmdline::usage());
            return 0;
        }
        Ok(Command::Version) => {
            println!("rebasefs {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Ok(Command::Mount(request)) => request,
        Err(error) => return fail(&error),
    };
    hooks.start_logging(request.debug);
    let prepared = match prepare(&request.option_strings, &request.mountpoint) {
        Ok(prepared) => prepared,
        Err(error) => return fail(&error),
    };
    if request.foreground {
        return mount_and_serve(prepared, hooks, None);
    }
    match daemon::fork_with_status_pipe() {
        Err(error) => fail(&error),
        Ok(daemon::Side::Parent(pipe)) => match daemon::wait_for_child(pipe) {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("rebasefs: {message}");
                EXIT_FAILED
            }
        },
        Ok(daemon::Side::Child(status)) => {
            let log_file = std::env::var_os(daemon::LOG_FILE_ENV).map(PathBuf::from);
            if let Err(error) = daemon::detach(log_file.as_deref()) {
                status.report_failure(&format!("{error:#}"));
                return EXIT_FAILED;
            }
            mount_and_serve(prepared, hooks, Some(status))
        }
    }
}

/// Prints one line for `error` and returns the failure exit code.
fn fail(error: &anyhow::Error) -> i32 {
    let line = format!("{error:#}").replace('\n', " ");
    eprintln!("rebasefs: {line}");
    EXIT_FAILED
}

/// A checked mount request: parsed options with every path resolved.
struct Prepared {
    /// `options.config.stack` is the stack the command line asks for.
    options: ParsedOptions,
    mountpoint: PathBuf,
    /// The `-o` strings as given and the directory relative paths are resolved against:
    /// what a remount repeats.
    option_strings: Vec<String>,
    cwd: PathBuf,
}

/// Parses the options and resolves every path, relative to the current directory.
fn prepare(option_strings: &[String], mountpoint: &Path) -> Result<Prepared> {
    let mut options = options::parse(option_strings)?;
    for warning in &options.warnings {
        tracing::warn!("{warning}");
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let stack = &mut options.config.stack;
    stack.lowers = stack
        .lowers
        .iter()
        .map(|lower| layers::resolve_directory("lower layer", lower, &cwd))
        .collect::<Result<Vec<_>>>()?;
    let resolve_optional = |role: &str, path: &Option<PathBuf>| {
        path.as_ref()
            .map(|path| layers::resolve_directory(role, path, &cwd))
            .transpose()
    };
    stack.upper = resolve_optional("upperdir", &stack.upper)?;
    stack.work = resolve_optional("workdir", &stack.work)?;
    stale::detach_dead_mount(mountpoint, &cwd)?;
    let mountpoint = layers::resolve_directory("mountpoint", mountpoint, &cwd)?;
    Ok(Prepared {
        options,
        mountpoint,
        option_strings: option_strings.to_vec(),
        cwd,
    })
}

/// The config to mount: the parsed `config` serving `stack`, with root's default
/// `allow_other`.
fn overlay_config(config: &OverlayConfig, stack: StackSpec, read_only: bool) -> OverlayConfig {
    // Generic `ro` with an upper: serve the merged tree read-only, upper on top.
    let stack = if read_only {
        match stack.upper {
            Some(upper) => StackSpec {
                lowers: std::iter::once(upper).chain(stack.lowers).collect(),
                upper: None,
                work: None,
            },
            None => stack,
        }
    } else {
        stack
    };
    OverlayConfig {
        stack,
        allow_other: config.allow_other || nix::unistd::geteuid().is_root(),
        ..config.clone()
    }
}

/// Mounts and serves; reports the mount's state through `status` when daemonized.
fn mount_and_serve(
    prepared: Prepared,
    hooks: &dyn MountHooks,
    status: Option<daemon::StatusPipe>,
) -> i32 {
    let mounted = termination::install(prepared.mountpoint.clone()).and_then(|live| {
        let asked = &prepared.options.config.stack;
        let served = hooks.rewrite_stack(asked.clone());
        let config = overlay_config(
            &prepared.options.config,
            served.clone(),
            prepared.options.read_only,
        );
        tracing::debug!(?config, mountpoint = %prepared.mountpoint.display(), "mounting");
        crate::validate(&config)?;
        let mount = Mount::new(config, &prepared.mountpoint)
            .with_context(|| format!("mounting {}", prepared.mountpoint.display()))?;
        let guard = hooks.mounted(LiveMount {
            asked,
            served: &served,
            mountpoint: &prepared.mountpoint,
            handle: mount.stack_handle(),
            options: &prepared.option_strings,
            cwd: &prepared.cwd,
        });
        live.set();
        Ok((mount, guard))
    });
    // `_guard` lives until the daemon is done serving, then is dropped.
    let (mount, _guard) = match mounted {
        Ok(mounted) => mounted,
        Err(error) => {
            let code = fail(&error);
            if let Some(status) = status {
                status.report_failure(&format!("{error:#}").replace('\n', " "));
            }
            return code;
        }
    };
    tracing::info!(mountpoint = %prepared.mountpoint.display(), "mounted");
    if let Some(status) = status {
        status.report_live();
    }
    match mount.serve() {
        Ok(()) => {
            tracing::info!(mountpoint = %prepared.mountpoint.display(), "unmounted");
            0
        }
        Err(error) => {
            tracing::error!(%error, "serving failed");
            eprintln!(
                "rebasefs: serving {}: {error}",
                prepared.mountpoint.display()
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stack(upper: bool) -> StackSpec {
        StackSpec {
            lowers: vec![PathBuf::from("/l1"), PathBuf::from("/l2")],
            upper: upper.then(|| PathBuf::from("/u")),
            work: upper.then(|| PathBuf::from("/w")),
        }
    }

    fn config_for(options: &str, upper: bool) -> OverlayConfig {
        let options = options::parse(&[format!("lowerdir=/x,{options}")])
            .unwrap_or_else(|error| panic!("{error:#}"));
        overlay_config(&options.config, stack(upper), options.read_only)
    }

    #[test]
    fn default_config_keeps_the_stack() {
        let config = config_for("", true);
        assert_eq!(config.stack, stack(true));
        assert!(!config.read_only());
        assert!(config.fsync && config.default_permissions && config.noatime);
        assert_eq!(config.allow_other, nix::unistd::geteuid().is_root());
    }

    #[test]
    fn ro_puts_the_upper_on_top_of_the_lowers() {
        let config = config_for("ro", true);
        assert!(config.read_only());
        assert_eq!(
            config.stack.lowers,
            [
                PathBuf::from("/u"),
                PathBuf::from("/l1"),
                PathBuf::from("/l2")
            ]
        );
        assert_eq!(config.stack.work, None);
        assert_eq!(config_for("ro", false).stack, stack(false));
    }

    #[test]
    fn options_reach_the_config() {
        let config = config_for(
            "uidmapping=0:1000:10,gidmapping=0:2000:10,squash_to_uid=5,squash_to_gid=6,\
             xattr_permissions=2,volatile,timeout=3,context=\"a,b\",nodev,nosuid,noexec,atime,\
             allow_other,passthrough=0,threads=3,fsname=store",
            true,
        );
        assert_eq!(config.uid_map.len(), 1);
        assert_eq!(config.gid_map.first().map(|r| r.host), Some(2000));
        assert_eq!((config.squash_uid, config.squash_gid), (Some(5), Some(6)));
        assert_eq!(
            config.xattr_permissions,
            crate::XattrPermissions::ContainersUser
        );
        assert!(!config.fsync);
        assert_eq!(config.entry_timeout, Duration::from_secs(3));
        assert_eq!(config.attr_timeout, Duration::from_secs(3));
        assert_eq!(config.context.as_deref(), Some("a,b"));
        assert!(config.nodev && config.nosuid && config.noexec && !config.noatime);
        assert!(config.allow_other && !config.passthrough);
        assert_eq!(config.threads, 3);
        assert_eq!(config.fs_name, "store");
    }
}
