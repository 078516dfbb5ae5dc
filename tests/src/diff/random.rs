//! The seeded random run: a reproducible stream of operations over a small name space (so
//! they collide), run on both sides with periodic whole-tree checkpoints, and a minimiser
//! that shrinks a failing prefix to a short reproducer.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::op::{NodeKind, Op, WriteAt};
use super::rng::Rng;
use super::session::{Divergence, Session, Setup};
use super::standard::{RANDOM_NAMES, RANDOM_TOPS};

/// What kind of name an operation prefers, so most operations meet an entry of the kind
/// they act on (the stream itself stays independent of the filesystem state).
#[derive(Clone, Copy)]
enum Want {
    Any,
    File,
    Dir,
}

fn path_of(rng: &mut Rng, want: Want) -> String {
    let top = rng.pick(RANDOM_TOPS).copied().unwrap_or("ra");
    let name = match want {
        // Mostly the conventional names, sometimes any (collisions of kinds matter too).
        Want::File if rng.chance(85) => rng
            .pick(&["f0", "f1", "f2", "f3", "own1000"])
            .copied()
            .unwrap_or("f0"),
        Want::Dir if rng.chance(85) => rng.pick(&["d0", "d1"]).copied().unwrap_or("d0"),
        _ => rng.pick(RANDOM_NAMES).copied().unwrap_or("f0"),
    };
    if rng.below(200) == 0 {
        return String::new(); // the mount root itself, rarely
    }
    match (rng.below(10), want) {
        (0, _) | (1, Want::Dir) => top.to_string(),
        (1..=5, _) => format!("{top}/{name}"),
        _ => {
            let d = if rng.chance(50) { "d0" } else { "d1" };
            format!("{top}/{d}/{name}")
        }
    }
}

fn path(rng: &mut Rng) -> String {
    path_of(rng, Want::Any)
}

fn fpath(rng: &mut Rng) -> String {
    path_of(rng, Want::File)
}

fn dpath(rng: &mut Rng) -> String {
    path_of(rng, Want::Dir)
}

const MODES: &[u32] = &[
    0o644, 0o600, 0o755, 0o640, 0o4755, 0o2755, 0o1777, 0o000, 0o444,
];
const UMASKS: &[u32] = &[0o022, 0o077, 0o000, 0o027];
const IDS: &[u32] = &[0, 1000, 1001];
const XATTRS: &[&str] = &["user.k", "user.m", "trusted.t"];

fn some(rng: &mut Rng, items: &[u32]) -> u32 {
    rng.pick(items).copied().unwrap_or(0)
}

