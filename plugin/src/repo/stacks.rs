//! Rebased stacks, the stack each image is set to, and the history `rollback` walks back.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{json_list, now, to_json, Repo};
use crate::error::Result;

/// A full rebased stack for one image.
#[derive(Debug, Clone, Serialize)]
pub struct StackRow {
    pub id: i64,
    pub image_id: String,
    pub orig_top: String,
    pub orig_layers: Vec<String>,
    pub old_base_image: String,
    pub new_base_image: String,
    pub new_base_name: String,
    pub new_base_layers: Vec<String>,
    pub app_layers: Vec<String>,
    pub rebased_layers: Vec<String>,
    pub resolution_id: Option<String>,
    pub policy: String,
    pub created: i64,
    pub serves: i64,
}

/// A new stack to record.
pub struct NewStack<'a> {
    pub image_id: &'a str,
    pub orig_layers: &'a [String],
    pub old_base_image: &'a str,
    pub new_base_image: &'a str,
    pub new_base_name: &'a str,
    pub new_base_layers: &'a [String],
    pub app_layers: &'a [String],
    pub rebased_layers: &'a [String],
    pub resolution_id: Option<&'a str>,
    pub policy: &'a str,
}

const STACK_COLUMNS: &str =
    "id, image_id, orig_top, orig_layers, old_base_image, new_base_image, new_base_name, \
     new_base_layers, app_layers, rebased_layers, resolution_id, policy, created, serves";

fn stack_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StackRow> {
    Ok(StackRow {
        id: r.get(0)?,
        image_id: r.get(1)?,
        orig_top: r.get(2)?,
        orig_layers: json_list(&r.get::<_, String>(3)?)?,
        old_base_image: r.get(4)?,
        new_base_image: r.get(5)?,
        new_base_name: r.get(6)?,
        new_base_layers: json_list(&r.get::<_, String>(7)?)?,
        app_layers: json_list(&r.get::<_, String>(8)?)?,
        rebased_layers: json_list(&r.get::<_, String>(9)?)?,
        resolution_id: r.get(10)?,
        policy: r.get(11)?,
        created: r.get(12)?,
        serves: r.get(13)?,
    })
}

impl Repo {
    pub fn stack(&self, id: i64) -> Result<Option<StackRow>> {
        self.conn
            .query_row(
                &format!("SELECT {STACK_COLUMNS} FROM stacks WHERE id = ?1"),
                params![id],
                stack_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn all_stacks(&self) -> Result<Vec<StackRow>> {
        self.conn
            .prepare(&format!("SELECT {STACK_COLUMNS} FROM stacks ORDER BY id"))
            .and_then(|mut s| s.query_map([], stack_from_row)?.collect())
            .map_err(|e| self.err(e))
    }

    /// The stack `image_id` is set to, if any.
    pub fn assigned_stack(&self, image_id: &str) -> Result<Option<StackRow>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT stack_id FROM image_assignments WHERE image_id = ?1",
                params![image_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match id {
            Some(id) => self.stack(id),
            None => Ok(None),
        }
    }

    /// The ids of the stacks images are set to.
    pub fn assigned_stack_ids(&self) -> Result<std::collections::HashSet<i64>> {
        self.conn
            .prepare("SELECT stack_id FROM image_assignments")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))
    }

