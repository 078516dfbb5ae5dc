//! What `rebasefs auto-update` needs to know about one image and what it remembers.
//!
//! [`base_of`] says which base name an image follows (its build annotation) and which base
//! image its containers run on now (the new base of its assigned stack, else its own
//! base). [`State`] is `<graphroot>/rebasefs/auto-update.json`: every move auto-update
//! made (container, image, from, to, outcome), newest last, kept for reports and rollback.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base;
use crate::error::{io_err, Error, Result};
use crate::repo::{self, Repo};
use crate::storage::Store;

/// An image's base as auto-update sees it.
#[derive(Debug, Clone, Serialize)]
pub struct FollowedBase {
    /// The name the image was built from (`org.opencontainers.image.base.name`).
    pub name: String,
    /// The base image its containers run on now.
    pub current_id: String,
    pub current_display: String,
}

/// The base `image_id` follows, or `None` when it has no base name to follow.
pub fn base_of(store: &Store, image_id: &str) -> Result<Option<FollowedBase>> {
    let image = store.image(image_id)?;
    let found = base::identify(store, image, None)?;
    let Some(name) = found.built_from.clone() else {
        return Ok(None);
    };
    let assigned = match Repo::open_existing(&store.config.graphroot)? {
        Some(repo) => repo.assigned_stack(&image.id)?,
        None => None,
    };
    let (current_id, current_display) = match assigned {
        Some(stack) => (stack.new_base_image, stack.new_base_name),
        None => (found.image_id, found.display),
    };
    Ok(Some(FollowedBase {
        name,
        current_id,
        current_display,
    }))
}

/// One move auto-update made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub container: String,
    pub image_id: String,
    pub from_base: String,
    pub to_base: String,
    /// As the report says it: `true` (updated) or `rolled back`.
    pub outcome: String,
    pub at: i64,
}

/// The remembered moves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub moves: Vec<Move>,
}

impl State {
    pub fn path(graphroot: &Path) -> PathBuf {
        repo::home(graphroot).join("auto-update.json")
    }

    pub fn load(graphroot: &Path) -> Result<State> {
        let path = Self::path(graphroot);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::BadMetadata {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// Appends `moves` and writes the file atomically.
    pub fn record(graphroot: &Path, moves: &[Move]) -> Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        let mut state = Self::load(graphroot)?;
        state.moves.extend(moves.iter().cloned());
        let path = Self::path(graphroot);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| Error::BadMetadata {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        crate::storage::writer::write_atomically(&path, &bytes)
    }

    /// The last move of `container` that left it updated.
    pub fn last_update(&self, container: &str) -> Option<&Move> {
        self.moves
            .iter()
            .rev()
            .find(|m| m.container == container && m.outcome == "true")
    }
}
