//! dpkg and apt state: `/var/lib/dpkg/{status,status-old,available,diversions,statoverride,
//! triggers/,info/}` and `/var/lib/apt/extended_states`, merged 3-way.
//!
//! `status` is first folded with its `updates/` journal (numbered files of stanzas dpkg
//! has not yet written back; a stanza there replaces the package's). Stanzas are keyed by
//! `Package` + `Architecture` and compared by their bytes, so internal fields (`Status`,
//! `Conffiles`, `Config-Version`, `Triggers-Pending`/`-Awaited`) travel with the stanza
//! that wins. The merged `status` is sorted as dpkg writes it (by name, then
//! architecture) and the folded journal files are hidden.

pub mod admin;
pub mod info;
pub mod relation;
pub mod version;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::deb822::{self, bodies, Document, PackageKey, Stanza};
use super::error::Result;
use super::merge3::{self, Case, ConflictChoice, Winner};
use super::report::{Broken, Format, PackageReport};
use super::view::{self, View};
use super::{Merged, Serve, Served};

pub const ADMIN_DIR: &str = "var/lib/dpkg";
pub const STATUS: &str = "var/lib/dpkg/status";
pub const UPDATES_DIR: &str = "var/lib/dpkg/updates";
pub const EXTENDED_STATES: &str = "var/lib/apt/extended_states";
/// Stanza files merged like `status` (no journal).
const STANZA_FILES: &[&str] = &[
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/available",
    EXTENDED_STATES,
];

/// One tree's `status`, journal folded in.
pub struct StatusDb {
    /// The document whose conventions the merged file keeps.
    pub doc: Document,
    pub stanzas: Vec<(PackageKey, Stanza)>,
    /// Journal files that were folded (relative paths).
    pub journal: Vec<PathBuf>,
}

fn keyed(doc: &Document, file: &Path) -> Result<Vec<(PackageKey, Stanza)>> {
    deb822::keyed(doc, file, Stanza::package_key, "Package field")
}

fn read_doc(view: &dyn View, rel: &Path) -> Result<Option<Document>> {
    match view::read_text(view, rel)? {
        Some(text) => Ok(Some(Document::parse(&text, &view.source(rel))?)),
        None => Ok(None),
    }
}

/// Reads `status` and folds `updates/` into it; `None` when the tree has no dpkg.
pub fn read_status(view: &dyn View) -> Result<Option<StatusDb>> {
    let Some(doc) = read_doc(view, Path::new(STATUS))? else {
        return Ok(None);
    };
    let mut stanzas = keyed(&doc, &view.source(Path::new(STATUS)))?;
    let mut journal: Vec<(u64, String)> = view
        .list(Path::new(UPDATES_DIR))?
        .into_iter()
        .filter_map(|n| n.parse::<u64>().ok().map(|i| (i, n)))
        .collect();
    journal.sort();
    let mut folded = Vec::new();
    for (_, name) in journal {
        let rel = Path::new(UPDATES_DIR).join(&name);
        let Some(update) = read_doc(view, &rel)? else {
            continue;
        };
        for (key, stanza) in keyed(&update, &view.source(&rel))? {
            match stanzas.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = stanza,
                None => stanzas.push((key, stanza)),
            }
        }
        folded.push(rel);
    }
    Ok(Some(StatusDb {
        doc,
        stanzas,
        journal: folded,
    }))
}

/// dpkg writes `status` sorted by package name, then architecture.
fn dpkg_order(a: &PackageKey, b: &PackageKey) -> std::cmp::Ordering {
    a.package
        .as_bytes()
        .cmp(b.package.as_bytes())
        .then_with(|| a.arch.cmp(&b.arch))
}

struct StanzaMerge {
    stanzas: Vec<Stanza>,
    decided: Vec<merge3::Decided<PackageKey>>,
}

fn merge_stanzas(
    ancestor: &[(PackageKey, Stanza)],
    theirs: &[(PackageKey, Stanza)],
    ours: &[(PackageKey, Stanza)],
    choice: ConflictChoice,
    sort: bool,
) -> StanzaMerge {
    let decided = merge3::merge_keyed(&bodies(ancestor), &bodies(theirs), &bodies(ours), choice);
    let find = |items: &[(PackageKey, Stanza)], k: &PackageKey| {
        items
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, s)| s.clone())
    };
    let mut chosen: Vec<(PackageKey, Stanza)> = decided
        .iter()
        .filter_map(|d| {
            let s = match d.winner {
                Winner::Theirs => find(theirs, &d.key),
                Winner::Ours => find(ours, &d.key),
                Winner::Removed => None,
            }?;
            Some((d.key.clone(), s))
        })
        .collect();
    if sort {
        chosen.sort_by(|a, b| dpkg_order(&a.0, &b.0));
    }
    StanzaMerge {
        stanzas: chosen.into_iter().map(|(_, s)| s).collect(),
        decided,
    }
}

