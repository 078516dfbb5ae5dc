//! The benchmark phases: filesystem sessions (alternating contenders per repetition), lookup
//! depth scaling, podman start latency, and the rebase figure.

use crate::contender::{mount, Contender, Mounted, SessionDirs, Stack};
use crate::podman::{self, Store};
use crate::results::{RebaseSide, Results};
use crate::{report, sys, watchdog, workloads, Args};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIG_SIZE: u64 = 1 << 30;
/// A single workload taking longer than this means the daemon hangs.
const WORKLOAD_LIMIT: Duration = Duration::from_secs(300);

/// Contenders in a different order each repetition, so none always runs first.
fn rotated(contenders: &[Contender], rep: usize) -> Vec<Contender> {
    let n = contenders.len().max(1);
    (0..contenders.len())
        .filter_map(|i| contenders.get((i + rep) % n).cloned())
        .collect()
}

/// The app stack over base v1: big file, small files (+whiteouts), package install, base.
fn main_stack(data: &Path, c: &Contender) -> Stack {
    let files = if c.is_fuse() {
        "files-aufs"
    } else {
        "files-ovl"
    };
    Stack {
        base: data.join("layers"),
        layers: vec!["big".into(), files.into(), "pkg".into(), "base-v1".into()],
    }
}

fn lookup_stack(data: &Path, depth: usize) -> Stack {
    Stack {
        base: data.join(format!("lookup/N{depth}")),
        layers: (0..depth).map(|i| i.to_string()).collect(),
    }
}

fn dirs(args: &Args, c: &Contender) -> SessionDirs {
    SessionDirs {
        root: args.work.join("fs").join(&c.key),
    }
}

/// Runs one timed step under the watchdog.
fn step<T>(m: &Mounted, label: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    watchdog::arm(label, WORKLOAD_LIMIT, m.fuse_connection(), m.daemon);
    let r = f();
    watchdog::disarm();
    r
}

pub fn filesystem(
    args: &Args,
    contenders: &[Contender],
    results: &mut Results,
    fs: bool,
    lookup: bool,
) {
    let mut entries: BTreeMap<String, u64> = BTreeMap::new();
    for rep in 0..args.reps {
        for c in rotated(contenders, rep) {
            if fs {
                eprintln!(
                    "[bench] rep {}/{} {}: main session",
                    rep + 1,
                    args.reps,
                    c.key
                );
                main_session(args, &c, results, &mut entries);
                eprintln!("[bench] rep {}/{} {}: copy-up", rep + 1, args.reps, c.key);
                copy_up_session(
                    args,
                    &c,
                    results,
                    "copyup_append",
                    workloads::copy_up_append,
                );
                copy_up_session(args, &c, results, "copyup_chmod", workloads::copy_up_chmod);
            }
            if lookup {
                eprintln!("[bench] rep {}/{} {}: lookups", rep + 1, args.reps, c.key);
                for depth in [1, 10, 50, 100] {
                    lookup_session(args, &c, results, depth);
                }
            }
            let _ = dirs(args, &c).reset();
        }
    }
    if !entries.is_empty() {
        let kernel = entries.get(report::KERNEL).copied();
        let summary: Vec<String> = entries.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let same = entries.values().all(|v| Some(*v) == kernel);
        results.notes.push(format!(
            "Entries seen by the full-tree walk: {}{}",
            summary.join(", "),
            if same {
                " (all agree with kernel overlayfs)"
            } else {
                " — MISMATCH with kernel overlayfs"
            }
        ));
    }
}

const SESSION_MEASURES: &[&str] = &[
    "walk_cold",
    "walk_warm",
    "rss_walk",
    "read_small_cold",
    "read_small_warm",
    "read_big_cold",
    "read_big_warm",
    "write_big",
    "create_fsync",
    "rename_unlink",
    "rss_session",
    "cpu_session",
];

