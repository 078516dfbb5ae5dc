//! Benchmark driver: runs every workload of issue 6 against kernel overlayfs, fuse-overlayfs 1.10,
//! fuse-overlayfs 2.0 and rebasefs, alternating, and writes the Markdown table, the JSON samples
//! and an SVG chart. The data set is built beforehand by `bench/build-data.sh`; `bench/run.sh`
//! is the one command that does everything.

mod contender;
mod phases;
mod podman;
mod report;
mod results;
mod sys;
mod watchdog;
mod workloads;

use anyhow::{Context, Result};
use clap::Parser;
use contender::{Contender, Kind};
use results::{ContenderInfo, Results};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser, Debug)]
#[command(about = "rebasefs side-by-side benchmark driver (run through bench/run.sh)")]
pub struct Args {
    /// Data set built by build-data.sh.
    #[arg(long)]
    pub data: PathBuf,
    /// Scratch directory for mounts, uppers and podman stores.
    #[arg(long)]
    pub work: PathBuf,
    /// Where results.md, results.json and chart.svg go.
    #[arg(long)]
    pub results: PathBuf,
    /// README whose results section is replaced by the new table.
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// Repository root (for version information).
    #[arg(long)]
    pub repo: PathBuf,
    /// Repetitions of the filesystem workloads.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Repetitions of `podman run`.
    #[arg(long, default_value_t = 7)]
    pub podman_reps: usize,
    /// Repetitions of the rebase figure.
    #[arg(long, default_value_t = 2)]
    pub rebase_reps: usize,
    /// Smoke run: one repetition of everything.
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value = "/usr/bin/fuse-overlayfs")]
    pub fuse_overlayfs_1: PathBuf,
    #[arg(long)]
    pub fuse_overlayfs_2: PathBuf,
    #[arg(long)]
    pub rebasefs: PathBuf,
    /// Phases to run (comma list of fs,lookup,podman,rebase).
    #[arg(long, default_value = "fs,lookup,podman,rebase")]
    pub phases: String,
    /// Re-render results.md, chart.svg and the README table from an existing results.json.
    #[arg(long)]
    pub render_only: bool,
    /// Contenders to run (comma list of keys); default all.
    #[arg(long)]
    pub only: Option<String>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("[bench] fatal: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.reps = 1;
        args.podman_reps = 2;
        args.rebase_reps = 1;
    }
    std::fs::create_dir_all(&args.work)?;
    std::fs::create_dir_all(&args.results)?;
    // Mounts run from other working directories: every path must be absolute.
    for p in [
        &mut args.data,
        &mut args.work,
        &mut args.results,
        &mut args.repo,
    ] {
        *p = p
            .canonicalize()
            .with_context(|| format!("resolving {}", p.display()))?;
    }
    for p in [
        &mut args.fuse_overlayfs_1,
        &mut args.fuse_overlayfs_2,
        &mut args.rebasefs,
    ] {
        if let Ok(abs) = p.canonicalize() {
            *p = abs;
        }
    }
    if args.render_only {
        let json = std::fs::read_to_string(args.results.join("results.json"))
            .context("reading results.json")?;
        let results: Results = serde_json::from_str(&json).context("parsing results.json")?;
        return write_results(&args, &results);
    }
    let contenders = contenders(&args);
    let mut results = Results {
        started: now_utc(),
        repetitions: args.reps,
        quick: args.quick,
        machine: machine_info(&args),
        contenders: contenders
            .iter()
            .map(|c| ContenderInfo {
                key: c.key.clone(),
                name: c.name.clone(),
                version: c.version.clone(),
            })
            .collect(),
        ..Default::default()
    };
    let phases: Vec<&str> = args.phases.split(',').map(str::trim).collect();
    if phases.contains(&"fs") || phases.contains(&"lookup") {
        phases::filesystem(
            &args,
            &contenders,
            &mut results,
            phases.contains(&"fs"),
            phases.contains(&"lookup"),
        );
    }
    if phases.contains(&"podman") {
        phases::podman_start(&args, &contenders, &mut results);
    }
    if phases.contains(&"rebase") {
        phases::rebase_figure(&args, &mut results);
    }
    results.finished = now_utc();
    results
        .machine
        .insert("load average at end".into(), load_average());
    write_results(&args, &results)
}

