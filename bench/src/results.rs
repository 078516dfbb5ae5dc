//! The results model: raw samples per measure and contender, failures, the rebase figure, and
//! the catalogue of measures with their units.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Unit of a measure's raw samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    Seconds,
    MiB,
}

/// One row of the table.
pub struct Measure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
}

const fn m(key: &'static str, label: &'static str, unit: Unit) -> Measure {
    Measure { key, label, unit }
}

/// Every measure, in table order.
pub const MEASURES: &[Measure] = &[
    m("mount", "Mount time", Unit::Seconds),
    m("walk_cold", "Full-tree stat walk, cold", Unit::Seconds),
    m("walk_warm", "Full-tree stat walk, warm", Unit::Seconds),
    m(
        "read_small_cold",
        "Read all small files, cold",
        Unit::Seconds,
    ),
    m(
        "read_small_warm",
        "Read all small files, warm",
        Unit::Seconds,
    ),
    m(
        "read_big_cold",
        "Sequential read 1 GiB, cold",
        Unit::Seconds,
    ),
    m(
        "read_big_warm",
        "Sequential read 1 GiB, warm",
        Unit::Seconds,
    ),
    m("write_big", "Sequential write 1 GiB + fsync", Unit::Seconds),
    m(
        "copyup_append",
        "Copy-up: append 1 byte to 1 GiB lower file",
        Unit::Seconds,
    ),
    m(
        "copyup_chmod",
        "Copy-up: chmod of 1 GiB lower file",
        Unit::Seconds,
    ),
    m(
        "create_fsync",
        "Create+write+fsync 10,000 files",
        Unit::Seconds,
    ),
    m(
        "rename_unlink",
        "Rename/unlink run (5,000 ops)",
        Unit::Seconds,
    ),
    m(
        "lookup_pos_1",
        "Lookup, bottom-layer name, depth 1",
        Unit::Seconds,
    ),
    m(
        "lookup_pos_10",
        "Lookup, bottom-layer name, depth 10",
        Unit::Seconds,
    ),
    m(
        "lookup_pos_50",
        "Lookup, bottom-layer name, depth 50",
        Unit::Seconds,
    ),
    m(
        "lookup_pos_100",
        "Lookup, bottom-layer name, depth 100",
        Unit::Seconds,
    ),
    m("lookup_neg_1", "Negative lookup, depth 1", Unit::Seconds),
    m("lookup_neg_10", "Negative lookup, depth 10", Unit::Seconds),
    m("lookup_neg_50", "Negative lookup, depth 50", Unit::Seconds),
    m(
        "lookup_neg_100",
        "Negative lookup, depth 100",
        Unit::Seconds,
    ),
    m("podman_run", "`podman run --rm IMAGE true`", Unit::Seconds),
    m(
        "rss_walk",
        "Daemon peak RSS after the tree walks",
        Unit::MiB,
    ),
    m("rss_session", "Daemon peak RSS, whole session", Unit::MiB),
    m(
        "cpu_session",
        "Daemon CPU time (user+sys), whole session",
        Unit::Seconds,
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContenderInfo {
    pub key: String,
    pub name: String,
    pub version: String,
}

/// One side of the rebase figure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RebaseSide {
    pub seconds: Vec<f64>,
    /// Bytes written to storage by the (reaped) processes: getrusage ru_oublock * 512.
    pub process_write_bytes: Vec<f64>,
    /// Growth of the store directory (du -x).
    pub store_growth_bytes: Vec<f64>,
    pub error: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub started: String,
    pub finished: String,
    pub repetitions: usize,
    pub quick: bool,
    pub machine: BTreeMap<String, String>,
    pub contenders: Vec<ContenderInfo>,
    /// measure key -> contender key -> samples
    pub samples: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// measure key -> contender key -> first error
    pub failures: BTreeMap<String, BTreeMap<String, String>>,
    pub rebuild: RebaseSide,
    pub rebase: RebaseSide,
    pub notes: Vec<String>,
}

impl Results {
    pub fn add(&mut self, measure: &str, contender: &str, value: f64) {
        self.samples
            .entry(measure.to_string())
            .or_default()
            .entry(contender.to_string())
            .or_default()
            .push(value);
    }

    pub fn fail(&mut self, measure: &str, contender: &str, error: &str) {
        eprintln!("[bench] {contender}: {measure} failed: {error}");
        self.failures
            .entry(measure.to_string())
            .or_default()
            .entry(contender.to_string())
            .or_insert_with(|| error.to_string());
    }

    pub fn median(&self, measure: &str, contender: &str) -> Option<f64> {
        self.samples
            .get(measure)
            .and_then(|c| c.get(contender))
            .and_then(|v| median(v))
    }

    pub fn failure(&self, measure: &str, contender: &str) -> Option<&str> {
        self.failures
            .get(measure)
            .and_then(|c| c.get(contender))
            .map(String::as_str)
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    })
}
