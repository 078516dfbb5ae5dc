//! The package-level report of a rebase: what the base update did to the packages, what
//! the app keeps, what both changed and what was chosen, and which app packages the new
//! base no longer satisfies. Serializable for `--format json`; [`PackageReport::text`]
//! renders it for people.

use serde::{Deserialize, Serialize};

use super::merge3::{Case, Winner};

/// Which package manager a database belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Dpkg,
    Rpm,
    Apk,
}

/// A package at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// `name` or `name:arch` (dpkg Multi-Arch), `name.arch` (rpm).
    pub name: String,
    pub version: String,
}

/// A package the base update changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    pub name: String,
    pub old: String,
    pub new: String,
    /// False for a downgrade or a same-version rebuild.
    pub upgrade: bool,
}

/// A package both sides changed: what each holds and which one the merge kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BothChanged {
    pub name: String,
    pub case: Case,
    /// The old base's version (absent when both added it).
    pub old: Option<String>,
    pub base: Option<String>,
    pub app: Option<String>,
    pub chosen: Winner,
    /// `base` compared with `app` by the package manager's ordering (`<`, `=`, `>`).
    pub base_vs_app: Option<String>,
}

/// An app package whose dependency the merged database does not satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    pub package: String,
    pub version: String,
    /// `Depends`, `Pre-Depends`, `Requires`, `D:`.
    pub field: String,
    pub relation: String,
}

/// A generated file (cache, log) and what the rebase serves for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generated {
    pub path: String,
    pub decision: String,
}

/// Everything a person needs to trust the merged database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageReport {
    pub format: Format,
    /// The database's path in the image (`/var/lib/dpkg/status`).
    pub database: String,
    pub upgraded: Vec<VersionChange>,
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    /// Packages the app installed or changed, kept as the app has them.
    pub app_kept: Vec<Package>,
    /// Packages the app removed: they stay removed even where the base changed them.
    pub app_removed: Vec<Package>,
    pub both_changed: Vec<BothChanged>,
    pub broken: Vec<Broken>,
    pub generated: Vec<Generated>,
}

/// How many packages each part of the reports holds (what `status` shows per stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PackageCounts {
    pub upgraded: usize,
    pub added: usize,
    pub removed: usize,
    pub app_kept: usize,
    pub app_removed: usize,
    pub both_changed: usize,
    pub broken: usize,
}

impl PackageCounts {
    pub fn of(reports: &[PackageReport]) -> PackageCounts {
        let mut c = PackageCounts::default();
        for r in reports {
            c.upgraded += r.upgraded.len();
            c.added += r.added.len();
            c.removed += r.removed.len();
            c.app_kept += r.app_kept.len();
            c.app_removed += r.app_removed.len();
            c.both_changed += r.both_changed.len();
            c.broken += r.broken.len();
        }
        c
    }

    /// One line for people.
    pub fn text(&self) -> String {
        format!(
            "{} upgraded, {} added, {} removed by the base; {} app kept, {} app removed; {} both changed; {} broken",
            self.upgraded,
            self.added,
            self.removed,
            self.app_kept,
            self.app_removed,
            self.both_changed,
            self.broken
        )
    }
}

impl PackageReport {
    pub fn new(format: Format, database: &str) -> PackageReport {
        PackageReport {
            format,
            database: database.to_string(),
            upgraded: Vec::new(),
            added: Vec::new(),
            removed: Vec::new(),
            app_kept: Vec::new(),
            app_removed: Vec::new(),
            both_changed: Vec::new(),
            broken: Vec::new(),
            generated: Vec::new(),
        }
    }

    /// Files one side of a key carries into the report; `ordering` compares versions.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        name: String,
        case: Case,
        winner: Winner,
        old: Option<&str>,
        base: Option<&str>,
        app: Option<&str>,
        ordering: fn(&str, &str) -> std::cmp::Ordering,
    ) {
        let pkg = |v: Option<&str>| Package {
            name: name.clone(),
            version: v.unwrap_or("").to_string(),
        };
        match case {
            Case::Unchanged | Case::BothRemoved => {}
            Case::BothSame => {
                if let (Some(o), Some(n)) = (old, base) {
                    self.upgraded.push(VersionChange {
                        name: name.clone(),
                        old: o.to_string(),
                        new: n.to_string(),
                        upgrade: ordering(o, n).is_lt(),
                    });
                }
            }
            Case::BaseChanged => self.upgraded.push(VersionChange {
                name: name.clone(),
                old: old.unwrap_or("").to_string(),
                new: base.unwrap_or("").to_string(),
                upgrade: ordering(old.unwrap_or(""), base.unwrap_or("")).is_lt(),
            }),
            Case::BaseAdded => self.added.push(pkg(base)),
            Case::BaseRemoved => self.removed.push(pkg(old)),
            Case::AppAdded | Case::AppChanged => self.app_kept.push(pkg(app)),
            Case::AppRemoved | Case::AppRemovedBaseChanged => self.app_removed.push(pkg(old)),
            Case::BothChanged | Case::BothAdded | Case::BaseRemovedAppChanged => {
                self.both_changed.push(BothChanged {
                    name: name.clone(),
                    case,
                    old: old.map(str::to_string),
                    base: base.map(str::to_string),
                    app: app.map(str::to_string),
                    chosen: winner,
                    base_vs_app: match (base, app) {
                        (Some(b), Some(a)) => Some(
                            match ordering(b, a) {
                                std::cmp::Ordering::Less => "<",
                                std::cmp::Ordering::Equal => "=",
                                std::cmp::Ordering::Greater => ">",
                            }
                            .to_string(),
                        ),
                        _ => None,
                    },
                })
            }
        }
    }

    /// For people: one line per package change, grouped.
    pub fn text(&self) -> String {
        let mut out = format!("packages ({:?}, {}):\n", self.format, self.database).to_lowercase();
        for u in &self.upgraded {
            let verb = if u.upgrade { "upgraded" } else { "changed" };
            out.push_str(&format!(
                "  base {verb}: {} {} -> {}\n",
                u.name, u.old, u.new
            ));
        }
        for p in &self.added {
            out.push_str(&format!("  base added: {} {}\n", p.name, p.version));
        }
        for p in &self.removed {
            out.push_str(&format!("  base removed: {} {}\n", p.name, p.version));
        }
        for p in &self.app_kept {
            out.push_str(&format!("  app kept: {} {}\n", p.name, p.version));
        }
        for p in &self.app_removed {
            out.push_str(&format!(
                "  app removed (stays removed): {} {}\n",
                p.name, p.version
            ));
        }
        for b in &self.both_changed {
            out.push_str(&format!(
                "  both changed: {} base {} app {} ({}), kept {:?}\n",
                b.name,
                b.base.as_deref().unwrap_or("-"),
                b.app.as_deref().unwrap_or("-"),
                b.base_vs_app.as_deref().unwrap_or("?"),
                b.chosen
            ));
        }
        for b in &self.broken {
            out.push_str(&format!(
                "  BROKEN: {} {}: {} {} is not satisfied\n",
                b.package, b.version, b.field, b.relation
            ));
        }
        for g in &self.generated {
            out.push_str(&format!("  generated {}: {}\n", g.path, g.decision));
        }
        out
    }
}
