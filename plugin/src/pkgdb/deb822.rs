//! deb822 stanza files (dpkg `status`, `available`, apt `extended_states`), parsed so that
//! writing them back gives the same bytes: field order, continuation lines, comments,
//! blank-line separators and a missing final newline are all kept.
//!
//! Grammar (deb822(5), dpkg's `parsedb`): a stanza is a run of `Name: value` lines, each
//! optionally followed by continuation lines starting with a space or tab; stanzas are
//! separated by lines that are empty or hold only spaces/tabs. Lines starting with `#`
//! are comments. Anything else (a line with no colon, an empty field name, a continuation
//! line with no field above it) is malformed and reported as `file:line`.

use std::path::Path;

use super::error::{Error, Result};

/// One line group of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `name` is as written; `raw` is everything after the colon up to and including the
    /// last newline of the field (continuation lines included).
    Field { name: String, raw: String },
    /// A `#` line, newline included.
    Comment(String),
}

/// One stanza, with the separator text that precedes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// Blank lines before the stanza (empty for the first stanza of most files).
    pub leading: String,
    pub items: Vec<Item>,
    /// 1-based line number of the stanza's first line in its file (0 when built).
    pub line: usize,
}

/// A whole stanza file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    pub stanzas: Vec<Stanza>,
    /// Blank lines after the last stanza.
    pub trailing: String,
}

fn is_blank(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r'])
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
}

impl Document {
    /// Parses `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Document> {
        let malformed = |line: usize, reason: &str| Error::Malformed {
            file: file.to_path_buf(),
            line,
            reason: reason.to_string(),
        };
        let mut doc = Document::default();
        let mut pending = String::new();
        let mut current: Option<Stanza> = None;
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let number = index + 1;
            if is_blank(line) {
                if let Some(stanza) = current.take() {
                    doc.stanzas.push(stanza);
                }
                pending.push_str(line);
                continue;
            }
            let stanza = current.get_or_insert_with(|| Stanza {
                leading: std::mem::take(&mut pending),
                items: Vec::new(),
                line: number,
            });
            if line.starts_with(' ') || line.starts_with('\t') {
                match stanza.items.last_mut() {
                    Some(Item::Field { raw, .. }) => raw.push_str(line),
                    _ => {
                        return Err(malformed(
                            number,
                            "continuation line with no field before it",
                        ))
                    }
                }
                continue;
            }
            if line.starts_with('#') {
                stanza.items.push(Item::Comment(line.to_string()));
                continue;
            }
            let Some((name, raw)) = line.split_once(':') else {
                return Err(malformed(
                    number,
                    &format!(
                        "expected `Field: value`, found {:?}",
                        line.trim_end_matches('\n')
                    ),
                ));
            };
            if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
                return Err(malformed(number, &format!("invalid field name {name:?}")));
            }
            stanza.items.push(Item::Field {
                name: name.to_string(),
                raw: raw.to_string(),
            });
        }
        if let Some(stanza) = current.take() {
            doc.stanzas.push(stanza);
        }
        doc.trailing = pending;
        Ok(doc)
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Document> {
        let bytes = std::fs::read(path)
            .map_err(super::error::io_err(format!("reading {}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            Error::Malformed {
                file: path.to_path_buf(),
                line,
                reason: "not valid UTF-8".into(),
            }
        })?;
        Document::parse(&text, path)
    }

    /// The text again: byte-identical to the parsed input when nothing changed.
    pub fn write(&self) -> String {
        let mut out = String::new();
        for (i, stanza) in self.stanzas.iter().enumerate() {
            if i > 0 {
                // A stanza moved here from another file may lack a separator.
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                if stanza.leading.is_empty() && !out.ends_with("\n\n") {
                    out.push('\n');
                }
            }
            out.push_str(&stanza.leading);
            out.push_str(&stanza.body());
        }
        out.push_str(&self.trailing);
        out
    }

    /// Builds a document of `stanzas` in the file conventions of `like` (separators
    /// before each stanza, trailing text after the last).
    pub fn with_conventions_of(like: &Document, stanzas: Vec<Stanza>) -> Document {
        let separator = like
            .stanzas
            .get(1)
            .map(|s| s.leading.clone())
            .unwrap_or_else(|| "\n".into());
        let first = like
            .stanzas
            .first()
            .map(|s| s.leading.clone())
            .unwrap_or_default();
        let stanzas = stanzas
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.leading = if i == 0 {
                    first.clone()
                } else {
                    separator.clone()
                };
                s
            })
            .collect();
        Document {
            stanzas,
            trailing: like.trailing.clone(),
        }
    }
}

