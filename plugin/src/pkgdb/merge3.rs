//! The 3-way merge every package database shares: per key, compare the ancestor (old
//! base), theirs (new base) and ours (the app layers' result) and decide which side's
//! value the merged database holds.
//!
//! Rules (issue 10): a key only one side changed takes that side; keys added on one side
//! are added; a key the app removed stays removed (even if the base changed it); a key
//! the base removed goes unless the app changed it; keys both sides changed differently
//! are conflicts, settled by [`ConflictChoice`] (default: the app's, because the app's
//! files are the ones the overlay serves).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// What happened to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    Unchanged,
    BaseChanged,
    AppChanged,
    /// Both sides made the same change.
    BothSame,
    /// Both sides changed it differently (a conflict).
    BothChanged,
    BaseAdded,
    AppAdded,
    /// Both added it differently (a conflict).
    BothAdded,
    BaseRemoved,
    AppRemoved,
    BothRemoved,
    /// The base removed what the app changed (a conflict).
    BaseRemovedAppChanged,
    /// The app removed what the base changed: stays removed.
    AppRemovedBaseChanged,
}

impl Case {
    /// True for the cases a person must hear about.
    pub fn is_conflict(self) -> bool {
        matches!(
            self,
            Case::BothChanged | Case::BothAdded | Case::BaseRemovedAppChanged
        )
    }
}

/// Which side a conflict takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictChoice {
    /// The app's value (the files the overlay serves are the app's).
    #[default]
    Ours,
    /// The new base's value (the caller must then also serve the base's files).
    Theirs,
}

/// Where the merged value of a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Winner {
    Theirs,
    Ours,
    /// The key is not in the merged database.
    Removed,
}

/// Classifies one key from its three values (`None` = absent on that side).
pub fn classify<V: PartialEq + ?Sized>(
    ancestor: Option<&V>,
    theirs: Option<&V>,
    ours: Option<&V>,
) -> Case {
    match (ancestor, theirs, ours) {
        (Some(a), Some(t), Some(o)) => match (t == a, o == a) {
            (true, true) => Case::Unchanged,
            (false, true) => Case::BaseChanged,
            (true, false) => Case::AppChanged,
            (false, false) if t == o => Case::BothSame,
            (false, false) => Case::BothChanged,
        },
        (Some(a), None, Some(o)) => {
            if o == a {
                Case::BaseRemoved
            } else {
                Case::BaseRemovedAppChanged
            }
        }
        (Some(a), Some(t), None) => {
            if t == a {
                Case::AppRemoved
            } else {
                Case::AppRemovedBaseChanged
            }
        }
        (Some(_), None, None) => Case::BothRemoved,
        (None, Some(t), Some(o)) => {
            if t == o {
                Case::BothSame
            } else {
                Case::BothAdded
            }
        }
        (None, Some(_), None) => Case::BaseAdded,
        (None, None, Some(_)) => Case::AppAdded,
        // Unreachable for keys taken from the three inputs; harmless otherwise.
        (None, None, None) => Case::BothRemoved,
    }
}

impl Case {
    /// The side whose value the merge keeps.
    pub fn winner(self, choice: ConflictChoice) -> Winner {
        match self {
            Case::Unchanged | Case::AppChanged | Case::AppAdded => Winner::Ours,
            Case::BaseChanged | Case::BaseAdded | Case::BothSame => Winner::Theirs,
            Case::BaseRemoved
            | Case::AppRemoved
            | Case::BothRemoved
            | Case::AppRemovedBaseChanged => Winner::Removed,
            Case::BothChanged | Case::BothAdded | Case::BaseRemovedAppChanged => {
                match (self, choice) {
                    (_, ConflictChoice::Ours) => Winner::Ours,
                    (Case::BaseRemovedAppChanged, ConflictChoice::Theirs) => Winner::Removed,
                    (_, ConflictChoice::Theirs) => Winner::Theirs,
                }
            }
        }
    }
}

/// One key's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<K> {
    pub key: K,
    pub case: Case,
    pub winner: Winner,
}

/// Merges three keyed sequences. The result lists every key of the three inputs once:
/// first theirs' keys in theirs' order, then keys only ours or the ancestor has, in ours'
/// order and then the ancestor's (a rebuild installs the app after the new base).
pub fn merge_keyed<'a, K, V>(
    ancestor: &'a [(K, V)],
    theirs: &'a [(K, V)],
    ours: &'a [(K, V)],
    choice: ConflictChoice,
) -> Vec<Decided<K>>
where
    K: Eq + Hash + Clone,
    V: PartialEq,
{
    let index = |items: &[(K, V)]| -> HashMap<K, usize> {
        items
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect()
    };
    let (ai, ti, oi) = (index(ancestor), index(theirs), index(ours));
    let value = |items: &'a [(K, V)], idx: &HashMap<K, usize>, key: &K| -> Option<&'a V> {
        idx.get(key).and_then(|&i| items.get(i)).map(|(_, v)| v)
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let keys = theirs
        .iter()
        .chain(ours.iter())
        .chain(ancestor.iter())
        .map(|(k, _)| k);
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let a = value(ancestor, &ai, key);
        let t = value(theirs, &ti, key);
        let o = value(ours, &oi, key);
        let case = classify(a, t, o);
        out.push(Decided {
            key: key.clone(),
            case,
            winner: case.winner(choice),
        });
    }
    out
}

