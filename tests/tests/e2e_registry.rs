//! Rebased images beyond one host, against a real registry (Debian's `docker-registry` on
//! 127.0.0.1, plain HTTP, started per test and stopped even when it fails).
//!
//! `auto_update_moves_and_rolls_back`: base v1 and an app built FROM its registry name,
//! a container opted in to auto-update, v2 pushed under the same name: `--dry-run` only
//! reports; `rebasefs auto-update` pulls, rebases and restarts it (writes kept); a broken
//! v3 (no /bin) is rolled back; `--rollback` undoes the last update.
//! `commit_push_pull_on_kernel_overlay`: `rebasefs commit` + `podman push`, then a store
//! with kernel overlayfs (no rebasefs) pulls and runs it: the full tree (content, mode,
//! owner of every entry) equals the rebased container's view, and the layer list is the
//! new base's, then the app's, then the resolution's.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::podman::{mount_program, Podman, Setup};
use rebasefs_tests::rebase_story::{
    build_story_images, import_base, Cli, APP, APP_CONTAINERFILE, BASE_1, BASE_2,
};
use rebasefs_tests::registry::Registry;
use rebasefs_tests::tree_hash::full_tree;
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The registry's directory inside the store's, so both go together.
fn registry_for(podman: &Podman) -> Result<Registry> {
    Registry::start(&podman.dir().join("registry"))
}

fn exec(podman: &Podman, container: &str, script: &str) -> Result<String> {
    podman.run(&["exec", container, "sh", "-c", script])
}

/// `rebasefs auto-update ARGS --tls-verify=false --format json` with the store's
/// containers.conf (runc, hooks_dir), so the podman it runs is set up like the tests'.
fn auto_update(cli: &Cli<'_>, podman: &Podman, args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["auto-update", "--tls-verify=false", "--wait", "10"];
    all.extend(args);
    all.extend(["--format", "json"]);
    let mut command = cli.command(&all);
    command.env("CONTAINERS_CONF", podman.dir().join("containers.conf"));
    let out = cli.output_with(command)?;
    let rows: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("auto-update printed no JSON: {}{}", out.stdout, out.stderr))?;
    rows.as_array()
        .cloned()
        .with_context(|| format!("auto-update printed no rows: {rows}"))
}

fn updated_of(rows: &[Value], container: &str) -> String {
    rows.iter()
        .find(|r| r["ContainerName"] == container)
        .map(|r| r["Updated"].as_str().unwrap_or("?").to_string())
        .unwrap_or_else(|| format!("no row for {container} in {rows:?}"))
}

/// Imports base `version` (the story's base files), pushes it as `name`, removes it locally.
fn push_base(podman: &Podman, version: u32, name: &str) -> Result<()> {
    import_base(podman, version)?;
    let local = format!("localhost/story/base:{version}");
    podman.run(&["push", "--quiet", "--tls-verify=false", &local, name])?;
    podman.run(&["rmi", &local])?;
    Ok(())
}