fn main_session(
    args: &Args,
    c: &Contender,
    results: &mut Results,
    entries: &mut BTreeMap<String, u64>,
) {
    let d = dirs(args, c);
    let (mut m, took) = match mount(c, &main_stack(&args.data, c), &d) {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("mount failed: {e:#}");
            results.fail("mount", &c.key, &msg);
            for k in SESSION_MEASURES {
                results.fail(k, &c.key, &msg);
            }
            return;
        }
    };
    results.add("mount", &c.key, took.as_secs_f64());
    let mut done: Vec<&str> = Vec::new();
    let outcome = run_main_workloads(c, &m, results, entries, &mut done);
    if let Err(e) = outcome {
        let msg = format!("{e:#}");
        let alive = m.daemon.map(sys::pid_alive).unwrap_or(true);
        let msg = if alive {
            msg
        } else {
            format!("daemon died: {msg}")
        };
        for k in SESSION_MEASURES.iter().filter(|k| !done.contains(k)) {
            if c.is_fuse() || !k.starts_with("rss") && !k.starts_with("cpu") {
                results.fail(k, &c.key, &msg);
            }
        }
    }
    if let Err(e) = m.unmount() {
        results.notes.push(format!("{}: unmount: {e:#}", c.name));
    }
}

fn run_main_workloads(
    c: &Contender,
    m: &Mounted,
    results: &mut Results,
    entries: &mut BTreeMap<String, u64>,
    done: &mut Vec<&'static str>,
) -> Result<()> {
    let mnt = m.mnt.clone();
    let key = c.key.as_str();
    sys::drop_caches()?;
    let (t, walk) = step(m, "walk_cold", || workloads::stat_walk(&mnt))?;
    results.add("walk_cold", key, t.as_secs_f64());
    done.push("walk_cold");
    entries.insert(key.to_string(), walk.entries);
    let (t, _) = step(m, "walk_warm", || workloads::stat_walk(&mnt))?;
    results.add("walk_warm", key, t.as_secs_f64());
    done.push("walk_warm");
    if let Some(pid) = m.daemon {
        results.add(
            "rss_walk",
            key,
            sys::vm_hwm_mib(pid).context("daemon VmHWM")?,
        );
        done.push("rss_walk");
    }

    sys::drop_caches()?;
    let (t, bytes) = step(m, "read_small_cold", || {
        workloads::read_files(&walk.small_files)
    })?;
    if bytes != walk.small_bytes {
        bail!(
            "small files: read {bytes} bytes, lstat said {}",
            walk.small_bytes
        );
    }
    results.add("read_small_cold", key, t.as_secs_f64());
    done.push("read_small_cold");
    let (t, _) = step(m, "read_small_warm", || {
        workloads::read_files(&walk.small_files)
    })?;
    results.add("read_small_warm", key, t.as_secs_f64());
    done.push("read_small_warm");

    let big = mnt.join("data/big.bin");
    sys::drop_caches()?;
    let t = step(m, "read_big_cold", || workloads::seq_read(&big, BIG_SIZE))?;
    results.add("read_big_cold", key, t.as_secs_f64());
    done.push("read_big_cold");
    let t = step(m, "read_big_warm", || workloads::seq_read(&big, BIG_SIZE))?;
    results.add("read_big_warm", key, t.as_secs_f64());
    done.push("read_big_warm");

    let t = step(m, "write_big", || {
        seq_write(&mnt.join("bench-write.bin"), BIG_SIZE)
    })?;
    results.add("write_big", key, t.as_secs_f64());
    done.push("write_big");

    let t = step(m, "create_fsync", || {
        workloads::create_fsync(&mnt.join("bench-create"), 10_000)
    })?;
    results.add("create_fsync", key, t.as_secs_f64());
    done.push("create_fsync");

    let t = step(m, "rename_unlink", || workloads::rename_unlink(&mnt))?;
    results.add("rename_unlink", key, t.as_secs_f64());
    done.push("rename_unlink");

    if let Some(pid) = m.daemon {
        results.add("rss_session", key, sys::vm_hwm_mib(pid)?);
        done.push("rss_session");
        results.add("cpu_session", key, sys::cpu_seconds(pid)?);
        done.push("cpu_session");
    }
    Ok(())
}

