//! Bases seen and base change sets (old base vs new base, computed once per pair).

use rusqlite::{params, Connection, OptionalExtension};

use super::{now, to_json, Repo};
use crate::conflict::Change;
use crate::error::{Error, Result};

impl Repo {
    /// A cached B-vs-N change set; counts the hit.
    pub fn base_changes(&self, old_top: &str, new_top: &str) -> Result<Option<Vec<Change>>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT changes FROM base_changes WHERE old_top = ?1 AND new_top = ?2",
                params![old_top, new_top],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(text) = text else { return Ok(None) };
        let changes = serde_json::from_str(&text).map_err(|e| Error::CorruptRepository {
            path: self.path.clone(),
            reason: format!("base_changes row: {e}"),
        })?;
        Ok(Some(changes))
    }
}

pub fn record_base(
    tx: &Connection,
    image_id: &str,
    name: &str,
    top_layer: &str,
    layer_count: usize,
) -> rusqlite::Result<()> {
    let t = now();
    tx.execute(
        "INSERT INTO bases (image_id, name, top_layer, layer_count, first_seen, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
         ON CONFLICT(image_id) DO UPDATE SET name = ?2, last_seen = ?5",
        params![image_id, name, top_layer, layer_count as i64, t],
    )?;
    Ok(())
}

pub fn save_base_changes(
    tx: &Connection,
    old_top: &str,
    new_top: &str,
    changes: &[Change],
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO base_changes (old_top, new_top, changes, created) VALUES (?1, ?2, ?3, ?4)",
        params![old_top, new_top, to_json(&changes), now()],
    )?;
    Ok(())
}

pub fn hit_base_changes(tx: &Connection, old_top: &str, new_top: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE base_changes SET hits = hits + 1 WHERE old_top = ?1 AND new_top = ?2",
        params![old_top, new_top],
    )?;
    Ok(())
}
