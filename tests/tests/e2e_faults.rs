//! Faults on real Podman: a container's mount-program daemon killed with SIGKILL (as the
//! OOM killer would) while the container writes, then `podman restart` (with the precreate
//! hook) and `podman stop` + `podman start` (with or without it) must bring the container
//! back with no manual step and every write fsynced before the kill. Tests run one at a
//! time (shared FUSE and runtime state); each ends with [`Podman::finish`].

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::podman::images::BASE_IMAGE;
use rebasefs_tests::podman::Podman;
use rebasefs_tests::rebase_story::Cli;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exec(podman: &Podman, container: &str, script: &str) -> Result<String> {
    podman.run(&["exec", container, "sh", "-c", script])
}

/// SIGKILLs the daemon serving `container`'s rootfs; returns its pid.
fn kill_daemon(podman: &Podman, container: &str) -> Result<i32> {
    let merged = podman.container_dir(container, "MergedDir")?;
    let pids = podman.serving_daemons(&merged);
    ensure!(
        pids.len() == 1,
        "daemons serving {}: {pids:?}",
        merged.display()
    );
    let pid = pids[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .context("kill -9 of the daemon")?;
    // Wait until it is gone (reaped by init: it is a daemon).
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(pid)
}

/// Writes and fsyncs files `/crash/ROUND-0..n` in the container (busybox dd conv=fsync),
/// then starts an unsynced writer that runs until the daemon dies.
fn write_fsynced(podman: &Podman, container: &str, round: &str, n: usize) -> Result<()> {
    let script = format!(
        "mkdir -p /crash && i=0; while [ $i -lt {n} ]; do \
         echo {round}-$i | dd of=/crash/{round}-$i conv=fsync 2>/dev/null || exit 1; \
         i=$((i+1)); done; sync /crash; echo done"
    );
    let out = exec(podman, container, &script)?;
    ensure!(out.trim() == "done", "writer said {out:?}");
    Ok(())
}

/// Files of round `round` that are present with their content, as the container sees them.
fn count_intact(podman: &Podman, container: &str, round: &str) -> Result<usize> {
    let script =
        format!("n=0; for f in /crash/{round}-*; do [ \"$(cat $f)\" = \"${{f#/crash/}}\" ] && n=$((n+1)); done; echo $n");
    exec(podman, container, &script)?
        .trim()
        .parse()
        .context("counting files")
}

/// One kill: write and fsync [`FILES`] files, SIGKILL the daemon, run `commands` (each a
/// podman argument list); then the container must be served again and hold every file of
/// this and the earlier rounds. Returns the files lost.
fn kill_and_recover(
    podman: &Podman,
    round: &str,
    earlier: &[&str],
    commands: &[Vec<&str>],
) -> Result<usize> {
    write_fsynced(podman, "c1", round, FILES)?;
    let pid = kill_daemon(podman, "c1")?;
    for command in commands {
        podman
            .run(command)
            .with_context(|| format!("{round}: after kill -9 of daemon {pid}"))?;
    }
    let merged = podman.container_dir("c1", "MergedDir")?;
    podman.assert_served_by_mount_program(&merged)?;
    let mut lost = 0;
    for r in earlier.iter().chain([&round]) {
        lost += FILES - count_intact(podman, "c1", r)?;
    }
    Ok(lost)
}

const FILES: usize = 200;

#[test]
fn a_killed_daemon_is_recovered_by_restart_and_stop_start_with_the_hook() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    podman.import_base_image()?;
    let hooks = rebasefs_tests::rebase_story::hooks_dir(&podman)?;
    let hooks = hooks.to_string_lossy().into_owned();
    let h = hooks.as_str();
    podman.run(&[
        "run", "--detach", "--name", "c1", BASE_IMAGE, "sleep", "100000",
    ])?;
    let rounds: [(&str, Vec<Vec<&str>>); 3] = [
        (
            "restart",
            vec![vec!["--hooks-dir", h, "restart", "--time", "0", "c1"]],
        ),
        (
            "stopstart",
            vec![
                vec!["--hooks-dir", h, "stop", "--time", "0", "c1"],
                vec!["--hooks-dir", h, "start", "c1"],
            ],
        ),
        (
            "restart2",
            vec![vec!["--hooks-dir", h, "restart", "--time", "0", "c1"]],
        ),
    ];
    let mut lost = 0;
    for (i, (round, commands)) in rounds.iter().enumerate() {
        let earlier: Vec<&str> = rounds[..i].iter().map(|r| r.0).collect();
        lost += kill_and_recover(&podman, round, &earlier, commands)?;
    }
    eprintln!(
        "crash recovery with the hook: {} daemons killed, {} fsynced files, {lost} lost",
        rounds.len(),
        rounds.len() * FILES
    );
    ensure!(lost == 0, "{lost} fsynced files lost");
    podman.finish()
}

/// Without the hook `podman stop` + `podman start` recovers (containers-storage detaches
/// the dead mount and mounts again); `podman restart` keeps the rootfs mounted and so
/// fails on the dead mount (the precreate hook is what mends that, see the test above);
/// `podman rm -f` of a container whose daemon died leaves no mount, and `rebasefs gc`
/// removes the mount record the dead daemon left.
#[test]
fn a_killed_daemon_is_recovered_by_stop_start_without_the_hook() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    podman.import_base_image()?;
    podman.run(&[
        "run", "--detach", "--name", "c1", BASE_IMAGE, "sleep", "100000",
    ])?;
    let stop_start = vec![vec!["stop", "--time", "0", "c1"], vec!["start", "c1"]];
    let mut lost = kill_and_recover(&podman, "first", &[], &stop_start)?;
    lost += kill_and_recover(&podman, "second", &["first"], &stop_start)?;
    ensure!(lost == 0, "{lost} fsynced files lost");
    kill_daemon(&podman, "c1")?;
    podman.run(&["rm", "--force", "--time", "0", "c1"])?;
    podman.wait_fuse_mounts_gone()?;
    // The killed daemon could not remove its mount record; `rebasefs gc` does.
    let records = podman.root().join("rebasefs/mounts");
    let count = || std::fs::read_dir(&records).map_or(0, Iterator::count);
    ensure!(
        count() == 1,
        "mount records after the last kill: {}",
        count()
    );
    let gc = Cli::new(&podman).json(&["gc"])?;
    ensure!(
        gc["mount_records_removed"] == 1 && count() == 0,
        "gc left {} mount record(s): {gc}",
        count()
    );
    eprintln!("crash recovery without the hook: 3 daemons killed, 400 fsynced files, 0 lost");
    podman.finish()
}
