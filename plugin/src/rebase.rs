//! One rebase, end to end: plan, base change set, per-layer conflicts (reusing what the
//! repository has), policy decisions (package databases merged per package, and a
//! refusal when the new base breaks an app package's dependencies), the materialized
//! resolution, and the recorded stack.
//!
//! Everything is computed before the single write transaction; the resolution directory
//! appears by atomic rename. A failure leaves the repository as it was (at most an orphan
//! resolution directory that `gc` removes).

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chain;
use crate::conflict::{self, Change, Conflict};
use crate::error::{Error, Result};
use crate::holds;
use crate::pkgdb::report::PackageReport;
use crate::plan::{self, Plan};
use crate::repo::{
    self, write, NewStack, RebasedLayer, Repo, ResolutionRow, SharedStore, WriterLock,
};
use crate::resolve::{self, How, Policy, Stacks};
use crate::serve;
use crate::storage::Store;

/// Progress reporting for long work; the CLI draws it, tests ignore it.
pub trait Progress {
    fn phase(&self, _message: &str, _total: u64) {}
    fn inc(&self) {}
    fn done(&self) {}
}

/// Draws nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What to rebase, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub image: String,
    pub onto: Option<String>,
    pub base: Option<String>,
    pub policy: Policy,
    /// False when the user gave no policy: the image keeps the policy of its current
    /// rebase (policies are remembered per image), else the default.
    pub policy_given: bool,
    /// Compute and report only: nothing is written.
    pub dry_run: bool,
    /// Set the image to the new stack (false for inspection mounts).
    pub assign: bool,
    /// Rebase even when the new base no longer satisfies an app package's dependencies
    /// (reported either way). Per run: never remembered with the image's policy.
    pub allow_broken_deps: bool,
}

/// One app layer in the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub source: String,
    pub rebased_id: String,
    /// Taken from the repository instead of computed.
    pub reused: bool,
    pub conflicts: usize,
}

/// One decided path in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolutionReport {
    pub path: String,
    #[serde(flatten)]
    pub how: How,
}

/// The outcome of a rebase.
#[derive(Debug, Clone, Serialize)]
pub struct RebaseReport {
    pub image: String,
    pub image_id: String,
    pub old_base: String,
    pub old_base_id: String,
    pub base_found_by: crate::base::Found,
    pub new_base: String,
    pub new_base_id: String,
    pub platform: String,
    pub policy: String,
    pub dry_run: bool,
    pub layers: Vec<LayerReport>,
    pub base_changes: usize,
    pub base_changes_reused: bool,
    pub conflicts: Vec<Conflict>,
    pub resolutions: Vec<ResolutionReport>,
    /// Per package database: what the base update did to the packages, what the app
    /// keeps, what both changed, and what the new base no longer satisfies.
    pub packages: Vec<PackageReport>,
    pub resolution_id: Option<String>,
    pub resolution_reused: bool,
    pub stack_id: Option<i64>,
    /// The lower directories a container of the image is served with, top first.
    pub lowers: Vec<PathBuf>,
    pub elapsed_ms: u128,
}

/// What a resolution row remembers of its decisions (its `decisions` JSON). Rows written
/// before package databases were merged hold the bare list of resolutions.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    resolutions: Vec<ResolutionReport>,
    packages: Vec<PackageReport>,
}

impl Recorded {
    fn read(json: &serde_json::Value) -> Option<Recorded> {
        serde_json::from_value(json.clone()).ok()
    }
}

fn resolution_id(plan: &Plan, policy: &Policy) -> String {
    chain::sha256_hex(
        format!(
            "rebasefs-resolution\n{}\n{}\n{}",
            plan.old_base_top(),
            plan.rebased_top(),
            policy.canonical()
        )
        .as_bytes(),
    )
}

