//! dpkg relation fields (`Depends`, `Pre-Depends`, `Provides`; deb-control(5)) and whether
//! a status database satisfies them.
//!
//! `a (>= 1), b | c:any, d [amd64] <!nocheck>`: `,` is "and", `|` is "or"; a term is a
//! name with an optional `:arch` qualifier (`:any`, `:native` or an architecture) and an
//! optional `(op version)` with `<<`, `<=`, `=`, `>=`, `>>` (and the obsolete `<`, `>`).
//! Architecture lists and build profiles only appear in source packages and are ignored.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::version;
use crate::pkgdb::deb822::Stanza;

/// A version operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    #[serde(rename = "<<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">>")]
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One alternative: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub name: String,
    pub arch: Option<String>,
    pub constraint: Option<(Op, String)>,
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// `a | b | c`: satisfied when any term is.
pub type Alternatives = Vec<Term>;

/// Parses a relation field into its `,`-separated groups of `|` alternatives.
pub fn parse(field: &str) -> Result<Vec<Alternatives>, String> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            alts.push(parse_term(alt.trim()).map_err(|e| format!("{e} in {group:?}"))?);
        }
        groups.push(alts);
    }
    Ok(groups)
}

fn parse_term(text: &str) -> Result<Term, String> {
    // `[arch list]` and `<profiles>` come last and only in source packages: cut them off.
    let mut parens = 0i32;
    let end = text
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '(' => parens += 1,
                ')' => parens -= 1,
                _ => {}
            }
            parens == 0 && (c == '[' || c == '<')
        })
        .map_or(text.len(), |(i, _)| i);
    let s = &text[..end];
    let s = s.trim();
    let (head, constraint) = match s.split_once('(') {
        Some((head, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("unclosed version in {text:?}"))?
                .trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let (op, ver) = inner.split_at(split);
            let op = Op::parse(op.trim())
                .ok_or_else(|| format!("bad version operator {op:?} in {text:?}"))?;
            let ver = ver.trim();
            version::Version::parse(ver)?;
            (head.trim(), Some((op, ver.to_string())))
        }
        None => (s, None),
    };
    if head.is_empty() || head.contains(char::is_whitespace) {
        return Err(format!("bad package name {head:?}"));
    }
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    Ok(Term {
        name: name.to_string(),
        arch,
        constraint,
    })
}

/// What can satisfy a dependency: installed packages and what they provide.
#[derive(Debug, Default)]
pub struct Installed {
    /// name -> (version, architecture, Multi-Arch value) of each installed instance.
    packages: HashMap<String, Vec<(String, String, String)>>,
    /// virtual name -> (provided version if any, provider's architecture).
    provides: HashMap<String, Vec<(Option<String>, String)>>,
    native_arch: String,
}

/// True when a stanza's package counts for dependencies: unpacked-and-configured states.
pub fn is_installed(stanza: &Stanza) -> bool {
    stanza
        .get("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .is_some_and(|state| matches!(state, "installed" | "triggers-pending" | "triggers-awaited"))
}

impl Installed {
    /// Indexes the installed stanzas of a status database; `native_arch` is dpkg's
    /// native architecture (`/var/lib/dpkg/arch` or the most common one).
    pub fn from_status<'a>(
        stanzas: impl IntoIterator<Item = &'a Stanza>,
        native_arch: &str,
    ) -> Installed {
        let mut db = Installed {
            native_arch: native_arch.to_string(),
            ..Installed::default()
        };
        for s in stanzas.into_iter().filter(|s| is_installed(s)) {
            let (Some(name), Some(ver)) = (s.get("Package"), s.get("Version")) else {
                continue;
            };
            let arch = s.get("Architecture").unwrap_or("").to_string();
            let ma = s.get("Multi-Arch").unwrap_or("no").to_string();
            db.packages.entry(name.to_string()).or_default().push((
                ver.to_string(),
                arch.clone(),
                ma,
            ));
            if let Some(provides) = s.get_folded("Provides") {
                for alts in parse(&provides).unwrap_or_default() {
                    for t in alts {
                        db.provides
                            .entry(t.name)
                            .or_default()
                            .push((t.constraint.map(|(_, v)| v), arch.clone()));
                    }
                }
            }
        }
        db
    }

    fn arch_matches(&self, term: &Term, depender_arch: &str, arch: &str, ma: &str) -> bool {
        let depender = if depender_arch == "all" || depender_arch.is_empty() {
            self.native_arch.as_str()
        } else {
            depender_arch
        };
        match term.arch.as_deref() {
            Some("any") => ma == "allowed" || arch == "all" || ma == "foreign",
            Some("native") => arch == self.native_arch || arch == "all",
            Some(a) => arch == a,
            None => arch == depender || arch == "all" || ma == "foreign",
        }
    }

    /// True when some installed package (or a provider) satisfies `term` for a package
    /// of architecture `depender_arch`.
    pub fn satisfies(&self, term: &Term, depender_arch: &str) -> bool {
        let real = self.packages.get(&term.name).is_some_and(|instances| {
            instances.iter().any(|(ver, arch, ma)| {
                self.arch_matches(term, depender_arch, arch, ma)
                    && term
                        .constraint
                        .as_ref()
                        .is_none_or(|(op, want)| op.holds(version::compare(ver, want)))
            })
        });
        real || self.provides.get(&term.name).is_some_and(|providers| {
            providers.iter().any(|(provided, arch)| {
                let arch_ok = term.arch.as_deref().is_none_or(|a| a == "any" || a == arch);
                arch_ok
                    && match (&term.constraint, provided) {
                        (None, _) => true,
                        (Some((op, want)), Some(v)) => op.holds(version::compare(v, want)),
                        (Some(_), None) => false,
                    }
            })
        })
    }
}

