//! Schema migrations keyed by SQLite's `user_version`, each in its own transaction.

use rusqlite::Connection;

use super::schema::{latest, MIGRATIONS};

/// Why migrating failed.
#[derive(Debug)]
pub enum MigrateError {
    TooNew(i64),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

/// Brings the schema to the latest version; returns the version found.
pub fn migrate(conn: &mut Connection) -> Result<i64, MigrateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Err(MigrateError::TooNew(found));
    }
    for (index, script) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        // Immediate: a concurrent opener waits, then sees the step already done.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > index as i64 {
            continue;
        }
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "repository schema migrated");
    }
    Ok(found)
}