fn contenders(args: &Args) -> Vec<Contender> {
    let version = |bin: &Path| {
        if bin.exists() {
            let out = Command::new(bin).arg("--version").output();
            let text = out
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            text.lines()
                .find(|l| l.contains("version") && !l.contains("fusermount") && !l.contains("FUSE"))
                .unwrap_or("unknown")
                .trim()
                .to_string()
        } else {
            format!("missing: {}", bin.display())
        }
    };
    let all = vec![
        Contender {
            key: report::KERNEL.into(),
            name: "kernel overlayfs".into(),
            kind: Kind::Kernel,
            version: sys::version_line(Command::new("uname").arg("-r")),
        },
        Contender {
            key: report::FO1.into(),
            name: "fuse-overlayfs 1.10".into(),
            kind: Kind::Fuse {
                bin: args.fuse_overlayfs_1.clone(),
            },
            version: version(&args.fuse_overlayfs_1),
        },
        Contender {
            key: report::FO2.into(),
            name: "fuse-overlayfs 2.0".into(),
            kind: Kind::Fuse {
                bin: args.fuse_overlayfs_2.clone(),
            },
            version: version(&args.fuse_overlayfs_2),
        },
        Contender {
            key: report::REBASEFS.into(),
            name: "rebasefs".into(),
            kind: Kind::Fuse {
                bin: args.rebasefs.clone(),
            },
            version: rebasefs_version(args),
        },
    ];
    match &args.only {
        Some(only) => {
            let keys: Vec<&str> = only.split(',').map(str::trim).collect();
            all.into_iter()
                .filter(|c| keys.contains(&c.key.as_str()))
                .collect()
        }
        None => all,
    }
}

/// The directories the rebasefs binary is built from.
const REBASEFS_SOURCES: &[&str] = &["fuse", "hooks", "plugin"];

fn rebasefs_version(args: &Args) -> String {
    let commit = sys::version_line(
        Command::new("git")
            .arg("-C")
            .arg(&args.repo)
            .args(["log", "-1", "--format=%h %cI", "--"])
            .args(REBASEFS_SOURCES),
    );
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&args.repo)
        .args(["status", "--porcelain", "--"])
        .args(REBASEFS_SOURCES)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let commit = if dirty {
        format!("{commit} + uncommitted changes in the work tree")
    } else {
        commit
    };
    if args.rebasefs.exists() {
        format!(
            "{} ({} at {commit})",
            args.rebasefs.display(),
            REBASEFS_SOURCES.join("/")
        )
    } else {
        format!(
            "missing: {} ({} at {commit})",
            args.rebasefs.display(),
            REBASEFS_SOURCES.join("/")
        )
    }
}

fn machine_info(args: &Args) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    m.insert("cpu".into(), format!("{cpus} × {model}"));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(l) = meminfo.lines().find(|l| l.starts_with("MemTotal")) {
        m.insert(
            "memory".into(),
            l.trim_start_matches("MemTotal:").trim().to_string(),
        );
    }
    m.insert(
        "kernel".into(),
        sys::version_line(Command::new("uname").arg("-srv")),
    );
    m.insert(
        "os".into(),
        std::fs::read_to_string("/etc/debian_version")
            .map(|v| format!("Debian {}", v.trim()))
            .unwrap_or_default(),
    );
    m.insert(
        "data filesystem".into(),
        sys::version_line(
            Command::new("findmnt")
                .args(["-no", "FSTYPE,SOURCE,OPTIONS", "-T"])
                .arg(&args.data),
        ),
    );
    m.insert(
        "load average at start (shared machine)".into(),
        load_average(),
    );
    m.insert(
        "podman".into(),
        sys::version_line(Command::new("podman").arg("--version")),
    );
    m.insert(
        "runc".into(),
        sys::version_line(Command::new("runc").arg("--version")),
    );
    m.insert(
        "fuse3".into(),
        sys::version_line(Command::new("fusermount3").arg("--version")),
    );
    m.insert(
        "repo commit".into(),
        sys::version_line(Command::new("git").arg("-C").arg(&args.repo).args([
            "log",
            "-1",
            "--format=%h %s",
        ])),
    );
    m
}

fn now_utc() -> String {
    sys::version_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
}

fn write_results(args: &Args, results: &Results) -> Result<()> {
    let md = report::markdown(results);
    std::fs::write(args.results.join("results.md"), &md)?;
    std::fs::write(
        args.results.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(args.results.join("chart.svg"), report::svg(results))?;
    if let Some(readme) = &args.readme {
        update_readme(readme, &md).with_context(|| format!("updating {}", readme.display()))?;
    }
    println!("{md}");
    Ok(())
}

const README_START: &str = "<!-- results:start -->";
const README_END: &str = "<!-- results:end -->";

/// Replaces the results section of the README (between markers) with the latest table.
fn update_readme(readme: &Path, md: &str) -> Result<()> {
    let text = std::fs::read_to_string(readme)?;
    let (Some(a), Some(b)) = (text.find(README_START), text.find(README_END)) else {
        return Ok(());
    };
    if b < a {
        return Ok(());
    }
    let body = md.replace("](chart.svg)", "](results/chart.svg)").replacen(
        "# rebasefs benchmark results\n",
        "",
        1,
    );
    let new = format!(
        "{}{README_START}\n{}\n{}",
        &text[..a],
        body.trim(),
        &text[b..]
    );
    std::fs::write(readme, new)?;
    Ok(())
}

/// The 1/5/15-minute load averages (the machine is shared; results record them).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
