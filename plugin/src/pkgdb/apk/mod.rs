//! Alpine's apk: `/lib/apk/db/installed` (stanzas of `K:value` lines keyed by `P:`, each
//! with its `F:`/`R:`/`Z:`/`M:`/`a:` file lines, so file lists travel with the package),
//! `/etc/apk/world` (one dependency per line), `/lib/apk/db/scripts.tar` (one tar entry
//! per package script, named `name-version.<C: checksum>.<action>`) and
//! `/lib/apk/db/triggers` (`<C: checksum> <glob>...` per package), merged 3-way.
//! Facts from apk-tools 2.14 `src/database.c`.

pub mod version;

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::deb822::{self, bodies, Document, Stanza};
use super::error::{io_err, Error, Result};
use super::merge3::{self, ConflictChoice, Winner};
use super::report::{Broken, Format, PackageReport};
use super::view::{self, View};
use super::{Merged, Served};

pub const INSTALLED: &str = "lib/apk/db/installed";
pub const WORLD: &str = "etc/apk/world";
pub const SCRIPTS: &str = "lib/apk/db/scripts.tar";
pub const TRIGGERS: &str = "lib/apk/db/triggers";

type Keyed = Vec<(String, Stanza)>;

fn read_installed(view: &dyn View) -> Result<Option<(Document, Keyed)>> {
    let rel = Path::new(INSTALLED);
    let Some(text) = view::read_text(view, rel)? else {
        return Ok(None);
    };
    let file = view.source(rel);
    let doc = Document::parse(&text, &file)?;
    for s in &doc.stanzas {
        for item in &s.items {
            if let super::deb822::Item::Field { name, raw } = item {
                if name.len() != 1 {
                    return Err(Error::Malformed {
                        file: file.clone(),
                        line: s.line,
                        reason: format!("not an apk `K:value` line: {name}:{}", raw.trim_end()),
                    });
                }
            }
        }
    }
    let keyed = deb822::keyed(
        &doc,
        &file,
        |s| s.get_exact("P").map(str::to_string),
        "P: (package name)",
    )?;
    Ok(Some((doc, keyed)))
}

/// One scripts.tar entry.
#[derive(Clone)]
struct Script {
    header: tar::Header,
    name: String,
    data: Vec<u8>,
}

fn read_scripts(view: &dyn View) -> Result<Option<Vec<Script>>> {
    let rel = Path::new(SCRIPTS);
    let Some(bytes) = view.read(rel)? else {
        return Ok(None);
    };
    let file = view.source(rel);
    let bad = |e: std::io::Error| Error::BadBinary {
        file: file.clone(),
        offset: 0,
        reason: format!("not a readable tar: {e}"),
    };
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(bad)?;
        out.push(Script { header, name, data });
    }
    Ok(Some(out))
}

/// The `C:` checksum a scripts.tar entry belongs to.
fn script_checksum(name: &str) -> Option<&str> {
    let (rest, _action) = name.rsplit_once('.')?;
    Some(rest.rsplit_once('.')?.1)
}

