//! What each container was last mounted with (the mount program records it).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{classify, json_list, now, Repo};
use crate::error::Result;

/// What one container was last mounted with.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerMount {
    pub container_layer: String,
    pub image_top: String,
    pub stack_id: Option<i64>,
    pub last_mounted: i64,
    pub mounts: i64,
}

impl Repo {
    pub fn container_mounts(&self) -> Result<Vec<ContainerMount>> {
        self.conn
            .prepare(
                "SELECT container_layer, image_top, stack_id, last_mounted, mounts FROM container_mounts ORDER BY container_layer",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(ContainerMount {
                        container_layer: r.get(0)?,
                        image_top: r.get(1)?,
                        stack_id: r.get(2)?,
                        last_mounted: r.get(3)?,
                        mounts: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// Records that a container (by read-write layer) was just mounted with `stack_id`.
    /// A container's first mount with a stack counts as a hit on the stack's layers.
    pub fn record_mount(
        &mut self,
        container_layer: &str,
        image_top: &str,
        stack_id: Option<i64>,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&path, e))?;
        let previous: Option<Option<i64>> = tx
            .query_row(
                "SELECT stack_id FROM container_mounts WHERE container_layer = ?1",
                params![container_layer],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| classify(&path, e))?;
        let t = now();
        tx.execute(
            "INSERT INTO container_mounts (container_layer, image_top, stack_id, first_mounted, last_mounted, mounts) \
             VALUES (?1, ?2, ?3, ?4, ?4, 1) \
             ON CONFLICT(container_layer) DO UPDATE SET stack_id = ?3, last_mounted = ?4, mounts = mounts + 1",
            params![container_layer, image_top, stack_id, t],
        )
        .map_err(|e| classify(&path, e))?;
        if let Some(stack_id) = stack_id {
            tx.execute(
                "UPDATE stacks SET serves = serves + 1 WHERE id = ?1",
                params![stack_id],
            )
            .map_err(|e| classify(&path, e))?;
            if previous != Some(Some(stack_id)) {
                // A container newly set onto this stack reuses its stored layers.
                let stack: Option<(String, Option<String>)> = tx
                    .query_row(
                        "SELECT rebased_layers, resolution_id FROM stacks WHERE id = ?1",
                        params![stack_id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(|e| classify(&path, e))?;
                if let Some((layers, resolution)) = stack {
                    for id in json_list(&layers).unwrap_or_default() {
                        tx.execute(
                            "UPDATE rebased_layers SET hits = hits + 1, last_used = ?2 WHERE id = ?1",
                            params![id, t],
                        )
                        .map_err(|e| classify(&path, e))?;
                    }
                    if let Some(resolution) = resolution {
                        tx.execute(
                            "UPDATE resolutions SET hits = hits + 1, last_used = ?2 WHERE id = ?1",
                            params![resolution, t],
                        )
                        .map_err(|e| classify(&path, e))?;
                    }
                }
            }
        }
        tx.commit().map_err(|e| classify(&path, e))
    }
}
