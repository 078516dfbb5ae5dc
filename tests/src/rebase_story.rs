//! The rebase story's images and the `rebasefs` CLI as the e2e suite drives it.
//!
//! Base images are busybox-static root filesystems with passwd/group/shadow and a small
//! `adduser` script (Debian's busybox-static has no adduser applet). Version 2 changes,
//! adds and removes files and adds a system user, as a distribution update would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::podman::host::{self, CommandOutput};
use crate::podman::images::{write_files, BUSYBOX};
use crate::podman::Podman;

pub const BASE_1: &str = "localhost/story/base:1";
pub const BASE_2: &str = "localhost/story/base:2";
pub const APP: &str = "localhost/story/app:1";
/// Built FROM base:1 with the same first step as [`APP`]: shares its first app layer.
pub const APP_VARIANT: &str = "localhost/story/app-variant:1";

/// The base's `adduser`: appends passwd/group/shadow lines and makes the home directory.
const ADDUSER: &str = r#"#!/bin/sh
uid=""
while [ $# -gt 1 ]; do
  case "$1" in -u) uid=$2; shift 2 ;; *) shift ;; esac
done
name=$1
[ -n "$uid" ] || uid=1000
echo "$name:x:$uid:$uid::/home/$name:/bin/sh" >> /etc/passwd
echo "$name:x:$uid:" >> /etc/group
echo "$name:!:19000:0:99999:7:::" >> /etc/shadow
mkdir -p "/home/$name" && chown "$uid:$uid" "/home/$name"
"#;

pub const APP_CONTAINERFILE: &str = r#"FROM localhost/story/base:1
RUN mkdir -p /app && echo "app payload" > /app/app.txt && rm /etc/app-deletes-me
RUN adduser -D -u 1000 appuser
CMD ["sleep", "1000000"]
"#;

pub const APP_VARIANT_CONTAINERFILE: &str = r#"FROM localhost/story/base:1
RUN mkdir -p /app && echo "app payload" > /app/app.txt && rm /etc/app-deletes-me
RUN echo "a different second layer" > /app/other.txt
CMD ["sleep", "1000000"]
"#;

/// Files of base `version` (1 or 2).
fn base_files(version: u32) -> Vec<(String, String)> {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    let mut shadow = String::from("root:*:19000:0:99999:7:::\n");
    let mut files = Vec::new();
    if version >= 2 {
        passwd.push_str("syslog:x:101:101:syslog:/:/bin/false\n");
        group.push_str("syslog:x:101:\n");
        shadow.push_str("syslog:*:19000:0:99999:7:::\n");
        files.push((
            "etc/new-in-base-2".to_string(),
            "added in base 2\n".to_string(),
        ));
    } else {
        files.push((
            "etc/removed-in-base-2".to_string(),
            "removed in base 2\n".to_string(),
        ));
    }
    passwd.push_str("nobody:x:65534:65534:nobody:/:/bin/false\n");
    group.push_str("nogroup:x:65534:\n");
    files.extend([
        ("etc/passwd".to_string(), passwd),
        ("etc/group".to_string(), group),
        ("etc/shadow".to_string(), shadow),
        ("etc/base-release".to_string(), format!("base {version}\n")),
        (
            "etc/app-deletes-me".to_string(),
            format!("the app deletes this (version {version})\n"),
        ),
        (
            "usr/share/base/data.txt".to_string(),
            format!("shared base data {version}\n"),
        ),
        ("usr/sbin/adduser".to_string(), ADDUSER.to_string()),
    ]);
    files
}

