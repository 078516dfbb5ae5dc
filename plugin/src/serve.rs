//! The mount program's question: is there an active rebase for the stack I was asked for?
//!
//! containers-storage hands the mount program a lowerdir list (top first) in one of two
//! forms (`overlay/l/<short>` symlinks or `overlay/<id>/diff`). Each maps back to a layer
//! id and the graphroot; the repository beside it says whether the image whose chain this
//! is has an active rebased stack. If so the answer is: the materialized resolution (if
//! any), the unchanged app diff dirs, then the new base's diff dirs. The container's upper
//! dir is kept as is. A pinned container ([`pins`]) gets the stack it was last mounted with
//! instead. Without a repository the cost is one `stat`.

use std::path::{Path, PathBuf};

use rebasefs_fuse::StackSpec;

use crate::error::Result;
use crate::pins;
use crate::repo::{Repo, StackRow};
use crate::storage::{diff_dir, layer_of_path};

/// Set in the environment of inspection mounts that already pass a rebased stack.
pub const NO_REWRITE_ENV: &str = "REBASEFS_NO_REWRITE";

/// The lower dirs (top first) of a rebased stack.
pub fn stack_dirs(
    graphroot: &Path,
    resolution_dir: Option<&Path>,
    app_bottom_first: &[String],
    new_base_bottom_first: &[String],
) -> Vec<PathBuf> {
    resolution_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(
            app_bottom_first
                .iter()
                .rev()
                .map(|id| diff_dir(graphroot, id)),
        )
        .chain(
            new_base_bottom_first
                .iter()
                .rev()
                .map(|id| diff_dir(graphroot, id)),
        )
        .collect()
}

/// The lower dirs (top first) a recorded stack is served with, or why it cannot be served
/// (a record or directory it needs is missing).
pub fn servable_dirs(
    repo: &Repo,
    graphroot: &Path,
    stack: &StackRow,
) -> Result<std::result::Result<Vec<PathBuf>, String>> {
    let resolution = match &stack.resolution_id {
        Some(id) => match repo.resolution(id)? {
            Some(row) => row.dir.map(|d| repo.store.absolute(&d)),
            None => {
                return Ok(Err(format!(
                    "its resolution {id} is missing from the repository"
                )))
            }
        },
        None => None,
    };
    if let Some(dir) = resolution.as_ref().filter(|d| !d.is_dir()) {
        return Ok(Err(format!(
            "its resolution directory {} is missing",
            dir.display()
        )));
    }
    let gone = |ids: &[String]| {
        ids.iter()
            .find(|id| !diff_dir(graphroot, id).is_dir())
            .cloned()
    };
    if let Some(id) = gone(&stack.new_base_layers) {
        return Ok(Err(format!(
            "layer {id} of its new base {} is gone from the store",
            stack.new_base_name
        )));
    }
    if let Some(id) = gone(&stack.app_layers) {
        return Ok(Err(format!("app layer {id} is gone from the store")));
    }
    Ok(Ok(stack_dirs(
        graphroot,
        resolution.as_deref(),
        &stack.app_layers,
        &stack.new_base_layers,
    )))
}

/// What the repository says about a requested stack.
struct Decision {
    graphroot: PathBuf,
    top: String,
    container_layer: Option<String>,
    /// The active stack for this chain, when complete on disk, and its lower dirs.
    serve: Option<(StackRow, Vec<PathBuf>)>,
}