/// One unsatisfied relation of one package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unsatisfied {
    pub package: String,
    pub version: String,
    pub field: String,
    /// The `|` group nothing satisfies, as written.
    pub relation: String,
}

/// The `Depends`/`Pre-Depends` of `stanza` that `installed` does not satisfy.
pub fn unsatisfied(stanza: &Stanza, installed: &Installed) -> Vec<Unsatisfied> {
    let mut out = Vec::new();
    let arch = stanza.get("Architecture").unwrap_or("");
    for field in ["Pre-Depends", "Depends"] {
        let Some(value) = stanza.get_folded(field) else {
            continue;
        };
        let groups = match parse(&value) {
            Ok(g) => g,
            Err(e) => {
                out.push(Unsatisfied {
                    package: stanza.get("Package").unwrap_or("?").to_string(),
                    version: stanza.get("Version").unwrap_or("").to_string(),
                    field: field.to_string(),
                    relation: format!("unparsable: {e}"),
                });
                continue;
            }
        };
        for alts in groups {
            if !alts.iter().any(|t| installed.satisfies(t, arch)) {
                out.push(Unsatisfied {
                    package: stanza.get("Package").unwrap_or("?").to_string(),
                    version: stanza.get("Version").unwrap_or("").to_string(),
                    field: field.to_string(),
                    relation: alts
                        .iter()
                        .map(Term::to_string)
                        .collect::<Vec<_>>()
                        .join(" | "),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkgdb::deb822::Document;
    use std::path::Path;

    #[test]
    fn parses_relations() {
        let groups = parse(
            "libc6 (>= 2.34), python3:any | python3-minimal (<< 3.12~), d [amd64] <!nocheck>",
        )
        .unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0][0].constraint, Some((Op::Ge, "2.34".into())));
        assert_eq!(groups[1][0].arch.as_deref(), Some("any"));
        assert_eq!(groups[1][1].to_string(), "python3-minimal (<< 3.12~)");
        assert_eq!(groups[2][0].name, "d");
        assert!(parse("a (>= )").is_err());
        assert!(parse("a (~ 1)").is_err());
        assert!(parse("a (>= 1").is_err());
    }

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9\n\n\
Package: perl-base\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.36.0-7\nProvides: perlapi-5.36.0\n\n\
Package: mawk\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: foreign\nVersion: 1.3.4\nProvides: awk\n\n\
Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
Package: app\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\nDepends: libc6 (>= 2.36), perlapi-5.36.0, awk | gawk, gone, perl-base (>> 5.36.0-7)\nPre-Depends: libc6:amd64 (<< 3)\n";

    #[test]
    fn satisfaction_against_a_status_db() {
        let doc = Document::parse(STATUS, Path::new("status")).unwrap();
        let db = Installed::from_status(&doc.stanzas, "amd64");
        let app = doc.stanzas.last().unwrap();
        let broken: Vec<String> = unsatisfied(app, &db)
            .into_iter()
            .map(|u| u.relation)
            .collect();
        assert_eq!(broken, ["gone", "perl-base (>> 5.36.0-7)"]);
        let t = |s: &str| parse(s).unwrap().remove(0).remove(0);
        assert!(db.satisfies(&t("libc6 (= 2.36-9)"), "all"));
        assert!(!db.satisfies(&t("libc6:i386"), "amd64"));
        assert!(
            !db.satisfies(&t("awk (>= 1)"), "amd64"),
            "unversioned provide"
        );
        assert!(db.satisfies(&t("mawk"), "i386"), "Multi-Arch: foreign");
    }
}
