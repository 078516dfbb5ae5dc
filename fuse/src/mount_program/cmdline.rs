//! The mount program's argv grammar: `rebasefs [-f] [-d] [-o OPTS]... [SOURCE] MOUNTPOINT`.
//!
//! containers-storage runs `rebasefs -o OPTS MOUNTPOINT`; `mount.fuse3` runs
//! `rebasefs SOURCE MOUNTPOINT -o OPTS` (SOURCE is ignored, as fuse-overlayfs does). A
//! SOURCE is recognised only in that shape, both paths before any `-o`: two paths after
//! an `-o` are two mountpoints, refused (fuse-overlayfs silently mounts the last).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// What argv asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Mount(MountRequest),
}

/// A mount request before its `-o` strings are interpreted.
#[derive(Debug, PartialEq, Eq)]
pub struct MountRequest {
    /// Stay in the foreground (`-f`, implied by `-d`).
    pub foreground: bool,
    /// Debug logging (`-d`).
    pub debug: bool,
    /// Every `-o` argument, in order; later options win.
    pub option_strings: Vec<String>,
    pub mountpoint: PathBuf,
}

/// Parses argv (including argv[0]).
pub fn parse(args: &[OsString]) -> Result<Command> {
    let mut foreground = false;
    let mut debug = false;
    let mut option_strings = Vec::new();
    let mut positionals: Vec<PathBuf> = Vec::new();
    // How many positionals came before the first `-o` (mount.fuse3's SOURCE MOUNTPOINT).
    let mut before_options: Option<usize> = None;
    let mut only_positionals = false;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if only_positionals {
            positionals.push(PathBuf::from(arg));
            continue;
        }
        let Some(text) = arg.to_str() else {
            // Not UTF-8: can only be a path.
            positionals.push(PathBuf::from(arg));
            continue;
        };
        match text {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-f" => foreground = true,
            "-d" | "--debug" => {
                debug = true;
                foreground = true;
            }
            "-o" => {
                before_options.get_or_insert(positionals.len());
                let value = rest.next().context("option -o needs an argument")?;
                let value = value
                    .to_str()
                    .context("the argument of -o is not valid UTF-8")?;
                option_strings.push(value.to_string());
            }
            "--" => only_positionals = true,
            _ if text.starts_with("-o") => {
                before_options.get_or_insert(positionals.len());
                option_strings.push(text[2..].to_string())
            }
            _ if text.starts_with('-') && text.len() > 1 => {
                bail!("unknown argument {text:?} (see --help)")
            }
            _ => positionals.push(PathBuf::from(text)),
        }
    }
    let mountpoint = match positionals.as_slice() {
        [] => bail!("no mountpoint given (usage: rebasefs [-f] [-d] -o OPTIONS MOUNTPOINT)"),
        [_] => positionals.pop().context("no mountpoint given")?,
        [first, second] if before_options.is_some_and(|n| n < 2) => bail!(
            "two mountpoints given, {} and {}: expected one MOUNTPOINT (a SOURCE is taken \
             only first, before the options, as mount.fuse3 passes it: rebasefs SOURCE \
             MOUNTPOINT -o OPTIONS)",
            first.display(),
            second.display()
        ),
        [_, _] => positionals.pop().context("no mountpoint given")?,
        _ => bail!(
            "too many arguments: expected only a MOUNTPOINT (and optionally a SOURCE before it)"
        ),
    };
    if option_strings.is_empty() {
        bail!("no options given: at least -o lowerdir=... is needed");
    }
    Ok(Command::Mount(MountRequest {
        foreground,
        debug,
        option_strings,
        mountpoint,
    }))
}

