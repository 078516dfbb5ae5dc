//! Conflicts: paths the base update changed (B vs N) that an app layer also touches.
//!
//! The base change set compares the merged trees of B and N by metadata and content. An app
//! layer touches a path when it writes it, whites it out, makes it (or a parent) opaque,
//! or replaces a parent directory with a non-directory. Both whiteout encodings count.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tree::{self, Kind, LayerScan};

/// How the base update changed a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseChange {
    Added,
    Removed,
    Modified,
}

/// One path the base update changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Absolute path in the image (`/etc/passwd`).
    pub path: String,
    pub change: BaseChange,
}

/// How an app layer touches a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppAction {
    /// The layer has its own copy of the path.
    Wrote,
    /// The layer deletes it (whiteout).
    Deleted,
    /// The layer hides it: an opaque, deleted or replaced parent directory.
    Hid,
}

/// A path changed by the base update and touched by an app layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub path: String,
    pub base: BaseChange,
    pub app: AppAction,
    /// The app layer (source id) that touches it.
    pub layer: String,
}

/// Paths that differ between the merged old base and the merged new base.
pub fn base_changes(
    old_layers_bottom_first: &[PathBuf],
    new_layers_bottom_first: &[PathBuf],
) -> Result<Vec<Change>> {
    let (old, new) = std::thread::scope(|scope| {
        let old = scope.spawn(|| tree::merged_view(old_layers_bottom_first));
        let new = tree::merged_view(new_layers_bottom_first);
        let old = old.join().unwrap_or_else(|_| {
            Err(crate::error::Error::Io {
                context: "reading the old base".into(),
                source: std::io::Error::other("scan thread panicked"),
            })
        });
        (old, new)
    });
    let (old, new) = (old?, new?);
    let mut changes = Vec::new();
    let mut both = Vec::new();
    for (path, before) in &old {
        match new.get(path) {
            None => changes.push(Change {
                path: tree::display(path),
                change: BaseChange::Removed,
            }),
            Some(after) => both.push((path, before, after)),
        }
    }
    // Comparing contents reads both bases: spread it over the cores.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = both.len().div_ceil(workers).max(1);
    let modified: Vec<Vec<Change>> = std::thread::scope(|scope| {
        let handles: Vec<_> = both
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<Vec<Change>> {
                    let mut out = Vec::new();
                    for (path, before, after) in part {
                        if !tree::same_object(before, after)? {
                            out.push(Change {
                                path: tree::display(path),
                                change: BaseChange::Modified,
                            });
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(crate::error::Error::Io {
                        context: "comparing base layers".into(),
                        source: std::io::Error::other("comparison thread panicked"),
                    })
                })
            })
            .collect::<Result<_>>()
    })?;
    changes.extend(modified.into_iter().flatten());
    for path in new.keys().filter(|p| !old.contains_key(*p)) {
        changes.push(Change {
            path: tree::display(path),
            change: BaseChange::Added,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// The conflicts of one app layer directory with a base change set.
pub fn layer_conflicts(
    changes: &[Change],
    layer_dir: &Path,
    layer_id: &str,
) -> Result<Vec<Conflict>> {
    let scan = tree::scan_layer(layer_dir)?;
    Ok(conflicts_in_scan(changes, &scan, layer_id))
}

fn conflicts_in_scan(changes: &[Change], scan: &LayerScan, layer_id: &str) -> Vec<Conflict> {
    let mut out = Vec::new();
    for change in changes {
        let Some(rel) = tree::relative(&change.path) else {
            continue;
        };
        let action = if scan.whiteouts.contains(&rel) {
            Some(AppAction::Deleted)
        } else if scan.entries.contains_key(&rel) {
            Some(AppAction::Wrote)
        } else if hidden_by_parent(scan, &rel) {
            Some(AppAction::Hid)
        } else {
            None
        };
        if let Some(app) = action {
            out.push(Conflict {
                path: change.path.clone(),
                base: change.change,
                app,
                layer: layer_id.to_string(),
            });
        }
    }
    out
}

fn hidden_by_parent(scan: &LayerScan, rel: &Path) -> bool {
    rel.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .any(|a| {
            scan.opaque_dirs.contains(a)
                || scan.whiteouts.contains(a)
                || scan.entries.get(a).is_some_and(|e| e.kind != Kind::Dir)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::write;

    #[test]
    fn finds_base_changes_and_app_touches() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let (b, n, a) = (t.join("b"), t.join("n"), t.join("a"));
        for root in [&b, &n] {
            write(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
            write(root, "etc/same", "same");
            write(root, "usr/share/x/keep", "k");
        }
        write(&b, "etc/removed", "r");
        write(&b, "etc/deleted-by-app", "v1");
        write(&n, "etc/deleted-by-app", "v2");
        write(
            &n,
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\nsys:x:1:1::/:/bin/false\n",
        );
        write(&n, "etc/added", "a");
        write(&n, "usr/share/x/new", "n");
        // App layer: writes passwd, deletes a file (AUFS), makes usr/share/x opaque.
        write(
            &a,
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        );
        write(&a, "etc/.wh.deleted-by-app", "");
        write(&a, "usr/share/x/.wh..wh..opq", "");
        write(&a, "etc/same", "same");

        let changes = base_changes(&[b], &[n]).unwrap();
        let paths: Vec<(&str, BaseChange)> = changes
            .iter()
            .map(|c| (c.path.as_str(), c.change))
            .collect();
        assert_eq!(
            paths,
            [
                ("/etc/added", BaseChange::Added),
                ("/etc/deleted-by-app", BaseChange::Modified),
                ("/etc/passwd", BaseChange::Modified),
                ("/etc/removed", BaseChange::Removed),
                ("/usr/share/x/new", BaseChange::Added),
            ]
        );
        let conflicts = layer_conflicts(&changes, &a, "L").unwrap();
        let got: Vec<(&str, AppAction)> =
            conflicts.iter().map(|c| (c.path.as_str(), c.app)).collect();
        assert_eq!(
            got,
            [
                ("/etc/deleted-by-app", AppAction::Deleted),
                ("/etc/passwd", AppAction::Wrote),
                ("/usr/share/x/new", AppAction::Hid),
            ]
        );
    }
}