impl Stanza {
    /// The stanza's own text (fields and comments, no leading separator).
    pub fn body(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            match item {
                Item::Field { name, raw } => {
                    out.push_str(name);
                    out.push(':');
                    out.push_str(raw);
                }
                Item::Comment(c) => out.push_str(c),
            }
        }
        out
    }

    /// The body with a final newline, for comparing stanzas from different files.
    pub fn normalized(&self) -> String {
        let mut body = self.body();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        body
    }

    /// The first line of field `name` (case-insensitive), trimmed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.items.iter().find_map(|item| match item {
            Item::Field { name: n, raw } if n.eq_ignore_ascii_case(name) => {
                Some(raw.split('\n').next().unwrap_or("").trim())
            }
            _ => None,
        })
    }

    /// The first line of field `name`, matched case-sensitively (apk's `P:` and `p:` are
    /// different fields).
    pub fn get_exact(&self, name: &str) -> Option<&str> {
        self.items.iter().find_map(|item| match item {
            Item::Field { name: n, raw } if n == name => {
                Some(raw.split('\n').next().unwrap_or("").trim())
            }
            _ => None,
        })
    }

    /// The whole value of field `name`: first line and continuation lines joined, each
    /// trimmed (for list fields such as `Depends` that dpkg may wrap).
    pub fn get_folded(&self, name: &str) -> Option<String> {
        self.items.iter().find_map(|item| match item {
            Item::Field { name: n, raw } if n.eq_ignore_ascii_case(name) => Some(
                raw.split('\n')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
    }

    /// The continuation lines of field `name`, trimmed (for `Conffiles`).
    pub fn get_lines(&self, name: &str) -> Vec<&str> {
        self.items
            .iter()
            .find_map(|item| match item {
                Item::Field { name: n, raw } if n.eq_ignore_ascii_case(name) => Some(
                    raw.split('\n')
                        .skip(1)
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// dpkg's identity of a stanza: `Package` plus `Architecture` (empty when absent).
    pub fn package_key(&self) -> Option<PackageKey> {
        Some(PackageKey {
            package: self.get("Package")?.to_string(),
            arch: self.get("Architecture").unwrap_or("").to_string(),
        })
    }
}

/// The stanzas of `doc` keyed by `key`; a stanza without a key (`missing` names what it
/// lacks) or a second stanza for a key is malformed.
pub fn keyed<K>(
    doc: &Document,
    file: &Path,
    key: impl Fn(&Stanza) -> Option<K>,
    missing: &str,
) -> Result<Vec<(K, Stanza)>>
where
    K: Clone + Eq + std::hash::Hash + std::fmt::Display,
{
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in &doc.stanzas {
        let malformed = |reason: String| Error::Malformed {
            file: file.to_path_buf(),
            line: s.line,
            reason,
        };
        let k = key(s).ok_or_else(|| malformed(format!("stanza has no {missing}")))?;
        if !seen.insert(k.clone()) {
            return Err(malformed(format!("second stanza for {k}")));
        }
        out.push((k, s.clone()));
    }
    Ok(out)
}

/// Keyed stanzas as keyed texts (a stanza's identity for the 3-way merge is its content,
/// whatever file or position it came from).
pub fn bodies<K: Clone>(items: &[(K, Stanza)]) -> Vec<(K, String)> {
    items
        .iter()
        .map(|(k, s)| (k.clone(), s.normalized()))
        .collect()
}

/// `Package` + `Architecture`: one stanza per key (Multi-Arch: same packages have one
/// stanza per architecture).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PackageKey {
    pub package: String,
    pub arch: String,
}

impl std::fmt::Display for PackageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.arch.is_empty() {
            write!(f, "{}", self.package)
        } else {
            write!(f, "{}:{}", self.package, self.arch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) {
        let doc = Document::parse(text, Path::new("t")).unwrap();
        assert_eq!(doc.write(), text, "round trip of {text:?}");
    }

    #[test]
    fn round_trips_byte_exactly() {
        roundtrip("");
        roundtrip("\n\n");
        roundtrip("Package: a\nStatus: install ok installed\n\n");
        roundtrip("Package: a\nDescription: x\n long\n .\n more\n\nPackage: b\n");
        roundtrip("Package: a\n\n\n  \nPackage: b\nConffiles:\n /etc/x 0123\n\n");
        roundtrip("# comment\nPackage: a\n\tTabbed: continuation\n");
        roundtrip("Package:a\nX-Weird:value:with:colons\r\n\n");
    }

    #[test]
    fn fields_and_keys() {
        let doc = Document::parse(
            "Package: libc6\nArchitecture: amd64\nConffiles:\n /etc/a 11\n /etc/b 22\nDepends: a,\n b\n",
            Path::new("t"),
        )
        .unwrap();
        let s = &doc.stanzas[0];
        assert_eq!(s.get("package"), Some("libc6"));
        assert_eq!(s.get_lines("Conffiles"), ["/etc/a 11", "/etc/b 22"]);
        assert_eq!(s.get_folded("Depends").unwrap(), "a, b");
        assert_eq!(s.package_key().unwrap().to_string(), "libc6:amd64");
    }

    #[test]
    fn malformed_lines_are_reported_with_file_and_line() {
        let err = Document::parse("Package: a\nno colon here\n", Path::new("/x/status"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/x/status:2: expected `Field: value`, found \"no colon here\""
        );
        let err = Document::parse(" starts with a space\n", Path::new("s"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s:1: continuation line"), "{err}");
        let err = Document::parse("Package: a\n\n bad\n", Path::new("s"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s:3:"), "{err}");
        assert!(Document::parse(": empty name\n", Path::new("s")).is_err());
    }

    /// Generated stanza files (a small deterministic generator) round-trip exactly.
    #[test]
    fn generated_documents_round_trip() {
        let mut rng = crate::pkgdb::testgen::Rng::new(7);
        for _ in 0..500 {
            let text = crate::pkgdb::testgen::deb822_text(&mut rng);
            roundtrip(&text);
        }
    }
}
