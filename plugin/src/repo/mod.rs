//! The rebase repository: SQLite (WAL, migrations) at `<graphroot>/rebasefs/repo.db` plus the
//! shared store directory `<graphroot>/rebasefs/store/`.
//!
//! It records bases seen, rebased layers (by the id containers-storage would give them),
//! base change sets, materialized resolutions, the stacks images are set to, what each
//! container was last mounted with, and the history that `rollback` walks back.

pub mod migrate;
pub mod schema;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::conflict::{Change, Conflict};
use crate::error::{Error, Result};
pub use store::SharedStore;

/// `<graphroot>/rebasefs`.
pub fn home(graphroot: &Path) -> PathBuf {
    graphroot.join("rebasefs")
}

pub fn db_path(graphroot: &Path) -> PathBuf {
    home(graphroot).join("repo.db")
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The repository's single writer: `rebase`, `rollback` and `gc` hold this exclusive
/// `flock` on `<graphroot>/rebasefs/writer.lock` from before they read the repository until
/// they are done, so two of them never compute the same thing twice or race for SQLite's
/// write lock; the second sees what the first recorded. The mount program never takes it.
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

impl WriterLock {
    /// Takes the lock; calls `waiting` once before blocking when another writer holds it.
    pub fn acquire(graphroot: &Path, waiting: impl FnOnce()) -> Result<WriterLock> {
        use rustix::fs::{flock, FlockOperation};
        use std::os::unix::fs::OpenOptionsExt;
        let dir = home(graphroot);
        std::fs::create_dir_all(&dir)
            .map_err(crate::error::io_err(format!("creating {}", dir.display())))?;
        let path = dir.join("writer.lock");
        let context = || format!("locking {}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(crate::error::io_err(context()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(WriterLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => waiting(),
            Err(e) => return Err(crate::error::io_err(context())(e.into())),
        }
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(WriterLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(crate::error::io_err(context())(e.into())),
            }
        }
    }
}

/// An open repository.
pub struct Repo {
    pub conn: Connection,
    pub path: PathBuf,
    pub store: SharedStore,
}

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

/// What one container was last mounted with.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerMount {
    pub container_layer: String,
    pub image_top: String,
    pub stack_id: Option<i64>,
    pub last_mounted: i64,
    pub mounts: i64,
}

fn classify(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Error::CorruptRepository {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        _ => Error::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

fn json_list(text: &str) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
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
    /// Opens (creating when needed) the repository of the store at `graphroot`.
    pub fn open(graphroot: &Path) -> Result<Repo> {
        let dir = home(graphroot);
        std::fs::create_dir_all(&dir)
            .map_err(crate::error::io_err(format!("creating {}", dir.display())))?;
        Self::open_at(&db_path(graphroot), true)
    }

    /// Opens the repository only if it exists (read paths: status, serve, dry runs).
    pub fn open_existing(graphroot: &Path) -> Result<Option<Repo>> {
        let path = db_path(graphroot);
        if !path.exists() {
            return Ok(None);
        }
        Self::open_at(&path, false).map(Some)
    }

    /// Opens a database file; `create` allows creating it.
    pub fn open_at(path: &Path, create: bool) -> Result<Repo> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let classify_here = |e| classify(path, e);
        let mut conn = Connection::open_with_flags(path, flags).map_err(classify_here)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(classify_here)?;
        // journal_mode is the first statement that reads the header: corruption shows here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify_here)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(classify_here)?;
        match migrate::migrate(&mut conn) {
            Ok(_) => {}
            Err(migrate::MigrateError::TooNew(found)) => {
                return Err(Error::RepositoryTooNew {
                    path: path.to_path_buf(),
                    found,
                    known: schema::latest(),
                })
            }
            Err(migrate::MigrateError::Sql(e)) => return Err(classify(path, e)),
        }
        let store_root = path
            .parent()
            .map(|p| p.join("store"))
            .unwrap_or_else(|| PathBuf::from("store"));
        Ok(Repo {
            conn,
            path: path.to_path_buf(),
            store: SharedStore::new(store_root),
        })
    }

    /// Maps a SQLite error to the repository error (corruption recognised).
    pub fn err(&self, e: rusqlite::Error) -> Error {
        classify(&self.path, e)
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    // --- base change sets -------------------------------------------------------------

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

    // --- rebased layers ---------------------------------------------------------------

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
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT id FROM rebased_layers ORDER BY created, id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(l) = self.rebased_layer(&id)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    // --- resolutions ------------------------------------------------------------------

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
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT id FROM resolutions ORDER BY created, id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.resolution(&id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    // --- stacks and assignments -------------------------------------------------------

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

/// Writes done inside one transaction by a rebase.
pub mod write {
    use super::*;

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
    pub fn rollback(
        tx: &Connection,
        image_id: &str,
    ) -> rusqlite::Result<Option<(i64, Option<i64>)>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_database_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::open(tmp.path()).unwrap();
        assert_eq!(repo.schema_version().unwrap(), schema::latest());
        let mode: String = repo
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(repo);
        let again = Repo::open_existing(tmp.path()).unwrap().unwrap();
        assert_eq!(again.schema_version().unwrap(), schema::latest());
    }

    #[test]
    fn corrupt_database_is_reported_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home(tmp.path())).unwrap();
        std::fs::write(db_path(tmp.path()), vec![0x42u8; 8192]).unwrap();
        match Repo::open(tmp.path()) {
            Err(Error::CorruptRepository { .. }) => {}
            other => panic!("expected CorruptRepository, got {:?}", other.err()),
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home(tmp.path())).unwrap();
        let conn = Connection::open(db_path(tmp.path())).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        assert!(matches!(
            Repo::open(tmp.path()),
            Err(Error::RepositoryTooNew { found: 999, .. })
        ));
    }

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
