//! End-to-end: the per-container choice of `rebasefs hook` on real Podman.
//!
//! `io.rebasefs.pin=true` keeps a container on the base it runs on through `podman restart`
//! and `podman stop` + `podman start`; a site that runs the hook with `--opt-in` moves only
//! containers annotated `io.rebasefs.rebase=true`. Also: stdin that is not an OCI config
//! gets a one-line error and is passed through byte for byte. Tests run one at a time
//! (shared FUSE and runtime state).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use anyhow::{ensure, Context, Result};
use rebasefs_tests::podman::{hooks_d_json, Podman};
use rebasefs_tests::rebase_story::{build_story_images, hooks_dir, Cli, APP, BASE_2};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A hooks.d whose hook runs `rebasefs hook --opt-in` (the site moves nothing by default).
fn opt_in_hooks_dir(podman: &Podman) -> Result<PathBuf> {
    let dir = podman.dir().join("hooks-opt-in.d");
    std::fs::create_dir_all(&dir)?;
    let mut hook: serde_json::Value =
        serde_json::from_str(&hooks_d_json(podman.mount_program_path())?)?;
    let args = hook
        .pointer_mut("/hook/args")
        .and_then(|a| a.as_array_mut())
        .context("hooks/rebasefs.json has no hook.args")?;
    args.push("--opt-in".into());
    std::fs::write(dir.join("rebasefs.json"), hook.to_string())?;
    Ok(dir)
}

fn base_of(podman: &Podman, container: &str) -> Result<String> {
    podman.run(&["exec", container, "cat", "/etc/base-release"])
}

#[test]
fn pinned_and_not_opted_in_containers_stay_on_their_base() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let cli = Cli::new(&podman);
    let site_default = hooks_dir(&podman)?;
    let site_opt_in = opt_in_hooks_dir(&podman)?;
    let with_hooks = |hooks: &Path, args: &[&str]| -> Result<String> {
        let hooks = hooks.to_string_lossy();
        let mut all = vec!["--hooks-dir", hooks.as_ref()];
        all.extend_from_slice(args);
        podman.run(&all)
    };
    // (container, hooks.d its site uses, annotation, base after the rebase)
    let cases: [(&str, &Path, Option<&str>, &str); 4] = [
        ("moved", &site_default, None, "base 2\n"),
        (
            "pinned",
            &site_default,
            Some("io.rebasefs.pin=true"),
            "base 1\n",
        ),
        ("not-opted-in", &site_opt_in, None, "base 1\n"),
        (
            "opted-in",
            &site_opt_in,
            Some("io.rebasefs.rebase=true"),
            "base 2\n",
        ),
    ];
    for (name, hooks, annotation, _) in &cases {
        let mut args = vec!["run", "--detach", "--name", name];
        if let Some(annotation) = annotation {
            args.extend(["--annotation", annotation]);
        }
        args.push(APP);
        with_hooks(hooks, &args)?;
        assert_eq!(
            base_of(&podman, name)?,
            "base 1\n",
            "{name} before the rebase"
        );
    }
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    for (name, hooks, _, expected) in &cases {
        with_hooks(hooks, &["restart", "--time", "0", name])?;
        assert_eq!(
            &base_of(&podman, name)?,
            expected,
            "{name} after podman restart"
        );
    }
    // A stop + start mounts the rootfs again: the mount program keeps the pins too.
    for (name, hooks, _, expected) in &cases {
        with_hooks(hooks, &["stop", "--time", "0", name])?;
        with_hooks(hooks, &["start", name])?;
        assert_eq!(
            &base_of(&podman, name)?,
            expected,
            "{name} after stop + start"
        );
    }
    // What `status` shows agrees with what runs.
    let status = cli.json(&["status"])?;
    for (name, _, _, expected) in &cases {
        let container = status["containers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == *name))
            .with_context(|| format!("status lists no container {name}: {status}"))?;
        let runs_on = container["runs_on"].as_str().unwrap_or_default();
        let pinned = !expected.contains('2');
        ensure!(
            (runs_on == BASE_2) == expected.contains('2')
                && container["pending"].is_null()
                && container["pinned"] == pinned,
            "status of {name} (expected on {}): {container}",
            expected.trim()
        );
    }
    podman.finish()
}

/// Runs `rebasefs hook` with `stdin`; returns (exit code, stdout, stderr).
fn hook_with_stdin(binary: &Path, stdin: &[u8]) -> Result<(Option<i32>, Vec<u8>, String)> {
    let mut child = Command::new(binary)
        .arg("hook")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} hook", binary.display()))?;
    child.stdin.take().context("hook stdin")?.write_all(stdin)?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn malformed_stdin_is_passed_through_with_one_line() -> Result<()> {
    let binary = rebasefs_tests::podman::mount_program()?;
    for input in [
        &b"not json {"[..],
        &b"{\"ociVersion\": 7}"[..],
        &b"\xff\xfe\x00 binary"[..],
        &b""[..],
    ] {
        let (code, stdout, stderr) = hook_with_stdin(&binary, input)?;
        let shown = String::from_utf8_lossy(input);
        ensure!(
            code == Some(0),
            "{shown:?}: exit {code:?}, stderr {stderr:?}"
        );
        ensure!(
            stdout == input,
            "{shown:?}: the config was not passed through unchanged"
        );
        ensure!(
            stderr.lines().count() == 1 && stderr.contains("not an OCI config"),
            "{shown:?}: expected one line naming the problem, got {stderr:?}"
        );
    }
    Ok(())
}
