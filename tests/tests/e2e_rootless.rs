//! End-to-end: the rebase story on rootless Podman, as an unprivileged user with
//! /etc/subuid ranges (`uidmap`'s newuidmap), rebasefs as the mount program through
//! `--storage-opt overlay.mount_program=...` and the hook through `--hooks-dir`.
//!
//! The test creates the user `rebasefs-rootless` when absent (with subordinate id ranges),
//! makes `/dev/fuse` usable by it (mode 0666, what Debian's udev rule sets) and runs the
//! story as that user with `runuser`, `XDG_RUNTIME_DIR` set: import a base, `podman build`
//! an app with a RUN, run a container that writes, import base 2, `rebasefs rebase` (in
//! `podman unshare`, where the store's files are readable), `podman restart` (the hook moves
//! it), `podman stop` + `start` (the mount program moves it): base 2 with its writes kept;
//! then a `--uidmap`/`--gidmap` container of the rebased image.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::podman::{hooks_d_json, host, mount_program};

const USER: &str = "rebasefs-rootless";

/// The story, run by the user: `$1` the directory, `$2` the runroot, `$3` the rebasefs binary.
const STORY: &str = r#"set -euo pipefail
D=$1 RUNROOT=$2 BIN=$3
cd "$D"
p() { podman --root "$D/root" --runroot "$RUNROOT" --tmpdir "$D/tmp" --storage-driver overlay \
        --storage-opt "overlay.mount_program=$BIN" "$@"; }
base() {
  rm -rf "$D/rootfs"; mkdir -p "$D/rootfs"/{bin,etc,tmp,proc,sys,dev,root}
  cp /bin/busybox "$D/rootfs/bin/"
  for a in sh cat echo sleep; do ln -s busybox "$D/rootfs/bin/$a"; done
  echo "base $1" >"$D/rootfs/etc/base-release"
  tar -C "$D/rootfs" --numeric-owner --owner=0 --group=0 -c . |
    p import --quiet --change 'CMD=["/bin/sh"]' - "localhost/rootless/base:$1" >/dev/null
}
base 1
mkdir -p "$D/ctx"
printf 'FROM localhost/rootless/base:1\nRUN echo app > /app.txt\n' >"$D/ctx/Containerfile"
p build --quiet --network none --tag localhost/rootless/app:1 "$D/ctx" >/dev/null
p run --detach --name c1 localhost/rootless/app:1 sleep 100000 >/dev/null
echo "run: $(p exec c1 sh -c 'echo kept > /root/note; cat /etc/base-release /app.txt' | tr '\n' ' ')"
echo "mount: $(p exec c1 cat /proc/self/mountinfo | awk '$5 == "/" { for (i = 7; i < NF; i++) if ($i == "-") print $(i + 1) }')"
base 2
p unshare "$BIN" rebase localhost/rootless/app:1 --onto localhost/rootless/base:2 \
  --root "$D/root" --runroot "$RUNROOT" >/dev/null
p --hooks-dir "$D/hooks.d" restart --time 0 c1 >/dev/null
echo "restart: $(p exec c1 cat /etc/base-release /root/note /app.txt | tr '\n' ' ')"
p stop --time 0 c1 >/dev/null
p start c1 >/dev/null
echo "stop+start: $(p exec c1 cat /etc/base-release /root/note | tr '\n' ' ')"
p rm --force --time 0 c1 >/dev/null
echo "uidmap: $(p run --rm --uidmap 0:1:1000 --gidmap 0:1:1000 localhost/rootless/app:1 cat /etc/base-release /app.txt | tr '\n' ' ')"
"#;

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the user (with subordinate ids) when absent; returns its uid.
fn rootless_user() -> Result<u32> {
    if Command::new("id").arg(USER).output()?.status.success() {
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !subuid.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            run(
                "usermod",
                &[
                    "--add-subuids",
                    "300000-365535",
                    "--add-subgids",
                    "300000-365535",
                    USER,
                ],
            )?;
        }
    } else {
        run("useradd", &["--create-home", "--shell", "/bin/bash", USER])?;
    }
    let uid = run("id", &["-u", USER])?;
    uid.trim().parse().context("parsing the uid")
}

