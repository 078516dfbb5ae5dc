//! rpm: the installed header set merged 3-way, and a consistent rpmdb written for it.
//!
//! Packages are grouped by `name.arch`; a group's value is the set of its headers'
//! identities (SHA1HEADER) with their blobs, so an upgrade (1.0 -> 1.1) is "the base
//! changed `foo.noarch`" and multi-version packages (kernel, gpg-pubkey) are sets. The
//! merged database keeps the new base's `hnum`s for the headers it takes from the new
//! base and numbers the app's own headers after the new base's counter, in the app's
//! order: the layout a rebuild on the new base would produce.

pub mod header;
pub mod rich;
pub mod rpmdb;
pub mod vercmp;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use header::Header;
use rpmdb::{Db, Located};

use super::error::{io_err, Error, Result};
use super::merge3::{self, ConflictChoice, Winner};
use super::report::{Broken, Format, PackageReport};
use super::view::View;
use super::{Merged, Serve, Served};

/// One `name.arch` group's value: sorted `(identity, blob digest)` of its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group(Vec<(String, String)>);

fn groups(db: &Db) -> Vec<(String, Group)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for p in &db.packages {
        let key = format!("{}.{}", p.header.name(), p.header.arch());
        if !map.contains_key(&key) {
            order.push(key.clone());
        }
        map.entry(key).or_default().push((
            p.header.identity(),
            crate::chain::sha256_hex(&p.header.blob),
        ));
    }
    order
        .into_iter()
        .map(|k| {
            let mut v = map.remove(&k).unwrap_or_default();
            v.sort();
            (k, Group(v))
        })
        .collect()
}

fn versions(db: &Db, key: &str) -> Option<String> {
    let v: Vec<String> = db
        .packages
        .iter()
        .filter(|p| format!("{}.{}", p.header.name(), p.header.arch()) == key)
        .map(|p| p.header.evr())
        .collect();
    (!v.is_empty()).then(|| v.join(","))
}

fn read_side(view: &dyn View, scratch: &Path, name: &str) -> Result<Option<(PathBuf, Db)>> {
    match rpmdb::locate(view)? {
        None => Ok(None),
        Some(Located::Unsupported { dir, file }) => Err(Error::Unsupported {
            path: view.source(&dir.join(&file)),
            reason: format!(
                "rpm database in the {file} format (Berkeley DB/ndb) is not supported; only rpmdb.sqlite is merged"
            ),
        }),
        Some(Located::Sqlite { dir }) => {
            let scratch = scratch.join(name);
            std::fs::create_dir_all(&scratch)
                .map_err(io_err(format!("creating {}", scratch.display())))?;
            let db = rpmdb::read(view, &dir, &scratch)?;
            Ok(Some((dir, db)))
        }
    }
}

/// Merges the rpmdbs of three trees. The merged database is written under `scratch`
/// (a private, empty directory) and returned as content; `None` when neither the new
/// base nor the app has an rpmdb.
pub fn merge(
    ancestor: &dyn View,
    theirs: &dyn View,
    ours: &dyn View,
    choice: ConflictChoice,
    scratch: &Path,
) -> Result<Option<Merged>> {
    let t = read_side(theirs, scratch, "theirs")?;
    let o = read_side(ours, scratch, "ours")?;
    let (dir, template) = match (&t, &o) {
        (None, None) => return Ok(None),
        // The app's location and schema: it is the path the app's tools use.
        (_, Some((dir, db))) | (Some((dir, db)), None) => (dir.clone(), db.clone()),
    };
    let a = read_side(ancestor, scratch, "ancestor")?;
    let empty = || Db {
        packages: Vec::new(),
        sequence: 0,
        schema: Vec::new(),
        user_version: 0,
        wal: false,
        source: PathBuf::new(),
    };
    let adb = a.map(|(_, d)| d).unwrap_or_else(empty);
    let tdb = t.map(|(_, d)| d).unwrap_or_else(empty);
    let odb = o.map(|(_, d)| d).unwrap_or_else(empty);
    let decided = merge3::merge_keyed(&groups(&adb), &groups(&tdb), &groups(&odb), choice);
    let winners: HashMap<&str, Winner> =
        decided.iter().map(|d| (d.key.as_str(), d.winner)).collect();
    let group_of = |h: &Header| format!("{}.{}", h.name(), h.arch());

    // The new base's headers that stay keep their hnums; the app's own get new ones.
    let mut chosen: BTreeMap<u32, &Header> = BTreeMap::new();
    let theirs_ids: HashMap<String, u32> = tdb
        .packages
        .iter()
        .map(|p| (p.header.identity(), p.hnum))
        .collect();
    for p in &tdb.packages {
        if winners.get(group_of(&p.header).as_str()) == Some(&Winner::Theirs) {
            chosen.insert(p.hnum, &p.header);
        }
    }
    let mut next = tdb.sequence;
    for p in &odb.packages {
        if winners.get(group_of(&p.header).as_str()) != Some(&Winner::Ours) {
            continue;
        }
        let hnum = match theirs_ids.get(&p.header.identity()) {
            Some(&h) if !chosen.contains_key(&h) => h,
            _ => {
                next += 1;
                next
            }
        };
        chosen.insert(hnum, &p.header);
    }
    let packages: Vec<(u32, &Header)> = chosen.into_iter().collect();
    let out_dir = scratch.join("merged");
    std::fs::create_dir_all(&out_dir).map_err(io_err(format!("creating {}", out_dir.display())))?;
    let out = out_dir.join(rpmdb::SQLITE_NAME);
    rpmdb::write(&template, &packages, next, &out)?;
    let bytes = std::fs::read(&out).map_err(io_err(format!("reading {}", out.display())))?;

    let mut files = vec![Served::content(dir.join(rpmdb::SQLITE_NAME), bytes)];
    // A WAL or shared-memory file of any side would be applied to (or confuse) the
    // merged database: hide them.
    for suffix in ["-wal", "-shm"] {
        files.push(Served::new(
            dir.join(format!("{}{suffix}", rpmdb::SQLITE_NAME)),
            Serve::Whiteout,
        ));
    }

    let mut report = PackageReport::new(
        Format::Rpm,
        &crate::tree::display(&dir.join(rpmdb::SQLITE_NAME)),
    );
    for d in &decided {
        report.record(
            d.key.clone(),
            d.case,
            d.winner,
            versions(&adb, &d.key).as_deref(),
            versions(&tdb, &d.key).as_deref(),
            versions(&odb, &d.key).as_deref(),
            vercmp::compare_evr,
        );
    }
    // App-kept headers whose Requires the merged set breaks (and the app's own set met).
    let kept: Vec<&Header> = odb
        .packages
        .iter()
        .map(|p| &p.header)
        .filter(|h| winners.get(group_of(h).as_str()) == Some(&Winner::Ours))
        .collect();
    let merged_set: Vec<&Header> = packages.iter().map(|(_, h)| *h).collect();
    let ours_set: Vec<&Header> = odb.packages.iter().map(|p| &p.header).collect();
    let before: Vec<Broken> = unsatisfied(&ours_set, &kept);
    report.broken = unsatisfied(&merged_set, &kept)
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    Ok(Some(Merged { files, report }))
}

