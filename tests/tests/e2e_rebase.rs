//! End-to-end rebase story on real Podman with rebasefs as the store's mount_program.
//!
//! base:1 -> app built FROM base:1 (adds files, deletes a base file, `adduser` in a RUN) ->
//! container c1 running and writing -> base:2 (changed, added, removed files, a new system
//! user) -> `rebasefs rebase app --onto base:2 --policy merge` -> `podman restart c1`: c1
//! sees base:2, its app files and its own writes; passwd holds both users; a second
//! container and a second image reuse the stored rebased layers (hit counts, nothing
//! recomputed); `rebasefs mount` shows c1's tree; `rollback` brings c1 back onto base:1.
//! Plus the errors a user can act on. Tests run one at a time (shared FUSE and runtime state).

use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::podman::Podman;
use rebasefs_tests::rebase_story::{
    build_story_images, tree_digest, Cli, InspectMount, APP, APP_VARIANT, BASE_2,
};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The serial guard and a store with the story's images.
fn story_store() -> Result<(MutexGuard<'static, ()>, Podman)> {
    let guard = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    Ok((guard, podman))
}

/// Runs c1 of app (on base 1) and rebases app onto base 2 with `--policy merge`.
fn run_c1_and_rebase(podman: &Podman, cli: &Cli<'_>) -> Result<()> {
    podman.run(&["run", "--detach", "--name", "c1", APP])?;
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    Ok(())
}

fn exec(podman: &Podman, container: &str, script: &str) -> Result<String> {
    podman.run(&["exec", container, "sh", "-c", script])
}

/// Files c1 and an inspection mount must agree on: everything the image provides.
const IMAGE_DIRS: &[&str] = &["etc", "app", "usr", "bin", "home"];
/// Files Podman/runc add to every container (bind mounts, the /etc/mtab link).
fn container_specific(line: &str) -> bool {
    ["etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab"]
        .iter()
        .any(|p| line.ends_with(&format!("  {p}")))
}