#[test]
fn auto_update_moves_and_rolls_back() -> Result<()> {
    let _serial = serial();
    let started = Instant::now();
    let podman = Podman::with_setup(mount_program()?, Setup::Configured)?;
    let registry = registry_for(&podman)?;
    let base = registry.name("story/base:latest");
    // v1 in the registry and locally (as after a pull), the app built FROM its name.
    import_base(&podman, 1)?;
    podman.run(&["tag", BASE_1, &base])?;
    podman.run(&["push", "--quiet", "--tls-verify=false", &base])?;
    podman.run(&["rmi", BASE_1])?;
    let containerfile = APP_CONTAINERFILE.replace(BASE_1, &base);
    podman.build(APP, &containerfile, &[])?;
    podman.run(&[
        "run",
        "--detach",
        "--name",
        "c1",
        "--stop-timeout",
        "1",
        "--label",
        "io.containers.autoupdate=registry",
        "--annotation",
        "io.rebasefs.autoupdate=rebase",
        APP,
    ])?;
    // A container that did not opt in by our annotation is left alone.
    podman.run(&[
        "run",
        "--detach",
        "--name",
        "other",
        "--label",
        "io.containers.autoupdate=registry",
        APP,
    ])?;
    exec(&podman, "c1", "echo 'written by c1' > /root/note")?;
    let cli = Cli::new(&podman);

    // Nothing new in the registry: nothing to do.
    let rows = auto_update(&cli, &podman, &[])?;
    ensure!(rows.len() == 1, "only c1 opted in: {rows:?}");
    ensure!(updated_of(&rows, "c1") == "false", "{rows:?}");

    // v2 under the same name: a dry run reports and changes nothing.
    push_base(&podman, 2, &base)?;
    let rows = auto_update(&cli, &podman, &["--dry-run"])?;
    ensure!(updated_of(&rows, "c1") == "pending", "{rows:?}");
    ensure!(exec(&podman, "c1", "cat /etc/base-release")? == "base 1\n");
    let local_v1 = podman.run(&["image", "inspect", "--format", "{{.Digest}}", &base])?;

    // The update: pulled, rebased, restarted; c1's write and the app's files are kept.
    let rows = auto_update(&cli, &podman, &[])?;
    ensure!(updated_of(&rows, "c1") == "true", "{rows:?}");
    let pulled = podman.run(&["image", "inspect", "--format", "{{.Digest}}", &base])?;
    ensure!(pulled != local_v1, "the base was not pulled");
    let release = exec(&podman, "c1", "cat /etc/base-release")?;
    ensure!(
        release == "base 2\n",
        "c1 did not move ({release:?}): {rows:?}\n{}",
        cli.run(&["status"])?
    );
    ensure!(exec(&podman, "c1", "cat /root/note")? == "written by c1\n");
    ensure!(exec(&podman, "c1", "cat /app/app.txt")? == "app payload\n");
    ensure!(
        exec(&podman, "other", "cat /etc/base-release")? == "base 1\n",
        "a container that did not opt in moved"
    );
    let rows = auto_update(&cli, &podman, &[])?;
    ensure!(updated_of(&rows, "c1") == "false", "second run: {rows:?}");

    // A broken v3 (no /bin: the container cannot start) is rolled back to v2.
    let broken = podman.work().join("broken");
    std::fs::create_dir_all(broken.join("etc"))?;
    std::fs::write(broken.join("etc/base-release"), "base 3\n")?;
    let tar = podman.work().join("broken.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&broken)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()?;
    ensure!(status.success(), "tar of the broken base failed");
    podman.run(&["import", &tar.to_string_lossy(), "localhost/story/base:3"])?;
    podman.run(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        "localhost/story/base:3",
        &base,
    ])?;
    podman.run(&["rmi", "localhost/story/base:3"])?;
    let rows = auto_update(&cli, &podman, &[])?;
    ensure!(updated_of(&rows, "c1") == "rolled back", "{rows:?}");
    ensure!(exec(&podman, "c1", "cat /etc/base-release")? == "base 2\n");
    ensure!(exec(&podman, "c1", "cat /root/note")? == "written by c1\n");

    // --rollback: the last update (v1 -> v2) is undone.
    let rows = auto_update(&cli, &podman, &["--rollback"])?;
    ensure!(updated_of(&rows, "c1") == "rolled back", "{rows:?}");
    ensure!(exec(&podman, "c1", "cat /etc/base-release")? == "base 1\n");
    ensure!(exec(&podman, "c1", "cat /root/note")? == "written by c1\n");

    drop(registry);
    podman.finish()?;
    eprintln!(
        "auto_update_moves_and_rolls_back: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Paths Podman or the runtime add to a container's root filesystem.
fn runtime_added(rel: &str) -> bool {
    [
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/mtab",
        "run/.containerenv",
    ]
    .contains(&rel)
        || ["proc/", "sys/", "dev/"].iter().any(|p| rel.starts_with(p))
}

fn diff_ids(podman: &Podman, image: &str) -> Result<Vec<String>> {
    let out = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        image,
    ])?;
    Ok(serde_json::from_str(out.trim())?)
}

