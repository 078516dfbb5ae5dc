//! Turns results into the Markdown table (with ratios and the issue's targets) and an SVG chart.

use crate::results::{median, Results, Unit, MEASURES};
use std::fmt::Write as _;

pub const KERNEL: &str = "kernel";
pub const FO1: &str = "fuse-overlayfs-1";
pub const FO2: &str = "fuse-overlayfs-2";
pub const REBASEFS: &str = "rebasefs";

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::MiB => format!("{v:.1} MiB"),
        Unit::Seconds if v >= 1.0 => format!("{v:.2} s"),
        Unit::Seconds if v >= 1e-3 => format!("{:.1} ms", v * 1e3),
        Unit::Seconds => format!("{:.1} µs", v * 1e6),
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn cell(r: &Results, measure: &str, contender: &str, unit: Unit) -> String {
    match r.median(measure, contender) {
        Some(v) => {
            let mut s = fmt_value(v, unit);
            if contender != KERNEL {
                if let Some(k) = r.median(measure, KERNEL).filter(|k| *k > 0.0) {
                    let _ = write!(s, " ({:.2}×k)", v / k);
                }
            }
            s
        }
        None => match r.failure(measure, contender) {
            Some(_) => "failed".to_string(),
            None => "–".to_string(),
        },
    }
}

fn ratio(r: &Results, measure: &str, a: &str, b: &str) -> String {
    match (r.median(measure, a), r.median(measure, b)) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
        _ => "–".to_string(),
    }
}