/// Sequential write of `size` bytes in 1 MiB writes, then fsync.
fn seq_write(path: &Path, size: u64) -> Result<Duration> {
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(buf.get(..n).unwrap_or(&buf))?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    Ok(start.elapsed())
}

fn copy_up_session(
    args: &Args,
    c: &Contender,
    results: &mut Results,
    measure: &str,
    op: fn(&Path) -> Result<Duration>,
) {
    // Same starting point for everyone: the lower file's pages are cached.
    let lower = args.data.join("layers/big/data/big.bin");
    let _ = workloads::seq_read(&lower, BIG_SIZE);
    let d = dirs(args, c);
    let (mut m, took) = match mount(c, &main_stack(&args.data, c), &d) {
        Ok(x) => x,
        Err(e) => {
            results.fail(measure, &c.key, &format!("mount failed: {e:#}"));
            return;
        }
    };
    results.add("mount", &c.key, took.as_secs_f64());
    let path = m.mnt.join("data/big.bin");
    match step(&m, measure, || op(&path)) {
        Ok(t) => {
            // The copy must have landed in the upper layer.
            if d.upper().join("data/big.bin").exists() {
                results.add(measure, &c.key, t.as_secs_f64())
            } else {
                results.fail(
                    measure,
                    &c.key,
                    "no copy-up: data/big.bin missing from the upper dir",
                )
            }
        }
        Err(e) => results.fail(measure, &c.key, &format!("{e:#}")),
    }
    if let Err(e) = m.unmount() {
        results.notes.push(format!("{}: unmount: {e:#}", c.name));
    }
}

fn lookup_session(args: &Args, c: &Contender, results: &mut Results, depth: usize) {
    let stack = lookup_stack(&args.data, depth);
    let pos_key = format!("lookup_pos_{depth}");
    let neg_key = format!("lookup_neg_{depth}");
    let d = dirs(args, c);
    let (mut m, _) = match mount(c, &stack, &d) {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("mount failed: {e:#}");
            results.fail(&pos_key, &c.key, &msg);
            results.fail(&neg_key, &c.key, &msg);
            return;
        }
    };
    let layers: Vec<PathBuf> = stack.layers.iter().map(|l| stack.base.join(l)).collect();
    let pos = workloads::lookup_names(true);
    let neg = workloads::lookup_names(false);
    workloads::warm_lower(&layers, &pos);
    workloads::warm_lower(&layers, &neg);
    let mnt = m.mnt.clone();
    match step(&m, &pos_key, || workloads::lookups(&mnt, &pos, true)) {
        Ok(t) => results.add(&pos_key, &c.key, t.as_secs_f64()),
        Err(e) => results.fail(&pos_key, &c.key, &format!("{e:#}")),
    }
    match step(&m, &neg_key, || workloads::lookups(&mnt, &neg, false)) {
        Ok(t) => results.add(&neg_key, &c.key, t.as_secs_f64()),
        Err(e) => results.fail(&neg_key, &c.key, &format!("{e:#}")),
    }
    if let Err(e) = m.unmount() {
        results.notes.push(format!("{}: unmount: {e:#}", c.name));
    }
}