/// A 3-way merge of line sets (diversions, statoverride, triggers, apk world): lines are
/// keyed by `key`; the result keeps ours' order, then adds theirs' new lines in theirs'
/// order. Returns the merged lines and the keys both sides changed differently.
pub fn merge_lines<'a, F>(
    ancestor: &'a str,
    theirs: &'a str,
    ours: &'a str,
    key: F,
    choice: ConflictChoice,
) -> (Vec<&'a str>, Vec<String>)
where
    F: Fn(&'a str) -> &'a str,
{
    let keyed = |text: &'a str| -> Vec<(&'a str, &'a str)> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (key(l), l))
            .collect()
    };
    let (a, t, o) = (keyed(ancestor), keyed(theirs), keyed(ours));
    let tmap: BTreeMap<&str, &str> = t.iter().copied().collect();
    let omap: BTreeMap<&str, &str> = o.iter().copied().collect();
    let decided = merge_keyed(&a, &t, &o, choice);
    let winners: HashMap<&str, Winner> = decided.iter().map(|d| (d.key, d.winner)).collect();
    let conflicts = decided
        .iter()
        .filter(|d| d.case.is_conflict())
        .map(|d| d.key.to_string())
        .collect();
    let mut out = Vec::new();
    for (k, line) in &o {
        match winners.get(k) {
            Some(Winner::Ours) => out.push(*line),
            Some(Winner::Theirs) => out.extend(tmap.get(k).copied()),
            _ => {}
        }
    }
    for (k, line) in &t {
        if !omap.contains_key(k) && winners.get(k) == Some(&Winner::Theirs) {
            out.push(*line);
        }
    }
    (out, conflicts)
}

/// Joins lines into a file, each newline-terminated (empty input stays empty).
pub fn join_lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// How an append-only log was merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogMerge {
    /// The new base's log plus what the app appended to the old base's.
    Appended,
    /// The app did not write to it: the new base's log.
    Theirs,
    /// The app rewrote it (not an append): the app's log is kept.
    Ours,
}

/// Merges an append-only log (dpkg.log, apt history): the new base's content followed by
/// what the app appended to the old base's, which is what a rebuild's log would hold.
pub fn merge_log(ancestor: &[u8], theirs: &[u8], ours: &[u8]) -> (Vec<u8>, LogMerge) {
    if ours == ancestor {
        return (theirs.to_vec(), LogMerge::Theirs);
    }
    match ours.strip_prefix(ancestor) {
        Some(appended) => {
            let mut out = theirs.to_vec();
            out.extend_from_slice(appended);
            (out, LogMerge::Appended)
        }
        None => (ours.to_vec(), LogMerge::Ours),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case() {
        let c = |a: Option<&str>, t: Option<&str>, o: Option<&str>| classify(a, t, o);
        assert_eq!(c(Some("1"), Some("1"), Some("1")), Case::Unchanged);
        assert_eq!(c(Some("1"), Some("2"), Some("1")), Case::BaseChanged);
        assert_eq!(c(Some("1"), Some("1"), Some("2")), Case::AppChanged);
        assert_eq!(c(Some("1"), Some("2"), Some("2")), Case::BothSame);
        assert_eq!(c(Some("1"), Some("2"), Some("3")), Case::BothChanged);
        assert_eq!(c(None, Some("2"), None), Case::BaseAdded);
        assert_eq!(c(None, None, Some("2")), Case::AppAdded);
        assert_eq!(c(None, Some("2"), Some("3")), Case::BothAdded);
        assert_eq!(c(Some("1"), None, Some("1")), Case::BaseRemoved);
        assert_eq!(c(Some("1"), Some("1"), None), Case::AppRemoved);
        assert_eq!(c(Some("1"), Some("2"), None), Case::AppRemovedBaseChanged);
        assert_eq!(c(Some("1"), None, Some("3")), Case::BaseRemovedAppChanged);
        assert_eq!(c(Some("1"), None, None), Case::BothRemoved);
        let d = ConflictChoice::Ours;
        assert_eq!(Case::AppRemovedBaseChanged.winner(d), Winner::Removed);
        assert_eq!(Case::BothChanged.winner(d), Winner::Ours);
        assert_eq!(
            Case::BothChanged.winner(ConflictChoice::Theirs),
            Winner::Theirs
        );
        assert_eq!(
            Case::BaseRemovedAppChanged.winner(ConflictChoice::Theirs),
            Winner::Removed
        );
    }

    #[test]
    fn line_sets() {
        let (lines, conflicts) = merge_lines(
            "a 1\nb 1\nc 1\n",
            "a 1\nb 2\nd 1\n",
            "a 1\nc 1\ne 1\n",
            |l| l.split(' ').next().unwrap_or(l),
            ConflictChoice::Ours,
        );
        // b: app removed it (stays removed); c: base removed; d: base added; e: app added.
        assert_eq!(lines, ["a 1", "e 1", "d 1"]);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn logs() {
        assert_eq!(
            merge_log(b"a\n", b"a\nb\n", b"a\napp\n"),
            (b"a\nb\napp\n".to_vec(), LogMerge::Appended)
        );
        assert_eq!(merge_log(b"a\n", b"b\n", b"a\n").1, LogMerge::Theirs);
        assert_eq!(merge_log(b"a\n", b"b\n", b"x\n").1, LogMerge::Ours);
    }
}
