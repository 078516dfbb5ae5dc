//! `check` (repository integrity) and `gc` (drop what no image or container can use).

use std::collections::HashSet;

use rusqlite::params;
use serde::Serialize;

use crate::chain;
use crate::error::{io_err, Error, Result};
use crate::holds;
use crate::repo::{Repo, WriterLock};
use crate::storage::Store;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub repository: Option<std::path::PathBuf>,
    pub schema_version: i64,
    pub stacks: usize,
    pub rebased_layers: usize,
    pub resolutions: usize,
    /// Things that break serving or rollback.
    pub problems: Vec<String>,
    /// Things `gc` would clean up.
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the database and its agreement with the store and the shared directory.
pub fn check(store: &Store) -> Result<CheckReport> {
    let Some(repo) = Repo::open_existing(&store.config.graphroot)? else {
        return Ok(CheckReport::default());
    };
    let mut report = CheckReport {
        repository: Some(repo.path.clone()),
        schema_version: repo.schema_version()?,
        ..Default::default()
    };
    crate::repair::integrity(&repo)?;
    let layers = repo.all_rebased_layers()?;
    report.rebased_layers = layers.len();
    for l in &layers {
        if chain::layer_id(Some(&l.parent_id), &l.diff_id) != l.id {
            report.problems.push(format!(
                "rebased layer {} does not match sha256(parent + \"+\" + diffID)",
                l.id
            ));
        }
        if !store.layers.contains_key(&l.source_layer) {
            report.warnings.push(format!(
                "rebased layer {}: source layer {} is gone",
                l.id, l.source_layer
            ));
        }
    }
    let resolutions = repo.all_resolutions()?;
    report.resolutions = resolutions.len();
    let mut known_dirs = HashSet::new();
    for r in &resolutions {
        if let Some(dir) = &r.dir {
            known_dirs.insert(dir.clone());
            if !repo.store.absolute(dir).is_dir() {
                report
                    .problems
                    .push(format!("resolution {}: directory {dir} is missing", r.id));
            }
        }
    }
    let stacks = repo.all_stacks()?;
    report.stacks = stacks.len();
    let assigned = repo.assigned_stack_ids()?;
    for s in &stacks {
        let active = assigned.contains(&s.id);
        let diff_ids: Vec<String> = s
            .rebased_layers
            .iter()
            .map(|id| {
                layers
                    .iter()
                    .find(|l| &l.id == id)
                    .map(|l| l.diff_id.clone())
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        if diff_ids.len() != s.rebased_layers.len() {
            report
                .problems
                .push(format!("stack {}: a rebased layer record is missing", s.id));
        } else if chain::chain_ids(
            s.new_base_layers.last().map(String::as_str),
            diff_ids.iter().map(String::as_str),
        ) != s.rebased_layers
        {
            report.problems.push(format!(
                "stack {}: rebased layer ids do not chain onto the new base",
                s.id
            ));
        }
        for id in s.new_base_layers.iter().chain(s.app_layers.iter()) {
            if !store.diff_dir(id).is_dir() {
                let msg = format!(
                    "stack {} (image {}): layer {id} is gone from the store",
                    s.id, s.image_id
                );
                if active {
                    report.problems.push(msg);
                } else {
                    report.warnings.push(msg);
                }
            }
        }
        if active && store.image_by_id(&s.image_id).is_none() {
            report.warnings.push(format!(
                "stack {}: image {} no longer exists",
                s.id, s.image_id
            ));
        }
    }
    let needed = holds::needed(store, &repo)?;
    for image in store.images.iter().filter(|i| i.is_held()) {
        if !needed.contains(&image.id) {
            report.warnings.push(format!(
                "image {} is held for rebased containers, but none runs on it any more",
                image.display_name()
            ));
        }
    }
    for dir in list_dir(&repo.store.resolutions_dir())? {
        let rel = format!("resolutions/{dir}");
        if !known_dirs.contains(&rel) {
            report
                .warnings
                .push(format!("orphan resolution directory {rel}"));
        }
    }
    for dir in list_dir(&repo.store.tmp_dir())? {
        report
            .warnings
            .push(format!("leftover temporary directory tmp/{dir}"));
    }
    Ok(report)
}

fn list_dir(dir: &std::path::Path) -> Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(format!("reading {}", dir.display()))(e)),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub stacks_removed: usize,
    pub rebased_layers_removed: usize,
    pub resolutions_removed: usize,
    pub directories_removed: usize,
    pub container_records_removed: usize,
    /// Mount records of serving daemons that were killed before removing their own.
    pub mount_records_removed: usize,
    /// Base images no longer held ([`crate::holds`]): nothing runs on them any more.
    pub holds_released: usize,
}