fn empty_doc() -> Document {
    Document::default()
}

/// Merges dpkg's and apt's state of three trees. `None` when neither the new base nor the
/// app has a dpkg `status`.
pub fn merge(
    ancestor: &dyn View,
    theirs: &dyn View,
    ours: &dyn View,
    choice: ConflictChoice,
) -> Result<Option<Merged>> {
    let (t, o) = (read_status(theirs)?, read_status(ours)?);
    let (t, o) = match (t, o) {
        (None, None) => return Ok(None),
        (t, o) => (t, o),
    };
    let a = read_status(ancestor)?;
    let none = |db: &Option<StatusDb>| db.as_ref().map(|d| d.stanzas.clone()).unwrap_or_default();
    let (anc, th, ou) = (none(&a), none(&t), none(&o));
    let status = merge_stanzas(&anc, &th, &ou, choice, true);
    let like = o
        .as_ref()
        .or(t.as_ref())
        .map(|d| d.doc.clone())
        .unwrap_or_else(empty_doc);
    let mut files = vec![Served::content(
        STATUS,
        Document::with_conventions_of(&like, status.stanzas.clone()).write(),
    )];
    // The journal is folded into the merged status: hide it.
    let mut journal: Vec<&PathBuf> = t.iter().chain(o.iter()).flat_map(|d| &d.journal).collect();
    journal.sort();
    journal.dedup();
    files.extend(journal.into_iter().map(|p| Served::new(p, Serve::Whiteout)));

    for rel in STANZA_FILES {
        let rel = Path::new(rel);
        let (da, dt, dd) = (
            read_doc(ancestor, rel)?,
            read_doc(theirs, rel)?,
            read_doc(ours, rel)?,
        );
        if dt.is_none() && dd.is_none() {
            continue;
        }
        let items = |d: &Option<Document>, v: &dyn View| -> Result<Vec<(PackageKey, Stanza)>> {
            d.as_ref()
                .map_or(Ok(Vec::new()), |d| keyed(d, &v.source(rel)))
        };
        let merged = merge_stanzas(
            &items(&da, ancestor)?,
            &items(&dt, theirs)?,
            &items(&dd, ours)?,
            choice,
            rel != Path::new(EXTENDED_STATES),
        );
        let like = dd.or(dt).unwrap_or_else(empty_doc);
        files.push(Served::content(
            rel,
            Document::with_conventions_of(&like, merged.stanzas).write(),
        ));
    }

    files.extend(merge_admin_files(ancestor, theirs, ours, choice)?);

    // info/: the winner's files per package the merge changed.
    let multi_arch_same: HashSet<&PackageKey> = th
        .iter()
        .chain(ou.iter())
        .filter(|(_, s)| s.get("Multi-Arch") == Some("same"))
        .map(|(k, _)| k)
        .collect();
    let outcomes: HashMap<PackageKey, info::PackageOutcome> = status
        .decided
        .iter()
        .map(|d| {
            (
                d.key.clone(),
                info::PackageOutcome {
                    case: d.case,
                    winner: d.winner,
                    multi_arch_same: multi_arch_same.contains(&d.key),
                },
            )
        })
        .collect();
    let info_dir = Path::new(info::INFO_DIR);
    files.extend(info::plan(
        &outcomes,
        &theirs.list(info_dir)?,
        &ours.list(info_dir)?,
    ));

    let report = build_report(&status, &anc, &th, &ou);
    Ok(Some(Merged { files, report }))
}

