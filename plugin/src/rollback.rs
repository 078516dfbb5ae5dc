//! Rollback: one rebase step of an image undone in the repository (its containers move
//! back at their next start), and the storage holds nothing needs any more released.

use crate::error::{Error, Result};
use crate::holds;
use crate::repo::{self, write, Repo, WriterLock};
use crate::serve;
use crate::storage::Store;

/// The outcome of a rollback.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    pub image: crate::storage::Image,
    /// The stack the image is set to now (`None` = its original stack).
    pub stack: Option<repo::StackRow>,
    /// Why that stack cannot be served (its containers then run on their original stack).
    pub not_servable: Option<String>,
    /// Holds released because nothing needs them any more.
    pub holds: holds::HoldChanges,
}

/// Rolls `image` back one rebase step.
pub fn rollback(store: &Store, image_ref: &str) -> Result<RollbackReport> {
    let image = store.image(image_ref)?.clone();
    let graphroot = &store.config.graphroot;
    if !repo::db_path(graphroot).exists() {
        return Err(Error::NothingToRollBack(image.display_name()));
    }
    let _writer = WriterLock::acquire(graphroot, || {})?;
    let mut repo = Repo::open_existing(graphroot)?
        .ok_or_else(|| Error::NothingToRollBack(image.display_name()))?;
    let path = repo.path.clone();
    let sql = |e| repo::classify(&path, e);
    let tx = repo
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    let step = write::rollback(&tx, &image.id).map_err(sql)?;
    tx.commit().map_err(sql)?;
    let Some((_, back_to)) = step else {
        return Err(Error::NothingToRollBack(image.display_name()));
    };
    let stack = match back_to {
        Some(id) => repo.stack(id)?,
        None => None,
    };
    let not_servable = match &stack {
        Some(s) => serve::servable_dirs(&repo, graphroot, s)?.err(),
        None => None,
    };
    let holds = holds::sync(graphroot, &holds::needed(store, &repo)?)?;
    Ok(RollbackReport {
        image,
        stack,
        not_servable,
        holds,
    })
}
