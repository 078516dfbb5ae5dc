//! Repository durability on real Podman: `rebasefs rebase` killed with SIGKILL at random
//! moments (seeded: `REBASEFS_FAULT_SEED`, printed) leaves a repository `rebasefs check`
//! accepts and either the old assignment or the whole new one; a corrupt `repo.db` or a
//! resolution directory gone from the store never stops a container (it starts on its
//! original stack), `check` names the problem and the repair, `check --repair` repairs, and
//! rebasing again works. Tests run one at a time.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rebasefs_tests::diff::rng::Rng;
use rebasefs_tests::faults::{base_of, base_shown, check_ok, seed, STACK_PROBE};
use rebasefs_tests::podman::Podman;
use rebasefs_tests::rebase_story::{build_story_images, Cli, APP, BASE_2};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const REBASE: &[&str] = &["rebase", APP, "--onto", BASE_2, "--policy", "merge"];

/// Which base a new container of the app starts on (whole stacks only); removes it again.
fn fresh_container_base(podman: &Podman, name: &str) -> Result<u32> {
    let out = podman.run(&["run", "--rm", "--name", name, APP, "sh", "-c", STACK_PROBE])?;
    base_shown(name, &out)
}

#[test]
fn a_rebase_killed_at_any_moment_leaves_a_valid_repository_and_one_assignment() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let cli = Cli::new(&podman);
    let seed = seed();
    let mut rng = Rng::new(seed);
    // How long a whole rebase takes here: the kills land anywhere inside it.
    let started = Instant::now();
    cli.run(REBASE)?;
    let whole = started.elapsed();
    const KILLS: usize = 8;
    let mut outcomes = [0usize; 3];
    for kill in 0..KILLS {
        let _ = std::fs::remove_dir_all(podman.root().join("rebasefs"));
        let mut child = cli
            .command(REBASE)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting rebasefs rebase")?;
        let at = Duration::from_micros(rng.below(whole.as_micros() as usize + 1) as u64);
        std::thread::sleep(at);
        let _ = child.kill();
        let status = child.wait()?;
        let when = format!("kill {kill} at {at:?} (seed {seed}, exit {status})");
        check_ok(&cli, &when)?;
        let base = fresh_container_base(&podman, &format!("k{kill}")).context(when.clone())?;
        outcomes[base as usize] += 1;
        // Whatever was left, the next rebase completes and is served.
        cli.run(REBASE)
            .with_context(|| format!("rebase after {when}"))?;
        ensure!(
            fresh_container_base(&podman, &format!("k{kill}b"))? == 2,
            "{when}: the rebase after it is not served"
        );
        check_ok(&cli, &format!("rebase after {when}"))?;
    }
    eprintln!(
        "repository faults: {KILLS} rebases killed within {whole:?}: {} left the old assignment, {} the whole new one, 0 invalid",
        outcomes[1], outcomes[2]
    );
    podman.finish()
}

#[test]
fn a_corrupt_database_or_missing_store_dir_never_stops_a_container_and_is_repaired() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let cli = Cli::new(&podman);
    cli.run(REBASE)?;
    podman.run(&["run", "--detach", "--name", "c1", APP])?;
    ensure!(base_of(&podman, "c1")? == 2);
    let stop_start = |why: &str| -> Result<u32> {
        podman.run(&["stop", "--time", "0", "c1"])?;
        podman.run(&["start", "c1"]).context(why.to_string())?;
        base_of(&podman, "c1")
    };

    // A corrupt repo.db: the header overwritten.
    {
        use std::io::{Seek, Write};
        let mut db = std::fs::OpenOptions::new()
            .write(true)
            .open(cli.repo_db())?;
        db.seek(std::io::SeekFrom::Start(0))?;
        db.write_all(&[0xa5; 100])?;
    }
    ensure!(
        stop_start("corrupt repo.db")? == 1,
        "not on its original stack"
    );
    let (code, err) = cli.fail(&["check"])?;
    ensure!(
        code == 1
            && err.trim().lines().count() == 1
            && err.contains("corrupt")
            && err.contains("check --repair"),
        "check on a corrupt repo.db: exit {code}, {err:?}"
    );
    let repaired = cli.json(&["check", "--repair"])?;
    ensure!(
        repaired["ok"] == true && repaired["repaired"]["moved_aside"].is_string(),
        "check --repair: {repaired}"
    );
    cli.run(REBASE)?;
    ensure!(stop_start("rebased again")? == 2, "not back on base 2");

    // A resolution directory gone from the store.
    let resolutions = podman.root().join("rebasefs/store/resolutions");
    let mut removed = 0;
    for entry in std::fs::read_dir(&resolutions)? {
        std::fs::remove_dir_all(entry?.path())?;
        removed += 1;
    }
    ensure!(
        removed > 0,
        "the merge materialized no resolution directory"
    );
    ensure!(
        stop_start("missing resolution")? == 1,
        "not on its original stack"
    );
    let out = cli.output(&["check"])?;
    ensure!(
        out.status.code() == Some(1)
            && out.stdout.contains("is missing")
            && out.stdout.contains("check --repair"),
        "check with a missing resolution directory: {out:?}"
    );
    let repaired = cli.json(&["check", "--repair"])?;
    let actions = repaired["repaired"]["actions"].to_string();
    ensure!(
        repaired["ok"] == true && actions.contains("directory is gone"),
        "check --repair: {repaired}"
    );
    ensure!(stop_start("repaired")? == 1);
    cli.run(REBASE)?;
    ensure!(
        stop_start("rebased after the repair")? == 2,
        "not back on base 2"
    );
    check_ok(&cli, "at the end")?;
    podman.finish()
}