fn hits_of(status: &Value, rebased_id: &str) -> i64 {
    status["rebased_layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["id"] == rebased_id))
        .and_then(|l| l["hits"].as_i64())
        .unwrap_or(-1)
}

/// The base `status` says a container runs on.
fn runs_on(status: &Value, container: &str) -> String {
    status["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["runs_on"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn rebased_ids(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l["rebased_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn rebase_story_end_to_end() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    // `rebasefs hook` as a Podman precreate hook makes `podman restart` move containers.
    let hooks = rebasefs_tests::rebase_story::hooks_dir(&podman)?;
    let hooks = hooks.to_string_lossy().into_owned();
    let restart = |name: &str| -> Result<String> {
        podman.run(&[
            "--hooks-dir",
            hooks.as_str(),
            "restart",
            "--time",
            "0",
            name,
        ])
    };

    // c1 runs on base:1 and writes.
    podman.run(&["run", "--detach", "--name", "c1", APP])?;
    exec(&podman, "c1", "echo 'written by c1' > /root/c1-note.txt")?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 1\n");

    // Status before: app's base is base:1, found from the build annotation.
    let status = cli.json(&["status"])?;
    let app = status["images"]
        .as_array()
        .and_then(|is| is.iter().find(|i| i["name"] == APP))
        .context("app missing from status")?;
    assert_eq!(app["base"], "localhost/story/base:1");
    assert_eq!(app["base_found_by"], "annotation-name");

    // Dry run: a plan and a conflict report, nothing written.
    let dry = cli.json(&[
        "rebase",
        APP,
        "--onto",
        BASE_2,
        "--policy",
        "merge",
        "--dry-run",
    ])?;
    assert_eq!(dry["dry_run"], true);
    ensure!(!cli.repo_db().exists(), "a dry run created the repository");

    // The rebase, timed together with the restart that moves c1.
    let started = Instant::now();
    let report = cli.json(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    restart("c1")?;
    let rebase_and_restart = started.elapsed();

    let conflict_paths: Vec<&str> = report["conflicts"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["path"].as_str()).collect())
        .unwrap_or_default();
    for path in [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/app-deletes-me",
    ] {
        ensure!(
            conflict_paths.contains(&path),
            "conflict report misses {path}: {conflict_paths:?}"
        );
    }
    let merged: Vec<&str> = report["resolutions"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["how"] == "merged")
                .filter_map(|r| r["path"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(merged, ["/etc/group", "/etc/passwd", "/etc/shadow"]);
    ensure!(
        report["layers"].as_array().is_some_and(|l| l.len() == 2),
        "app has two layers"
    );
    ensure!(
        report["layers"]
            .as_array()
            .is_some_and(|l| l.iter().all(|x| x["reused"] == false)),
        "first rebase computed everything"
    );

    // c1 after the restart: base:2, its app files, its own writes, both users.
    let view = exec(
        &podman,
        "c1",
        "cat /etc/base-release /etc/new-in-base-2 /app/app.txt /root/c1-note.txt; \
         test -e /etc/removed-in-base-2 || echo removed-gone; test -e /etc/app-deletes-me || echo app-delete-kept",
    )?;
    assert_eq!(
        view,
        "base 2\nadded in base 2\napp payload\nwritten by c1\nremoved-gone\napp-delete-kept\n"
    );
    let passwd = exec(&podman, "c1", "cat /etc/passwd")?;
    assert_eq!(
        passwd,
        "root:x:0:0:root:/root:/bin/sh\nsyslog:x:101:101:syslog:/:/bin/false\n\
         nobody:x:65534:65534:nobody:/:/bin/false\nappuser:x:1000:1000::/home/appuser:/bin/sh\n"
    );
    ensure!(
        exec(&podman, "c1", "id appuser")?.contains("uid=1000"),
        "appuser unknown"
    );
    assert_eq!(
        runs_on(&cli.json(&["status"])?, "c1"),
        "localhost/story/base:2"
    );
    // The rootfs is still served by the mount program (a FUSE mount).
    let merged_dir = podman.run(&[
        "inspect",
        "--format",
        "{{.GraphDriver.Data.MergedDir}}",
        "c1",
    ])?;
    podman.assert_served_by_mount_program(std::path::Path::new(merged_dir.trim()))?;

    // Read-only image mounts (`podman image mount`) get the rebased stack too.
    let image_root = podman.run(&["image", "mount", APP])?;
    let release =
        std::fs::read_to_string(std::path::Path::new(image_root.trim()).join("etc/base-release"))?;
    podman.run(&["image", "umount", APP])?;
    assert_eq!(release, "base 2\n");

    // A second container of app: served from the repository, hits counted, nothing new.
    let ids = rebased_ids(&report);
    let before = cli.json(&["status"])?;
    let layers_before = before["rebased_layers"].as_array().map(Vec::len);
    podman.run(&["run", "--detach", "--name", "c2", APP])?;
    assert_eq!(exec(&podman, "c2", "cat /etc/base-release")?, "base 2\n");
    let after = cli.json(&["status"])?;
    assert_eq!(
        after["rebased_layers"].as_array().map(Vec::len),
        layers_before
    );
    for id in &ids {
        assert_eq!(
            hits_of(&after, id),
            hits_of(&before, id) + 1,
            "c2 did not reuse layer {id}"
        );
    }

    // A second image sharing app's first layer: that layer is a repository hit.
    let variant = cli.json(&["rebase", APP_VARIANT, "--onto", BASE_2, "--policy", "merge"])?;
    assert_eq!(variant["base_changes_reused"], true);
    let first = ids.first().context("no rebased layers")?;
    let vl = variant["layers"].as_array().context("variant layers")?;
    assert_eq!(
        vl.first().map(|l| &l["rebased_id"]),
        Some(&Value::from(first.as_str()))
    );
    assert_eq!(vl.first().map(|l| &l["reused"]), Some(&Value::Bool(true)));
    assert_eq!(vl.get(1).map(|l| &l["reused"]), Some(&Value::Bool(false)));
    let after_variant = cli.json(&["status"])?;
    assert_eq!(hits_of(&after_variant, first), hits_of(&after, first) + 1);

    // rebasefs mount shows the same tree c1 sees.
    let inspect_dir = podman.work().join("inspect");
    std::fs::create_dir_all(&inspect_dir)?;
    let dir_arg = inspect_dir.to_string_lossy().into_owned();
    cli.run(&[
        "mount", APP, "--onto", BASE_2, "--policy", "merge", &dir_arg,
    ])?;
    let inspect = InspectMount::new(inspect_dir.clone());
    let mounted: Vec<String> = tree_digest(&inspect_dir, IMAGE_DIRS)?
        .into_iter()
        .filter(|l| !container_specific(l))
        .collect();
    let inside: Vec<String> = exec(
        &podman,
        "c1",
        &format!(
            "cd / && find {} -xdev \\( -type f -o -type l \\) | sort | xargs sha256sum",
            IMAGE_DIRS.join(" ")
        ),
    )?
    .lines()
    .filter(|l| !container_specific(l))
    .map(str::to_string)
    .collect();
    ensure!(
        mounted.len() > 100,
        "inspection mount shows only {} files",
        mounted.len()
    );
    let only_mounted: Vec<&String> = mounted.iter().filter(|l| !inside.contains(l)).collect();
    let only_inside: Vec<&String> = inside.iter().filter(|l| !mounted.contains(l)).collect();
    ensure!(
        only_mounted.is_empty() && only_inside.is_empty(),
        "rebasefs mount differs from c1's tree: only in the mount {only_mounted:?}, only in c1 {only_inside:?}"
    );
    inspect.unmount(&cli)?;

    // Rollback: c1 back on base:1 at its next restart, its writes kept.
    cli.run(&["rollback", APP])?;
    restart("c1")?;
    assert_eq!(
        exec(&podman, "c1", "cat /etc/base-release /root/c1-note.txt")?,
        "base 1\nwritten by c1\n"
    );
    assert_eq!(
        exec(&podman, "c1", "grep -c syslog /etc/passwd || true")?,
        "0\n"
    );
    assert_eq!(
        runs_on(&cli.json(&["status"])?, "c1"),
        "localhost/story/base:1"
    );
    // gc keeps what a running container (c2, still on base:2) or a rollback step can use.
    cli.json(&["gc"])?;
    assert_eq!(
        exec(&podman, "c2", "cat /etc/base-release /etc/new-in-base-2")?,
        "base 2\nadded in base 2\n"
    );
    let kept = cli.json(&["status"])?;
    for id in &ids {
        ensure!(
            hits_of(&kept, id) >= 0,
            "gc dropped rebased layer {id} that c2 runs on"
        );
    }
    let check = cli.json(&["check"])?;
    assert_eq!(check["ok"], true, "check: {check}");

    // The classic way for the closing note: rebuild app on base:2 without cache + recreate.
    let containerfile = rebasefs_tests::rebase_story::APP_CONTAINERFILE.replace("base:1", "base:2");
    let started = Instant::now();
    podman.build("localhost/story/app:2", &containerfile, &[])?;
    podman.run(&["rm", "--force", "--time", "0", "c1"])?;
    podman.run(&["run", "--detach", "--name", "c1", "localhost/story/app:2"])?;
    let rebuild_and_recreate = started.elapsed();
    eprintln!(
        "timing: rebasefs rebase + podman restart = {} ms; podman build (no cache) + recreate = {} ms",
        rebase_and_restart.as_millis(),
        rebuild_and_recreate.as_millis()
    );
    podman.finish()
}

#[test]
fn errors_users_can_act_on() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);

    let (code, err) = cli.fail(&["rebase", "localhost/story/nosuch:1", "--onto", BASE_2])?;
    assert_eq!(code, 1);
    ensure!(
        err.contains("unknown image") && err.lines().count() == 1,
        "unclear: {err}"
    );

    // base:2 is not what app was built on.
    let (code, err) = cli.fail(&["rebase", APP, "--base", BASE_2, "--onto", BASE_2])?;
    assert_eq!(code, 1);
    ensure!(err.contains("not a prefix"), "unclear: {err}");

    // refuse: conflicts no rule resolves abort (passwd is merged by default, the file
    // the app deleted and the base changed is not), nothing is written.
    let (code, err) = cli.fail(&["rebase", APP, "--onto", BASE_2, "--policy", "refuse"])?;
    assert_eq!(code, 1);
    ensure!(
        err.contains("refusing")
            && err.contains("/etc/app-deletes-me")
            && !err.contains("/etc/passwd"),
        "unclear: {err}"
    );
    ensure!(
        !cli.repo_db().exists(),
        "a refused rebase created the repository"
    );

    let (code, err) = cli.fail(&["rebase", APP, "--onto", BASE_2, "--policy", "sideways"])?;
    assert_eq!(code, 1);
    ensure!(err.contains("invalid policy"), "unclear: {err}");

    // A writer holding containers-storage's layers lock: reported, not waited on forever.
    let lock_path = podman.root().join("overlay-layers/layers.lock");
    let lock_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)?;
    let request = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(
        lock_file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETLK(&request),
    )?;
    let mut command = cli.command(&["rebase", APP, "--onto", BASE_2]);
    command.env("REBASEFS_LOCK_TIMEOUT_MS", "300");
    let out = cli.output_with(command)?;
    drop(lock_file);
    ensure!(
        !out.success(),
        "rebase ran while the store was write-locked"
    );
    ensure!(out.stderr.contains("locked"), "unclear: {}", out.stderr);

    // A corrupt repository: a clear message, and the mount program still serves the original.
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    std::fs::write(cli.repo_db(), vec![0x5au8; 16384])?;
    for wal in ["repo.db-wal", "repo.db-shm"] {
        let _ = std::fs::remove_file(podman.root().join("rebasefs").join(wal));
    }
    // status reports it instead of failing: every rebase is out of force.
    let status = cli.json(&["status"])?;
    ensure!(
        status["repository_problem"]
            .as_str()
            .is_some_and(|p| p.contains("corrupt")),
        "unclear: {status}"
    );
    let (code, err) = cli.fail(&["check"])?;
    assert_eq!(code, 1);
    ensure!(
        err.contains("corrupt") && err.lines().count() == 1,
        "unclear: {err}"
    );
    let view = podman.run(&["run", "--rm", APP, "cat", "/etc/base-release"])?;
    assert_eq!(
        view, "base 1\n",
        "a corrupt repository must fall back to the original stack"
    );
    podman.finish()
}

/// A base update found by name: `podman tag` points base:1's name at the new image, so
/// `status` shows the update and `rebase` needs no `--onto`.
#[test]
fn base_update_found_by_name() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    let new_id = podman.run(&["image", "inspect", "--format", "{{.Id}}", BASE_2])?;
    let new_id = new_id.trim().trim_start_matches("sha256:").to_string();
    ensure!(
        cli.fail(&["rebase", APP])?.1.contains("no base update"),
        "rebase without --onto and without an update must say so"
    );
    podman.run(&["tag", BASE_2, "localhost/story/base:1"])?;
    let status = cli.json(&["status"])?;
    let app = status["images"]
        .as_array()
        .and_then(|is| is.iter().find(|i| i["name"] == APP))
        .context("app missing from status")?;
    ensure!(app["update"].is_string(), "no update shown: {app}");
    let report = cli.json(&["rebase", APP, "--policy", "merge"])?;
    assert_eq!(report["new_base_id"], Value::from(new_id));
    assert_eq!(report["base_found_by"], "untagged-prefix");
    podman
        .run(&["run", "--rm", APP, "cat", "/etc/base-release"])
        .map(|out| assert_eq!(out, "base 2\n"))?;
    podman.finish()
}