/// Runs a rebase against the store snapshot.
pub fn rebase(store: &Store, opts: &Options, progress: &dyn Progress) -> Result<RebaseReport> {
    let started = Instant::now();
    let plan = plan::make(
        store,
        &opts.image,
        opts.onto.as_deref(),
        opts.base.as_deref(),
    )?;
    let graphroot = &store.config.graphroot;
    // One writer at a time, from before the repository is read: a concurrent rebase of the
    // same image then finds this one's results and reuses them instead of computing twice.
    let _writer = if opts.dry_run {
        None
    } else {
        Some(WriterLock::acquire(graphroot, || {
            progress.phase(
                "waiting for another rebasefs rebase, rollback or gc to finish",
                0,
            )
        })?)
    };
    // Read through an existing repository; create one only when there is something to write.
    let mut repo = Repo::open_existing(graphroot)?;
    let policy = match (&repo, opts.policy_given) {
        (Some(r), false) => match r.assigned_stack(&plan.image_id)? {
            Some(stack) => Policy::from_canonical(&stack.policy)?,
            None => opts.policy.clone(),
        },
        _ => opts.policy.clone(),
    };
    let opts = &Options {
        policy,
        ..opts.clone()
    };
    let diff = |id: &String| store.diff_dir(id);
    let old_bottom: Vec<PathBuf> = plan.old_base.layers.iter().map(diff).collect();
    let new_bottom: Vec<PathBuf> = plan.new_base_layers.iter().map(diff).collect();

    // Base change set: once per (old base, new base).
    let cached = match &repo {
        Some(r) => r.base_changes(plan.old_base_top(), plan.new_base_top())?,
        None => None,
    };
    let base_changes_reused = cached.is_some();
    let changes: Vec<Change> = match cached {
        Some(c) => c,
        None => {
            progress.phase(
                &format!("comparing {} with {}", plan.old_base.display, plan.new_base),
                0,
            );
            let c = conflict::base_changes(&old_bottom, &new_bottom)?;
            progress.done();
            c
        }
    };

    // Per app layer: reuse a stored rebased layer, or scan the layer.
    progress.phase("checking app layers", plan.app_layers.len() as u64);
    let mut layer_reports = Vec::new();
    let mut new_layers = Vec::new();
    let mut conflicts = Vec::new();
    for layer in &plan.app_layers {
        let stored = match &repo {
            Some(r) => r.rebased_layer(&layer.rebased_id)?,
            None => None,
        }
        .filter(|l| l.old_parent == layer.old_parent && l.diff_id == layer.diff_id);
        let (layer_conflicts, reused) = match stored {
            Some(l) => (l.conflicts, true),
            None => {
                let found = conflict::layer_conflicts(
                    &changes,
                    &store.diff_dir(&layer.source),
                    &layer.source,
                )?;
                new_layers.push(RebasedLayer {
                    id: layer.rebased_id.clone(),
                    parent_id: layer.rebased_parent.clone(),
                    diff_id: layer.diff_id.clone(),
                    source_layer: layer.source.clone(),
                    old_parent: layer.old_parent.clone(),
                    new_base: plan.new_base_id.clone(),
                    new_base_top: plan.new_base_top().to_string(),
                    conflicts: found.clone(),
                    created: repo::now(),
                    last_used: repo::now(),
                    hits: 0,
                });
                (found, false)
            }
        };
        layer_reports.push(LayerReport {
            source: layer.source.clone(),
            rebased_id: layer.rebased_id.clone(),
            reused,
            conflicts: layer_conflicts.len(),
        });
        conflicts.extend(layer_conflicts);
        progress.inc();
    }
    progress.done();

    // Decisions under the policy.
    let top_first = |ids: &[String]| -> Vec<PathBuf> {
        ids.iter().rev().map(|id| store.diff_dir(id)).collect()
    };
    let app_ids: Vec<String> = plan.app_layers.iter().map(|l| l.source.clone()).collect();
    let old_top_first = top_first(&plan.old_base.layers);
    let new_top_first = top_first(&plan.new_base_layers);
    let app_top_first = top_first(&app_ids);
    let ours_top_first: Vec<PathBuf> = app_top_first
        .iter()
        .chain(old_top_first.iter())
        .cloned()
        .collect();
    let below: Vec<PathBuf> = app_top_first
        .iter()
        .chain(new_top_first.iter())
        .cloned()
        .collect();
    let stacks = Stacks {
        old_base: &old_top_first,
        new_base: &new_top_first,
        app: &app_top_first,
        ours: &ours_top_first,
        served: &below,
    };
    // One decision per conflicting path, so a resolution exists exactly when conflicts do.
    let rid = (!conflicts.is_empty()).then(|| resolution_id(&plan, &opts.policy));
    let stored_resolution = match (&repo, &rid) {
        (Some(r), Some(id)) => r.resolution(id)?.filter(|row| {
            row.dir
                .as_ref()
                .is_none_or(|d| r.store.absolute(d).is_dir())
        }),
        _ => None,
    };
    // A stored resolution already holds the merged files: its record is the report.
    let recorded = stored_resolution
        .as_ref()
        .and_then(|row| Recorded::read(&row.decisions));
    let (decisions, packages) = match &recorded {
        Some(r) => (Vec::new(), r.packages.clone()),
        None => {
            progress.phase("deciding conflicts and merging package databases", 0);
            let scratch = repo::home(graphroot);
            let scratch = if scratch.is_dir() {
                scratch
            } else {
                std::env::temp_dir()
            };
            let found = resolve::decide_with_packages(&conflicts, &opts.policy, &stacks, &scratch)?;
            progress.done();
            found
        }
    };
    let resolutions: Vec<ResolutionReport> = match &recorded {
        Some(r) => r.resolutions.clone(),
        None => decisions
            .iter()
            .map(|d| ResolutionReport {
                path: d.path.clone(),
                how: d.how.clone(),
            })
            .collect(),
    };
    let unresolved: Vec<&str> = resolutions
        .iter()
        .filter(|d| d.how == How::Unresolved)
        .map(|d| d.path.as_str())
        .collect();
    if !unresolved.is_empty() {
        return Err(Error::Refused {
            image: plan.image.clone(),
            count: unresolved.len(),
            paths: unresolved.join(", "),
        });
    }
    let broken = resolve::packages::broken(&packages);
    if !broken.is_empty() && !opts.allow_broken_deps {
        return Err(Error::BrokenDependencies {
            image: plan.image.clone(),
            count: broken.len(),
            relations: broken.join("; "),
        });
    }
    let writes = match (&recorded, &stored_resolution) {
        (Some(_), Some(row)) => row.dir.is_some(),
        _ => decisions.iter().any(|d| d.writes()),
    };
    let resolution_reused = stored_resolution.is_some();
    let resolution_dir: Option<String> = match (&stored_resolution, &rid) {
        (Some(row), _) => row.dir.clone(),
        (None, Some(id)) if writes => Some(SharedStore::relative_resolution(id)),
        _ => None,
    };

    let mut report = RebaseReport {
        image: plan.image.clone(),
        image_id: plan.image_id.clone(),
        old_base: plan.old_base.display.clone(),
        old_base_id: plan.old_base.image_id.clone(),
        base_found_by: plan.old_base.found,
        new_base: plan.new_base.clone(),
        new_base_id: plan.new_base_id.clone(),
        platform: plan.platform.clone(),
        policy: opts.policy.canonical(),
        dry_run: opts.dry_run,
        layers: layer_reports,
        base_changes: changes.len(),
        base_changes_reused,
        conflicts,
        resolutions,
        packages,
        resolution_id: rid.clone(),
        resolution_reused,
        stack_id: None,
        lowers: Vec::new(),
        elapsed_ms: 0,
    };
    let rebased_ids: Vec<String> = plan
        .app_layers
        .iter()
        .map(|l| l.rebased_id.clone())
        .collect();

    if repo.is_none() && !opts.dry_run {
        repo = Some(Repo::open(graphroot)?);
    }
    let Some(repo) = repo.as_mut().filter(|_| !opts.dry_run) else {
        let dir = resolution_dir.as_ref().map(|d| {
            repo.as_ref()
                .map(|r| r.store.absolute(d))
                .unwrap_or_else(|| repo::home(graphroot).join("store").join(d))
        });
        report.lowers =
            serve::stack_dirs(graphroot, dir.as_deref(), &app_ids, &plan.new_base_layers);
        report.elapsed_ms = started.elapsed().as_millis();
        return Ok(report);
    };

    // Materialize the resolution once, outside the transaction, by atomic rename.
    if let (Some(rel), false) = (&resolution_dir, resolution_reused) {
        progress.phase("materializing the resolution layer", 0);
        repo.store
            .publish(rel, |dir| resolve::materialize(&decisions, dir, &below))?;
        progress.done();
    }

    // Hold the new base before containers can be set onto it (`podman rmi` of it then
    // only untags); a hold nothing ends up needing is dropped by `gc`.
    if opts.assign {
        holds::hold(graphroot, &plan.new_base_id)?;
    }
    let path = repo.path.clone();
    let sql = |e| repo_err(&path, e);
    let tx = repo
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    write::record_base(
        &tx,
        &plan.old_base.image_id,
        &plan.old_base.display,
        plan.old_base_top(),
        plan.old_base.layers.len(),
    )
    .map_err(sql)?;
    write::record_base(
        &tx,
        &plan.new_base_id,
        &plan.new_base,
        plan.new_base_top(),
        plan.new_base_layers.len(),
    )
    .map_err(sql)?;
    if base_changes_reused {
        write::hit_base_changes(&tx, plan.old_base_top(), plan.new_base_top()).map_err(sql)?;
    } else {
        write::save_base_changes(&tx, plan.old_base_top(), plan.new_base_top(), &changes)
            .map_err(sql)?;
    }
    for layer in &new_layers {
        write::insert_rebased_layer(&tx, layer).map_err(sql)?;
    }
    for layer in report.layers.iter().filter(|l| l.reused) {
        write::hit_rebased_layer(&tx, &layer.rebased_id).map_err(sql)?;
    }
    if let Some(id) = &rid {
        if resolution_reused {
            write::hit_resolution(&tx, id).map_err(sql)?;
        } else {
            write::insert_resolution(
                &tx,
                &ResolutionRow {
                    id: id.clone(),
                    rebased_top: plan.rebased_top().to_string(),
                    old_base_top: plan.old_base_top().to_string(),
                    policy: opts.policy.canonical(),
                    dir: resolution_dir.clone(),
                    decisions: serde_json::to_value(Recorded {
                        resolutions: report.resolutions.clone(),
                        packages: report.packages.clone(),
                    })
                    .unwrap_or_default(),
                    created: 0,
                    last_used: 0,
                    hits: 0,
                },
            )
            .map_err(sql)?;
        }
    }
    let policy = opts.policy.canonical();
    let stack_id = write::find_or_insert_stack(
        &tx,
        &NewStack {
            image_id: &plan.image_id,
            orig_layers: &plan.orig_layers,
            old_base_image: &plan.old_base.image_id,
            new_base_image: &plan.new_base_id,
            new_base_name: &plan.new_base,
            new_base_layers: &plan.new_base_layers,
            app_layers: &app_ids,
            rebased_layers: &rebased_ids,
            resolution_id: rid.as_deref(),
            policy: &policy,
        },
    )
    .map_err(sql)?;
    if opts.assign {
        write::assign(&tx, &plan.image_id, stack_id).map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    report.stack_id = Some(stack_id);
    let dir = resolution_dir.as_ref().map(|d| repo.store.absolute(d));
    report.lowers = serve::stack_dirs(graphroot, dir.as_deref(), &app_ids, &plan.new_base_layers);
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(report)
}

fn repo_err(path: &std::path::Path, e: rusqlite::Error) -> Error {
    Error::Sqlite {
        path: path.to_path_buf(),
        source: e,
    }
}
