//! Seeded random differential run: a reproducible stream of operations (default 20,000)
//! over a small colliding name space, run on kernel overlayfs and on the candidate mount
//! program, outcomes compared after every op, whole trees every 500 ops and at the end,
//! then the upper dirs after unmount and a remount.
//!
//! Environment: `DIFF_SEED` (decimal or 0x-hex; default time-based), `DIFF_OPS` (count),
//! `DIFF_KEEP_GOING=1` (collect all divergences instead of stopping at the first),
//! `DIFF_MINIMISE_SECS` (time for shrinking a failure, default 60, 0 = off), `DIFF_NOFILE`
//! (the mount program's RLIMIT_NOFILE, to exercise eviction of cached resolutions),
//! `DIFF_MOUNT_OPTIONS` (extra options for both mounts, e.g. `redirect_dir=off`),
//! `REBASEFS_BIN` (the mount program). Needs root.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rebasefs_tests::diff::op::Op;
use rebasefs_tests::diff::random::{minimise, run, stream, target_of};
use rebasefs_tests::diff::session::{compact, Setup};
use rebasefs_tests::diff::standard::standard;

const CHECKPOINT_EVERY: usize = 500;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn top_dir(p: &str) -> &str {
    p.split('/').next().unwrap_or(p)
}

#[test]
fn random_ops() {
    let seed = env_u64("DIFF_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let count = env_u64("DIFF_OPS").map(|n| n as usize).unwrap_or(20_000);
    let keep_going = std::env::var_os("DIFF_KEEP_GOING").is_some();
    let budget = Duration::from_secs(env_u64("DIFF_MINIMISE_SECS").unwrap_or(60));
    let mut setup = Setup::new(standard());
    // `DIFF_NOFILE=64`: the mount program runs with that RLIMIT_NOFILE, so nearly every
    // cached resolution is evicted and redone from its parent.
    setup.candidate_nofile = env_u64("DIFF_NOFILE");
    let mount_options = std::env::var("DIFF_MOUNT_OPTIONS").unwrap_or_default();
    setup.options = mount_options
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    // Which candidate layer gets which whiteout encoding also depends on the seed.
    let rotation = (seed % setup.candidate_encodings.len().max(1) as u64) as usize;
    setup.candidate_encodings.rotate_left(rotation);
    let mut env = setup
        .candidate_nofile
        .map(|n| format!("DIFF_NOFILE={n} "))
        .unwrap_or_default();
    if !mount_options.is_empty() {
        env.push_str(&format!("DIFF_MOUNT_OPTIONS={mount_options} "));
    }
    let repro = format!(
        "DIFF_SEED={seed} DIFF_OPS={count} {env}REBASEFS_BIN={} cargo test -p rebasefs-tests --test random_ops -- --nocapture",
        setup.bin.display()
    );
    eprintln!(
        "random_ops: seed {seed}, {count} ops, candidate {}, candidate layer encodings {:?}",
        setup.bin.display(),
        setup.candidate_encodings
    );
    let start = Instant::now();
    let ops = stream(seed, count);
    let report = match run(&setup, &ops, CHECKPOINT_EVERY, keep_going) {
        Ok(r) => r,
        Err(e) => panic!("random_ops: session failed: {e:#}\n  seed {seed}; reproduce: {repro}"),
    };
    eprintln!(
        "random_ops: {} ops run ({} succeeded on the kernel, the rest returned an errno) in {:.1}s, {} divergence(s)",
        report.ops_run,
        report.kernel_ok,
        start.elapsed().as_secs_f64(),
        report.divergences.len()
    );
    if report.divergences.is_empty() {
        return;
    }
    let at = report.first_failure.unwrap_or(0);
    eprintln!(
        "random_ops: FAILED, seed {seed}, first divergence at op index {at} (op {})",
        at + 1
    );
    for d in report.divergences.iter().take(20) {
        eprintln!("  {d}");
    }
    if let Some(failing) = ops.get(at) {
        // The failing op's directories, or for a tree divergence the paths it names.
        let first = report.divergences.first();
        let tops: Vec<&str> = match first {
            Some(d) if !d.at.starts_with("op ") => d
                .details
                .iter()
                .filter_map(|l| l.trim_start_matches("upper ").strip_prefix('/'))
                .map(|p| top_dir(p.split(':').next().unwrap_or(p)))
                .collect(),
            _ => failing.paths().into_iter().map(top_dir).collect(),
        };
        let mut tops = tops;
        tops.sort();
        tops.dedup();
        let related: Vec<(usize, &Op)> = ops[..at]
            .iter()
            .enumerate()
            .filter(|(_, o)| o.mutates() && o.paths().iter().any(|p| tops.contains(&top_dir(p))))
            .collect();
        eprintln!("random_ops: last mutating ops on {tops:?} before it:");
        for (i, o) in related.iter().rev().take(20).rev() {
            eprintln!("  #{i}: {}", compact(&format!("{o:?}")));
        }
        eprintln!(
            "  #{at}: {}   <- diverged",
            compact(&format!("{failing:?}"))
        );
    }
    let target = if budget.is_zero() {
        None
    } else {
        target_of(&setup, &report.divergences)
    };
    if let Some(target) = target {
        eprintln!(
            "random_ops: minimising for {target:?} (at most {}s)",
            budget.as_secs()
        );
        let t = Instant::now();
        let small = minimise(
            &setup,
            &ops[..=at.min(ops.len().saturating_sub(1))],
            &target,
            budget,
        );
        eprintln!(
            "random_ops: minimised to {} op(s) in {:.1}s (replay on a fresh fixture; still diverges):",
            small.len(),
            t.elapsed().as_secs_f64()
        );
        for o in &small {
            eprintln!("  {}", compact(&format!("{o:?}")));
        }
    }
    panic!(
        "random_ops: {} divergence(s); seed {seed}; reproduce: {repro}",
        report.divergences.len()
    );
}
