//! Holds on the new bases that rebased containers run on.
//!
//! containers-storage knows nothing of a container rebasefs serves from another image's
//! layers, so `podman rmi` of that new base would delete layers a running container reads.
//! A hold is two names rebasefs gives the base image, `localhost/rebasefs/in-use:<id>` and
//! `localhost/rebasefs/do-not-remove:<id>`, written into `overlay-images/images.json` the
//! way containers-storage writes it: under an exclusive `images.lock`, by atomic rename,
//! then a new last-writer token. Measured on Podman 4.3.1: `podman rmi NAME` (with or
//! without `-f`) then only untags, and `podman rmi ID` refuses an image with more than one
//! name (two hold names keep it at two after the user's own name is gone); `rmi -f ID`,
//! `rmi -a` and `image prune -a` still delete it (see the README).
//!
//! A base is needed while an image is set to a stack on it or an existing container was
//! last mounted with one; `rebase` adds its hold before recording, `rollback` and `gc`
//! drop the holds nothing needs any more.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use crate::error::{io_err, Error, Result};
use crate::repo::Repo;
use crate::storage::lock;
use crate::storage::writer::write_atomically;
use crate::storage::Store;

/// The repositories of the hold names; the tag is the held image's id.
pub const HOLD_REPOSITORIES: [&str; 2] = [
    "localhost/rebasefs/in-use",
    "localhost/rebasefs/do-not-remove",
];

/// The names that hold image `image_id`.
pub fn hold_names(image_id: &str) -> Vec<String> {
    HOLD_REPOSITORIES
        .iter()
        .map(|repo| format!("{repo}:{image_id}"))
        .collect()
}

/// True for a name rebasefs gave an image to hold it.
pub fn is_hold_name(name: &str) -> bool {
    name.rsplit_once(':')
        .is_some_and(|(repo, _)| HOLD_REPOSITORIES.contains(&repo))
}

/// The images rebased containers run or will run on: the new bases of the stacks images
/// are set to and of the stacks existing containers were last mounted with.
pub fn needed(store: &Store, repo: &Repo) -> Result<BTreeSet<String>> {
    let mut in_use = repo.assigned_stack_ids()?;
    let live: HashSet<&str> = store.containers.iter().map(|c| c.layer.as_str()).collect();
    in_use.extend(
        repo.container_mounts()?
            .into_iter()
            .filter(|m| live.contains(m.container_layer.as_str()))
            .filter_map(|m| m.stack_id),
    );
    Ok(repo
        .all_stacks()?
        .into_iter()
        .filter(|s| in_use.contains(&s.id))
        .map(|s| s.new_base_image)
        .collect())
}

/// Holds image `image_id` (a no-op when it is held already or gone).
pub fn hold(graphroot: &Path, image_id: &str) -> Result<()> {
    let wanted = hold_names(image_id);
    update(graphroot, |id, names| {
        if id != image_id {
            return false;
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|w| !names.contains(w))
            .cloned()
            .collect();
        names.extend(missing.iter().cloned());
        !missing.is_empty()
    })?;
    Ok(())
}

/// What [`sync`] changed: image ids that got or lost their hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HoldChanges {
    pub held: Vec<String>,
    pub released: Vec<String>,
}

/// Makes exactly the images in `needed` held.
pub fn sync(graphroot: &Path, needed: &BTreeSet<String>) -> Result<HoldChanges> {
    let mut changes = HoldChanges::default();
    update(graphroot, |id, names| {
        let ours = hold_names(id);
        let before = names.len();
        if needed.contains(id) {
            let missing: Vec<String> = ours
                .iter()
                .filter(|w| !names.contains(w))
                .cloned()
                .collect();
            names.extend(missing);
            if names.len() != before {
                changes.held.push(id.to_string());
            }
        } else {
            names.retain(|n| !is_hold_name(n));
            if names.len() != before {
                changes.released.push(id.to_string());
            }
        }
        names.len() != before
    })?;
    Ok(changes)
}

/// Rewrites the names of the images `edit` changes (it returns true for those), as
/// containers-storage does; returns how many changed.
fn update(graphroot: &Path, mut edit: impl FnMut(&str, &mut Vec<String>) -> bool) -> Result<usize> {
    let dir = graphroot.join("overlay-images");
    let Some(lock) = lock::write_lock(&dir.join("images.lock"), lock::default_timeout())? else {
        return Ok(0);
    };
    let path = dir.join("images.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let bad = |reason: String| Error::BadMetadata {
        path: path.clone(),
        reason,
    };
    let mut images: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut changed = 0;
    for image in &mut images {
        let Some(fields) = image.as_object_mut() else {
            return Err(bad("an image record is not an object".into()));
        };
        let id = fields
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let mut names: Vec<String> = fields
            .get("names")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !edit(&id, &mut names) {
            continue;
        }
        changed += 1;
        if names.is_empty() {
            // containers-storage leaves an empty list out (`omitempty`).
            fields.remove("names");
        } else {
            fields.insert("names".into(), serde_json::Value::from(names));
        }
    }
    if changed == 0 {
        return Ok(0);
    }
    let text = serde_json::to_vec(&images).map_err(|e| bad(e.to_string()))?;
    write_atomically(&path, &text)?;
    lock.record_write()?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(images: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("overlay-images");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("images.lock"), b"").unwrap();
        std::fs::write(dir.join("images.json"), images).unwrap();
        tmp
    }

    fn names(root: &Path) -> Vec<(String, Vec<String>)> {
        crate::storage::images::load(&root.join("overlay-images"))
            .unwrap()
            .into_iter()
            .map(|i| (i.id, i.names))
            .collect()
    }

    #[test]
    fn holds_and_releases_keeping_everything_else() {
        let tmp = store_with(
            r#"[{"id":"aaa","names":["localhost/base:2"],"layer":"l1","big-data-sizes":{"manifest":123}},
                {"id":"bbb","layer":"l2"}]"#,
        );
        hold(tmp.path(), "aaa").unwrap();
        hold(tmp.path(), "aaa").unwrap();
        hold(tmp.path(), "gone").unwrap();
        let mut want = vec!["localhost/base:2".to_string()];
        want.extend(hold_names("aaa"));
        assert_eq!(names(tmp.path())[0], ("aaa".to_string(), want));
        let token = std::fs::read(tmp.path().join("overlay-images/images.lock")).unwrap();
        assert_eq!(token.len(), 64, "the last-writer token");
        assert_eq!(token[16..20], std::process::id().to_le_bytes());
        let raw: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tmp.path().join("overlay-images/images.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(raw[0]["big-data-sizes"]["manifest"], 123);
        assert_eq!(raw[1]["layer"], "l2");
        assert!(raw[1].get("names").is_none());

        let needed: BTreeSet<String> = ["bbb".to_string()].into();
        let changes = sync(tmp.path(), &needed).unwrap();
        assert_eq!(changes.held, ["bbb"]);
        assert_eq!(changes.released, ["aaa"]);
        assert_eq!(names(tmp.path())[0].1, ["localhost/base:2"]);
        assert_eq!(names(tmp.path())[1].1, hold_names("bbb"));
        assert_eq!(sync(tmp.path(), &needed).unwrap(), HoldChanges::default());
        assert!(is_hold_name(&hold_names("bbb")[1]));
        assert!(!is_hold_name("localhost/base:2"));
    }
}
