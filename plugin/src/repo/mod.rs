//! The rebase repository: SQLite (WAL, migrations) at `<graphroot>/rebasefs/repo.db` plus the
//! shared store directory `<graphroot>/rebasefs/store/`.
//!
//! It records bases seen, rebased layers (by the id containers-storage would give them),
//! base change sets, materialized resolutions, the stacks images are set to, what each
//! container was last mounted with, and the history that `rollback` walks back.
//!
//! Layout: this file opens the database; [`schema`] and [`migrate`] are its tables and
//! their upgrades; one file per record kind (`bases`, `layers`, `resolutions`, `stacks`,
//! `mounts`) reads its rows through [`Repo`] and writes them inside a rebase's transaction
//! ([`write`]); `lock` is the single writer; [`store`] the shared directory.

mod bases;
mod layers;
mod lock;
pub mod migrate;
mod mounts;
mod resolutions;
pub mod schema;
mod stacks;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Result};

pub use layers::RebasedLayer;
pub use lock::WriterLock;
pub use mounts::ContainerMount;
pub use resolutions::ResolutionRow;
pub use stacks::{NewStack, StackRow};
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

/// An open repository.
pub struct Repo {
    pub conn: Connection,
    pub path: PathBuf,
    pub store: SharedStore,
}

/// A SQLite error on the repository at `path`: corruption as [`Error::CorruptRepository`],
/// anything else as [`Error::Sqlite`].
pub(crate) fn classify(path: &Path, e: rusqlite::Error) -> Error {
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

    /// Every row of `table` (oldest first), each read by `one` from its id.
    fn all_of<T>(
        &self,
        table: &str,
        one: impl Fn(&Repo, &str) -> Result<Option<T>>,
    ) -> Result<Vec<T>> {
        let ids: Vec<String> = self
            .conn
            .prepare(&format!("SELECT id FROM {table} ORDER BY created, id"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(row) = one(self, &id)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// Writes done inside one transaction by a rebase.
pub mod write {
    pub use super::bases::{hit_base_changes, record_base, save_base_changes};
    pub use super::layers::{hit_rebased_layer, insert_rebased_layer};
    pub use super::resolutions::{hit_resolution, insert_resolution};
    pub use super::stacks::{assign, find_or_insert_stack, rollback};
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
}
