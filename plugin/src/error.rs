//! The plugin's error type: one variant per failure a user can act on, plus wrapped I/O.
//!
//! Messages say what is wrong; what to type about it (a flag, a command) is the CLI's to
//! add, since only it knows the command line.

use std::path::PathBuf;

/// Everything that can go wrong while reading storage, planning, or using the repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown image {0:?}: no local image has that name or id")]
    UnknownImage(String),
    #[error("image {image} is not built on {base}: the base's layers are not a prefix of the image's layers")]
    NotAPrefix { image: String, base: String },
    #[error("cannot identify the base of image {0}: no base annotation, no local image is a prefix of it")]
    NoBase(String),
    #[error("no base update for image {image} (its base {base} is still current)")]
    NoUpdate { image: String, base: String },
    #[error("{image} already runs on {base}: nothing to rebase")]
    AlreadyOnBase { image: String, base: String },
    #[error(
        "platform mismatch: image {image} is {image_platform}, new base {base} is {base_platform}"
    )]
    PlatformMismatch {
        image: String,
        image_platform: String,
        base: String,
        base_platform: String,
    },
    #[error("containers-storage is locked by another process ({0}); try again when it finishes")]
    StoreLocked(PathBuf),
    #[error("rebase repository {path} is corrupt ({reason})")]
    CorruptRepository { path: PathBuf, reason: String },
    #[error("rebase repository {path} was written by a newer rebasefs (schema {found}, this one knows {known})")]
    RepositoryTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "refusing to rebase {image}: {count} unresolved conflict(s) under policy `refuse`: {paths}"
    )]
    Refused {
        image: String,
        count: usize,
        paths: String,
    },
    #[error(
        "refusing to rebase {image}: the new base no longer satisfies {count} dependenc(y/ies) of the app's packages: {relations}"
    )]
    BrokenDependencies {
        image: String,
        count: usize,
        relations: String,
    },
    #[error("serving daemons' files: {0}")]
    DaemonFiles(#[from] rebasefs_hooks::Error),
    #[error("package database: {0}")]
    PackageDb(#[from] crate::pkgdb::Error),
    #[error("nothing to roll back for image {0}: it runs on its original base")]
    NothingToRollBack(String),
    #[error(
        "invalid policy {0:?}: expected upper-wins, refuse, merge, no-merge, packages, no-packages, plain or base-wins=PATH[,PATH...]"
    )]
    BadPolicy(String),
    #[error("storage configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("containers-storage metadata {path}: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("cannot rebase {image} onto {base}: {reason}")]
    BadOnto {
        image: String,
        base: String,
        reason: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("repository {path}: {source}")]
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