/// Merges apk's databases of three trees; `None` when neither the new base nor the app
/// has `lib/apk/db/installed`.
pub fn merge(
    ancestor: &dyn View,
    theirs: &dyn View,
    ours: &dyn View,
    choice: ConflictChoice,
) -> Result<Option<Merged>> {
    let (t, o) = (read_installed(theirs)?, read_installed(ours)?);
    if t.is_none() && o.is_none() {
        return Ok(None);
    }
    let a = read_installed(ancestor)?;
    let items =
        |x: &Option<(Document, Keyed)>| x.as_ref().map(|(_, k)| k.clone()).unwrap_or_default();
    let (ak, tk, ok) = (items(&a), items(&t), items(&o));
    let decided = merge3::merge_keyed(&bodies(&ak), &bodies(&tk), &bodies(&ok), choice);
    let find = |items: &Keyed, k: &str| items.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone());
    // Winning stanzas, and which side each came from (for scripts and triggers).
    let mut chosen: Vec<(Stanza, Winner)> = Vec::new();
    for d in &decided {
        let s = match d.winner {
            Winner::Theirs => find(&tk, &d.key),
            Winner::Ours => find(&ok, &d.key),
            Winner::Removed => None,
        };
        if let Some(s) = s {
            chosen.push((s, d.winner));
        }
    }
    let like = o
        .as_ref()
        .or(t.as_ref())
        .map(|(d, _)| d.clone())
        .unwrap_or_default();
    let mut files = vec![Served::content(
        INSTALLED,
        Document::with_conventions_of(&like, chosen.iter().map(|(s, _)| s.clone()).collect())
            .write(),
    )];

    // world: a set of dependency strings keyed by package name.
    let read = |v: &dyn View, rel: &str| view::read_text(v, Path::new(rel));
    let (wa, wt, wo) = (
        read(ancestor, WORLD)?,
        read(theirs, WORLD)?,
        read(ours, WORLD)?,
    );
    if wt.is_some() || wo.is_some() {
        // apk writes world space-separated on one line in 2.x and one per line later:
        // treat both as one dependency per token.
        let lines = |s: &Option<String>| {
            s.as_deref()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (la, lt, lo) = (lines(&wa), lines(&wt), lines(&wo));
        let (merged, _) = merge3::merge_lines(&la, &lt, &lo, world_key, choice);
        files.push(Served::content(WORLD, merge3::join_lines(&merged)));
    }

    // scripts.tar: the winner's entries per package, in the merged package order.
    let (sa, st, so) = (
        read_scripts(ancestor)?,
        read_scripts(theirs)?,
        read_scripts(ours)?,
    );
    let _ = sa;
    if st.is_some() || so.is_some() {
        let (st, so) = (st.unwrap_or_default(), so.unwrap_or_default());
        let mut builder = tar::Builder::new(Vec::new());
        for (stanza, winner) in &chosen {
            let Some(csum) = stanza.get_exact("C") else {
                continue;
            };
            let source = if *winner == Winner::Theirs { &st } else { &so };
            for script in source
                .iter()
                .filter(|s| script_checksum(&s.name) == Some(csum))
            {
                let mut header = script.header.clone();
                builder
                    .append_data(&mut header, &script.name, script.data.as_slice())
                    .map_err(io_err(format!("writing {SCRIPTS}")))?;
            }
        }
        let bytes = builder
            .into_inner()
            .map_err(io_err(format!("writing {SCRIPTS}")))?;
        files.push(Served::content(SCRIPTS, bytes));
    }

    // triggers: the winner's line per package.
    let (tt, to) = (read(theirs, TRIGGERS)?, read(ours, TRIGGERS)?);
    if tt.is_some() || to.is_some() {
        let by_csum = |s: &Option<String>| -> HashMap<String, String> {
            s.as_deref()
                .unwrap_or("")
                .lines()
                .filter_map(|l| {
                    l.split_once(' ')
                        .map(|(c, _)| (c.to_string(), l.to_string()))
                })
                .collect()
        };
        let (mt, mo) = (by_csum(&tt), by_csum(&to));
        let mut text = String::new();
        for (stanza, winner) in &chosen {
            let Some(csum) = stanza.get_exact("C") else {
                continue;
            };
            let source = if *winner == Winner::Theirs { &mt } else { &mo };
            if let Some(line) = source.get(csum) {
                text.push_str(line);
                text.push('\n');
            }
        }
        files.push(Served::content(TRIGGERS, text));
    }

    let mut report = PackageReport::new(Format::Apk, "/lib/apk/db/installed");
    let ver = |items: &Keyed, k: &str| {
        items
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, s)| s.get_exact("V").unwrap_or("").to_string())
    };
    for d in &decided {
        report.record(
            d.key.clone(),
            d.case,
            d.winner,
            ver(&ak, &d.key).as_deref(),
            ver(&tk, &d.key).as_deref(),
            ver(&ok, &d.key).as_deref(),
            version::compare,
        );
    }
    let merged_set: Vec<&Stanza> = chosen.iter().map(|(s, _)| s).collect();
    let ours_set: Vec<&Stanza> = ok.iter().map(|(_, s)| s).collect();
    let kept: Vec<&Stanza> = chosen
        .iter()
        .filter(|(_, w)| *w == Winner::Ours)
        .map(|(s, _)| s)
        .collect();
    let before = unsatisfied(&ours_set, &kept);
    report.broken = unsatisfied(&merged_set, &kept)
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    Ok(Some(Merged { files, report }))
}

/// The package name of a world entry (`python3>=3.11` -> `python3`).
fn world_key(line: &str) -> &str {
    let l = line.trim();
    l.find(['<', '>', '=', '~', '@']).map_or(l, |i| &l[..i])
}

fn split_dep(dep: &str) -> (&str, Option<(&str, &str)>) {
    match dep.find(['<', '>', '=', '~']) {
        Some(i) => {
            let (name, rest) = dep.split_at(i);
            let op_len = rest
                .find(|c: char| !matches!(c, '<' | '>' | '=' | '~'))
                .unwrap_or(rest.len());
            (name, Some((&rest[..op_len], &rest[op_len..])))
        }
        None => (dep, None),
    }
}

fn op_holds(op: &str, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        "=" | "==" => ord == Equal,
        "<" => ord == Less,
        "<=" | "=<" => ord != Greater,
        ">" => ord == Greater,
        ">=" | "=>" => ord != Less,
        // `~` is a fuzzy (prefix) match: treat as satisfied when not older.
        _ => ord != Less,
    }
}

/// `D:` entries of `who` that nothing in `set` satisfies (`!conflicts` are skipped).
fn unsatisfied(set: &[&Stanza], who: &[&Stanza]) -> Vec<Broken> {
    let mut provided: HashMap<&str, Vec<Option<&str>>> = HashMap::new();
    for s in set {
        if let Some(name) = s.get_exact("P") {
            provided.entry(name).or_default().push(s.get_exact("V"));
        }
        for p in s.get_exact("p").unwrap_or("").split_whitespace() {
            let (name, v) = split_dep(p);
            provided.entry(name).or_default().push(v.map(|(_, v)| v));
        }
    }
    let mut out = Vec::new();
    for s in who {
        for dep in s.get_exact("D").unwrap_or("").split_whitespace() {
            if dep.starts_with('!') {
                continue;
            }
            let (name, constraint) = split_dep(dep);
            let ok = provided.get(name).is_some_and(|vs| {
                vs.iter().any(|v| match (constraint, v) {
                    (None, _) => true,
                    (Some((op, want)), Some(have)) => op_holds(op, version::compare(have, want)),
                    (Some(_), None) => false,
                })
            });
            if !ok {
                out.push(Broken {
                    package: s.get_exact("P").unwrap_or("?").to_string(),
                    version: s.get_exact("V").unwrap_or("").to_string(),
                    field: "D:".into(),
                    relation: dep.to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