/// Without the hook, `podman stop` + `podman start` moves a container: stop unmounts the
/// rootfs and start mounts it again, which is when the mount program consults the repository.
#[test]
fn stop_and_start_move_the_container_without_the_hook() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    podman.run(&["run", "--detach", "--name", "c1", APP])?;
    exec(&podman, "c1", "echo 'written by c1' > /root/c1-note.txt")?;
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    // Still base 1 while running: nothing changes under a running container.
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 1\n");
    podman.run(&["stop", "--time", "0", "c1"])?;
    podman.run(&["start", "c1"])?;
    assert_eq!(
        exec(
            &podman,
            "c1",
            "cat /etc/base-release /root/c1-note.txt; grep -c syslog /etc/passwd"
        )?,
        "base 2\nwritten by c1\n1\n"
    );
    cli.run(&["rollback", APP])?;
    podman.run(&["stop", "--time", "0", "c1"])?;
    podman.run(&["start", "c1"])?;
    assert_eq!(
        exec(
            &podman,
            "c1",
            "cat /etc/base-release /root/c1-note.txt; grep -c syslog /etc/passwd || true"
        )?,
        "base 1\nwritten by c1\n0\n"
    );
    podman.finish()
}

/// A process of another user dressed up as the daemon serving a container's rootfs: its
/// executable is a copy of bash named `rebasefs-evil`, its argv[0] is a script that
/// records who ran it, its arguments copy the real daemon's and end with the rootfs.
struct ImpostorDaemon {
    child: std::process::Child,
    marker: std::path::PathBuf,
}