/// Runs `script ARGS` with bash as the user, with its own runtime directory.
fn as_user(uid: u32, dir: &Path, script: &str, args: &[&str]) -> Result<host::CommandOutput> {
    let runtime = format!("/run/user/{uid}");
    let mut command = Command::new("runuser");
    command
        .args([
            "-u",
            USER,
            "--",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        ])
        .arg(format!("HOME=/home/{USER}"))
        .arg(format!("XDG_RUNTIME_DIR={runtime}"))
        .arg(format!(
            "CONTAINERS_CONF={}",
            dir.join("containers.conf").display()
        ))
        .args(["bash", "-c", script, "story"])
        .args(args)
        .current_dir(dir);
    host::run_with_timeout(command, Duration::from_secs(300), dir)
}

/// Removes what the story left as the user (containers, then the store, whose files
/// belong to subordinate ids), then any process still naming the directory.
fn clean_up(uid: u32, dir: &Path, runroot: &str, bin: &str) {
    let script = r#"podman --root "$1/root" --runroot "$2" --tmpdir "$1/tmp" --storage-driver overlay \
        --storage-opt "overlay.mount_program=$3" rm --all --force --time 0 >/dev/null 2>&1
      podman unshare rm -rf "$1/root" "$2" >/dev/null 2>&1 || true"#;
    let d = dir.to_string_lossy();
    let _ = as_user(uid, dir, script, &[&d, runroot, bin]);
    host::kill_all(&host::processes_mentioning(&d));
    // Rootless Podman leaves its pause process (the user namespace's holder) behind; the
    // user exists for this test only, so none of its processes may stay.
    let pids = run("pgrep", &["-u", USER]).unwrap_or_default();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn rootless_podman_runs_and_moves_a_container() -> Result<()> {
    let uid = rootless_user()?;
    // Debian's udev rule makes /dev/fuse 0666; a host without it denies every rootless mount.
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666))?;
    let runtime = format!("/run/user/{uid}");
    std::fs::create_dir_all(&runtime)?;
    run("chown", &[&format!("{USER}:"), &runtime])?;
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))?;
    let tmp = tempfile::Builder::new()
        .prefix("rebasefs-rootless-")
        .tempdir_in("/var/tmp")?;
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    // The binary where the user can run it; the hook is the same binary.
    let bin = dir.join("rebasefs");
    std::fs::copy(mount_program()?, &bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(dir.join("hooks.d"))?;
    std::fs::write(dir.join("hooks.d/rebasefs.json"), hooks_d_json(&bin)?)?;
    std::fs::write(
        dir.join("containers.conf"),
        rebasefs_tests::podman::store::TESTS_CONTAINERS_CONF,
    )?;
    run("chown", &[&format!("{USER}:"), &dir.to_string_lossy()])?;
    let runroot = format!("{runtime}/rbfs-{}", std::process::id());
    let d = dir.to_string_lossy().into_owned();
    let b = bin.to_string_lossy().into_owned();
    let out = as_user(uid, dir, STORY, &[&d, &runroot, &b]);
    clean_up(uid, dir, &runroot, &b);
    let out = out?;
    ensure!(
        out.success(),
        "the rootless story failed: {}{}",
        out.stdout,
        out.stderr
    );
    let line = |step: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{step}: ")))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(line("run"), "base 1 app ");
    assert_eq!(
        line("mount"),
        "fuse.rebasefs",
        "the rootfs must be served by rebasefs"
    );
    assert_eq!(
        line("restart"),
        "base 2 kept app ",
        "podman restart with the hook"
    );
    assert_eq!(line("stop+start"), "base 2 kept ");
    // containers-storage passes `uidmapping=:0:1:1000` (a leading ':').
    assert_eq!(line("uidmap"), "base 2 app ", "podman run --uidmap");
    Ok(())
}