/// Removes records and directories no image, container or rollback step can use.
pub fn gc(store: &Store) -> Result<GcReport> {
    let graphroot = &store.config.graphroot;
    let mut report = GcReport {
        mount_records_removed: rebasefs_hooks::mount_record::remove_dead(graphroot)?,
        ..GcReport::default()
    };
    if !crate::repo::db_path(graphroot).exists() {
        return Ok(report);
    }
    let _writer = WriterLock::acquire(graphroot, || {})?;
    let Some(mut repo) = Repo::open_existing(graphroot)? else {
        return Ok(report);
    };
    let path = repo.path.clone();
    let sql = |e: rusqlite::Error| Error::Sqlite {
        path: path.clone(),
        source: e,
    };
    let live_images: HashSet<&str> = store.images.iter().map(|i| i.id.as_str()).collect();
    let live_layers: HashSet<&str> = store.layers.keys().map(String::as_str).collect();
    let stacks = repo.all_stacks()?;
    let mounts = repo.container_mounts()?;
    let tx = repo
        .conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    // Containers that are gone: forget their mounts.
    for m in &mounts {
        if !live_layers.contains(m.container_layer.as_str()) {
            tx.execute(
                "DELETE FROM container_mounts WHERE container_layer = ?1",
                params![m.container_layer],
            )
            .map_err(sql)?;
            report.container_records_removed += 1;
        }
    }
    // Images that are gone: forget their assignment and history.
    for s in &stacks {
        if !live_images.contains(s.image_id.as_str()) {
            tx.execute(
                "DELETE FROM image_assignments WHERE image_id = ?1",
                params![s.image_id],
            )
            .map_err(sql)?;
            tx.execute(
                "DELETE FROM history WHERE image_id = ?1",
                params![s.image_id],
            )
            .map_err(sql)?;
        }
    }
    // Stacks nobody points at any more.
    let removed = tx
        .execute(
            "DELETE FROM stacks WHERE id NOT IN (SELECT stack_id FROM image_assignments) \
             AND id NOT IN (SELECT from_stack FROM history WHERE from_stack IS NOT NULL AND undone = 0) \
             AND id NOT IN (SELECT to_stack FROM history WHERE to_stack IS NOT NULL AND undone = 0) \
             AND id NOT IN (SELECT stack_id FROM container_mounts WHERE stack_id IS NOT NULL)",
            [],
        )
        .map_err(sql)?;
    report.stacks_removed = removed;
    tx.execute(
        "DELETE FROM history WHERE (from_stack IS NOT NULL AND from_stack NOT IN (SELECT id FROM stacks)) \
         OR (to_stack IS NOT NULL AND to_stack NOT IN (SELECT id FROM stacks))",
        [],
    )
    .map_err(sql)?;
    // Rebased layers and resolutions no remaining stack uses.
    let used_layers: HashSet<String> = {
        let mut stmt = tx
            .prepare("SELECT rebased_layers FROM stacks")
            .map_err(sql)?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        // A list that does not parse must stop gc: taken as empty, its layers would go.
        let mut used = HashSet::new();
        for text in &rows {
            let ids: Vec<String> =
                serde_json::from_str(text).map_err(|e| Error::CorruptRepository {
                    path: path.clone(),
                    reason: format!("a stack's rebased_layers is not a JSON list ({e})"),
                })?;
            used.extend(ids);
        }
        used
    };
    let all_layers: Vec<String> = {
        let mut stmt = tx.prepare("SELECT id FROM rebased_layers").map_err(sql)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        rows
    };
    for id in all_layers.iter().filter(|id| !used_layers.contains(*id)) {
        tx.execute("DELETE FROM rebased_layers WHERE id = ?1", params![id])
            .map_err(sql)?;
        report.rebased_layers_removed += 1;
    }
    let dead_resolutions: Vec<(String, Option<String>)> = {
        let mut stmt = tx
            .prepare(
                "SELECT id, dir FROM resolutions WHERE id NOT IN \
                 (SELECT resolution_id FROM stacks WHERE resolution_id IS NOT NULL)",
            )
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        rows
    };
    for (id, _) in &dead_resolutions {
        tx.execute("DELETE FROM resolutions WHERE id = ?1", params![id])
            .map_err(sql)?;
        report.resolutions_removed += 1;
    }
    tx.execute(
        "DELETE FROM base_changes WHERE (old_top, new_top) NOT IN \
         (SELECT json_extract(s.orig_layers, '$[' || (json_array_length(s.orig_layers) - json_array_length(s.app_layers) - 1) || ']'), \
                 json_extract(s.new_base_layers, '$[#-1]') FROM stacks s)",
        [],
    )
    .map_err(sql)?;
    let kept_dirs: HashSet<String> = {
        let mut stmt = tx
            .prepare("SELECT dir FROM resolutions WHERE dir IS NOT NULL")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?;
        rows
    };
    tx.commit().map_err(sql)?;
    report.holds_released = holds::sync(graphroot, &holds::needed(store, &repo)?)?
        .released
        .len();
    // Directories go after the commit: a crash in between leaves orphans, never dangling rows.
    for name in list_dir(&repo.store.resolutions_dir())? {
        let rel = format!("resolutions/{name}");
        if !kept_dirs.contains(&rel) {
            let dir = repo.store.absolute(&rel);
            std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
            report.directories_removed += 1;
        }
    }
    for name in list_dir(&repo.store.tmp_dir())? {
        let dir = repo.store.tmp_dir().join(name);
        std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
        report.directories_removed += 1;
    }
    Ok(report)
}