impl ImpostorDaemon {
    /// Starts it as `nobody` (uid/gid 65534, no supplementary groups).
    fn start(dir: &std::path::Path, options: &str, rootfs: &std::path::Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let exe = dir.join("rebasefs-evil");
        std::fs::copy("/bin/bash", &exe)?;
        let marker = dir.join("ran-as");
        let script = dir.join("evil.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nid -u > '{}'\n", marker.display()),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let child = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/bin/bash",
                "-c",
            ])
            .arg(r#"exec -a "$1" "$2" -c 'while :; do sleep 1; done' impostor -o "$3" "$4""#)
            .arg("impostor")
            .arg(&script)
            .arg(&exe)
            .arg(options)
            .arg(rootfs)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting the impostor as nobody")?;
        let pid = child.id();
        // Wait until it has exec'd into its disguise.
        for _ in 0..100 {
            let exe_now = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            if exe_now.as_deref() == Some(exe.as_path()) {
                return Ok(Self { child, marker });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        anyhow::bail!("the impostor never became {}", exe.display())
    }

    /// Who ran the impostor's script, if anyone did.
    fn ran_as(&self) -> Option<String> {
        std::fs::read_to_string(&self.marker).ok()
    }
}

impl Drop for ImpostorDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A control socket served by `nobody` that answers every request with "swapped" (and
/// keeps serving when a client hangs up first, as the hook does once it distrusts it).
struct ForgedSocket {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl ForgedSocket {
    fn start(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::os::unix::fs::chown(dir, Some(65534), Some(65534))?;
        let path = dir.join("forged.sock");
        let server = "import os, socket, sys\n\
                      s = socket.socket(socket.AF_UNIX)\n\
                      s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)\n\
                      while True:\n    c, _ = s.accept()\n    try:\n        c.recv(100); c.sendall(b'swapped\\n')\n    except OSError:\n        pass\n    c.close()\n";
        let child = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                server,
            ])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .spawn()
            .context("starting the forged socket as nobody")?;
        for _ in 0..250 {
            if path.exists() {
                return Ok(Self { child, path });
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        anyhow::bail!("the forged socket never appeared")
    }
}

impl Drop for ForgedSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The identity of the mount at `path` (the topmost one): mount id, device and fs type
/// (the parent id changes when containers-storage remakes its private home mount).
fn mount_line(path: &std::path::Path) -> Option<String> {
    let line = rebasefs_tests::podman::host::mounts()
        .ok()?
        .into_iter()
        .rfind(|m| m.mount_point == path)?
        .line;
    let fields: Vec<&str> = line.split(' ').collect();
    let fs_type = line.split(" - ").nth(1)?.split(' ').next()?;
    Some(format!("{} {} {fs_type}", fields.first()?, fields.get(2)?))
}

/// sha256 of a path, hex (how daemon files are named).
fn sha256_hex(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .map(|mut stdin| stdin.write_all(path.as_os_str().as_encoded_bytes()))
                .transpose()?;
            child.wait_with_output()
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The files a daemon leaves in `<graphroot>/rebasefs/DIR` (sockets, mount records).
fn daemon_files(podman: &Podman, dir: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(podman.root().join("rebasefs").join(dir))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Runs `rebasefs hook` as Podman runs it at precreate: the proposed config on stdin.
fn run_hook(
    podman: &Podman,
    rootfs: &std::path::Path,
) -> Result<rebasefs_tests::podman::CommandOutput> {
    use std::io::Write;
    let config = serde_json::json!({ "ociVersion": "1.0.2", "root": { "path": rootfs } });
    let mut child = std::process::Command::new(podman.mount_program_path())
        .arg("hook")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("hook stdin")?
        .write_all(config.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    let printed: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the hook printed no config: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    ensure!(printed == config, "the hook changed the config: {printed}");
    Ok(rebasefs_tests::podman::CommandOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Issue 14 defect 2: `rebasefs hook` picked "the daemon" by exe name and argv and ran its
/// argv[0] as root. A `nobody` process disguised as the daemon of c1's rootfs (started
/// before the real one, so it comes first in /proc), with c1's control socket gone and a
/// move pending, must not get its program run, and the daemon serving c1's rootfs must
/// stay. With the real daemon's mount record the hook remounts with its own binary.
/// (`podman mount` keeps the rootfs mounted across `podman stop`, as at a restart's
/// precreate; `podman restart` itself sometimes remounts, which would hide what the hook did.)
#[test]
fn hook_never_runs_another_users_program() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    podman.run(&["create", "--name", "c1", APP])?;
    // A created container has no MergedDir yet; it is the upper dir's sibling.
    let upper = podman.container_dir("c1", "UpperDir")?;
    let merged = upper.with_file_name("merged");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        podman.container_dir("c1", "LowerDir")?.display(),
        upper.display(),
        podman.container_dir("c1", "WorkDir")?.display()
    );
    let impostor = ImpostorDaemon::start(&podman.work().join("evil"), &options, &merged)?;
    podman.run(&["start", "c1"])?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 1\n");
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    podman.run(&["mount", "c1"])?;
    podman.run(&["stop", "--time", "0", "c1"])?;
    let release = || std::fs::read_to_string(merged.join("etc/base-release")).ok();
    assert_eq!(
        release().as_deref(),
        Some("base 1\n"),
        "c1's rootfs is not mounted"
    );

    // No socket and no mount record: the hook cannot tell who serves c1, so it leaves it.
    for socket in daemon_files(&podman, "sockets") {
        std::fs::remove_file(socket)?;
    }
    let records: Vec<(std::path::PathBuf, Vec<u8>)> = daemon_files(&podman, "mounts")
        .into_iter()
        .map(|p| std::fs::read(&p).map(|bytes| (p, bytes)))
        .collect::<std::io::Result<_>>()?;
    for (path, _) in &records {
        std::fs::remove_file(path)?;
    }
    let before = mount_line(&merged).context("c1's rootfs is not mounted")?;
    let daemons = podman.serving_daemons(&merged);
    ensure!(daemons.len() == 1, "serving c1: {daemons:?}");
    // Runs the hook; it must succeed without running the impostor's program.
    let hook = || -> Result<String> {
        let hook = run_hook(&podman, &merged)?;
        assert_eq!(
            impostor.ran_as(),
            None,
            "the hook ran the impostor's program"
        );
        ensure!(hook.success(), "the hook failed: {}", hook.stderr);
        Ok(hook.stderr)
    };
    let leaves_c1_alone = |case: &str| -> Result<()> {
        let stderr = hook()?;
        ensure!(
            stderr.contains("not moved") && stderr.lines().count() == 1,
            "{case}: the hook did not say why it left c1: {stderr:?}"
        );
        assert_eq!(
            mount_line(&merged).as_ref(),
            Some(&before),
            "{case}: the hook touched c1's mount"
        );
        assert_eq!(
            podman.serving_daemons(&merged),
            daemons,
            "{case}: the hook replaced the daemon"
        );
        assert_eq!(release().as_deref(), Some("base 1\n"), "{case}");
        Ok(())
    };
    leaves_c1_alone("no socket, no record")?;

    // A socket at the daemon's socket path (a symlink root was tricked into) served by
    // nobody and answering "swapped": not believed, c1 still reported as not moved.
    let forged = ForgedSocket::start(&podman.work().join("evil/sock"))?;
    let socket_path = podman
        .root()
        .join("rebasefs/sockets")
        .join(format!("{}.sock", &sha256_hex(&merged)[..16]));
    std::os::unix::fs::symlink(&forged.path, &socket_path)?;
    leaves_c1_alone("a forged socket")?;

    // The real daemon's record back: the hook remounts, running its own binary.
    ensure!(!records.is_empty(), "the daemon left no mount record");
    for (path, bytes) in &records {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?
            .write_all(bytes)?;
    }
    hook()?;
    let now = podman.serving_daemons(&merged);
    ensure!(
        now.len() == 1 && now != daemons,
        "the hook did not remount c1 with {}: {now:?}",
        podman.mount_program_path().display()
    );
    assert_eq!(release().as_deref(), Some("base 2\n"));
    drop(forged);
    podman.run(&["start", "c1"])?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 2\n");
    assert_eq!(
        runs_on(&cli.json(&["status"])?, "c1"),
        "localhost/story/base:2"
    );
    podman.run(&["umount", "c1"])?;
    drop(impostor);
    podman.finish()
}

/// `podman ARGS` with the mount programs it starts logging to `log`.
fn podman_logging(podman: &Podman, log: &std::path::Path, args: &[&str]) -> Result<String> {
    let mut command = podman.command(args);
    command.env("REBASEFS_LOG_FILE", log);
    let out = rebasefs_tests::podman::host::run_with_timeout(
        command,
        std::time::Duration::from_secs(180),
        podman.dir(),
    )?;
    ensure!(
        out.success(),
        "podman {} failed: {}",
        args.join(" "),
        out.stderr
    );
    Ok(out.stdout)
}

/// Stops c1 and starts it again with its mount program logging to a fresh `log`; returns
/// the log's warnings about what it serves (fuser's own "[Not Implemented] poll" notes left
/// out).
fn restart_logging(podman: &Podman, log: &std::path::Path) -> Result<Vec<String>> {
    podman.run(&["stop", "--time", "0", "c1"])?;
    let _ = std::fs::remove_file(log);
    podman_logging(podman, log, &["start", "c1"])?;
    Ok(std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("WARN") && !l.contains("[Not Implemented]"))
        .map(str::to_string)
        .collect())
}

/// Restarts c1 (logging) and requires it on base 1 with one warning that says `why`.
fn restarts_on_old_base_saying(podman: &Podman, log: &std::path::Path, why: &[&str]) -> Result<()> {
    let warnings = restart_logging(podman, log)?;
    assert_eq!(exec(podman, "c1", "cat /etc/base-release")?, "base 1\n");
    ensure!(
        warnings.len() == 1 && why.iter().all(|w| warnings[0].contains(w)),
        "the mount program must say once why it serves the old base ({why:?}): {warnings:#?}"
    );
    Ok(())
}

/// Restarts c1 (logging) and requires it on base 2 with no warning.
fn restarts_on_new_base_quietly(podman: &Podman, log: &std::path::Path) -> Result<()> {
    let warnings = restart_logging(podman, log)?;
    ensure!(
        warnings.is_empty(),
        "warnings on a rebase in force: {warnings:#?}"
    );
    assert_eq!(exec(podman, "c1", "cat /etc/base-release")?, "base 2\n");
    Ok(())
}

fn image_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["images"]
        .as_array()
        .and_then(|is| is.iter().find(|i| i["name"] == name))
        .unwrap_or(&Value::Null)
}

fn container_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Issue 14 defects 3 and 4 (removed base): rebasefs holds the new base with two names of
/// its own, so `podman rmi NAME` only untags it and `podman rmi ID` refuses; `rmi -f ID`
/// still deletes it, and then the mount program says once why it serves the old base and
/// `status` says the rebase is not in force instead of promising a move.
#[test]
fn removing_the_new_base_is_refused_or_told() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    let hooks = rebasefs_tests::rebase_story::hooks_dir(&podman)?;
    let hooks = hooks.to_string_lossy().into_owned();
    run_c1_and_rebase(&podman, &cli)?;
    podman.run(&["--hooks-dir", &hooks, "restart", "--time", "0", "c1"])?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 2\n");
    let base_id = podman.run(&["image", "inspect", "--format", "{{.Id}}", BASE_2])?;
    let base_id = base_id.trim().to_string();
    let tags = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        &base_id,
    ])?;
    for repo in [
        "localhost/rebasefs/in-use",
        "localhost/rebasefs/do-not-remove",
    ] {
        ensure!(
            tags.contains(&format!("{repo}:{base_id}")),
            "no hold {repo}: {tags}"
        );
    }

    // By name: only the name goes; c1 keeps running on base 2, even across a restart.
    let out = podman.run(&["rmi", BASE_2])?;
    ensure!(
        out.contains("Untagged: localhost/story/base:2") && !out.contains("Deleted"),
        "podman rmi NAME: {out}"
    );
    assert_eq!(
        exec(
            &podman,
            "c1",
            "cat /etc/base-release; sh -c 'echo sh works'"
        )?,
        "base 2\nsh works\n"
    );
    podman.run(&["tag", &base_id, BASE_2])?;
    let out = podman.run(&["rmi", "--force", BASE_2])?;
    ensure!(
        out.contains("Untagged: localhost/story/base:2") && !out.contains("Deleted"),
        "podman rmi -f NAME: {out}"
    );
    podman.run(&["image", "prune", "--force"])?;
    // By id: refused, it has more than one name.
    let err = podman.run_failing(&["rmi", &base_id])?;
    ensure!(err.contains("more than one tag"), "podman rmi ID: {err}");
    podman.run(&["--hooks-dir", &hooks, "restart", "--time", "0", "c1"])?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 2\n");
    let status = cli.json(&["status"])?;
    assert_eq!(image_status(&status, APP)["not_in_force"], Value::Null);
    assert_eq!(container_status(&status, "c1")["problem"], Value::Null);

    // Forced by id: deleted. The truth from then on.
    let out = podman.run(&["rmi", "--force", &base_id])?;
    ensure!(out.contains("Deleted"), "podman rmi -f ID: {out}");
    let status = cli.json(&["status"])?;
    let why = text(&image_status(&status, APP)["not_in_force"]).to_string();
    ensure!(
        why.contains("was removed from the store"),
        "status of app: {status}"
    );
    let c1 = container_status(&status, "c1");
    // It still runs on the (now broken) stack; its next start goes back to base 1.
    ensure!(
        text(&c1["problem"]).contains("not in force") && c1["pending"] == "localhost/story/base:1",
        "status of c1: {c1}"
    );
    let log = podman.dir().join("base-gone.log");
    restarts_on_old_base_saying(&podman, &log, &["not in force", "gone from the store"])?;
    let status = cli.json(&["status"])?;
    assert_eq!(runs_on(&status, "c1"), "localhost/story/base:1");
    assert_eq!(container_status(&status, "c1")["pending"], Value::Null);

    // Rolling back to the original base needs no warning; gc then drops what is left.
    let out = cli.output(&["rollback", APP])?;
    ensure!(
        out.success() && !out.stderr.contains("warning"),
        "rollback: {out:?}"
    );
    cli.json(&["gc"])?;
    assert_eq!(cli.json(&["check"])?["ok"], true);
    podman.finish()
}

/// Issue 14 defect 4: a missing resolution directory and a corrupt repository make the
/// container start on its original base; the mount program says so once with the reason,
/// and `status` shows the rebase is not in force instead of a pending move. Repaired, the
/// rebase holds again. (The third cause, a removed base, is `removing_the_new_base_...`.)
#[test]
fn a_rebase_that_cannot_be_served_is_said_and_shown() -> Result<()> {
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    run_c1_and_rebase(&podman, &cli)?;
    let log = podman.dir().join("daemon.log");
    restarts_on_new_base_quietly(&podman, &log)?;

    // The resolution directory (merged passwd/group/shadow) gone.
    let resolutions = podman.root().join("rebasefs/store/resolutions");
    let dir = std::fs::read_dir(&resolutions)?
        .next()
        .context("no resolution directory")??
        .path();
    let aside = podman.dir().join("resolution-aside");
    std::fs::rename(&dir, &aside)?;
    restarts_on_old_base_saying(&podman, &log, &["resolution directory"])?;
    let status = cli.json(&["status"])?;
    ensure!(
        text(&image_status(&status, APP)["not_in_force"]).contains("resolution directory"),
        "status of app: {status}"
    );
    let c1 = container_status(&status, "c1");
    ensure!(
        text(&c1["problem"]).contains("not in force")
            && c1["pending"].is_null()
            && c1["runs_on"] == "localhost/story/base:1",
        "status of c1: {c1}"
    );
    let text_status = cli.run(&["status"])?;
    ensure!(text_status.contains("NOT IN FORCE"), "{text_status}");
    std::fs::rename(&aside, &dir)?;
    restarts_on_new_base_quietly(&podman, &log)?;

    // A corrupt repository.
    let db = cli.repo_db();
    let saved = std::fs::read(&db)?;
    std::fs::write(&db, vec![0x5au8; 16384])?;
    for wal in ["repo.db-wal", "repo.db-shm"] {
        let _ = std::fs::remove_file(podman.root().join("rebasefs").join(wal));
    }
    restarts_on_old_base_saying(&podman, &log, &["corrupt"])?;
    let status = cli.json(&["status"])?;
    ensure!(
        text(&status["repository_problem"]).contains("corrupt"),
        "{status}"
    );
    ensure!(
        text(&container_status(&status, "c1")["problem"]).contains("unreadable"),
        "{status}"
    );
    std::fs::write(&db, saved)?;
    restarts_on_new_base_quietly(&podman, &log)?;
    podman.finish()
}

/// Issue 14 defect 5: N `rebasefs rebase` of one image at once on a fresh repository all
/// succeed with one result, the work is done once (one run computes, the others reuse it,
/// and the hit counts say so), and the repository checks out. Three rounds.
#[test]
fn concurrent_rebases_do_the_work_once() -> Result<()> {
    const N: usize = 6;
    let (_serial, podman) = story_store()?;
    let cli = Cli::new(&podman);
    for round in 0..3 {
        let _ = std::fs::remove_dir_all(podman.root().join("rebasefs"));
        let children: Vec<std::process::Child> = (0..N)
            .map(|_| {
                cli.command(&[
                    "rebase", APP, "--onto", BASE_2, "--policy", "merge", "--format", "json",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        let mut reports = Vec::new();
        for child in children {
            let out = child.wait_with_output()?;
            ensure!(
                out.status.success(),
                "round {round}: a concurrent rebase failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            reports.push(serde_json::from_slice::<Value>(&out.stdout)?);
        }
        let stacks: std::collections::BTreeSet<String> =
            reports.iter().map(|r| r["stack_id"].to_string()).collect();
        ensure!(
            stacks.len() == 1,
            "round {round}: several results: {stacks:?}"
        );
        let computed = |pick: &dyn Fn(&Value) -> bool| reports.iter().filter(|r| pick(r)).count();
        assert_eq!(
            computed(&|r| r["base_changes_reused"] == false),
            1,
            "round {round}: base comparison"
        );
        assert_eq!(
            computed(&|r| r["resolution_reused"] == false),
            1,
            "round {round}: resolution"
        );
        for index in 0..2 {
            assert_eq!(
                computed(&|r| r["layers"][index]["reused"] == false),
                1,
                "round {round}: app layer {index}"
            );
        }
        let status = cli.json(&["status"])?;
        for id in rebased_ids(&reports[0]) {
            assert_eq!(
                hits_of(&status, &id),
                N as i64 - 1,
                "round {round}: hits of {id}"
            );
        }
        let hits: Vec<i64> = status["resolutions"]
            .as_array()
            .map(|rs| rs.iter().filter_map(|r| r["hits"].as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(hits, [N as i64 - 1], "round {round}: resolution hits");
        assert_eq!(cli.json(&["check"])?["ok"], true, "round {round}");
    }
    podman.finish()
}

/// Issue 14 defect 8: `umount` of anything but an inspection mount, a rebase onto the image
/// itself or onto its own layers are refused (one line, exit 1, nothing changed); a
/// rollback onto a stack whose base is gone warns.
#[test]
fn refusals_and_warnings_of_defect_8() -> Result<()> {
    let (_serial, podman) = story_store()?;
    rebasefs_tests::rebase_story::import_base(&podman, 3)?;
    let cli = Cli::new(&podman);
    let one_line = |(code, err): (i32, String), want: &str| -> Result<()> {
        ensure!(
            code == 1 && err.lines().count() == 1 && err.contains(want),
            "expected one line with {want:?} and exit 1, got {code}: {err}"
        );
        Ok(())
    };
    for onto in [APP, "localhost/story/base:1"] {
        one_line(
            cli.fail(&["rebase", APP, "--onto", onto])?,
            if onto == APP {
                "the image itself"
            } else {
                "already runs on"
            },
        )?;
    }
    // An image built FROM app is no base for app either.
    podman.build(
        "localhost/story/app-child:1",
        &format!("FROM {APP}\nRUN echo child > /child.txt\n"),
        &[],
    )?;
    one_line(
        cli.fail(&["rebase", APP, "--onto", "localhost/story/app-child:1"])?,
        "built on the image itself",
    )?;
    ensure!(
        !cli.repo_db().exists(),
        "a refused rebase created the repository"
    );

    // umount: a tmpfs and a container's rootfs are refused and stay mounted.
    let tmpfs = podman.work().join("a-tmpfs");
    std::fs::create_dir_all(&tmpfs)?;
    nix::mount::mount(
        Some("tmpfs"),
        &tmpfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )?;
    let tmpfs_arg = tmpfs.to_string_lossy().into_owned();
    let refused = cli.fail(&["umount", &tmpfs_arg]);
    let still = mount_line(&tmpfs).is_some();
    let _ = nix::mount::umount2(&tmpfs, nix::mount::MntFlags::MNT_DETACH);
    one_line(refused?, "refusing to unmount")?;
    ensure!(still, "rebasefs umount unmounted a tmpfs");
    podman.run(&["run", "--detach", "--name", "c1", APP])?;
    let merged = podman.container_dir("c1", "MergedDir")?;
    one_line(
        cli.fail(&["umount", &merged.to_string_lossy()])?,
        "not one made by `rebasefs mount`",
    )?;
    assert_eq!(exec(&podman, "c1", "cat /etc/base-release")?, "base 1\n");
    one_line(
        cli.fail(&["umount", &podman.work().to_string_lossy()])?,
        "not a mount point",
    )?;

    // Rollback onto a stack whose base is gone: a warning, and the truth in status.
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    cli.run(&[
        "rebase",
        APP,
        "--onto",
        "localhost/story/base:3",
        "--policy",
        "merge",
    ])?;
    let base_2 = podman.run(&["image", "inspect", "--format", "{{.Id}}", BASE_2])?;
    cli.run(&["gc"])?;
    podman.run(&["rmi", "--force", base_2.trim()])?;
    let out = cli.output(&["rollback", APP])?;
    ensure!(out.success(), "rollback failed: {}", out.stderr);
    ensure!(
        out.stderr.lines().count() == 1
            && out.stderr.contains("warning")
            && out.stderr.contains("original base"),
        "rollback onto a gone base must warn: {:?}",
        out.stderr
    );
    let status = cli.json(&["status"])?;
    ensure!(
        text(&image_status(&status, APP)["not_in_force"]).contains("removed"),
        "{status}"
    );
    podman.finish()
}