/// rpmds.h sense bits.
const SENSE_LESS: u64 = 1 << 1;
const SENSE_GREATER: u64 = 1 << 2;
const SENSE_EQUAL: u64 = 1 << 3;
const SENSE_RPMLIB: u64 = 1 << 24;

fn range_ok(req_flags: u64, req_evr: &str, prov_flags: u64, prov_evr: &str) -> bool {
    let req_sense = req_flags & (SENSE_LESS | SENSE_GREATER | SENSE_EQUAL);
    if req_sense == 0 || req_evr.is_empty() {
        return true;
    }
    let prov_sense = prov_flags & (SENSE_LESS | SENSE_GREATER | SENSE_EQUAL);
    if prov_sense == 0 || prov_evr.is_empty() {
        // An unversioned provide satisfies any versioned require (rpmdsCompare).
        return true;
    }
    let ord = vercmp::compare_evr(prov_evr, req_evr);
    // Both are ranges; they overlap when the provided point satisfies the require for
    // the common case of `=` provides, which is what packages carry.
    match ord {
        std::cmp::Ordering::Less => req_sense & SENSE_LESS != 0 || prov_sense & SENSE_GREATER != 0,
        std::cmp::Ordering::Equal => {
            req_sense & prov_sense & SENSE_EQUAL != 0
                || (req_sense & SENSE_LESS != 0 && prov_sense & SENSE_LESS != 0)
                || (req_sense & SENSE_GREATER != 0 && prov_sense & SENSE_GREATER != 0)
        }
        std::cmp::Ordering::Greater => {
            req_sense & SENSE_GREATER != 0 || prov_sense & SENSE_LESS != 0
        }
    }
}

/// Requires of `who` that nothing in `set` provides (file requires are checked against
/// the headers' file lists).
fn unsatisfied(set: &[&Header], who: &[&Header]) -> Vec<Broken> {
    let mut provides: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut files: std::collections::HashSet<String> = std::collections::HashSet::new();
    for h in set {
        for (n, f, v) in h.provides() {
            provides.entry(n).or_default().push((f, v));
        }
        let dirs = h.strings(header::TAG_DIRNAMES);
        let idx = h.ints(1116);
        for (i, b) in h.strings(header::TAG_BASENAMES).iter().enumerate() {
            if let Some(d) = idx.get(i).and_then(|&d| dirs.get(d as usize)) {
                files.insert(format!("{d}{b}"));
            }
        }
    }
    let mut out = Vec::new();
    for h in who {
        for (name, flags, evr) in h.requires() {
            if flags & SENSE_RPMLIB != 0 || name.starts_with("rpmlib(") || name.starts_with('(') {
                continue;
            }
            let ok = if name.starts_with('/') {
                files.contains(&name) || provides.contains_key(&name)
            } else {
                provides
                    .get(&name)
                    .is_some_and(|ps| ps.iter().any(|(pf, pv)| range_ok(flags, &evr, *pf, pv)))
            };
            if !ok {
                let op = match flags & (SENSE_LESS | SENSE_GREATER | SENSE_EQUAL) {
                    x if x == SENSE_LESS => "<",
                    x if x == SENSE_LESS | SENSE_EQUAL => "<=",
                    x if x == SENSE_EQUAL => "=",
                    x if x == SENSE_GREATER | SENSE_EQUAL => ">=",
                    x if x == SENSE_GREATER => ">",
                    _ => "",
                };
                out.push(Broken {
                    package: h.nevra(),
                    version: h.evr(),
                    field: "Requires".into(),
                    relation: if op.is_empty() {
                        name
                    } else {
                        format!("{name} {op} {evr}")
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
