//! Resolution records: what a policy produced, materialized once in the shared store.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{now, to_json, Repo};
use crate::error::Result;

/// A materialized (or empty) resolution record.
#[derive(Debug, Clone, Serialize)]
pub struct ResolutionRow {
    pub id: String,
    pub rebased_top: String,
    pub old_base_top: String,
    pub policy: String,
    pub dir: Option<String>,
    pub decisions: serde_json::Value,
    pub created: i64,
    pub last_used: i64,
    pub hits: i64,
}

impl Repo {
    pub fn resolution(&self, id: &str) -> Result<Option<ResolutionRow>> {
        self.conn
            .query_row(
                "SELECT id, rebased_top, old_base_top, policy, dir, decisions, created, last_used, hits \
                 FROM resolutions WHERE id = ?1",
                params![id],
                |r| {
                    let decisions: String = r.get(5)?;
                    Ok(ResolutionRow {
                        id: r.get(0)?,
                        rebased_top: r.get(1)?,
                        old_base_top: r.get(2)?,
                        policy: r.get(3)?,
                        dir: r.get(4)?,
                        decisions: serde_json::from_str(&decisions).unwrap_or(serde_json::Value::Null),
                        created: r.get(6)?,
                        last_used: r.get(7)?,
                        hits: r.get(8)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn all_resolutions(&self) -> Result<Vec<ResolutionRow>> {
        self.all_of("resolutions", Repo::resolution)
    }
}

pub fn insert_resolution(tx: &Connection, row: &ResolutionRow) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO resolutions (id, rebased_top, old_base_top, policy, dir, decisions, created, last_used) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            row.id,
            row.rebased_top,
            row.old_base_top,
            row.policy,
            row.dir,
            to_json(&row.decisions),
            now()
        ],
    )?;
    Ok(())
}

pub fn hit_resolution(tx: &Connection, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE resolutions SET hits = hits + 1, last_used = ?2 WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(())
}