/// The full tree of a created (never started) container of `image`.
fn container_tree(podman: &Podman, name: &str, image: &str) -> Result<Vec<String>> {
    podman.run(&["create", "--name", name, image])?;
    let dir = podman.run(&["mount", name])?;
    let tree = full_tree(std::path::Path::new(dir.trim()), &runtime_added);
    podman.run(&["umount", name])?;
    tree
}

#[test]
fn commit_push_pull_on_kernel_overlay() -> Result<()> {
    let _serial = serial();
    let started = Instant::now();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let registry = registry_for(&podman)?;
    let cli = Cli::new(&podman);
    let pushed = registry.name("story/app:rebased");

    // The rebased container's view: app on base 2 as rebasefs serves it.
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    let rebased_view = container_tree(&podman, "view", APP)?;
    ensure!(rebased_view
        .iter()
        .any(|l| l.starts_with("etc/new-in-base-2 ")));

    let commit_started = Instant::now();
    let report = cli.json(&[
        "commit", APP, "--onto", BASE_2, "--policy", "merge", "--tag", &pushed,
    ])?;
    let commit_ms = commit_started.elapsed().as_millis();
    ensure!(report["name"] == pushed.as_str(), "{report}");
    let committed = diff_ids(&podman, &pushed)?;
    let base_layers = diff_ids(&podman, BASE_2)?;
    let app_layers: Vec<String> =
        diff_ids(&podman, APP)?.split_off(diff_ids(&podman, BASE_1)?.len());
    ensure!(committed.starts_with(&base_layers), "{committed:?}");
    ensure!(
        committed[base_layers.len()..].starts_with(&app_layers),
        "app layers are not above the new base: {committed:?}"
    );
    ensure!(
        committed.len() == base_layers.len() + app_layers.len() + 1,
        "one resolution layer (merged passwd): {committed:?}"
    );
    // Podman itself runs it and reads it back (save rebuilds each layer from its tar-split).
    let passwd = podman.run(&["run", "--rm", &pushed, "cat", "/etc/passwd"])?;
    ensure!(
        passwd.contains("syslog:") && passwd.contains("appuser:"),
        "{passwd}"
    );
    let saved = podman.work().join("saved.tar");
    podman.run(&["save", "--quiet", "-o", &saved.to_string_lossy(), &pushed])?;
    podman.run(&["push", "--quiet", "--tls-verify=false", &pushed])?;

    // A host without rebasefs: kernel overlayfs pulls and runs the same tree.
    let plain = Podman::with_setup(mount_program()?, Setup::KernelOverlay)?;
    plain.run(&["pull", "--quiet", "--tls-verify=false", &pushed])?;
    ensure!(
        diff_ids(&plain, &pushed)? == committed,
        "the pulled image has other layers"
    );
    let pulled_view = container_tree(&plain, "pulled", &pushed)?;
    let has_mount_program =
        std::fs::read_to_string(plain.root().join("overlay/.has-mount-program"))
            .unwrap_or_default();
    ensure!(
        has_mount_program.trim() != "true",
        "the plain store used a mount program"
    );
    if pulled_view != rebased_view {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|l| !b.contains(l)).cloned().collect()
        };
        anyhow::bail!(
            "trees differ: only in the rebased view {:#?}, only in the pulled image {:#?}",
            only(&rebased_view, &pulled_view),
            only(&pulled_view, &rebased_view)
        );
    }
    let out = plain.run(&[
        "run",
        "--rm",
        &pushed,
        "cat",
        "/etc/base-release",
        "/app/app.txt",
    ])?;
    ensure!(out == "base 2\napp payload\n", "{out}");

    plain.finish()?;
    drop(registry);
    podman.finish()?;
    eprintln!(
        "commit_push_pull_on_kernel_overlay: {:.1} s (commit {commit_ms} ms, {} entries compared)",
        started.elapsed().as_secs_f64(),
        rebased_view.len()
    );
    Ok(())
}