/// The full Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rebasefs benchmark results\n");
    let _ = writeln!(
        s,
        "Run {} → {} · {} repetition(s){} · median reported · `(N×k)` = ratio to kernel overlayfs; \
         the last columns are rebasefs ÷ incumbent (below 1 = rebasefs is faster/smaller).\n",
        r.started,
        r.finished,
        r.repetitions,
        if r.quick { " (--quick smoke run)" } else { "" }
    );
    let names: Vec<String> = [KERNEL, FO1, FO2, REBASEFS]
        .iter()
        .map(|k| {
            r.contenders
                .iter()
                .find(|c| c.key == *k)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| k.to_string())
        })
        .collect();
    let _ = writeln!(
        s,
        "| Measure | {} | {} | {} | {} | rebasefs ÷ fo 1.10 | rebasefs ÷ fo 2.0 |",
        names[0], names[1], names[2], names[3]
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for m in MEASURES {
        if !r.samples.contains_key(m.key) && !r.failures.contains_key(m.key) {
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.label,
            cell(r, m.key, KERNEL, m.unit),
            cell(r, m.key, FO1, m.unit),
            cell(r, m.key, FO2, m.unit),
            cell(r, m.key, REBASEFS, m.unit),
            ratio(r, m.key, REBASEFS, FO1),
            ratio(r, m.key, REBASEFS, FO2),
        );
    }
    let _ = writeln!(s, "\nLookup rows are the mean time of one lstat of a never-before-looked-up name on a fresh mount.");
    let _ = writeln!(
        s,
        "RSS/CPU rows are for FUSE daemons only (kernel overlayfs has no daemon).\n"
    );

    let _ = writeln!(s, "## Rebase figure: from \"base v2 is in local storage\" to \"container running on base v2\"\n");
    let _ = writeln!(
        s,
        "| Path | Time | Bytes written by the processes | Store growth (du -x) | Notes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (label, side) in [
        (
            "`podman build --no-cache` + `podman rm -f` + `podman run -d` (kernel overlay store)",
            &r.rebuild,
        ),
        (
            "`rebasefs rebase` + `podman restart` (rebasefs store)",
            &r.rebase,
        ),
    ] {
        match (&side.error, median(&side.seconds)) {
            (_, Some(t)) => {
                let _ = writeln!(
                    s,
                    "| {label} | {} | {} | {} | {} |",
                    fmt_value(t, Unit::Seconds),
                    median(&side.process_write_bytes)
                        .map(fmt_bytes)
                        .unwrap_or_default(),
                    median(&side.store_growth_bytes)
                        .map(fmt_bytes)
                        .unwrap_or_default(),
                    side.detail
                );
            }
            (Some(e), None) => {
                let _ = writeln!(
                    s,
                    "| {label} | failed | | | {} |",
                    e.replace('|', "/").replace('\n', " ")
                );
            }
            (None, None) => {
                let _ = writeln!(s, "| {label} | not run | | | |");
            }
        }
    }

    let _ = writeln!(s, "\n## Targets (issue 6)\n");
    for (target, status) in targets(r) {
        let _ = writeln!(s, "- **{status}** — {target}");
    }

    let fails: Vec<String> = r
        .failures
        .iter()
        .flat_map(|(m, cs)| {
            cs.iter()
                .map(move |(c, e)| format!("- {c} / {m}: {}", e.replace('\n', " ")))
        })
        .collect();
    if !fails.is_empty() {
        let _ = writeln!(s, "\n## Failures\n");
        for f in fails.iter().take(40) {
            let _ = writeln!(s, "{f}");
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(s, "\n## Machine and versions\n");
    for (k, v) in &r.machine {
        let _ = writeln!(s, "- {k}: {v}");
    }
    for c in &r.contenders {
        let _ = writeln!(s, "- {}: {}", c.name, c.version);
    }
    let _ = writeln!(s, "\n![ratio to kernel overlayfs](chart.svg)");
    s
}

/// Each target of issue 6 with "met", "NOT met" or "not measured" and the numbers behind it.
pub fn targets(r: &Results) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let med = |m: &str, c: &str| r.median(m, c);

    // Metadata: >= 1.5x faster than the faster fuse-overlayfs.
    let meta = [
        "walk_cold",
        "walk_warm",
        "lookup_pos_1",
        "lookup_pos_10",
        "lookup_pos_50",
        "lookup_pos_100",
        "lookup_neg_1",
        "lookup_neg_10",
        "lookup_neg_50",
        "lookup_neg_100",
    ];
    let mut detail = Vec::new();
    let mut all = Some(true);
    for m in meta {
        let best = match (med(m, FO1), med(m, FO2)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (med(m, REBASEFS), best) {
            (Some(x), Some(b)) if x > 0.0 => {
                let speedup = b / x;
                detail.push(format!("{m} {speedup:.2}×"));
                if speedup < 1.5 {
                    all = all.map(|_| false);
                }
            }
            _ => all = None,
        }
    }
    out.push((
        format!(
            "Metadata ≥1.5× faster than the faster fuse-overlayfs (speed-up per measure: {})",
            if detail.is_empty() {
                "n/a".to_string()
            } else {
                detail.join(", ")
            }
        ),
        verdict(all),
    ));

    // Lookup depth scaling.
    let mut detail = Vec::new();
    let mut all = Some(true);
    for kind in ["pos", "neg"] {
        match (
            med(&format!("lookup_{kind}_100"), REBASEFS),
            med(&format!("lookup_{kind}_1"), REBASEFS),
        ) {
            (Some(d100), Some(d1)) if d1 > 0.0 => {
                let q = d100 / d1;
                detail.push(format!("{kind} {q:.2}×"));
                if q > 1.5 {
                    all = all.map(|_| false);
                }
            }
            _ => all = None,
        }
    }
    out.push((
        format!(
            "Lookup at depth 100 within 1.5× of depth 1 (depth100/depth1: {})",
            if detail.is_empty() {
                "n/a".to_string()
            } else {
                detail.join(", ")
            }
        ),
        verdict(all),
    ));

    let vs_kernel = |measures: &[&str], limit: f64, what: &str| -> (String, String) {
        let mut detail = Vec::new();
        let mut all = Some(true);
        for m in measures {
            match (med(m, REBASEFS), med(m, KERNEL)) {
                (Some(x), Some(k)) if k > 0.0 => {
                    let q = x / k;
                    detail.push(format!("{m} {q:.2}×"));
                    if q > limit {
                        all = all.map(|_| false);
                    }
                }
                _ => all = None,
            }
        }
        (
            format!(
                "{what} within {limit}× of kernel overlayfs ({})",
                if detail.is_empty() {
                    "n/a".to_string()
                } else {
                    detail.join(", ")
                }
            ),
            verdict(all),
        )
    };
    out.push(vs_kernel(
        &["read_big_cold", "read_big_warm", "write_big"],
        1.1,
        "Sequential read and write",
    ));
    out.push(vs_kernel(
        &["copyup_append", "copyup_chmod"],
        1.3,
        "Copy-up",
    ));
    out.push(vs_kernel(&["podman_run"], 1.2, "Container start latency"));

    // Rebase vs rebuild.
    let rb = (median(&r.rebuild.seconds), median(&r.rebase.seconds));
    let (speed, speed_ok) = match rb {
        (Some(a), Some(b)) if b > 0.0 => (format!("{:.1}× faster", a / b), Some(a / b >= 20.0)),
        _ => ("n/a".to_string(), None),
    };
    let bytes_pair = (
        median(&r.rebuild.store_growth_bytes),
        median(&r.rebase.store_growth_bytes),
    );
    let proc_pair = (
        median(&r.rebuild.process_write_bytes),
        median(&r.rebase.process_write_bytes),
    );
    let (bytes, bytes_ok) = match (bytes_pair, proc_pair) {
        ((Some(a), Some(b)), (Some(pa), Some(pb))) if a > 0.0 && pa > 0.0 => (
            format!(
                "store growth {:.2}%, process writes {:.2}%",
                100.0 * b / a,
                100.0 * pb / pa
            ),
            Some(b / a < 0.01 && pb / pa < 0.01),
        ),
        _ => ("n/a".to_string(), None),
    };
    out.push((
        format!("Rebase-and-restart ≥20× faster than rebuild-and-recreate ({speed})"),
        verdict(speed_ok),
    ));
    out.push((
        format!("Rebase writes <1% of the bytes of a rebuild ({bytes})"),
        verdict(bytes_ok),
    ));

    // RSS vs fuse-overlayfs 2.0 on the walk.
    let (detail, ok) = match (med("rss_walk", REBASEFS), med("rss_walk", FO2)) {
        (Some(a), Some(b)) => (format!("{a:.1} MiB vs {b:.1} MiB"), Some(a < b)),
        _ => ("n/a".to_string(), None),
    };
    out.push((
        format!("Daemon RSS below fuse-overlayfs 2.0's on the full-tree walk ({detail})"),
        verdict(ok),
    ));
    out
}

fn verdict(v: Option<bool>) -> String {
    match v {
        Some(true) => "met".to_string(),
        Some(false) => "NOT met".to_string(),
        None => "not measured".to_string(),
    }
}

/// Horizontal bar chart of each time measure as a ratio to kernel overlayfs (log scale).
pub fn svg(r: &Results) -> String {
    let contenders = [
        (FO1, "#d95f02", "fuse-overlayfs 1.10"),
        (FO2, "#7570b3", "fuse-overlayfs 2.0"),
        (REBASEFS, "#1b9e77", "rebasefs"),
    ];
    let rows: Vec<(&str, Vec<Option<f64>>)> = MEASURES
        .iter()
        .filter(|m| m.unit == Unit::Seconds && !m.key.starts_with("cpu"))
        .filter_map(|m| {
            let k = r.median(m.key, KERNEL).filter(|k| *k > 0.0)?;
            let vals: Vec<Option<f64>> = contenders
                .iter()
                .map(|(c, _, _)| r.median(m.key, c).map(|v| v / k))
                .collect();
            vals.iter().any(Option::is_some).then_some((m.label, vals))
        })
        .collect();
    let (label_w, plot_w, bar_h, gap) = (330.0, 520.0, 9.0, 8.0);
    let row_h = bar_h * contenders.len() as f64 + gap;
    let top = 50.0;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let width = label_w + plot_w + 60.0;
    // log2 axis from 1/4x to 64x
    let max_ratio = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .fold(1.0f64, f64::max);
    let (lo, hi) = (-2.0f64, max_ratio.log2().ceil().clamp(2.0, 13.0));
    let x = |ratio: f64| label_w + (ratio.log2().clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14">Time relative to kernel overlayfs (log scale, lower is better; 1× = kernel)</text>"#
    );
    for (i, (_, color, c)) in contenders.iter().enumerate() {
        let lx = label_w + i as f64 * 150.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{color}"/><text x="{}" y="37">{c}</text>"#,
            lx + 14.0
        );
    }
    for e in lo as i32..=hi as i32 {
        let r = 2f64.powi(e);
        let xx = x(r);
        let stroke = if e == 0 { "#000" } else { "#ccc" };
        let _ = writeln!(
            s,
            r#"<line x1="{xx}" y1="{top}" x2="{xx}" y2="{}" stroke="{stroke}"/><text x="{xx}" y="{}" text-anchor="middle">{}×</text>"#,
            height - 30.0,
            height - 15.0,
            if r < 1.0 {
                format!("{r:.2}")
            } else {
                format!("{r:.0}")
            }
        );
    }
    for (i, (label, vals)) in rows.iter().enumerate() {
        let y0 = top + i as f64 * row_h;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y0 + row_h / 2.0,
            label
                .replace('`', "")
                .replace('&', "&amp;")
                .replace('<', "&lt;")
        );
        for (j, v) in vals.iter().enumerate() {
            if let (Some(v), Some((_, color, _))) = (v, contenders.get(j)) {
                let x0 = x(1.0);
                let x1 = x(*v);
                let (a, w) = if x1 >= x0 {
                    (x0, x1 - x0)
                } else {
                    (x1, x0 - x1)
                };
                let _ = writeln!(
                    s,
                    r#"<rect x="{a}" y="{}" width="{}" height="{bar_h}" fill="{color}"><title>{v:.2}×</title></rect>"#,
                    y0 + j as f64 * bar_h,
                    w.max(1.0)
                );
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
