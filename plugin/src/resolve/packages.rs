//! The package databases of one rebase: runs the [`crate::pkgdb`] merges (dpkg, rpm, apk,
//! generated files) over the three trees and turns what they say to serve into
//! resolution decisions, authoritative for the paths they name.
//!
//! The trees: ancestor = the old base, theirs = the new base, ours = the app layers over
//! the old base (what the app image shows). A decision writes only where the served stack
//! (app layers over the new base) does not already show the wanted object, so most of the
//! app's own `info/` files cost nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Decision, How, Payload, Stacks};
use crate::conflict::Conflict;
use crate::error::{io_err, Result};
use crate::pkgdb::report::{Format, PackageReport};
use crate::pkgdb::view::Stack;
use crate::pkgdb::{self, ConflictChoice, Merged, Serve, Served};
use crate::tree::{self, Entry, Kind, Lookup};

/// Path prefixes (relative) of everything a package merge reads or serves.
const WATCHED: &[&str] = &[
    "var/lib/dpkg/",
    "var/lib/apt/extended_states",
    "usr/lib/sysimage/rpm/",
    "var/lib/rpm/",
    "usr/share/rpm/",
    "lib/apk/db/",
    "etc/apk/world",
    pkgdb::generated::LD_SO_CACHE,
    pkgdb::generated::AUX_CACHE,
    "var/log/dpkg.log",
    "var/log/apt/",
    "var/log/alternatives.log",
    "var/cache/apt/",
];

/// True when a conflict lies where a package merge has something to say: otherwise the
/// served stack already shows the right database (only one side changed it).
pub fn concerns_packages(conflicts: &[Conflict]) -> bool {
    conflicts.iter().any(|c| {
        let rel = c.path.trim_start_matches('/');
        WATCHED.iter().any(|w| rel.starts_with(w))
    })
}

/// What the package merges decided.
#[derive(Debug, Default)]
pub struct PackageDecisions {
    pub decisions: Vec<Decision>,
    pub reports: Vec<PackageReport>,
}

/// Runs every package merge. `base_wins` tells whether the policy gives a database path
/// to the new base (its both-changed packages then take the new base's stanza);
/// `scratch` holds scratch directories (best on the layers' filesystem).
pub fn decide(
    stacks: &Stacks<'_>,
    base_wins: &dyn Fn(&str) -> bool,
    scratch: &Path,
) -> Result<PackageDecisions> {
    let ancestor = Stack {
        top_first: stacks.old_base,
    };
    let theirs = Stack {
        top_first: stacks.new_base,
    };
    let ours = Stack {
        top_first: stacks.ours,
    };
    let choice = |db: &str| {
        if base_wins(db) {
            ConflictChoice::Theirs
        } else {
            ConflictChoice::Ours
        }
    };
    let mut merged: Vec<(Format, Merged)> = Vec::new();
    if let Some(m) = pkgdb::dpkg::merge(&ancestor, &theirs, &ours, choice("/var/lib/dpkg/status"))?
    {
        merged.push((Format::Dpkg, m));
    }
    let rpm_scratch = tempfile::Builder::new()
        .prefix("rpmdb-")
        .tempdir_in(scratch)
        .map_err(io_err(format!(
            "creating a scratch directory in {}",
            scratch.display()
        )))?;
    if let Some(m) = pkgdb::rpm::merge(
        &ancestor,
        &theirs,
        &ours,
        choice("/var/lib/rpm"),
        rpm_scratch.path(),
    )? {
        merged.push((Format::Rpm, m));
    }
    if let Some(m) = pkgdb::apk::merge(&ancestor, &theirs, &ours, choice("/lib/apk/db/installed"))?
    {
        merged.push((Format::Apk, m));
    }
    let generated = pkgdb::generated::plan(&ancestor, &theirs, &ours)?;
    let mut generated_files = generated.files.clone();
    let mut generated_report = generated.report.clone();
    if generated.regenerate_ld_so_cache {
        let bytes = pkgdb::ldconfig::regenerate(stacks.served, scratch)?;
        generated_files.push(Served::content(pkgdb::generated::LD_SO_CACHE, bytes));
        // ldconfig's aux-cache is keyed by the inodes of the tree it ran on: a scratch
        // tree's would be wrong here; without one ldconfig simply rescans.
        generated_files.push(Served::new(pkgdb::generated::AUX_CACHE, Serve::Whiteout));
        generated_report.push(pkgdb::report::Generated {
            path: format!("/{}", pkgdb::generated::AUX_CACHE),
            decision: "hidden (ldconfig's speed-up, keyed by inode; rebuilt by the next ldconfig)"
                .into(),
        });
    }

    // One decision per path; a later merge never overrides an earlier one.
    let mut by_path: BTreeMap<PathBuf, Decision> = BTreeMap::new();
    let mut reports = Vec::new();
    for (format, m) in merged {
        for served in &m.files {
            if by_path.contains_key(&served.path) {
                continue;
            }
            let d = decision(served, format_name(format), stacks)?;
            by_path.insert(served.path.clone(), d);
        }
        reports.push(m.report);
    }
    for served in &generated_files {
        if !by_path.contains_key(&served.path) {
            let d = decision(served, "generated", stacks)?;
            by_path.insert(served.path.clone(), d);
        }
    }
    // Generated files belong to whichever database report is there (dpkg first).
    match reports.first_mut() {
        Some(first) => first.generated.extend(generated_report),
        None if !generated_report.is_empty() => {
            let mut r = PackageReport::new(Format::Dpkg, "");
            r.generated = generated_report;
            reports.push(r);
        }
        None => {}
    }
    Ok(PackageDecisions {
        decisions: by_path.into_values().collect(),
        reports,
    })
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Dpkg => "dpkg",
        Format::Rpm => "rpm",
        Format::Apk => "apk",
    }
}

