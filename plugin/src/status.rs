//! `status`: images with their base and base updates, containers and the base each runs on.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::base;
use crate::error::Result;
use crate::repo::{Repo, StackRow};
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
    pub images: Vec<ImageStatus>,
    pub containers: Vec<ContainerStatus>,
    pub rebased_layers: Vec<LayerStatus>,
    pub resolutions: Vec<crate::repo::ResolutionRow>,
}

/// Collects the status of the store and its repository.
pub fn status(store: &Store) -> Result<Status> {
    let repo = Repo::open_existing(&store.config.graphroot)?;
    let mut images = Vec::new();
    let mut base_names: HashMap<String, String> = HashMap::new();
    for image in &store.images {
        let identified = base::identify(store, image, None).ok();
        let update = identified
            .as_ref()
            .and_then(|b| base::update_for(store, b))
            .map(|u| u.display_name());
        let stack = match &repo {
            Some(r) => r.assigned_stack(&image.id)?,
            None => None,
        };
        let base_display = identified.as_ref().map(|b| b.display.clone());
        if let Some(b) = &base_display {
            base_names.insert(image.id.clone(), b.clone());
        }
        images.push(ImageStatus {
            name: image.display_name(),
            id: short_id(&image.id).to_string(),
            base: base_display,
            base_id: identified
                .as_ref()
                .map(|b| short_id(&b.image_id).to_string()),
            base_found_by: identified.as_ref().map(|b| b.found),
            update,
            rebased_onto: stack.as_ref().map(|s| s.new_base_name.clone()),
            stack_id: stack.as_ref().map(|s| s.id),
            policy: stack.as_ref().map(|s| s.policy.clone()),
        });
    }
    let mounts = match &repo {
        Some(r) => r.container_mounts()?,
        None => Vec::new(),
    };
    let stacks: HashMap<i64, StackRow> = match &repo {
        Some(r) => r.all_stacks()?.into_iter().map(|s| (s.id, s)).collect(),
        None => HashMap::new(),
    };
    let mut containers = Vec::new();
    for c in &store.containers {
        let image = store.image_by_id(&c.image);
        let original = base_names.get(&c.image).cloned();
        let mount = mounts.iter().find(|m| m.container_layer == c.layer);
        let last_stack = mount
            .and_then(|m| m.stack_id)
            .and_then(|id| stacks.get(&id));
        let runs_on = match (mount, last_stack) {
            (Some(_), Some(s)) => Some(s.new_base_name.clone()),
            _ => original.clone(),
        };
        let assigned = match (&repo, image) {
            (Some(r), Some(i)) => r.assigned_stack(&i.id)?,
            _ => None,
        };
        let pending = match (&assigned, last_stack) {
            (Some(a), Some(l)) if a.id == l.id => None,
            (Some(a), _) => Some(a.new_base_name.clone()),
            (None, Some(_)) => original.clone(),
            (None, None) => None,
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
        });
    }
    let (rebased_layers, resolutions) = match &repo {
        Some(r) => (
            r.all_rebased_layers()?
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
                .collect(),
            r.all_resolutions()?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Status {
        graphroot: store.config.graphroot.clone(),
        repository: repo.as_ref().map(|r| r.path.clone()),
        images,
        containers,
        rebased_layers,
        resolutions,
    })
}