/// `podman run --rm IMAGE true` latency, one throwaway store per mount program.
pub fn podman_start(args: &Args, contenders: &[Contender], results: &mut Results) {
    let mut stores: Vec<(Contender, Store)> = Vec::new();
    for c in contenders {
        eprintln!("[bench] podman store for {}", c.key);
        let dir = args.work.join("podman").join(&c.key);
        let _ = std::fs::remove_dir_all(&dir);
        let prepared = Store::new(&dir, c.mount_program(), None).and_then(|s| {
            s.import(&args.data.join("tar/base-v1.tar"), "bench-base:v1")?;
            // Warm-up run, untimed.
            podman::run_latency(&s, "bench-base:v1")?;
            Ok(s)
        });
        match prepared {
            Ok(s) => stores.push((c.clone(), s)),
            Err(e) => results.fail("podman_run", &c.key, &format!("{e:#}")),
        }
    }
    for rep in 0..args.podman_reps {
        let n = stores.len().max(1);
        for i in 0..stores.len() {
            let Some((c, s)) = stores.get((i + rep) % n) else {
                continue;
            };
            match podman::run_latency(s, "bench-base:v1") {
                Ok(t) => results.add("podman_run", &c.key, t.as_secs_f64()),
                Err(e) => results.fail("podman_run", &c.key, &format!("{e:#}")),
            }
        }
    }
    for (_, s) in &stores {
        s.teardown();
        let _ = s.run(&["system", "reset", "-f"]);
        let _ = std::fs::remove_dir_all(s.dir());
        let _ = std::fs::remove_dir_all(s.runroot());
    }
}

/// Rebase-and-restart (rebasefs) against rebuild-and-recreate (kernel overlay store).
pub fn rebase_figure(args: &Args, results: &mut Results) {
    for rep in 0..args.rebase_reps {
        eprintln!(
            "[bench] rebase figure rep {}/{}: rebuild + recreate",
            rep + 1,
            args.rebase_reps
        );
        match one_side(args, "rebuild", None, None, |s| {
            podman::rebuild_and_recreate(s, &args.data)
        }) {
            Ok(c) => {
                results.rebuild.detail = format!(
                    "app = python3+perl install layer + 3,000 small files + RUN rm (no 1 GiB file); last rep: {}",
                    c.breakdown.join(", ")
                );
                push(&mut results.rebuild, c);
            }
            Err(e) => {
                results.rebuild.error.get_or_insert(format!("{e:#}"));
            }
        }
        eprintln!(
            "[bench] rebase figure rep {}/{}: rebasefs rebase + restart",
            rep + 1,
            args.rebase_reps
        );
        let rebasefs = args.rebasefs.clone();
        let res = if !rebasefs.exists() {
            Err(anyhow::anyhow!(
                "rebasefs binary missing ({})",
                rebasefs.display()
            ))
        } else {
            one_side(args, "rebasefs", Some(&rebasefs), Some(&rebasefs), |s| {
                podman::rebase_and_restart(s, &rebasefs)
            })
        };
        match res {
            Ok((c, how)) => {
                results.rebase.detail = format!("{how}; last rep: {}", c.breakdown.join(", "));
                push(&mut results.rebase, c);
            }
            Err(e) => {
                results.rebase.error.get_or_insert(format!("{e:#}"));
            }
        }
    }
}

fn push(side: &mut RebaseSide, c: podman::Cost) {
    side.seconds.push(c.seconds);
    side.process_write_bytes.push(c.process_write_bytes);
    side.store_growth_bytes.push(c.store_growth_bytes);
}

fn one_side<T>(
    args: &Args,
    name: &str,
    mount_program: Option<&Path>,
    hook: Option<&Path>,
    timed: impl FnOnce(&Store) -> Result<T>,
) -> Result<T> {
    let dir = args.work.join("rebase").join(name);
    if dir.exists() {
        if let Ok(old) = Store::new(&dir, mount_program, hook) {
            old.teardown();
            let _ = old.run(&["system", "reset", "-f"]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let store = Store::new(&dir, mount_program, hook)?;
    let res = podman::prepare_app(&store, &args.data)
        .context("setting up the app container on base v1")
        .and_then(|_| timed(&store));
    store.teardown();
    let _ = store.run(&["system", "reset", "-f"]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(store.runroot());
    res
}
