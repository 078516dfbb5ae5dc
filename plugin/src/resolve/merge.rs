//! Three-way merge of line-keyed files (passwd, group, shadow, gshadow), keyed by name.
//!
//! Ancestor = the old base's file, "base" = the new base's, "app" = the app layers'. The
//! app's order and non-keyed lines (comments, blanks) are kept; per key: a side that left
//! the line as in the ancestor takes the other side's change; lines both changed keep the
//! app's and are reported; keys only the new base added are inserted after the key that
//! precedes them in the new base; keys the new base dropped go unless the app changed them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// File names merged this way.
pub const MERGEABLE: &[&str] = &["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];

pub fn is_mergeable(path: &str) -> bool {
    MERGEABLE.contains(&path)
}

/// The merged text and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergeOutcome {
    pub text: String,
    /// Keys the new base added that are now in the file.
    pub from_base: Vec<String>,
    /// Keys the new base changed whose new line was taken.
    pub updated_by_base: Vec<String>,
    /// Keys the new base dropped and the app had left alone: dropped.
    pub dropped_by_base: Vec<String>,
    /// Keys both sides changed differently: the app's line was kept.
    pub kept_app: Vec<String>,
}

struct Parsed<'a> {
    lines: Vec<(Option<&'a str>, &'a str)>,
    by_key: HashMap<&'a str, &'a str>,
}

fn parse(text: &str) -> Parsed<'_> {
    let mut lines = Vec::new();
    let mut by_key = HashMap::new();
    for line in text.lines() {
        let key = if line.trim().is_empty() || line.trim_start().starts_with('#') {
            None
        } else {
            line.split_once(':').map(|(k, _)| k)
        };
        if let Some(k) = key {
            by_key.entry(k).or_insert(line);
        }
        lines.push((key, line));
    }
    Parsed { lines, by_key }
}

/// Merges `app` with the change from `ancestor` to `base`.
pub fn merge_keyed(ancestor: &str, base: &str, app: &str) -> MergeOutcome {
    let anc = parse(ancestor);
    let new = parse(base);
    let ours = parse(app);
    let mut out = MergeOutcome::default();
    let mut result: Vec<(Option<&str>, &str)> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for &(key, line) in &ours.lines {
        let Some(k) = key else {
            result.push((None, line));
            continue;
        };
        if !seen.insert(k) {
            result.push((key, line)); // duplicate key: keep as the app has it
            continue;
        }
        match (anc.by_key.get(k), new.by_key.get(k)) {
            (Some(&a), Some(&n)) => {
                if line == a {
                    if n != a {
                        out.updated_by_base.push(k.to_string());
                    }
                    result.push((key, n));
                } else {
                    if n != a && n != line {
                        out.kept_app.push(k.to_string());
                    }
                    result.push((key, line));
                }
            }
            (Some(&a), None) => {
                if line == a {
                    out.dropped_by_base.push(k.to_string());
                } else {
                    out.kept_app.push(k.to_string());
                    result.push((key, line));
                }
            }
            (None, Some(&n)) => {
                if n != line {
                    out.kept_app.push(k.to_string());
                }
                result.push((key, line));
            }
            (None, None) => result.push((key, line)),
        }
    }
    // Keys only in the new base: added by the update (keys the app deleted stay deleted).
    for (index, &(key, line)) in new.lines.iter().enumerate() {
        let Some(k) = key else { continue };
        if seen.contains(k) || anc.by_key.contains_key(k) {
            continue;
        }
        seen.insert(k);
        let previous_keys: Vec<&str> = new
            .lines
            .get(..index)
            .unwrap_or_default()
            .iter()
            .rev()
            .filter_map(|(pk, _)| *pk)
            .collect();
        let at = previous_keys
            .iter()
            .find_map(|pk| result.iter().rposition(|(rk, _)| rk == &Some(*pk)))
            .map(|p| p + 1)
            .unwrap_or(0);
        result.insert(at, (key, line));
        out.from_base.push(k.to_string());
    }
    let mut text = result
        .iter()
        .map(|(_, l)| *l)
        .collect::<Vec<_>>()
        .join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    out.text = text;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCESTOR: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";

    #[test]
    fn app_user_and_new_system_user_both_survive() {
        let base = "root:x:0:0:root:/root:/bin/sh\nsyslog:x:101:101::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n";
        let app = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nappuser:x:1000:1000::/home/appuser:/bin/sh\n";
        let m = merge_keyed(ANCESTOR, base, app);
        assert_eq!(
            m.text,
            "root:x:0:0:root:/root:/bin/sh\nsyslog:x:101:101::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\nappuser:x:1000:1000::/home/appuser:/bin/sh\n"
        );
        assert_eq!(m.from_base, ["syslog"]);
        assert!(m.kept_app.is_empty());
    }

    #[test]
    fn base_change_taken_where_app_left_line_alone() {
        let base = "root:x:0:0:root:/root:/bin/ash\n";
        let app = "# users\nroot:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
        let m = merge_keyed(ANCESTOR, base, app);
        assert_eq!(m.text, "# users\nroot:x:0:0:root:/root:/bin/ash\n");
        assert_eq!(m.updated_by_base, ["root"]);
        assert_eq!(m.dropped_by_base, ["nobody"]);
    }

    #[test]
    fn both_changed_keeps_app_and_reports() {
        let base = "root:x:0:0:root:/root:/bin/ash\nnobody:x:65534:65534::/:/bin/false\n";
        let app = "root:x:0:0:root:/root:/bin/bash\n";
        let m = merge_keyed(ANCESTOR, base, app);
        assert_eq!(m.text, "root:x:0:0:root:/root:/bin/bash\n");
        assert_eq!(m.kept_app, ["root"]);
        assert!(
            m.from_base.is_empty(),
            "a key the app deleted stays deleted"
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(merge_keyed("", "", "").text, "");
        assert_eq!(merge_keyed("", "a:1\n", "").text, "a:1\n");
    }
}