/// Consults the repository for `spec`; `None` when there is no repository or the stack
/// is not a containers-storage chain.
fn decide(spec: &StackSpec) -> Result<Option<(Repo, Decision)>> {
    let Some((top, graphroot)) = spec.lowers.first().and_then(|l| layer_of_path(l)) else {
        return Ok(None);
    };
    let Some(repo) = Repo::open_existing(&graphroot)? else {
        return Ok(None);
    };
    let asked: Option<Vec<String>> = spec
        .lowers
        .iter()
        .map(|l| {
            layer_of_path(l)
                .filter(|(_, g)| *g == graphroot)
                .map(|(id, _)| id)
        })
        .collect();
    let container_layer = spec
        .upper
        .as_deref()
        .and_then(layer_of_path)
        .filter(|(_, g)| *g == graphroot)
        .map(|(id, _)| id);
    let mut chosen = None;
    if let Some(asked) = asked {
        let pinned = container_layer
            .as_deref()
            .is_some_and(|layer| pins::is_pinned(&graphroot, layer));
        let mut candidates = match container_layer.as_deref().filter(|_| pinned) {
            // A pinned container keeps the stack it was last mounted with.
            Some(layer) => pinned_stack(&repo, layer)?.into_iter().collect(),
            None => repo.active_stacks_for_top(&top)?,
        };
        candidates.sort_by_key(|s| std::cmp::Reverse(s.id));
        chosen = candidates.into_iter().find(|s| {
            s.orig_layers.len() == asked.len() && s.orig_layers.iter().rev().eq(asked.iter())
        });
    }
    let serve = match chosen {
        Some(stack) => match servable_dirs(&repo, &graphroot, &stack)? {
            Ok(lowers) => Some((stack, lowers)),
            Err(reason) => {
                tracing::warn!(
                    stack = stack.id,
                    new_base = %stack.new_base_name,
                    "rebase not in force, serving the original stack: {reason}"
                );
                None
            }
        },
        None => None,
    };
    Ok(Some((
        repo,
        Decision {
            graphroot,
            top,
            container_layer,
            serve,
        },
    )))
}

/// The stack a pinned container was last mounted with (`None`: its original one).
fn pinned_stack(repo: &Repo, container_layer: &str) -> Result<Option<StackRow>> {
    let last = repo
        .container_mounts()?
        .into_iter()
        .find(|m| m.container_layer == container_layer)
        .and_then(|m| m.stack_id);
    match last {
        Some(id) => repo.stack(id),
        None => Ok(None),
    }
}

/// The rebased stack to serve instead of `spec`, or `None` to serve `spec` unchanged.
/// Records which stack a container mount got.
pub fn rewrite_stack(spec: &StackSpec) -> Result<Option<StackSpec>> {
    if std::env::var_os(NO_REWRITE_ENV).is_some() {
        return Ok(None);
    }
    let Some((mut repo, decision)) = decide(spec)? else {
        return Ok(None);
    };
    if let Some(layer) = &decision.container_layer {
        let stack_id = decision.serve.as_ref().map(|(s, _)| s.id);
        if let Err(e) = repo.record_mount(layer, &decision.top, stack_id) {
            tracing::warn!(error = %e, graphroot = %decision.graphroot.display(), "could not record the container mount");
        }
    }
    Ok(decision.serve.map(|(stack, lowers)| {
        tracing::info!(stack = stack.id, new_base = %stack.new_base_name, "serving rebased stack");
        StackSpec {
            lowers,
            upper: spec.upper.clone(),
            work: spec.work.clone(),
        }
    }))
}

/// True when a live container mount of `spec` serves another stack than the repository
/// now assigns (so a restarting container must be remounted or have its stack swapped).
pub fn needs_remount(spec: &StackSpec) -> Result<bool> {
    let Some((repo, decision)) = decide(spec)? else {
        return Ok(false);
    };
    let Some(layer) = &decision.container_layer else {
        return Ok(false);
    };
    let served = repo
        .container_mounts()?
        .into_iter()
        .find(|m| &m.container_layer == layer)
        .and_then(|m| m.stack_id);
    Ok(served != decision.serve.map(|(s, _)| s.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_repository_means_no_rewrite() {
        let tmp = tempfile::tempdir().unwrap();
        let id = "c".repeat(64);
        let diff = tmp.path().join("overlay").join(&id).join("diff");
        std::fs::create_dir_all(&diff).unwrap();
        let spec = StackSpec {
            lowers: vec![diff],
            upper: None,
            work: None,
        };
        assert_eq!(rewrite_stack(&spec).unwrap(), None);
        assert!(
            !crate::repo::home(tmp.path()).exists(),
            "the fast path must not create the repository"
        );
        let outside = StackSpec {
            lowers: vec![tmp.path().to_path_buf()],
            upper: None,
            work: None,
        };
        assert_eq!(rewrite_stack(&outside).unwrap(), None);
    }
}