    /// Active stacks (assigned to some image) whose original top layer is `orig_top`.
    pub fn active_stacks_for_top(&self, orig_top: &str) -> Result<Vec<StackRow>> {
        self.conn
            .prepare(&format!(
                "SELECT {} FROM stacks s JOIN image_assignments a ON a.stack_id = s.id WHERE s.orig_top = ?1",
                STACK_COLUMNS
                    .split(", ")
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .and_then(|mut s| s.query_map(params![orig_top], stack_from_row)?.collect())
            .map_err(|e| self.err(e))
    }
}

/// The id of an identical stack already recorded, or a new one.
pub fn find_or_insert_stack(tx: &Connection, s: &NewStack<'_>) -> rusqlite::Result<i64> {
    let rebased = to_json(&s.rebased_layers);
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM stacks WHERE image_id = ?1 AND rebased_layers = ?2 AND new_base_image = ?3 \
             AND resolution_id IS ?4 AND policy = ?5",
            params![s.image_id, rebased, s.new_base_image, s.resolution_id, s.policy],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO stacks (image_id, orig_top, orig_layers, old_base_image, new_base_image, new_base_name, \
         new_base_layers, app_layers, rebased_layers, resolution_id, policy, created) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            s.image_id,
            s.orig_layers.last().cloned().unwrap_or_default(),
            to_json(&s.orig_layers),
            s.old_base_image,
            s.new_base_image,
            s.new_base_name,
            to_json(&s.new_base_layers),
            to_json(&s.app_layers),
            rebased,
            s.resolution_id,
            s.policy,
            now()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Sets `image_id` to `stack_id` and records the step for rollback.
pub fn assign(tx: &Connection, image_id: &str, stack_id: i64) -> rusqlite::Result<()> {
    let from: Option<i64> = tx
        .query_row(
            "SELECT stack_id FROM image_assignments WHERE image_id = ?1",
            params![image_id],
            |r| r.get(0),
        )
        .optional()?;
    if from == Some(stack_id) {
        return Ok(());
    }
    let t = now();
    tx.execute(
        "INSERT INTO image_assignments (image_id, stack_id, set_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(image_id) DO UPDATE SET stack_id = ?2, set_at = ?3",
        params![image_id, stack_id, t],
    )?;
    tx.execute(
        "INSERT INTO history (image_id, action, from_stack, to_stack, at) VALUES (?1, 'rebase', ?2, ?3, ?4)",
        params![image_id, from, stack_id, t],
    )?;
    Ok(())
}

/// Undoes the latest rebase step of `image_id`; returns (from, to) stack ids.
pub fn rollback(tx: &Connection, image_id: &str) -> rusqlite::Result<Option<(i64, Option<i64>)>> {
    let current: Option<i64> = tx
        .query_row(
            "SELECT stack_id FROM image_assignments WHERE image_id = ?1",
            params![image_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(current) = current else {
        return Ok(None);
    };
    let step: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT id, from_stack FROM history WHERE image_id = ?1 AND action = 'rebase' AND undone = 0 \
             AND to_stack = ?2 ORDER BY id DESC LIMIT 1",
            params![image_id, current],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (step_id, back_to) = step.unwrap_or((-1, None));
    let t = now();
    if step_id >= 0 {
        tx.execute(
            "UPDATE history SET undone = 1 WHERE id = ?1",
            params![step_id],
        )?;
    }
    match back_to {
        Some(stack) => tx.execute(
            "UPDATE image_assignments SET stack_id = ?2, set_at = ?3 WHERE image_id = ?1",
            params![image_id, stack, t],
        )?,
        None => tx.execute(
            "DELETE FROM image_assignments WHERE image_id = ?1",
            params![image_id],
        )?,
    };
    tx.execute(
        "INSERT INTO history (image_id, action, from_stack, to_stack, at) VALUES (?1, 'rollback', ?2, ?3, ?4)",
        params![image_id, current, back_to, t],
    )?;
    Ok(Some((current, back_to)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::write;

    #[test]
    fn assign_and_roll_back_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let mut repo = Repo::open(tmp.path()).unwrap();
        let tx = repo.conn.transaction().unwrap();
        let layers = vec!["a".to_string()];
        let mk = |new_base: &'static str| NewStack {
            image_id: "img",
            orig_layers: &layers,
            old_base_image: "b1",
            new_base_image: new_base,
            new_base_name: new_base,
            new_base_layers: &layers,
            app_layers: &layers,
            rebased_layers: &layers,
            resolution_id: None,
            policy: "upper-wins",
        };
        let s1 = write::find_or_insert_stack(&tx, &mk("b2")).unwrap();
        let s2 = write::find_or_insert_stack(&tx, &mk("b3")).unwrap();
        assert_eq!(write::find_or_insert_stack(&tx, &mk("b2")).unwrap(), s1);
        write::assign(&tx, "img", s1).unwrap();
        write::assign(&tx, "img", s2).unwrap();
        tx.commit().unwrap();
        let tx = repo.conn.transaction().unwrap();
        assert_eq!(write::rollback(&tx, "img").unwrap(), Some((s2, Some(s1))));
        assert_eq!(write::rollback(&tx, "img").unwrap(), Some((s1, None)));
        assert_eq!(write::rollback(&tx, "img").unwrap(), None);
        tx.commit().unwrap();
        assert!(repo.assigned_stack("img").unwrap().is_none());
    }
}
