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
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
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
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
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

    // refuse: conflicts abort, nothing is written.
    let (code, err) = cli.fail(&["rebase", APP, "--onto", BASE_2, "--policy", "refuse"])?;
    assert_eq!(code, 1);
    ensure!(
        err.contains("refusing") && err.contains("/etc/passwd"),
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
    let (code, err) = cli.fail(&["status"])?;
    assert_eq!(code, 1);
    ensure!(err.contains("corrupt"), "unclear: {err}");
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
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
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
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
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
