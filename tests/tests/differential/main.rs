//! Scripted differential cases: each case runs a short operation script on kernel
//! overlayfs and on the candidate mount program (`REBASEFS_BIN`) over identical layers and
//! compares every outcome, the whole tree, the upper dirs after unmount and a remount.
//!
//! Each case is its own test (libtest-mimic, `harness = false`), declared with its setup in
//! the file of its concern: `cargo test -p rebasefs-tests --test differential CASE` runs
//! the cases whose name contains CASE (`-- --exact CASE` only that one; `-- --list` lists
//! them). Cases run one at a time: scripts switch the process's umask and credentials.
//! Needs root (mount, mknod, trusted.* xattrs).

mod copy_up;
mod files;
mod hardlinks;
mod limits;
mod lookup;
mod metadata;
mod namespace;
mod readdir;
mod rename;
mod support;
mod whiteouts;
mod xattrs;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use rebasefs_tests::diff::mount::candidate_bin;
use rebasefs_tests::diff::session::Session;

use support::Case;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let groups = [
        ("lookup", lookup::cases()),
        ("readdir", readdir::cases()),
        ("files", files::cases()),
        ("metadata", metadata::cases()),
        ("namespace", namespace::cases()),
        ("rename", rename::cases()),
        ("whiteouts", whiteouts::cases()),
        ("hardlinks", hardlinks::cases()),
        ("copy_up", copy_up::cases()),
        ("xattrs", xattrs::cases()),
        ("limits", limits::cases()),
    ];
    if !args.list {
        eprintln!("differential: candidate {}", candidate_bin().display());
    }
    let trials = groups
        .into_iter()
        .flat_map(|(group, cases)| {
            cases
                .into_iter()
                .map(move |case| Trial::test(case.name, move || run(&case)).with_kind(group))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Runs one case on both sides; fails with its divergences and how to run it alone.
fn run(case: &Case) -> Result<(), Failed> {
    let mut session = Session::start((case.setup)()).map_err(|e| format!("setup failed: {e:#}"))?;
    (case.script)(&mut session);
    let ops = session.ops;
    let divergences = session.finish();
    if divergences.is_empty() {
        return Ok(());
    }
    let mut report = format!("{} divergence(s) in {ops} ops:", divergences.len());
    for d in &divergences {
        report.push_str(&format!("\n  {d}"));
    }
    report.push_str(&format!(
        "\n  reproduce: cargo test --release -p rebasefs-tests --test differential -- --exact {}",
        case.name
    ));
    Err(report.into())
}
