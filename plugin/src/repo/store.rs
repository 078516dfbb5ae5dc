//! The shared on-disk store beside the database: materialized resolution directories.
//!
//! A resolution is written into `tmp/<unique>` and renamed to `resolutions/<id>` in one
//! step, so a reader sees either nothing or the whole directory. Leftover `tmp/` entries
//! (a crash mid-write) are removed by `gc`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{io_err, Result};

/// The store directory layout.
#[derive(Debug, Clone)]
pub struct SharedStore {
    pub root: PathBuf,
}

impl SharedStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn resolutions_dir(&self) -> PathBuf {
        self.root.join("resolutions")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `resolutions/<id>`, relative to the store root (what the database records).
    pub fn relative_resolution(id: &str) -> String {
        format!("resolutions/{id}")
    }

    pub fn absolute(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Writes a directory with `fill` and publishes it atomically as `relative`.
    /// When it already exists (written before or by a concurrent run) the new copy is dropped.
    pub fn publish(
        &self,
        relative: &str,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let final_path = self.absolute(relative);
        if final_path.is_dir() {
            return Ok(final_path);
        }
        let tmp_root = self.tmp_dir();
        std::fs::create_dir_all(&tmp_root)
            .map_err(io_err(format!("creating {}", tmp_root.display())))?;
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = tmp_root.join(format!("{}.{}", std::process::id(), nanos));
        std::fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        let filled = fill(&tmp).and_then(|()| {
            std::fs::rename(&tmp, &final_path)
                .map_err(io_err(format!("publishing {}", final_path.display())))
        });
        if let Err(e) = filled {
            let _ = std::fs::remove_dir_all(&tmp);
            if final_path.is_dir() {
                return Ok(final_path);
            }
            return Err(e);
        }
        Ok(final_path)
    }
}