fn found(stack: &[PathBuf], rel: &Path) -> Result<Option<Entry>> {
    Ok(match tree::lookup(stack, rel)? {
        Lookup::Found(e) => Some(e),
        Lookup::Absent => None,
    })
}

/// Metadata for a merged file no tree has yet (a new trigger file, say).
fn default_file_entry() -> Entry {
    Entry {
        kind: Kind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 0,
        rdev: 0,
        source: PathBuf::new(),
    }
}

/// The decision for one served path: what to write so that the stack shows it.
fn decision(served: &Served, format: &str, stacks: &Stacks<'_>) -> Result<Decision> {
    let rel = &served.path;
    let shown = found(stacks.served, rel)?;
    let (serve, write) = match &served.serve {
        Serve::Content(bytes) => {
            let already = match &shown {
                Some(e) if e.kind == Kind::File && e.size == bytes.len() as u64 => {
                    std::fs::read(&e.source)
                        .map_err(io_err(format!("reading {}", e.source.display())))?
                        == *bytes
                }
                _ => false,
            };
            let like = match found(stacks.ours, rel)? {
                Some(e) if e.kind == Kind::File => e,
                _ => match found(stacks.new_base, rel)? {
                    Some(e) if e.kind == Kind::File => e,
                    _ => default_file_entry(),
                },
            };
            let write = (!already).then(|| Payload::Bytes {
                bytes: bytes.clone(),
                like,
            });
            ("merged", write)
        }
        Serve::NewBase => ("new-base", object(found(stacks.new_base, rel)?, &shown)?),
        Serve::App => ("app", object(found(stacks.ours, rel)?, &shown)?),
        Serve::Whiteout => ("hidden", shown.as_ref().map(|_| Payload::Whiteout)),
    };
    Ok(Decision {
        path: tree::display(rel),
        how: How::PackageDb {
            format: format.to_string(),
            serve: serve.to_string(),
            written: write.is_some(),
        },
        write,
    })
}

/// The payload that makes the stack show `wanted` where it shows `shown` now.
fn object(wanted: Option<Entry>, shown: &Option<Entry>) -> Result<Option<Payload>> {
    Ok(match (wanted, shown) {
        (None, None) => None,
        (None, Some(_)) => Some(Payload::Whiteout),
        (Some(w), Some(s)) if tree::same_object(&w, s)? => None,
        (Some(w), _) => Some(Payload::Copy(w)),
    })
}

/// The broken dependencies of every report, one `package: field relation` each.
pub fn broken(reports: &[PackageReport]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| &r.broken)
        .map(|b| format!("{} {}: {} {}", b.package, b.version, b.field, b.relation))
        .collect()
}
