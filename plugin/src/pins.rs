//! Containers pinned to the stack they run on: one empty file per container (named by its
//! read-write layer id) in `<graphroot>/rebasefs/pins/`.
//!
//! `rebasefs hook` writes or removes a container's pin at every precreate (annotation
//! `io.rebasefs.pin=true`, or not opted in when the site runs the hook with `--opt-in`);
//! the mount program ([`crate::serve`]) then serves a pinned container the stack it was last
//! mounted with instead of its image's active rebased stack, so neither `podman restart` nor
//! `podman stop` + `podman start` moves it. A pin can only keep a container where it is, so
//! the directory is trusted like `repo.db` beside it.

use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use crate::repo;

/// `<graphroot>/rebasefs/pins`.
pub fn dir(graphroot: &Path) -> PathBuf {
    repo::home(graphroot).join("pins")
}

/// The pin file of a container layer, when the id is one plain name.
fn file(graphroot: &Path, container_layer: &str) -> Option<PathBuf> {
    let plain =
        !container_layer.is_empty() && container_layer.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then(|| dir(graphroot).join(container_layer))
}

/// True when the container with read-write layer `container_layer` is pinned.
pub fn is_pinned(graphroot: &Path, container_layer: &str) -> bool {
    file(graphroot, container_layer).is_some_and(|f| f.symlink_metadata().is_ok())
}

/// Pins (`pinned`) or unpins a container; unpinning an unpinned one touches nothing.
pub fn set(graphroot: &Path, container_layer: &str, pinned: bool) -> Result<()> {
    let Some(file) = file(graphroot, container_layer) else {
        return Err(io_err(format!(
            "pinning container layer {container_layer:?}"
        ))(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a layer id",
        )));
    };
    if pinned {
        let dir = dir(graphroot);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        std::fs::write(&file, b"").map_err(io_err(format!("writing {}", file.display())))
    } else {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {}", file.display()))(e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_set_and_cleared_per_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = "a".repeat(64);
        assert!(!is_pinned(tmp.path(), &layer));
        set(tmp.path(), &layer, false).unwrap();
        assert!(!dir(tmp.path()).exists(), "unpinning must create nothing");
        set(tmp.path(), &layer, true).unwrap();
        assert!(is_pinned(tmp.path(), &layer));
        assert!(!is_pinned(tmp.path(), &"b".repeat(64)));
        set(tmp.path(), &layer, false).unwrap();
        assert!(!is_pinned(tmp.path(), &layer));
        assert!(set(tmp.path(), "../x", true).is_err());
        assert!(!is_pinned(tmp.path(), ".."));
    }
}