/// Generates operation number `i` of the stream (depends only on the RNG state).
pub fn gen_op(rng: &mut Rng) -> Op {
    // 0..88: root operations; 88..92: an unprivileged user's operation.
    let w = rng.below(92);
    let p = match w {
        8..=11 | 44..=49 | 64..=67 => dpath(rng),
        12..=15 | 19..=36 | 50..=63 | 85..=87 => fpath(rng),
        _ => path(rng),
    };
    let op = match w {
        0..=5 => Op::Lstat(p),
        6..=7 => Op::Stat(p),
        8..=11 => Op::ReadDir(p),
        12..=15 => Op::Read(p),
        16 => Op::ReadLink(p),
        17 => Op::ListXattr(p),
        18 => Op::GetXattr(p, XATTRS[rng.below(XATTRS.len())].to_string()),
        19..=25 => {
            let mut flags = libc::O_CREAT
                | if rng.chance(50) {
                    libc::O_WRONLY
                } else {
                    libc::O_RDWR
                };
            if rng.chance(25) {
                flags |= libc::O_EXCL;
            }
            if rng.chance(25) {
                flags |= libc::O_TRUNC;
            }
            Op::Open {
                path: p,
                flags,
                mode: some(rng, MODES),
                umask: some(rng, UMASKS),
            }
        }
        26..=33 => {
            let at = match rng.below(3) {
                0 => WriteAt::Offset(rng.below(6000) as u64),
                1 => WriteAt::Append,
                _ => WriteAt::Truncate,
            };
            Op::Write {
                path: p,
                at,
                len: rng.below(5000),
                fill: b'a' + rng.below(26) as u8,
            }
        }
        34..=35 => Op::Truncate(p, rng.below(8000) as u64),
        36 => Op::Ftruncate(p, rng.below(8000) as u64),
        37..=39 => Op::Chmod(p, some(rng, MODES)),
        40..=41 => Op::Chown {
            path: p,
            uid: some(rng, IDS),
            gid: some(rng, IDS),
            nofollow: rng.chance(50),
        },
        42..=43 => {
            let t = (
                1_000_000_000 + rng.below(600_000_000) as i64,
                rng.below(1_000_000_000) as i64,
            );
            // Sometimes leave atime alone (UTIME_OMIT): only mtime is compared anyway, but
            // the request the filesystem gets differs.
            let atime = if rng.chance(20) {
                (0, libc::UTIME_OMIT)
            } else {
                t
            };
            Op::Utimens {
                path: p,
                atime,
                mtime: t,
                nofollow: rng.chance(50),
            }
        }
        44..=49 => Op::Mkdir {
            path: p,
            mode: some(rng, &[0o755, 0o700, 0o777, 0o1777, 0o2775]),
            umask: some(rng, UMASKS),
        },
        50 => Op::Mknod {
            path: p,
            kind: NodeKind::Fifo,
            mode: 0o644,
            umask: some(rng, UMASKS),
        },
        51..=52 => {
            let target = if rng.chance(50) {
                path(rng)
            } else {
                rng.pick(RANDOM_NAMES).copied().unwrap_or("f0").to_string()
            };
            Op::Symlink { target, path: p }
        }
        53..=56 => Op::Link {
            old: p,
            new: fpath(rng),
        },
        57..=63 => Op::Unlink(p),
        64..=67 => Op::Rmdir(p),
        68..=77 => {
            let flags = match rng.below(6) {
                0 => libc::RENAME_NOREPLACE,
                1 => libc::RENAME_EXCHANGE,
                _ => 0,
            };
            // Mostly same-kind renames (file over file, dir over dir), some mixed.
            let new = match (w % 2, rng.chance(80)) {
                (0, true) => fpath(rng),
                (_, true) => dpath(rng),
                _ => path(rng),
            };
            let old = if w.is_multiple_of(2) {
                fpath(rng)
            } else {
                dpath(rng)
            };
            Op::Rename { old, new, flags }
        }
        78..=82 => {
            let name = XATTRS[rng.below(XATTRS.len())].to_string();
            let flags = match rng.below(4) {
                0 => libc::XATTR_CREATE,
                1 => libc::XATTR_REPLACE,
                _ => 0,
            };
            Op::SetXattr {
                path: p,
                name,
                value: format!("v{}", rng.below(100)).into_bytes(),
                flags,
            }
        }
        83..=84 => Op::RemoveXattr {
            path: p,
            name: XATTRS[rng.below(XATTRS.len())].to_string(),
        },
        85 => Op::Fsync(p),
        86 => Op::OpenUnlinkFstat(p),
        87 => Op::ReadDuringCopyUp {
            path: p,
            len: rng.below(3000),
            fill: b'A' + rng.below(26) as u8,
        },
        _ => {
            // An unprivileged user doing a mutating operation (sticky dirs, suid clearing,
            // permission checks).
            let inner = loop {
                let o = gen_op(rng);
                if o.mutates() && !matches!(o, Op::AsUser { .. }) {
                    break o;
                }
            };
            Op::AsUser {
                uid: 1000,
                gid: 1000,
                op: Box::new(inner),
            }
        }
    };
    op
}

/// The whole operation stream of a seed.
pub fn stream(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| gen_op(&mut rng)).collect()
}

