//! The hooks crate's error type: something found that must not be trusted, or wrapped I/O.

use std::path::PathBuf;

/// What can go wrong reading or writing what the daemons leave for the hook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {reason}; refusing to trust it")]
    Untrusted { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with what was being done, for `map_err`.
pub fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
