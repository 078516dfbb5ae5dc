//! Printing results: JSON for scripts, aligned text for people.

use rebasefs_plugin::storage::images::short_id;

/// Prints any serializable value as pretty JSON on stdout.
pub fn json<T: rebasefs_plugin::serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `abcdef012345` from a 64-hex id.
pub fn short(id: &str) -> &str {
    short_id(id)
}

/// Prints rows as columns separated by two spaces, indented by two.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    table_at(2, header, rows)
}

/// Prints rows as columns separated by two spaces, indented by `indent`.
pub fn table_at(indent: usize, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{:indent$}{}", "", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
