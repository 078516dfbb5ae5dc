//! Rebased layer records, by the id containers-storage would give them.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{now, to_json, Repo};
use crate::conflict::Conflict;
use crate::error::{Error, Result};

/// A rebased layer record.
#[derive(Debug, Clone, Serialize)]
pub struct RebasedLayer {
    pub id: String,
    pub parent_id: String,
    pub diff_id: String,
    pub source_layer: String,
    pub old_parent: String,
    pub new_base: String,
    pub new_base_top: String,
    pub conflicts: Vec<Conflict>,
    pub created: i64,
    pub last_used: i64,
    pub hits: i64,
}

impl Repo {
    pub fn rebased_layer(&self, id: &str) -> Result<Option<RebasedLayer>> {
        let row = self
            .conn
            .query_row(
                "SELECT id, parent_id, diff_id, source_layer, old_parent, new_base, new_base_top, conflicts, \
                 created, last_used, hits FROM rebased_layers WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        RebasedLayer {
                            id: r.get(0)?,
                            parent_id: r.get(1)?,
                            diff_id: r.get(2)?,
                            source_layer: r.get(3)?,
                            old_parent: r.get(4)?,
                            new_base: r.get(5)?,
                            new_base_top: r.get(6)?,
                            conflicts: Vec::new(),
                            created: r.get(8)?,
                            last_used: r.get(9)?,
                            hits: r.get(10)?,
                        },
                        r.get::<_, String>(7)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((mut layer, conflicts)) = row else {
            return Ok(None);
        };
        layer.conflicts =
            serde_json::from_str(&conflicts).map_err(|e| Error::CorruptRepository {
                path: self.path.clone(),
                reason: format!("rebased layer {id}: {e}"),
            })?;
        Ok(Some(layer))
    }

    pub fn all_rebased_layers(&self) -> Result<Vec<RebasedLayer>> {
        self.all_of("rebased_layers", Repo::rebased_layer)
    }
}

pub fn insert_rebased_layer(tx: &Connection, layer: &RebasedLayer) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO rebased_layers (id, parent_id, diff_id, source_layer, old_parent, new_base, new_base_top, \
         conflicts, created, last_used, hits) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 0) \
         ON CONFLICT(id) DO UPDATE SET source_layer = ?4, old_parent = ?5, conflicts = ?8, last_used = ?9",
        params![
            layer.id,
            layer.parent_id,
            layer.diff_id,
            layer.source_layer,
            layer.old_parent,
            layer.new_base,
            layer.new_base_top,
            to_json(&layer.conflicts),
            now()
        ],
    )?;
    Ok(())
}

pub fn hit_rebased_layer(tx: &Connection, id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE rebased_layers SET hits = hits + 1, last_used = ?2 WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(())
}