/// Imports base `version` as `localhost/story/base:<version>`.
pub fn import_base(podman: &Podman, version: u32) -> Result<()> {
    let rootfs = podman.work().join(format!("story-rootfs-{version}"));
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    for dir in ["tmp", "proc", "sys", "dev", "root", "var", "run", "home"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).context("copying busybox")?;
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().map(str::trim) {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    let files = base_files(version);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    write_files(&rootfs, &refs)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        rootfs.join("usr/sbin/adduser"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::set_permissions(
        rootfs.join("etc/shadow"),
        std::fs::Permissions::from_mode(0o640),
    )?;
    let tar = podman.work().join(format!("story-rootfs-{version}.tar"));
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()?;
    if !status.success() {
        bail!("tar of base {version} failed");
    }
    let tar = tar.to_string_lossy().into_owned();
    let tag = format!("localhost/story/base:{version}");
    podman.run(&["import", "--change", "CMD=[\"/bin/sh\"]", &tar, &tag])?;
    Ok(())
}

/// base:1, app and app-variant FROM it, base:2.
pub fn build_story_images(podman: &Podman) -> Result<()> {
    import_base(podman, 1)?;
    podman.build(APP, APP_CONTAINERFILE, &[])?;
    podman.build(APP_VARIANT, APP_VARIANT_CONTAINERFILE, &[])?;
    import_base(podman, 2)
}

/// The `rebasefs` CLI pointed at a test store.
pub struct Cli<'a> {
    podman: &'a Podman,
}

impl<'a> Cli<'a> {
    pub fn new(podman: &'a Podman) -> Self {
        Self { podman }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.podman.mount_program_path());
        command
            .args(args)
            .arg("--root")
            .arg(self.podman.root())
            .arg("--runroot")
            .arg(self.podman.dir().join("runroot"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.podman.dir().join("storage.conf"),
            )
            .env_remove("REBASEFS_NO_REWRITE");
        command
    }

    /// Runs the CLI, whatever its exit status.
    pub fn output_with(&self, command: Command) -> Result<CommandOutput> {
        host::run_with_timeout(command, Duration::from_secs(120), self.podman.dir())
    }

    pub fn output(&self, args: &[&str]) -> Result<CommandOutput> {
        self.output_with(self.command(args))
    }

    /// Runs the CLI, requires success, returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if !out.success() {
            bail!(
                "rebasefs {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr
            );
        }
        Ok(out.stdout)
    }

    /// Runs the CLI with `--format json`, parses stdout.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.run(&all)?;
        serde_json::from_str(&out)
            .with_context(|| format!("rebasefs {} printed no JSON: {out}", args.join(" ")))
    }

    /// Runs the CLI, requires failure, returns (exit code, stderr).
    pub fn fail(&self, args: &[&str]) -> Result<(i32, String)> {
        let out = self.output(args)?;
        if out.success() {
            bail!(
                "rebasefs {} succeeded but should fail: {}",
                args.join(" "),
                out.stdout
            );
        }
        Ok((out.status.code().unwrap_or(-1), out.stderr))
    }

    pub fn repo_db(&self) -> PathBuf {
        self.podman.root().join("rebasefs").join("repo.db")
    }
}

/// An inspection mount made by `rebasefs mount`; unmounted on drop.
pub struct InspectMount {
    pub dir: PathBuf,
    mounted: bool,
}

impl InspectMount {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, mounted: true }
    }

    /// Unmounts with `rebasefs umount`.
    pub fn unmount(mut self, cli: &Cli<'_>) -> Result<()> {
        self.mounted = false;
        let d = self.dir.to_string_lossy().into_owned();
        cli.run(&["umount", &d])?;
        Ok(())
    }
}

impl Drop for InspectMount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Regular files and symlinks below `dirs` of `root`, with a content digest, sorted
/// (`path sha256`), as the host sees a mounted tree.
pub fn tree_digest(root: &Path, dirs: &[&str]) -> Result<Vec<String>> {
    let list = dirs.join(" ");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find {list} \\( -type f -o -type l \\) | sort | xargs sha256sum",
            root.display()
        ))
        .output()?;
    if !out.status.success() {
        bail!(
            "hashing {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Writes an OCI hooks directory with `rebasefs hook` at stage precreate (the project's
/// `hooks/rebasefs.json`, pointed at the binary under test); returns it.
pub fn hooks_dir(podman: &Podman) -> Result<PathBuf> {
    let dir = podman.dir().join("hooks.d");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("rebasefs.json"),
        crate::podman::hooks_d_json(podman.mount_program_path())?,
    )?;
    Ok(dir)
}
