//! `check --repair`: puts a broken repository back into a state `check` accepts, keeping
//! what can still be served and dropping what cannot, under the single-writer lock.
//!
//! - A `repo.db` SQLite cannot read (or whose integrity check fails) is moved aside, with its
//!   WAL and shared-memory files, as `repo.db.corrupt-<unix time>`: every image then runs on its
//!   original stack (as it already did, the mount program could not read the database) and the
//!   next `rebasefs rebase` starts a fresh repository. Nothing in it can be trusted, so nothing
//!   is copied over; the store's directories become orphans that `gc` removes.
//! - A resolution whose directory in the store is gone is dropped with every stack that uses it
//!   (their assignments, history steps and container records go with them): those stacks
//!   cannot be served; `rebasefs rebase` again materializes the resolution anew.
//! - An assigned stack whose layers are gone from containers-storage is unassigned (the image
//!   is back on its original stack, where its containers already run).

use std::path::PathBuf;

use rusqlite::params;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::repo::{self, Repo, WriterLock};
use crate::storage::Store;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Where a corrupt database was moved.
    pub moved_aside: Option<PathBuf>,
    /// What was dropped or unassigned, one line each.
    pub actions: Vec<String>,
}

/// Repairs the repository of `store` (see the module docs).
pub fn repair(store: &Store) -> Result<RepairReport> {
    let graphroot = &store.config.graphroot;
    let mut report = RepairReport::default();
    if !repo::db_path(graphroot).exists() {
        return Ok(report);
    }
    let _writer = WriterLock::acquire(graphroot, || {})?;
    let opened = Repo::open_existing(graphroot).and_then(|r| match r {
        Some(r) => integrity(&r).map(|()| Some(r)),
        None => Ok(None),
    });
    let mut repo = match opened {
        Ok(Some(repo)) => repo,
        Ok(None) => return Ok(report),
        Err(Error::CorruptRepository { reason, .. }) => {
            let aside = move_aside(graphroot)?;
            report.actions.push(format!(
                "repo.db is corrupt ({reason}): moved aside to {}; images run on their original stacks; rebase again to start a new repository",
                aside.display()
            ));
            report.moved_aside = Some(aside);
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let path = repo.path.clone();
    let sql = |e: rusqlite::Error| Error::Sqlite {
        path: path.clone(),
        source: e,
    };
    let missing: Vec<String> = repo
        .all_resolutions()?
        .into_iter()
        .filter(|r| {
            r.dir
                .as_ref()
                .is_some_and(|d| !repo.store.absolute(d).is_dir())
        })
        .map(|r| r.id)
        .collect();
    let stacks = repo.all_stacks()?;
    let assigned = repo.assigned_stack_ids()?;
    let tx = repo
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    for id in &missing {
        for s in stacks
            .iter()
            .filter(|s| s.resolution_id.as_deref() == Some(id))
        {
            drop_stack(&tx, s.id).map_err(sql)?;
            report.actions.push(format!(
                "stack {} (image {}): dropped, its resolution directory is gone",
                s.id, s.image_id
            ));
        }
        tx.execute("DELETE FROM resolutions WHERE id = ?1", params![id])
            .map_err(sql)?;
        report
            .actions
            .push(format!("resolution {id}: dropped, its directory is gone"));
    }
    for s in stacks.iter().filter(|s| assigned.contains(&s.id)) {
        let gone = s
            .new_base_layers
            .iter()
            .chain(s.app_layers.iter())
            .any(|id| !store.diff_dir(id).is_dir());
        let already = s
            .resolution_id
            .as_ref()
            .is_some_and(|r| missing.contains(r));
        if gone && !already {
            tx.execute(
                "DELETE FROM image_assignments WHERE stack_id = ?1",
                params![s.id],
            )
            .map_err(sql)?;
            report.actions.push(format!(
                "image {}: unassigned from stack {}, whose layers are gone from the store",
                s.image_id, s.id
            ));
        }
    }
    tx.commit().map_err(sql)?;
    Ok(report)
}

/// Removes stack `id` and everything that points at it.
fn drop_stack(tx: &rusqlite::Connection, id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM image_assignments WHERE stack_id = ?1",
        params![id],
    )?;
    tx.execute(
        "UPDATE container_mounts SET stack_id = NULL WHERE stack_id = ?1",
        params![id],
    )?;
    tx.execute(
        "DELETE FROM history WHERE from_stack = ?1 OR to_stack = ?1",
        params![id],
    )?;
    tx.execute("DELETE FROM stacks WHERE id = ?1", params![id])?;
    Ok(())
}

/// SQLite's own integrity check, as `check` runs it.
pub(crate) fn integrity(repo: &Repo) -> Result<()> {
    let lines: Vec<String> = repo
        .conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| repo.err(e))?;
    if lines != ["ok"] {
        return Err(Error::CorruptRepository {
            path: repo.path.clone(),
            reason: lines.join("; "),
        });
    }
    Ok(())
}

/// Renames repo.db (and its -wal/-shm) to `repo.db.corrupt-<time>`; returns the new path.
fn move_aside(graphroot: &std::path::Path) -> Result<PathBuf> {
    let db = repo::db_path(graphroot);
    let aside = db.with_file_name(format!("repo.db.corrupt-{}", repo::now()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(crate::error::io_err(format!(
                    "moving {} aside",
                    from.display()
                ))(e))
            }
        }
    }
    Ok(aside)
}
