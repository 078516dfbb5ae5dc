//! Concurrency on real Podman with a rebased image: many containers of it started at the
//! same moment, and containers started while a rebase or a rollback of their image is being
//! recorded. Every container must come up on one whole stack (all of base 1 or all of base 2
//! with the merged passwd, never a mix) and the repository must stay consistent, with each
//! resolution materialized once. (Two `rebasefs rebase` of one image at once:
//! `e2e_rebase.rs` `concurrent_rebases_do_the_work_once`.) Tests run one at a time.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, ensure, Context, Result};
use rebasefs_tests::faults::{base_of, check_ok};
use rebasefs_tests::podman::Podman;
use rebasefs_tests::rebase_story::{build_story_images, Cli, APP, BASE_2};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts containers `names` of the app, all at once (one thread each).
fn start_all(podman: &Podman, names: &[String]) -> Result<()> {
    std::thread::scope(|s| {
        let started: Vec<_> = names
            .iter()
            .map(|name| s.spawn(move || podman.run(&["run", "--detach", "--name", name, APP])))
            .collect();
        for (name, handle) in names.iter().zip(started) {
            match handle.join() {
                Ok(r) => {
                    r.with_context(|| format!("starting {name}"))?;
                }
                Err(_) => bail!("the thread starting {name} panicked"),
            }
        }
        Ok(())
    })
}

/// Entries of the resolution store (`<graphroot>/rebasefs/store`).
fn store_entries(podman: &Podman) -> BTreeSet<String> {
    std::fs::read_dir(podman.root().join("rebasefs/store"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn eight_containers_of_a_rebased_image_start_at_once_on_the_new_base() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let cli = Cli::new(&podman);
    cli.run(&["rebase", APP, "--onto", BASE_2, "--policy", "merge"])?;
    let materialized = store_entries(&podman);
    ensure!(
        !materialized.is_empty(),
        "the merge materialized no resolution"
    );
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    start_all(&podman, &names)?;
    for name in &names {
        ensure!(base_of(&podman, name)? == 2, "{name} is not on base 2");
    }
    ensure!(
        store_entries(&podman) == materialized,
        "the store changed while the containers started: {:?} -> {:?}",
        materialized,
        store_entries(&podman)
    );
    check_ok(&cli, "after 8 starts")?;
    eprintln!("concurrency: 8 containers started at once, all on base 2, 1 materialization");
    podman.finish()
}

#[test]
fn containers_started_during_a_rebase_or_rollback_get_one_whole_stack() -> Result<()> {
    let _serial = serial();
    let podman = Podman::new()?;
    build_story_images(&podman)?;
    let cli = Cli::new(&podman);
    let mut seen = [0usize; 3];
    let rounds: [&[&str]; 2] = [
        &["rebase", APP, "--onto", BASE_2, "--policy", "merge"],
        &["rollback", APP],
    ];
    for (round, args) in rounds.iter().enumerate() {
        let names: Vec<String> = (0..4).map(|i| format!("r{round}c{i}")).collect();
        let writer = cli
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting rebasefs")?;
        start_all(&podman, &names)?;
        let out = writer.wait_with_output()?;
        ensure!(
            out.status.success(),
            "rebasefs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in &names {
            seen[base_of(&podman, name)? as usize] += 1;
        }
        check_ok(&cli, &format!("round {round}"))?;
        // Started after the command: the new assignment, whole.
        let after = format!("r{round}after");
        podman.run(&["run", "--detach", "--name", &after, APP])?;
        let want = if round == 0 { 2 } else { 1 };
        ensure!(
            base_of(&podman, &after)? == want,
            "{after} is not on base {want}"
        );
    }
    eprintln!(
        "concurrency: 8 containers started during a rebase/rollback: {} on base 1, {} on base 2, 0 half stacks",
        seen[1], seen[2]
    );
    podman.finish()
}
