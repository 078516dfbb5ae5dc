//! `rebasefs hook`: the Podman `precreate` hook that moves a container onto the stack the
//! repository assigns when it (re)starts.
//!
//! `podman restart` keeps the rootfs mounted, so the mount program is not run again. At
//! `precreate` (Podman runs it before the runtime mounts /proc, /dev, ... inside the
//! rootfs, and before the container process exists) this hook checks whether the daemon
//! serving the rootfs serves the stack the repository now assigns. If not, it asks that
//! daemon to swap its stack through its control socket (`stack_rewrite::watch`), or, for
//! a daemon without one, unmounts the rootfs and runs the mount program again with the
//! daemon's own arguments, so it picks the assigned stack up as at any mount.
//!
//! A precreate hook gets the proposed config.json on stdin and prints the config to use:
//! it is printed back unchanged. Problems go to stderr; only a failed remount (which would
//! leave the container without a rootfs) fails the start.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use rebasefs_plugin::serve::{self, StackSpec};

/// Reads the config from stdin, refreshes the rootfs's stack if needed, echoes the config.
pub fn run() -> anyhow::Result<i32> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let parsed: Option<serde_json::Value> = serde_json::from_str(&input).ok();
    let mut code = 0;
    match &parsed {
        // An OCI state: a later stage, where swapping would pull mounts from under runc.
        Some(v) if v.get("bundle").is_some() => return Ok(0),
        Some(config) => match refresh(config) {
            Ok(Some(what)) => tracing::info!(%what, "rootfs stack refreshed"),
            Ok(None) => {}
            Err(error) => {
                eprintln!("rebasefs hook: {error:#}");
                code = 1;
            }
        },
        None => eprintln!("rebasefs hook: stdin is not a JSON config"),
    }
    std::io::stdout().write_all(input.as_bytes())?;
    Ok(code)
}

fn refresh(config: &serde_json::Value) -> anyhow::Result<Option<String>> {
    let Some(root) = config["root"]["path"].as_str().map(PathBuf::from) else {
        return Ok(None);
    };
    let Some(graphroot) = serve::graphroot_of_mountpoint(&root) else {
        return Ok(None); // not a containers-storage rootfs
    };
    let socket = serve::refresh_socket(&graphroot, &root);
    if socket.exists() {
        match ask_daemon(&socket) {
            Ok(answer) => return Ok(Some(answer)),
            Err(error) => tracing::debug!(%error, "control socket unusable; trying a remount"),
        }
    }
    remount(&root, &graphroot)
}

fn ask_daemon(socket: &Path) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(serve::refresh::REQUEST.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim().to_string();
    if answer.starts_with("error") || answer.is_empty() {
        bail!("daemon answered {answer:?}");
    }
    Ok(answer)
}

/// Unmounts `root` and mounts it again with the serving daemon's own arguments, when the
/// repository assigns the container another stack than the one it was mounted with.
fn remount(root: &Path, graphroot: &Path) -> anyhow::Result<Option<String>> {
    let Some(argv) = daemon_argv(root)? else {
        return Ok(None); // not served by a rebasefs daemon
    };
    let home = graphroot.join("overlay");
    let Some(spec) = stack_of_argv(&argv, &home) else {
        return Ok(None);
    };
    if !serve::needs_remount(&spec)? {
        return Ok(None);
    }
    let Some(program) = argv.first() else {
        return Ok(None);
    };
    let unmounted = ["fusermount3", "fusermount"].iter().any(|tool| {
        Command::new(tool)
            .arg("-u")
            .arg(root)
            .status()
            .is_ok_and(|s| s.success())
    });
    if !unmounted {
        bail!(
            "could not unmount {} to move it onto its new stack",
            root.display()
        );
    }
    let out = Command::new(program)
        .args(argv.get(1..).unwrap_or_default())
        .current_dir(&home)
        .env_remove(serve::NO_REWRITE_ENV)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "remounting {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Some("remounted".into()))
}

/// The argv of the rebasefs daemon whose mountpoint (last argument) is `root`.
fn daemon_argv(root: &Path) -> anyhow::Result<Option<Vec<String>>> {
    let root = root.to_string_lossy();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.last().map(String::as_str) != Some(root.as_ref())
            || !argv.iter().any(|a| a.starts_with("-o"))
        {
            continue;
        }
        let is_rebasefs = std::fs::read_link(entry.path().join("exe"))
            .ok()
            .and_then(|exe| {
                exe.file_name()
                    .map(|n| n.to_string_lossy().starts_with("rebasefs"))
            })
            .unwrap_or(false);
        if is_rebasefs {
            return Ok(Some(argv));
        }
    }
    Ok(None)
}

/// The stack a mount-program command line asked for (lowerdir/upperdir/workdir of all
/// `-o` options; relative paths are relative to the driver home, the mount program's cwd).
fn stack_of_argv(argv: &[String], home: &Path) -> Option<StackSpec> {
    let mut options = Vec::new();
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-o" {
            options.extend(split_options(args.next()?));
        } else if let Some(rest) = arg.strip_prefix("-o") {
            options.extend(split_options(rest));
        }
    }
    let path = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            home.join(p)
        }
    };
    let mut spec = StackSpec {
        lowers: Vec::new(),
        upper: None,
        work: None,
    };
    for option in options {
        if let Some(v) = option.strip_prefix("lowerdir=") {
            spec.lowers = v.split(':').filter(|l| !l.is_empty()).map(path).collect();
        } else if let Some(v) = option.strip_prefix("upperdir=") {
            spec.upper = Some(path(v));
        } else if let Some(v) = option.strip_prefix("workdir=") {
            spec.work = Some(path(v));
        }
    }
    (!spec.lowers.is_empty() && spec.upper.is_some()).then_some(spec)
}

/// Splits a `-o` string at commas outside double quotes (SELinux `context="a,b"`).
fn split_options(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.retain(|o| !o.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stack_from_a_mount_program_command_line() {
        let argv: Vec<String> = [
            "/usr/bin/rebasefs",
            "-o",
            "lowerdir=l/AAA:/g/overlay/l/BBB,upperdir=/g/overlay/x/diff,workdir=/g/overlay/x/work,context=\"system_u:object_r:container_file_t:s0:c1,c2\"",
            "/g/overlay/x/merged",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let spec = stack_of_argv(&argv, Path::new("/g/overlay")).unwrap();
        assert_eq!(
            spec.lowers,
            [
                PathBuf::from("/g/overlay/l/AAA"),
                PathBuf::from("/g/overlay/l/BBB")
            ]
        );
        assert_eq!(spec.upper, Some(PathBuf::from("/g/overlay/x/diff")));
        assert_eq!(spec.work, Some(PathBuf::from("/g/overlay/x/work")));
        assert_eq!(split_options("a,b=\"c,d\",e"), ["a", "b=\"c,d\"", "e"]);
        // Read-only mounts (no upper) are never remounted.
        let ro = ["rebasefs", "-o", "lowerdir=/a:/b", "/m"].map(String::from);
        assert!(stack_of_argv(&ro, Path::new("/g")).is_none());
    }
}
