//! The package-database error type: what was malformed, in which file, where.
//!
//! The engine wraps it as [`crate::Error::PackageDb`].

use std::path::PathBuf;

/// Everything reading, merging or writing a package database can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stanza or line that does not parse: `file:line: reason`.
    #[error("{}:{line}: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// A binary structure (rpm header, tar) that does not parse: `file: at byte N: reason`.
    #[error("{}: at byte {offset}: {reason}", file.display())]
    BadBinary {
        file: PathBuf,
        offset: usize,
        reason: String,
    },
    /// A database format rebasefs recognises but cannot merge (e.g. rpm's Berkeley DB).
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with what was being done, for `map_err`.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Wraps a `rusqlite::Error` with the database it happened on, for `map_err`.
pub fn sql_err(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}
