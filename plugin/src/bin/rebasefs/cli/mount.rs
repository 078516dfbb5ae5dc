//! `rebasefs mount IMAGE [--onto NEWBASE] DIR` and `rebasefs umount DIR`.
//!
//! The mount is read-only: the same binary is run as a mount program with only a
//! `lowerdir=` list (the rebased stack), and it daemonizes like under containers-storage.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::Args;
use rebasefs_hooks::mountinfo;
use rebasefs_plugin::rebase;
use rebasefs_plugin::repo::Repo;
use rebasefs_plugin::serve;

use super::output;
use super::progress::Bar;
use super::rebase::PlanArgs;
use super::{Format, Global};

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Image name or id.
    image: String,
    /// Show the image rebased onto this base (default: the stack the image is set to).
    #[arg(long, value_name = "NEWBASE")]
    onto: Option<String>,
    /// Where to mount.
    dir: PathBuf,
    /// For --onto: the plan's flags, as for `rebase`.
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn mount(global: &Global, args: &MountArgs) -> anyhow::Result<i32> {
    let store = global.open_store()?;
    let graphroot = store.config.graphroot.clone();
    let (lowers, what) = match &args.onto {
        Some(onto) => {
            let opts = args
                .plan
                .options(&args.image, Some(onto.clone()), false, false)?;
            let report = rebase::rebase(&store, &opts, &Bar::new(global.format == Format::Text))?;
            (
                report.lowers,
                format!("{} rebased onto {}", report.image, report.new_base),
            )
        }
        None => {
            let image = store.image(&args.image)?;
            let assigned = match Repo::open_existing(&graphroot)? {
                Some(repo) => match repo.assigned_stack(&image.id)? {
                    Some(stack) => Some((serve::servable_dirs(&repo, &graphroot, &stack)?, stack)),
                    None => None,
                },
                None => None,
            };
            let original = || -> anyhow::Result<Vec<PathBuf>> {
                Ok(store
                    .image_chain(image)?
                    .iter()
                    .rev()
                    .map(|l| store.diff_dir(&l.id))
                    .collect())
            };
            // What a container of the image would get: the original stack when the
            // assigned one cannot be served.
            match assigned {
                Some((Ok(dirs), stack)) => (
                    dirs,
                    format!(
                        "{} on {} (stack {})",
                        image.display_name(),
                        stack.new_base_name,
                        stack.id
                    ),
                ),
                Some((Err(reason), stack)) => (
                    original()?,
                    format!(
                        "{} (original stack: its rebase onto {} is not in force: {reason})",
                        image.display_name(),
                        stack.new_base_name
                    ),
                ),
                None => (
                    original()?,
                    format!("{} (original stack)", image.display_name()),
                ),
            }
        }
    };
    if lowers.is_empty() {
        bail!("image {} has no layers to mount", args.image);
    }
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("mount point {}", args.dir.display()))?;
    run_mount_program(&lowers, &dir)?;
    match global.format {
        Format::Json => output::json(&serde_json::json!({
            "mountpoint": dir,
            "lowers": lowers,
            "what": what,
        }))?,
        Format::Text => {
            println!("mounted {what} read-only at {}", dir.display());
            println!("  unmount with: rebasefs umount {}", dir.display());
        }
    }
    Ok(0)
}

fn run_mount_program(lowers: &[PathBuf], dir: &Path) -> anyhow::Result<()> {
    let mut list = Vec::new();
    for l in lowers {
        let s = l
            .to_str()
            .with_context(|| format!("layer path {} is not UTF-8", l.display()))?;
        if s.contains(':') || s.contains(',') {
            bail!("layer path {s} contains ':' or ',', which a lowerdir list cannot carry");
        }
        list.push(s);
    }
    let exe = std::env::current_exe().context("finding the rebasefs binary")?;
    let out = Command::new(&exe)
        .arg("-o")
        .arg(format!(
            "lowerdir={},fsname={INSPECTION_SOURCE}",
            list.join(":")
        ))
        .arg(dir)
        .env(serve::NO_REWRITE_ENV, "1")
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "mounting {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The mount source (`fsname=`) of inspection mounts: what `umount` recognises them by.
const INSPECTION_SOURCE: &str = "rebasefs-inspect";

/// Unmounts an inspection mount; refuses anything else (a container's rootfs, a tmpfs...).
pub fn umount(dir: &Path) -> anyhow::Result<i32> {
    let dir = &mountinfo::canonical_mountpoint(dir)?;
    match mountinfo::mount_at(dir)? {
        None => bail!("{} is not a mount point", dir.display()),
        Some(m) if m.is_rebasefs() && m.source.as_deref() == Some(INSPECTION_SOURCE) => {}
        Some(m) => bail!(
            "refusing to unmount {}: it is a {} mount, not one made by `rebasefs mount`",
            dir.display(),
            if m.is_rebasefs() {
                "rebasefs (container or image)".to_string()
            } else {
                m.fs_type
            }
        ),
    }
    let mut last = String::new();
    for tool in ["fusermount3", "fusermount"] {
        match Command::new(tool).arg("-u").arg(dir).output() {
            Ok(out) if out.status.success() => {
                println!("unmounted {}", dir.display());
                return Ok(0);
            }
            Ok(out) => last = String::from_utf8_lossy(&out.stderr).trim().to_string(),
            Err(e) => last = format!("{tool}: {e}"),
        }
    }
    bail!("unmounting {} failed: {last}", dir.display())
}
