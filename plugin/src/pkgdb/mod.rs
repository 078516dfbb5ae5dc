//! Package databases in image layers, merged 3-way at rebase time (issue 10).
//!
//! An app layer that installed packages carries its own copy of the package database,
//! which hides the new base's copy: the tree holds the new base's files while the database
//! describes the old base. This module reads the databases of three merged trees
//! (ancestor = old base, theirs = new base, ours = the app layers over the old base),
//! merges them per package, and says what the rebased tree must serve: file contents to
//! write, paths to take from the new base or the app, paths to hide ([`Served`]), plus a
//! [`report::PackageReport`].
//!
//! Layout: [`deb822`] (stanza files, byte-exact), [`merge3`] (the shared 3-way rules),
//! [`dpkg`] (status + journal, admin files, versions, relations, `info/`), [`rpm`]
//! (header blobs, rpmvercmp, the sqlite rpmdb), [`apk`] (installed, world, scripts.tar,
//! triggers), [`generated`] (ld.so.cache, logs), [`ldconfig`] (the cache of a stack of
//! layers), [`view`] (reading a merged stack),
//! [`report`]. Nothing here writes into a layer; outputs are values the caller
//! materializes.

pub mod apk;
pub mod deb822;
pub mod dpkg;
pub mod error;
pub mod generated;
pub mod ldconfig;
pub mod merge3;
pub mod report;
pub mod rpm;
pub mod view;

#[cfg(test)]
pub(crate) mod testgen;

use std::path::PathBuf;

use serde::Serialize;

pub use error::{Error, Result};
pub use merge3::ConflictChoice;

/// What the rebased tree serves at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// These bytes (a merged database file), with the metadata of the app's file, else
    /// the new base's.
    Content(Vec<u8>),
    /// Nothing: the path is hidden (a whiteout in the resolution layer).
    Whiteout,
    /// The new base's object at this path (a copy into the resolution layer where an app
    /// layer shadows it).
    NewBase,
    /// The app's object at this path (as the app layers over the old base show it).
    App,
}

/// One path and what to serve there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Relative to the root (`var/lib/dpkg/status`).
    pub path: PathBuf,
    pub serve: Serve,
}

impl Served {
    pub fn content(path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Served {
        Served {
            path: path.into(),
            serve: Serve::Content(bytes.into()),
        }
    }

    pub fn new(path: impl Into<PathBuf>, serve: Serve) -> Served {
        Served {
            path: path.into(),
            serve,
        }
    }
}

/// The result of merging one package database.
#[derive(Debug, Clone)]
pub struct Merged {
    pub files: Vec<Served>,
    pub report: report::PackageReport,
}

/// A short, serializable line per served path (for the repository's decision record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedSummary {
    pub path: String,
    pub serve: &'static str,
}

impl Merged {
    pub fn summary(&self) -> Vec<ServedSummary> {
        self.files
            .iter()
            .map(|f| ServedSummary {
                path: crate::tree::display(&f.path),
                serve: match f.serve {
                    Serve::Content(_) => "merged",
                    Serve::Whiteout => "hidden",
                    Serve::NewBase => "new-base",
                    Serve::App => "app",
                },
            })
            .collect()
    }
}