/// The `--help` text.
pub fn usage() -> String {
    format!(
        "rebasefs {version}: overlay filesystem in FUSE, a drop-in mount_program for containers-storage

usage: rebasefs [-f] [-d] -o lowerdir=TOP:...:BASE[,upperdir=U,workdir=W][,OPTIONS] MOUNTPOINT
       rebasefs SOURCE MOUNTPOINT -o OPTIONS   (as mount.fuse3 runs it; SOURCE is ignored)
       rebasefs SUBCOMMAND ...   (status, rebase, commit, auto-update, rollback, mount, umount,
                                  gc, check, help)

  -f              stay in the foreground (default: daemonize once the mount is live)
  -d              debug logging to stderr (implies -f)
  -o OPTIONS      comma-separated mount options; may be repeated
  -h, --help      this text
  -V, --version   print the version

overlay options:
  lowerdir=A:B:C        read-only layers, top first; '\\:' escapes a colon; relative
                        paths are relative to the current directory
  upperdir=U,workdir=W  writable layer and its work directory (same filesystem);
                        without upperdir the mount is read-only
  context=\"LABEL\"       SELinux label (quotes protect commas)
  uidmapping=C:H:S[:C:H:S...], gidmapping=...   container:host:size id ranges
  squash_to_root, squash_to_uid=N, squash_to_gid=N   show every file owned by N
  xattr_permissions=0|1|2   0 pass through, 1 security.*, 2 user.containers.* stat overrides
  volatile, fsync=0|1   skip (or honour) fsync
  redirect_dir=on|off   rename directories from lower layers (on, default) or fail
                        such renames with EXDEV (off: callers copy, as with fuse-overlayfs)
  timeout=SECONDS       kernel entry/attribute cache lifetime
  passthrough=0|1, threads=N   FUSE passthrough for file I/O, dispatch threads
generic options: rw, ro, [no]dev, [no]suid, [no]exec, [no]atime, allow_other,
  allow_root, default_permissions, fsname=NAME, ... (unknown options: warning, ignored)

logging: REBASEFS_LOG or RUST_LOG (tracing env-filter syntax); a daemon logs to
REBASEFS_LOG_FILE when set, and (without -d) to the systemd journal when it runs.
",
        version = env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("rebasefs")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn mount(words: &[&str]) -> MountRequest {
        match parse(&argv(words)) {
            Ok(Command::Mount(request)) => request,
            other => panic!("expected a mount request for {words:?}, got {other:?}"),
        }
    }

    #[test]
    fn containers_storage_form() {
        let request = mount(&["-o", "lowerdir=a,upperdir=u,workdir=w", "/m"]);
        assert!(!request.foreground);
        assert!(!request.debug);
        assert_eq!(request.option_strings, ["lowerdir=a,upperdir=u,workdir=w"]);
        assert_eq!(request.mountpoint, PathBuf::from("/m"));
    }

    #[test]
    fn repeated_and_attached_o() {
        let request = mount(&["-olowerdir=a", "/m", "-o", "ro", "-f"]);
        assert!(request.foreground);
        assert_eq!(request.option_strings, ["lowerdir=a", "ro"]);
    }

    #[test]
    fn debug_implies_foreground() {
        let request = mount(&["-d", "-o", "lowerdir=a", "/m"]);
        assert!(request.debug && request.foreground);
    }

    #[test]
    fn mount_fuse_form_ignores_source() {
        let request = mount(&["rebasefs", "/m", "-o", "lowerdir=a"]);
        assert_eq!(request.mountpoint, PathBuf::from("/m"));
    }

    #[test]
    fn two_mountpoints_refused() {
        for words in [
            &["-o", "lowerdir=a", "/m1", "/m2"][..],
            &["/m1", "-o", "lowerdir=a", "/m2"],
            &["-olowerdir=a", "/m1", "/m2"],
        ] {
            let error = parse(&argv(words)).expect_err("two mountpoints must be refused");
            assert!(
                error.to_string().contains("two mountpoints"),
                "{words:?}: {error}"
            );
        }
    }

    #[test]
    fn double_dash_allows_dash_paths() {
        let request = mount(&["-o", "lowerdir=a", "--", "-weird"]);
        assert_eq!(request.mountpoint, PathBuf::from("-weird"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&argv(&["--help"])).ok(), Some(Command::Help));
        assert_eq!(parse(&argv(&["-h"])).ok(), Some(Command::Help));
        assert_eq!(parse(&argv(&["--version"])).ok(), Some(Command::Version));
        assert_eq!(parse(&argv(&["-V"])).ok(), Some(Command::Version));
        assert!(usage().contains("lowerdir="));
    }

    #[test]
    fn errors() {
        assert!(parse(&argv(&[])).is_err());
        assert!(
            parse(&argv(&["-o", "lowerdir=a"])).is_err(),
            "no mountpoint"
        );
        assert!(parse(&argv(&["/m"])).is_err(), "no options");
        assert!(parse(&argv(&["/m", "-o"])).is_err(), "-o without value");
        assert!(parse(&argv(&["-x", "-o", "lowerdir=a", "/m"])).is_err());
        assert!(parse(&argv(&["-o", "lowerdir=a", "s", "/m", "extra"])).is_err());
    }
}
