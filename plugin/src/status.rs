//! `status`: images with their base and base updates, containers and the base each runs on.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::base;
use crate::error::Result;
use crate::pkgdb::report::{PackageCounts, PackageReport};
use crate::repo::{ContainerMount, Repo, StackRow};
use crate::serve;
use crate::storage::images::short_id;
use crate::storage::Store;

#[derive(Debug, Clone, Serialize)]
pub struct ImageStatus {
    pub name: String,
    pub id: String,
    pub base: Option<String>,
    pub base_id: Option<String>,
    pub base_found_by: Option<base::Found>,
    /// The base image a newer image now answers to (an update is available).
    pub update: Option<String>,
    /// The base the image is set to run on through rebasefs.
    pub rebased_onto: Option<String>,
    pub stack_id: Option<i64>,
    pub policy: Option<String>,
    /// Why the recorded rebase is not in force (its containers start on their original
    /// stack instead), when it is not.
    pub not_in_force: Option<String>,
    /// rebasefs holds this image because rebased containers run on it ([`crate::holds`]).
    pub held: bool,
    /// The package-level outcome of the assigned stack's rebase, when it merged any
    /// package database.
    pub packages: Option<PackageCounts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerStatus {
    pub name: String,
    pub id: String,
    pub image: String,
    /// The base its last mount served.
    pub runs_on: Option<String>,
    pub stack_id: Option<i64>,
    /// The base it moves onto at its next (re)start, when that differs.
    pub pending: Option<String>,
    /// Pinned to the stack it runs on ([`crate::pins`]): it does not move.
    pub pinned: bool,
    /// What keeps a recorded rebase from holding for it, when something does.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerStatus {
    pub id: String,
    pub source: String,
    pub new_base: String,
    pub conflicts: usize,
    pub hits: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub graphroot: PathBuf,
    pub repository: Option<PathBuf>,
    /// Why the repository cannot be read; every rebase is then out of force.
    pub repository_problem: Option<String>,
    pub images: Vec<ImageStatus>,
    pub containers: Vec<ContainerStatus>,
    pub rebased_layers: Vec<LayerStatus>,
    pub resolutions: Vec<crate::repo::ResolutionRow>,
}

/// Everything status needs from the repository, read in one go so that a damaged
/// repository degrades the report instead of failing it.
#[derive(Default)]
struct RepoView {
    path: Option<PathBuf>,
    assigned: HashMap<String, StackRow>,
    stacks: HashMap<i64, StackRow>,
    /// Why a stack cannot be served, for the stacks that cannot.
    unservable: HashMap<i64, String>,
    mounts: Vec<ContainerMount>,
    rebased_layers: Vec<crate::repo::RebasedLayer>,
    resolutions: Vec<crate::repo::ResolutionRow>,
}

fn read_repo(store: &Store) -> Result<RepoView> {
    let graphroot = &store.config.graphroot;
    let Some(repo) = Repo::open_existing(graphroot)? else {
        return Ok(RepoView::default());
    };
    let stacks: HashMap<i64, StackRow> =
        repo.all_stacks()?.into_iter().map(|s| (s.id, s)).collect();
    let mut assigned = HashMap::new();
    for image in &store.images {
        if let Some(stack) = repo.assigned_stack(&image.id)? {
            assigned.insert(image.id.clone(), stack);
        }
    }
    let mounts = repo.container_mounts()?;
    let mut unservable = HashMap::new();
    let relevant = assigned
        .values()
        .map(|s| s.id)
        .chain(mounts.iter().filter_map(|m| m.stack_id));
    for id in relevant {
        let Some(stack) = stacks.get(&id) else {
            continue;
        };
        if let Err(reason) = serve::servable_dirs(&repo, graphroot, stack)? {
            let reason = match store.image_by_id(&stack.new_base_image) {
                Some(_) => reason,
                None => format!(
                    "its new base {} ({}) was removed from the store: {reason}",
                    stack.new_base_name,
                    short_id(&stack.new_base_image)
                ),
            };
            unservable.insert(id, reason);
        }
    }
    Ok(RepoView {
        path: Some(repo.path.clone()),
        rebased_layers: repo.all_rebased_layers()?,
        resolutions: repo.all_resolutions()?,
        assigned,
        stacks,
        unservable,
        mounts,
    })
}

/// The counts of the package reports a resolution row's decisions record.
fn package_counts(decisions: &serde_json::Value) -> Option<PackageCounts> {
    let reports: Vec<PackageReport> =
        serde_json::from_value(decisions.get("packages")?.clone()).ok()?;
    (!reports.is_empty()).then(|| PackageCounts::of(&reports))
}

/// Collects the status of the store and its repository.
pub fn status(store: &Store) -> Result<Status> {
    let (repo, repository_problem) = match read_repo(store) {
        Ok(view) => (view, None),
        Err(error) => {
            let db = crate::repo::db_path(&store.config.graphroot);
            let view = RepoView {
                path: Some(db),
                ..RepoView::default()
            };
            (view, Some(error.to_string()))
        }
    };
    let mut images = Vec::new();
    let mut base_names: HashMap<String, String> = HashMap::new();
    for image in &store.images {
        let identified = base::identify(store, image, None).ok();
        let update = identified
            .as_ref()
            .and_then(|b| base::update_for(store, b))
            .map(|u| u.display_name());
        let stack = repo.assigned.get(&image.id);
        let base_display = identified.as_ref().map(|b| b.display.clone());
        if let Some(b) = &base_display {
            base_names.insert(image.id.clone(), b.clone());
        }
        let row = ImageStatus {
            name: image.display_name(),
            id: short_id(&image.id).to_string(),
            base: base_display,
            base_id: identified
                .as_ref()
                .map(|b| short_id(&b.image_id).to_string()),
            base_found_by: identified.as_ref().map(|b| b.found),
            update,
            rebased_onto: stack.map(|s| s.new_base_name.clone()),
            stack_id: stack.map(|s| s.id),
            policy: stack.map(|s| s.policy.clone()),
            not_in_force: stack.and_then(|s| repo.unservable.get(&s.id).cloned()),
            held: image.is_held(),
            packages: stack
                .and_then(|s| s.resolution_id.as_ref())
                .and_then(|id| repo.resolutions.iter().find(|r| &r.id == id))
                .and_then(|r| package_counts(&r.decisions)),
        };
        // One row per name, as `podman images` lists them (an untagged image: one, by id).
        let more: Vec<ImageStatus> = image
            .own_names()
            .skip(1)
            .map(|name| ImageStatus {
                name: name.clone(),
                ..row.clone()
            })
            .collect();
        images.push(row);
        images.extend(more);
    }
    let mut containers = Vec::new();
    for c in &store.containers {
        let image = store.image_by_id(&c.image);
        let original = base_names.get(&c.image).cloned();
        let mount = repo.mounts.iter().find(|m| m.container_layer == c.layer);
        let last_stack = mount
            .and_then(|m| m.stack_id)
            .and_then(|id| repo.stacks.get(&id));
        let runs_on = match last_stack {
            Some(s) => Some(s.new_base_name.clone()),
            None => original.clone(),
        };
        let assigned = repo.assigned.get(&c.image);
        // The stack its next start serves: the assigned one if it can be served.
        let next = assigned.filter(|a| !repo.unservable.contains_key(&a.id));
        let pinned = crate::pins::is_pinned(&store.config.graphroot, &c.layer);
        let pending = match (next, last_stack) {
            _ if pinned => None,
            (Some(n), Some(l)) if n.id == l.id => None,
            (Some(n), _) => Some(n.new_base_name.clone()),
            (None, Some(_)) => original.clone(),
            (None, None) => None,
        };
        let problem = if let Some(reason) = &repository_problem {
            Some(format!(
                "the rebase repository is unreadable ({reason}): from its next start it runs on its original base"
            ))
        } else if let Some((a, reason)) =
            assigned.and_then(|a| Some((a, repo.unservable.get(&a.id)?)))
        {
            Some(format!(
                "its rebase onto {} (stack {}) is not in force: {reason}; it starts on its original base",
                a.new_base_name, a.id
            ))
        } else {
            last_stack
                .and_then(|l| Some((l, repo.unservable.get(&l.id)?)))
                .map(|(l, reason)| {
                    format!(
                        "the stack it was last mounted with (onto {}, stack {}) is damaged: {reason}",
                        l.new_base_name, l.id
                    )
                })
        };
        containers.push(ContainerStatus {
            name: c.display_name(),
            id: short_id(&c.id).to_string(),
            image: image
                .map(|i| i.display_name())
                .unwrap_or_else(|| short_id(&c.image).to_string()),
            runs_on,
            stack_id: last_stack.map(|s| s.id),
            pending,
            pinned,
            problem,
        });
    }
    let rebased_layers = repo
        .rebased_layers
        .into_iter()
        .map(|l| LayerStatus {
            new_base: store
                .image_by_id(&l.new_base)
                .map(|i| i.display_name())
                .unwrap_or_else(|| short_id(&l.new_base).to_string()),
            id: l.id,
            source: l.source_layer,
            conflicts: l.conflicts.len(),
            hits: l.hits,
        })
        .collect();
    Ok(Status {
        graphroot: store.config.graphroot.clone(),
        repository: repo.path,
        repository_problem,
        images,
        containers,
        rebased_layers,
        resolutions: repo.resolutions,
    })
}
