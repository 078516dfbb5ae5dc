//! dpkg's line-based admin files: `diversions` (three-line records: path, diverted-to,
//! package or `:`), `statoverride` (`user group mode path`), and `triggers/` (`File`:
//! `path package[/noawait]`; `Unincorp`: `trigger package...`; one interest file per
//! trigger name listing `package[/noawait]`). Each is a 3-way set merge keyed by its
//! natural key.

use std::path::Path;

use crate::pkgdb::error::{Error, Result};
use crate::pkgdb::merge3::{self, ConflictChoice};

/// `diversions` records, each `(from, to, package)`, as line triples.
pub fn parse_diversions(text: &str, file: &Path) -> Result<Vec<[String; 3]>> {
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(3) {
        return Err(Error::Malformed {
            file: file.to_path_buf(),
            line: lines.len(),
            reason: format!(
                "{} lines: diversions are records of three lines (path, diverted-to, package)",
                lines.len()
            ),
        });
    }
    Ok(lines
        .chunks(3)
        .map(|c| [c[0].to_string(), c[1].to_string(), c[2].to_string()])
        .collect())
}

/// Merges `diversions` keyed by the diverted path.
pub fn merge_diversions(
    ancestor: &str,
    theirs: &str,
    ours: &str,
    files: [&Path; 3],
    choice: ConflictChoice,
) -> Result<(String, Vec<String>)> {
    let as_keyed = |text: &str, file: &Path| -> Result<Vec<(String, [String; 3])>> {
        Ok(parse_diversions(text, file)?
            .into_iter()
            .map(|r| (r[0].clone(), r))
            .collect())
    };
    let (a, t, o) = (
        as_keyed(ancestor, files[0])?,
        as_keyed(theirs, files[1])?,
        as_keyed(ours, files[2])?,
    );
    let decided = merge3::merge_keyed(&a, &t, &o, choice);
    let find = |items: &[(String, [String; 3])], k: &str| {
        items
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, r)| r.clone())
    };
    let mut records: Vec<[String; 3]> = Vec::new();
    let mut conflicts = Vec::new();
    // Ours' order first, then theirs' additions (diversions are a set; dpkg rewrites it
    // in its own hash order, so order is not meaningful).
    let mut ordered: Vec<&merge3::Decided<String>> = decided.iter().collect();
    let rank = |k: &str| o.iter().position(|(key, _)| key == k).unwrap_or(usize::MAX);
    ordered.sort_by_key(|d| rank(&d.key));
    for d in ordered {
        if d.case.is_conflict() {
            conflicts.push(d.key.clone());
        }
        let record = match d.winner {
            merge3::Winner::Ours => find(&o, &d.key),
            merge3::Winner::Theirs => find(&t, &d.key),
            merge3::Winner::Removed => None,
        };
        records.extend(record);
    }
    let mut text = String::new();
    for r in records {
        for line in r {
            text.push_str(&line);
            text.push('\n');
        }
    }
    Ok((text, conflicts))
}

/// The key of a `statoverride` line: its path (everything after the third field).
pub fn statoverride_key(line: &str) -> &str {
    line.splitn(4, ' ').nth(3).unwrap_or(line)
}

/// Checks a `statoverride` file: every line is `user group mode path`.
pub fn check_statoverride(text: &str, file: &Path) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        let ok = fields.len() == 4 && u32::from_str_radix(fields[2], 8).is_ok();
        if !ok && !line.trim().is_empty() {
            return Err(Error::Malformed {
                file: file.to_path_buf(),
                line: i + 1,
                reason: format!("expected `user group mode path`, found {line:?}"),
            });
        }
    }
    Ok(())
}

/// Merges one line-set file (statoverride by path; triggers files by whole line).
pub fn merge_line_file(
    ancestor: &str,
    theirs: &str,
    ours: &str,
    key: fn(&str) -> &str,
    choice: ConflictChoice,
) -> (String, Vec<String>) {
    let (lines, conflicts) = merge3::merge_lines(ancestor, theirs, ours, key, choice);
    (merge3::join_lines(&lines), conflicts)
}

/// Whole line as its own key.
pub fn whole_line(line: &str) -> &str {
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversions_merge_by_path() {
        let a = "/bin/x\n/bin/x.distrib\nbase-pkg\n";
        let t = "/bin/x\n/bin/x.distrib\nbase-pkg\n/bin/y\n/bin/y.orig\nnew-pkg\n";
        let o = "/bin/x\n/bin/x.distrib\nbase-pkg\n/usr/bin/app\n/usr/bin/app.real\n:\n";
        let p = Path::new("diversions");
        let (text, conflicts) = merge_diversions(a, t, o, [p, p, p], ConflictChoice::Ours).unwrap();
        assert_eq!(
            text,
            "/bin/x\n/bin/x.distrib\nbase-pkg\n/usr/bin/app\n/usr/bin/app.real\n:\n/bin/y\n/bin/y.orig\nnew-pkg\n"
        );
        assert!(conflicts.is_empty());
        let err = merge_diversions("a\nb\n", "", "", [p, p, p], ConflictChoice::Ours)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("diversions:2:"), "{err}");
    }

    #[test]
    fn statoverride_by_path() {
        let a = "root root 0755 /usr/bin/a\n";
        let t = "root root 0755 /usr/bin/a\nroot shadow 2755 /usr/bin/chage\n";
        let o = "root root 4755 /usr/bin/a\n";
        let (text, _) = merge_line_file(a, t, o, statoverride_key, ConflictChoice::Ours);
        assert_eq!(
            text,
            "root root 4755 /usr/bin/a\nroot shadow 2755 /usr/bin/chage\n"
        );
        assert!(check_statoverride("root root 0755 /x\nbad\n", Path::new("s")).is_err());
    }
}