fn merge_admin_files(
    ancestor: &dyn View,
    theirs: &dyn View,
    ours: &dyn View,
    choice: ConflictChoice,
) -> Result<Vec<Served>> {
    let mut files = Vec::new();
    let text = |v: &dyn View, rel: &Path| -> Result<Option<String>> { view::read_text(v, rel) };
    let read3 = |rel: &Path| -> Result<(Option<String>, Option<String>, Option<String>)> {
        Ok((text(ancestor, rel)?, text(theirs, rel)?, text(ours, rel)?))
    };
    let diversions = Path::new("var/lib/dpkg/diversions");
    let (a, t, o) = read3(diversions)?;
    if t.is_some() || o.is_some() {
        let (merged, _) = admin::merge_diversions(
            a.as_deref().unwrap_or(""),
            t.as_deref().unwrap_or(""),
            o.as_deref().unwrap_or(""),
            [
                &ancestor.source(diversions),
                &theirs.source(diversions),
                &ours.source(diversions),
            ],
            choice,
        )?;
        files.push(Served::content(diversions, merged));
    }
    let statoverride = Path::new("var/lib/dpkg/statoverride");
    let (a, t, o) = read3(statoverride)?;
    if t.is_some() || o.is_some() {
        for (v, content) in [(ancestor, &a), (theirs, &t), (ours, &o)] {
            if let Some(c) = content {
                admin::check_statoverride(c, &v.source(statoverride))?;
            }
        }
        let (merged, _) = admin::merge_line_file(
            a.as_deref().unwrap_or(""),
            t.as_deref().unwrap_or(""),
            o.as_deref().unwrap_or(""),
            admin::statoverride_key,
            choice,
        );
        files.push(Served::content(statoverride, merged));
    }
    // triggers/: every file but the lock is a line set.
    let triggers = Path::new("var/lib/dpkg/triggers");
    let mut names: Vec<String> = theirs.list(triggers)?;
    names.extend(ours.list(triggers)?);
    names.sort();
    names.dedup();
    for name in names.iter().filter(|n| n.as_str() != "Lock") {
        let rel = triggers.join(name);
        let (a, t, o) = (
            text(ancestor, &rel)?,
            text(theirs, &rel)?,
            text(ours, &rel)?,
        );
        if t.is_none() && o.is_none() {
            continue; // a directory, or gone from both
        }
        let (merged, _) = admin::merge_line_file(
            a.as_deref().unwrap_or(""),
            t.as_deref().unwrap_or(""),
            o.as_deref().unwrap_or(""),
            admin::whole_line,
            choice,
        );
        // An interest file nobody is interested in any more is removed, as dpkg does.
        if merged.is_empty() && !matches!(name.as_str(), "File" | "Unincorp") {
            files.push(Served::new(rel, Serve::Whiteout));
        } else {
            files.push(Served::content(rel, merged));
        }
    }
    Ok(files)
}

fn version_of<'a>(items: &'a [(PackageKey, Stanza)], key: &PackageKey) -> Option<&'a str> {
    items
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s.get("Version").unwrap_or(""))
}

/// dpkg's native architecture as the merged stanzas show it (the most common real one).
fn native_arch(stanzas: &[Stanza]) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in stanzas {
        if let Some(a) = s.get("Architecture").filter(|a| *a != "all") {
            *counts.entry(a).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(a, n)| (*n, std::cmp::Reverse(*a)))
        .map_or_else(String::new, |(a, _)| a.to_string())
}

fn build_report(
    status: &StanzaMerge,
    ancestor: &[(PackageKey, Stanza)],
    theirs: &[(PackageKey, Stanza)],
    ours: &[(PackageKey, Stanza)],
) -> PackageReport {
    let mut report = PackageReport::new(Format::Dpkg, "/var/lib/dpkg/status");
    let mut decided: Vec<&merge3::Decided<PackageKey>> = status.decided.iter().collect();
    decided.sort_by(|a, b| dpkg_order(&a.key, &b.key));
    for d in &decided {
        report.record(
            d.key.to_string(),
            d.case,
            d.winner,
            version_of(ancestor, &d.key),
            version_of(theirs, &d.key),
            version_of(ours, &d.key),
            version::compare,
        );
    }
    // App packages (kept from the app) whose dependencies the merged db breaks, and that
    // the app's own db satisfied.
    let arch = native_arch(&status.stanzas);
    let merged = relation::Installed::from_status(&status.stanzas, &arch);
    let before = relation::Installed::from_status(ours.iter().map(|(_, s)| s), &arch);
    for d in &decided {
        if d.winner != Winner::Ours || matches!(d.case, Case::Unchanged) {
            continue;
        }
        let Some((_, stanza)) = ours.iter().find(|(k, _)| *k == d.key) else {
            continue;
        };
        if !relation::is_installed(stanza) {
            continue;
        }
        let was: HashSet<String> = relation::unsatisfied(stanza, &before)
            .into_iter()
            .map(|u| u.relation)
            .collect();
        for u in relation::unsatisfied(stanza, &merged) {
            if !was.contains(&u.relation) {
                report.broken.push(Broken {
                    package: d.key.to_string(),
                    version: u.version,
                    field: u.field,
                    relation: u.relation,
                });
            }
        }
    }
    report
}

#[cfg(test)]
mod tests;