/// Result of a random run.
pub struct RunReport {
    pub ops_run: usize,
    /// Operations that succeeded on the kernel side (the rest returned an errno): shows
    /// the stream exercises real state changes, not just error paths.
    pub kernel_ok: usize,
    pub divergences: Vec<Divergence>,
    /// Index (0-based) of the op at or before which the first divergence showed.
    pub first_failure: Option<usize>,
}

/// Runs `ops` on a fresh session; checkpoints every `every` ops. Stops at the first
/// divergence unless `keep_going`.
pub fn run(setup: &Setup, ops: &[Op], every: usize, keep_going: bool) -> Result<RunReport> {
    run_with(setup, ops, every, keep_going, true)
}

/// [`run`], with or without the upper-dir and remount comparisons at the end.
fn run_with(
    setup: &Setup,
    ops: &[Op],
    every: usize,
    keep_going: bool,
    after_unmount_checks: bool,
) -> Result<RunReport> {
    let mut s = Session::start(setup.clone())?;
    let mut first_failure = None;
    let mut ran = 0;
    let mut succeeded = 0;
    // DIFF_VERBOSE: per-operation-kind counts of runs and kernel successes.
    let verbose = std::env::var_os("DIFF_VERBOSE").is_some();
    let mut tally: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let outcome = s.run(op.clone());
        if outcome.is_ok() {
            succeeded += 1;
        }
        if verbose {
            let kind = format!("{op:?}");
            let kind = kind.split(['(', ' ']).next().unwrap_or("?").to_string();
            let slot = tally.entry(kind).or_insert((0usize, 0usize));
            slot.0 += 1;
            if outcome.is_ok() {
                slot.1 += 1;
            }
        }
        ran = i + 1;
        if every > 0 && (i + 1) % every == 0 {
            s.checkpoint(&format!("#{}", (i + 1) / every));
        }
        if first_failure.is_none() && !s.divergences.is_empty() {
            first_failure = Some(i);
            if !keep_going {
                break;
            }
        }
    }
    if verbose {
        for (k, (n, ok)) in &tally {
            eprintln!("  {k:<18} {n:>6} run, {ok:>6} ok on the kernel");
        }
    }
    let divergences = s.finish_with(after_unmount_checks);
    if first_failure.is_none() && !divergences.is_empty() {
        first_failure = Some(ops.len().saturating_sub(1));
    }
    Ok(RunReport {
        kernel_ok: succeeded,
        ops_run: ran,
        divergences,
        first_failure,
    })
}

/// What a shrunk sequence must still reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This operation's outcomes differ.
    OpDiverges(Op),
    /// A tree/upper/remount comparison reports this (normalised) line; `after_unmount`:
    /// it comes from the upper-dir or remount comparison.
    Detail { line: String, after_unmount: bool },
}

