//! Conflict policies and the materialized resolution layer.
//!
//! Policies (combinable, per image or per run). The default merges everything rebasefs
//! understands: `merge` (3-way merge of passwd/group/shadow/gshadow) and `packages` (the
//! dpkg, rpm and apk databases and the generated files that go with them, [`crate::pkgdb`]);
//! other conflicts take the app's version (`upper-wins`, the plain overlay result) and are
//! reported. `no-merge` / `no-packages` turn a merge off (`plain` = both: the overlay
//! result everywhere), `base-wins=PATH,...` takes the new base's version of those paths or
//! anything below them, and `refuse` makes any conflict no rule resolves abort the rebase.
//! Whatever a resolution produces is
//! written once into a fresh directory that the store renames into place; it is served as
//! an extra layer above the app layers, so app layers are never rewritten.

pub mod merge;
pub mod packages;

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conflict::Conflict;
use crate::error::{io_err, Error, Result};
use crate::tree::{self, Entry, Kind, Lookup};

/// What to do with conflicts no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    #[default]
    UpperWins,
    Refuse,
}

/// A conflict policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub fallback: Fallback,
    /// passwd/group/shadow/gshadow merged by name.
    pub merge: bool,
    /// Package databases (and their generated files) merged per package.
    pub packages: bool,
    /// Absolute paths (or directories) where the new base's version wins.
    pub base_wins: Vec<String>,
}

/// The safe default: every format rebasefs understands is merged.
impl Default for Policy {
    fn default() -> Policy {
        Policy {
            fallback: Fallback::UpperWins,
            merge: true,
            packages: true,
            base_wins: Vec::new(),
        }
    }
}

/// How the default policy was spelled before package databases were merged. A policy
/// remembered with this spelling was nobody's choice: it reads as today's default, so
/// the stale-database default does not live on in old repositories.
const OLD_DEFAULT_SPELLING: &str = "upper-wins";

