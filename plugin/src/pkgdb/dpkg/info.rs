//! Which `var/lib/dpkg/info/` files the rebased tree must serve, given which side won each
//! package's stanza.
//!
//! Files are `<pkg>.<ext>`, or `<pkg>:<arch>.<ext>` for Multi-Arch: same packages
//! (dpkg's `pkg_infodb_get_file`); extensions never contain a dot, package names may.
//! Per package the merge changed: the winner's files are served (from the new base or
//! from the app), the loser's extra files are hidden; a removed package's files are all
//! hidden. Packages both sides agree on are left to the overlay.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::pkgdb::deb822::PackageKey;
use crate::pkgdb::merge3::{Case, Winner};
use crate::pkgdb::{Serve, Served};

pub const INFO_DIR: &str = "var/lib/dpkg/info";

/// The package an info file belongs to: `(name, Some(arch))` for `name:arch.ext`,
/// `(name, None)` for `name.ext`; `None` for other files (`format`).
pub fn owner(file: &str) -> Option<(&str, Option<&str>)> {
    let (stem, ext) = file.rsplit_once('.')?;
    if ext.is_empty() || stem.is_empty() {
        return None;
    }
    Some(match stem.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (stem, None),
    })
}

/// The decision for one package key.
#[derive(Debug, Clone, Copy)]
pub struct PackageOutcome {
    pub case: Case,
    pub winner: Winner,
    /// `Multi-Arch: same` (its info files carry `:arch`).
    pub multi_arch_same: bool,
}

/// The served info files. `theirs` and `ours` are the file names in the new base's and
/// the app's `info/` directories.
pub fn plan(
    outcomes: &HashMap<PackageKey, PackageOutcome>,
    theirs: &[String],
    ours: &[String],
) -> Vec<Served> {
    // File owner -> the keys it can belong to.
    let mut by_file_owner: HashMap<(String, Option<String>), Vec<&PackageKey>> = HashMap::new();
    for (key, outcome) in outcomes {
        let owner = if outcome.multi_arch_same {
            (key.package.clone(), Some(key.arch.clone()))
        } else {
            (key.package.clone(), None)
        };
        by_file_owner.entry(owner).or_default().push(key);
    }
    let mut files: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for f in theirs {
        files.entry(f).or_default().0 = true;
    }
    for f in ours {
        files.entry(f).or_default().1 = true;
    }
    let mut out = Vec::new();
    for (file, (in_theirs, in_ours)) in files {
        let Some((name, arch)) = owner(file) else {
            continue;
        };
        let Some(keys) = by_file_owner.get(&(name.to_string(), arch.map(str::to_string))) else {
            continue;
        };
        // A name-only file with several keys (an arch switch): the key that is kept wins.
        let outcome = keys
            .iter()
            .filter_map(|k| outcomes.get(*k))
            .max_by_key(|o| match o.winner {
                Winner::Removed => 0,
                _ => 1,
            });
        let Some(outcome) = outcome else { continue };
        if matches!(outcome.case, Case::Unchanged | Case::BothSame) {
            continue;
        }
        let path: PathBuf = Path::new(INFO_DIR).join(file);
        let serve = match (outcome.winner, in_theirs, in_ours) {
            (Winner::Theirs, true, _) => Serve::NewBase,
            (Winner::Ours, _, true) => Serve::App,
            _ => Serve::Whiteout,
        };
        out.push(Served::new(path, serve));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(owner("python3.11.list"), Some(("python3.11", None)));
        assert_eq!(owner("libc6:amd64.md5sums"), Some(("libc6", Some("amd64"))));
        assert_eq!(owner("format"), None);
    }

    #[test]
    fn winners_files_are_served() {
        let key = |p: &str, a: &str| PackageKey {
            package: p.into(),
            arch: a.into(),
        };
        let o = |case, winner, mas| PackageOutcome {
            case,
            winner,
            multi_arch_same: mas,
        };
        let outcomes: HashMap<PackageKey, PackageOutcome> = [
            (
                key("zlib1g", "amd64"),
                o(Case::BaseChanged, Winner::Theirs, true),
            ),
            (
                key("python3", "amd64"),
                o(Case::AppAdded, Winner::Ours, false),
            ),
            (
                key("old", "all"),
                o(Case::BaseRemoved, Winner::Removed, false),
            ),
            (
                key("same", "amd64"),
                o(Case::Unchanged, Winner::Ours, false),
            ),
            (
                key("tzdata", "all"),
                o(Case::BaseChanged, Winner::Theirs, false),
            ),
        ]
        .into_iter()
        .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let theirs = s(&[
            "zlib1g:amd64.list",
            "zlib1g:amd64.triggers",
            "same.list",
            "tzdata.list",
            "format",
        ]);
        let ours = s(&[
            "zlib1g:amd64.list",
            "zlib1g:amd64.shlibs",
            "python3.list",
            "old.list",
            "same.list",
            "tzdata.list",
            "tzdata.postrm",
        ]);
        let got: Vec<(String, Serve)> = plan(&outcomes, &theirs, &ours)
            .into_iter()
            .map(|f| (f.path.display().to_string(), f.serve))
            .collect();
        let p = |f: &str| format!("{INFO_DIR}/{f}");
        assert_eq!(
            got,
            [
                (p("old.list"), Serve::Whiteout),
                (p("python3.list"), Serve::App),
                (p("tzdata.list"), Serve::NewBase),
                (p("tzdata.postrm"), Serve::Whiteout),
                (p("zlib1g:amd64.list"), Serve::NewBase),
                (p("zlib1g:amd64.shlibs"), Serve::Whiteout),
                (p("zlib1g:amd64.triggers"), Serve::NewBase),
            ]
        );
    }
}