/// A divergence line with digit runs of 5+ (filesystem-chosen times, inode numbers)
/// replaced, so the same divergence matches across runs.
pub fn signature(line: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() || (c == '.' && !digits.is_empty()) {
            digits.push(c);
            continue;
        }
        if digits.len() >= 5 {
            out.push('#');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// Picks what to preserve while shrinking: the first diverging operation, or else the
/// first comparison line that a run with no operations at all does not report.
pub fn target_of(setup: &Setup, divergences: &[Divergence]) -> Option<Target> {
    if let Some(op) = divergences
        .iter()
        .find(|d| d.at.starts_with("op "))
        .and_then(|d| d.op.clone())
    {
        return Some(Target::OpDiverges(op));
    }
    let baseline: Vec<String> = run(setup, &[], 0, false)
        .map(|r| {
            r.divergences
                .iter()
                .flat_map(|d| d.details.iter().map(|l| signature(l)))
                .collect()
        })
        .unwrap_or_default();
    divergences.iter().find_map(|d| {
        let after_unmount = !d.at.starts_with("op ") && !d.at.starts_with("tree checkpoint");
        d.details
            .iter()
            .map(|l| signature(l))
            .find(|l| !baseline.contains(l))
            .map(|line| Target::Detail {
                line,
                after_unmount,
            })
    })
}

fn fails(setup: &Setup, ops: &[Op], target: &Target) -> bool {
    // A trial checks op outcomes and one final tree checkpoint, plus upper/remount only
    // when the divergence to keep was found there.
    let full = matches!(
        target,
        Target::Detail {
            after_unmount: true,
            ..
        }
    );
    let Ok(r) = run_with(setup, ops, 0, true, full) else {
        return false;
    };
    match target {
        Target::OpDiverges(op) => r
            .divergences
            .iter()
            .any(|d| d.at.starts_with("op ") && d.op.as_ref() == Some(op)),
        Target::Detail { line, .. } => r
            .divergences
            .iter()
            .any(|d| d.details.iter().any(|l| signature(l) == *line)),
    }
}

/// Shrinks a failing sequence (ddmin-style chunk removal) within `budget`, keeping the
/// `target` divergence (and, for an op divergence, that op last). Returns the smallest failing sequence found.
pub fn minimise(setup: &Setup, ops: &[Op], target: &Target, budget: Duration) -> Vec<Op> {
    let start = Instant::now();
    // An op divergence needs its op last; a tree/upper divergence may not need it at all.
    let (last, prefix): (Option<&Op>, &[Op]) = match target {
        Target::OpDiverges(_) => match ops.split_last() {
            Some((l, p)) => (Some(l), p),
            None => return Vec::new(),
        },
        Target::Detail { .. } => (None, ops),
    };
    let mut cur: Vec<Op> = prefix.to_vec();
    let with_last = |v: &[Op]| {
        let mut x = v.to_vec();
        x.extend(last.cloned());
        x
    };
    let fails = |v: &[Op]| fails(setup, &with_last(v), target);
    // A tree divergence appeared somewhere before the checkpoint that saw it: bisect for
    // the shortest failing prefix first (a handful of trials instead of thousands).
    if last.is_none() && cur.len() > 16 {
        let (mut lo, mut hi) = (0usize, cur.len());
        while lo + 1 < hi && start.elapsed() < budget {
            let mid = lo + (hi - lo) / 2;
            if fails(&cur[..mid]) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        if hi < cur.len() && fails(&cur[..hi]) {
            cur.truncate(hi);
        }
    }
    // Then keep only ops in the same top-level directory as the divergent path (plus
    // renames and links, which move things between directories).
    if let Target::Detail { line, .. } = target {
        let path = line.trim_start_matches("upper ").trim_start_matches('/');
        let top = path.split(['/', ':']).next().unwrap_or("").to_string();
        if !top.is_empty() {
            let related: Vec<Op> = cur
                .iter()
                .filter(|o| {
                    matches!(o, Op::Rename { .. } | Op::Link { .. })
                        || o.paths()
                            .iter()
                            .any(|p| p.split('/').next() == Some(top.as_str()))
                })
                .cloned()
                .collect();
            if related.len() < cur.len() && start.elapsed() < budget && fails(&related) {
                cur = related;
            }
        }
    }
    // Then try dropping every read-only op at once: they rarely matter.
    let mutating: Vec<Op> = cur.iter().filter(|o| o.mutates()).cloned().collect();
    if mutating.len() < cur.len() && fails(&mutating) {
        cur = mutating;
    }
    let mut chunk = cur.len().div_ceil(2).max(1);
    while !cur.is_empty() && start.elapsed() < budget {
        let mut i = 0;
        let mut removed_any = false;
        while i < cur.len() && start.elapsed() < budget {
            let end = (i + chunk).min(cur.len());
            let mut trial = cur[..i].to_vec();
            trial.extend_from_slice(&cur[end..]);
            if fails(&trial) {
                cur = trial;
                removed_any = true;
            } else {
                i = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any || chunk > 1 {
            chunk = (chunk / 2).max(1);
        }
    }
    with_last(&cur)
}