impl Policy {
    /// Parses `--policy` values: `upper-wins`, `refuse`, `merge`, `no-merge`,
    /// `packages`, `no-packages`, `plain`, `base-wins=P1,P2`; each changes the default.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Policy> {
        let mut policy = Policy::default();
        for value in values {
            let value = value.as_ref();
            match value {
                "upper-wins" => policy.fallback = Fallback::UpperWins,
                "refuse" => policy.fallback = Fallback::Refuse,
                "merge" => policy.merge = true,
                "no-merge" => policy.merge = false,
                "packages" => policy.packages = true,
                "no-packages" => policy.packages = false,
                "plain" => {
                    policy.merge = false;
                    policy.packages = false;
                }
                _ => {
                    let paths = value
                        .strip_prefix("base-wins=")
                        .or_else(|| value.strip_prefix("base-wins:"))
                        .ok_or_else(|| Error::BadPolicy(value.to_string()))?;
                    for p in paths.split(',').filter(|p| !p.is_empty()) {
                        let rel =
                            tree::relative(p).ok_or_else(|| Error::BadPolicy(value.to_string()))?;
                        policy.base_wins.push(tree::display(&rel));
                    }
                }
            }
        }
        policy.base_wins.sort();
        policy.base_wins.dedup();
        Ok(policy)
    }

    /// Reads a policy as the repository remembers it ([`Policy::canonical`]).
    ///
    /// Spellings from before package databases were merged name neither `packages` nor
    /// `no-packages`: nobody chose to keep a stale database then, so they read with
    /// packages merged; `merge` is off in them unless named, except in the old default.
    pub fn from_canonical(spelling: &str) -> Result<Policy> {
        if spelling == OLD_DEFAULT_SPELLING {
            return Ok(Policy::default());
        }
        let mut values: Vec<&str> = spelling.split(' ').filter(|v| !v.is_empty()).collect();
        if !values
            .iter()
            .any(|v| *v == "packages" || *v == "no-packages")
            && !values.contains(&"merge")
        {
            values.push("no-merge");
        }
        Policy::parse(&values)
    }

    /// A stable spelling that names every switch: part of resolution ids and shown to
    /// people.
    pub fn canonical(&self) -> String {
        let mut parts = vec![match self.fallback {
            Fallback::UpperWins => "upper-wins".to_string(),
            Fallback::Refuse => "refuse".to_string(),
        }];
        parts.push(if self.merge { "merge" } else { "no-merge" }.into());
        parts.push(
            if self.packages {
                "packages"
            } else {
                "no-packages"
            }
            .into(),
        );
        if !self.base_wins.is_empty() {
            parts.push(format!("base-wins={}", self.base_wins.join(",")));
        }
        parts.join(" ")
    }

    pub fn base_wins_for(&self, path: &str) -> bool {
        self.base_wins.iter().any(|p| {
            path == p
                || path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// How one conflicting path was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "how")]
pub enum How {
    /// Line-keyed 3-way merge; the merged file is in the resolution layer.
    Merged { outcome: MergeSummary },
    /// The new base's version is in the resolution layer.
    BaseWins,
    /// The new base deleted it: the resolution layer deletes it too.
    BaseWinsDeleted,
    /// Plain overlay: the app's version (or deletion) shows.
    UpperWins,
    /// `refuse` and no rule applied.
    Unresolved,
    /// A package database (or a generated file that goes with it) merged per package:
    /// `serve` is `merged`, `new-base`, `app` or `hidden`; `written` says whether the
    /// resolution layer holds something for it (else the stack already shows it).
    PackageDb {
        format: String,
        serve: String,
        written: bool,
    },
}

/// What a merge did, without the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeSummary {
    pub from_base: Vec<String>,
    pub updated_by_base: Vec<String>,
    pub dropped_by_base: Vec<String>,
    pub kept_app: Vec<String>,
}

/// One decision, with the content to write when there is any.
#[derive(Debug, Clone)]
pub struct Decision {
    pub path: String,
    pub how: How,
    write: Option<Payload>,
}

#[derive(Debug, Clone)]
enum Payload {
    /// Text with the metadata of `like`.
    Text {
        text: String,
        like: Entry,
    },
    /// Bytes (a merged database, possibly binary) with the metadata of `like`.
    Bytes {
        bytes: Vec<u8>,
        like: Entry,
    },
    /// A copy of this object.
    Copy(Entry),
    Whiteout,
}

impl Decision {
    /// True when the decision adds something to the resolution layer.
    pub fn writes(&self) -> bool {
        self.write.is_some()
    }
}

/// The stacks a resolution reads from, each top first.
pub struct Stacks<'a> {
    pub old_base: &'a [PathBuf],
    pub new_base: &'a [PathBuf],
    /// The app layers alone.
    pub app: &'a [PathBuf],
    /// The app layers over the old base: what the app image shows.
    pub ours: &'a [PathBuf],
    /// The app layers over the new base: what the rebased stack shows below the
    /// resolution layer.
    pub served: &'a [PathBuf],
}

/// Decides every conflicting path under `policy`.
pub fn decide(
    conflicts: &[Conflict],
    policy: &Policy,
    stacks: &Stacks<'_>,
) -> Result<Vec<Decision>> {
    let paths: BTreeMap<&str, ()> = conflicts.iter().map(|c| (c.path.as_str(), ())).collect();
    let mut decisions = Vec::new();
    for path in paths.keys() {
        let Some(rel) = tree::relative(path) else {
            continue;
        };
        let decision = if policy.base_wins_for(path) {
            match tree::lookup(stacks.new_base, &rel)? {
                Lookup::Found(entry) => Decision {
                    path: path.to_string(),
                    how: How::BaseWins,
                    write: Some(Payload::Copy(entry)),
                },
                Lookup::Absent => Decision {
                    path: path.to_string(),
                    how: How::BaseWinsDeleted,
                    write: Some(Payload::Whiteout),
                },
            }
        } else if let Some(merged) = policy
            .merge
            .then(|| try_merge(path, &rel, stacks))
            .transpose()?
            .flatten()
        {
            merged
        } else {
            Decision {
                path: path.to_string(),
                how: match policy.fallback {
                    Fallback::UpperWins => How::UpperWins,
                    Fallback::Refuse => How::Unresolved,
                },
                write: None,
            }
        };
        decisions.push(decision);
    }
    Ok(decisions)
}

/// [`decide`], then the package databases under the policy ([`packages::decide`]): their
/// decisions replace the generic one of every path they name, except where `base-wins`
/// names the path (the user's word). Returns the decisions and the package reports.
pub fn decide_with_packages(
    conflicts: &[Conflict],
    policy: &Policy,
    stacks: &Stacks<'_>,
    scratch: &Path,
) -> Result<(Vec<Decision>, Vec<crate::pkgdb::report::PackageReport>)> {
    let mut decisions = decide(conflicts, policy, stacks)?;
    if !policy.packages || !packages::concerns_packages(conflicts) {
        return Ok((decisions, Vec::new()));
    }
    let found = packages::decide(stacks, &|db| policy.base_wins_for(db), scratch)?;
    let taken: Vec<Decision> = found
        .decisions
        .into_iter()
        .filter(|d| !policy.base_wins_for(&d.path))
        .collect();
    let paths: std::collections::HashSet<&str> = taken.iter().map(|d| d.path.as_str()).collect();
    decisions.retain(|d| !paths.contains(d.path.as_str()));
    decisions.extend(taken);
    decisions.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((decisions, found.reports))
}

fn try_merge(path: &str, rel: &Path, stacks: &Stacks<'_>) -> Result<Option<Decision>> {
    if !merge::is_mergeable(path) {
        return Ok(None);
    }
    let file = |stack: &[PathBuf]| -> Result<Option<Entry>> {
        Ok(match tree::lookup(stack, rel)? {
            Lookup::Found(e) if e.kind == Kind::File => Some(e),
            _ => None,
        })
    };
    let (Some(ancestor), Some(base), Some(app)) = (
        file(stacks.old_base)?,
        file(stacks.new_base)?,
        file(stacks.app)?,
    ) else {
        return Ok(None);
    };
    let read = |e: &Entry| {
        std::fs::read(&e.source)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(io_err(format!("reading {}", e.source.display())))
    };
    let outcome = merge::merge_keyed(&read(&ancestor)?, &read(&base)?, &read(&app)?);
    Ok(Some(Decision {
        path: path.to_string(),
        how: How::Merged {
            outcome: MergeSummary {
                from_base: outcome.from_base,
                updated_by_base: outcome.updated_by_base,
                dropped_by_base: outcome.dropped_by_base,
                kept_app: outcome.kept_app,
            },
        },
        write: Some(Payload::Text {
            text: outcome.text,
            like: app,
        }),
    }))
}

/// Writes the decisions' content into `dest` (a new, empty directory).
///
/// `below_top_first` is the stack the layer will sit on (app layers, then new base): parent
/// directories copy their metadata from it so the extra layer changes nothing else.
pub fn materialize(decisions: &[Decision], dest: &Path, below_top_first: &[PathBuf]) -> Result<()> {
    if let Some(top) = below_top_first.first() {
        copy_dir_metadata(&tree::entry_of(top)?, dest)?;
    }
    for decision in decisions {
        let Some(payload) = &decision.write else {
            continue;
        };
        let Some(rel) = tree::relative(&decision.path) else {
            continue;
        };
        make_parents(dest, &rel, below_top_first)?;
        let target = dest.join(&rel);
        match payload {
            Payload::Text { text, like } => {
                std::fs::write(&target, text)
                    .map_err(io_err(format!("writing {}", target.display())))?;
                set_owner_mode(&target, like)?;
            }
            Payload::Bytes { bytes, like } => {
                std::fs::write(&target, bytes)
                    .map_err(io_err(format!("writing {}", target.display())))?;
                set_owner_mode(&target, like)?;
            }
            Payload::Copy(entry) => copy_object(entry, &target)?,
            Payload::Whiteout => {
                let name = rel.file_name().unwrap_or_default();
                let wh = target.with_file_name(rebasefs_fuse::aufs_whiteout_name(name));
                std::fs::write(&wh, b"").map_err(io_err(format!("writing {}", wh.display())))?;
            }
        }
    }
    Ok(())
}

fn make_parents(dest: &Path, rel: &Path, below: &[PathBuf]) -> Result<()> {
    let mut ancestors: Vec<&Path> = rel
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for dir in ancestors {
        let target = dest.join(dir);
        if target.is_dir() {
            continue;
        }
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&target)
            .map_err(io_err(format!("creating {}", target.display())))?;
        if let Lookup::Found(entry) = tree::lookup(below, dir)? {
            if entry.kind == Kind::Dir {
                copy_dir_metadata(&entry, &target)?;
            }
        }
    }
    Ok(())
}

fn copy_dir_metadata(like: &Entry, target: &Path) -> Result<()> {
    set_owner_mode(target, like)
}

fn set_owner_mode(target: &Path, like: &Entry) -> Result<()> {
    std::os::unix::fs::lchown(target, Some(like.uid), Some(like.gid))
        .map_err(io_err(format!("chown {}", target.display())))?;
    if like.kind != Kind::Symlink {
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(like.mode))
            .map_err(io_err(format!("chmod {}", target.display())))?;
    }
    Ok(())
}

fn copy_object(entry: &Entry, target: &Path) -> Result<()> {
    match entry.kind {
        Kind::File => {
            std::fs::copy(&entry.source, target).map_err(io_err(format!(
                "copying {} to {}",
                entry.source.display(),
                target.display()
            )))?;
        }
        Kind::Symlink => {
            let link = std::fs::read_link(&entry.source)
                .map_err(io_err(format!("readlink {}", entry.source.display())))?;
            std::os::unix::fs::symlink(link, target)
                .map_err(io_err(format!("symlink {}", target.display())))?;
        }
        Kind::Dir => {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(target)
                .map_err(io_err(format!("creating {}", target.display())))?;
        }
        other => {
            return Err(Error::Io {
                context: format!("resolving {}", target.display()),
                source: std::io::Error::other(format!("cannot copy a {other:?} into a resolution")),
            })
        }
    }
    set_owner_mode(target, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_grammar() {
        let p = Policy::parse(&["merge", "base-wins=/etc/os-release,etc/hosts"]).unwrap();
        assert!(p.merge);
        assert_eq!(p.base_wins, ["/etc/hosts", "/etc/os-release"]);
        assert_eq!(
            p.canonical(),
            "upper-wins merge packages base-wins=/etc/hosts,/etc/os-release"
        );
        assert_eq!(Policy::from_canonical(&p.canonical()).unwrap(), p);
        assert!(p.base_wins_for("/etc/hosts"));
        assert!(!p.base_wins_for("/etc/hostsx"));
        assert!(Policy::parse(&["bogus"]).is_err());
        assert!(Policy::parse(&["base-wins=/../x"]).is_err());
        assert_eq!(Policy::parse::<&str>(&[]).unwrap(), Policy::default());
    }

    #[test]
    fn the_default_merges_everything_and_old_spellings_read_right() {
        let default = Policy::default();
        assert!(default.merge && default.packages);
        assert_eq!(default.canonical(), "upper-wins merge packages");
        // The old default's spelling is today's default; old explicit policies keep
        // what they said and gain the package merge nobody could turn off then.
        assert_eq!(Policy::from_canonical("upper-wins").unwrap(), default);
        assert_eq!(Policy::from_canonical("upper-wins merge").unwrap(), default);
        let old_refuse = Policy::from_canonical("refuse").unwrap();
        assert!(old_refuse.packages && !old_refuse.merge);
        let plain = Policy::parse(&["plain"]).unwrap();
        assert_eq!(plain.canonical(), "upper-wins no-merge no-packages");
        for p in [plain, Policy::parse(&["no-packages", "refuse"]).unwrap()] {
            assert_eq!(Policy::from_canonical(&p.canonical()).unwrap(), p);
        }
    }
}
