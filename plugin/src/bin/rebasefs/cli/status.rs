//! `rebasefs status`.

use rebasefs_plugin::status;

use super::output::{self, short};
use super::{Format, Global};

pub fn run(global: &Global) -> anyhow::Result<i32> {
    let store = global.open_store()?;
    let s = status::status(&store)?;
    if global.format == Format::Json {
        output::json(&s)?;
        return Ok(0);
    }
    println!("Store {}", s.graphroot.display());
    match (&s.repository, &s.repository_problem) {
        (Some(p), Some(problem)) => println!(
            "Repository {}: UNREADABLE, no rebase is in force ({problem})",
            p.display()
        ),
        (Some(p), None) => println!("Repository {}", p.display()),
        (None, _) => println!("Repository: none yet (created by the first `rebasefs rebase`)"),
    }
    println!("\nImages:");
    let dash = || "-".to_string();
    // Untagged images (build-cache intermediates) only when rebased or held; JSON lists
    // them all.
    let rows: Vec<Vec<String>> = s
        .images
        .iter()
        .filter(|i| i.name != i.id || i.rebased_onto.is_some() || i.held)
        .map(|i| {
            vec![
                i.name.clone(),
                if i.held {
                    format!("{} (held: rebased containers run on it)", i.id)
                } else {
                    i.id.clone()
                },
                i.base.clone().unwrap_or_else(dash),
                i.update
                    .clone()
                    .map(|u| format!("{u} available"))
                    .unwrap_or_else(dash),
                match (&i.rebased_onto, &i.not_in_force) {
                    (Some(b), None) => format!("{b} (stack {})", i.stack_id.unwrap_or_default()),
                    (Some(b), Some(why)) => format!(
                        "{b} (stack {}) NOT IN FORCE: {why}",
                        i.stack_id.unwrap_or_default()
                    ),
                    (None, _) => dash(),
                },
            ]
        })
        .collect();
    output::table(
        &["IMAGE", "ID", "BASE", "BASE UPDATE", "REBASED ONTO"],
        &rows,
    );
    for i in &s.images {
        if let Some(p) = &i.packages {
            println!("  {} packages: {}", i.name, p.text());
        }
    }
    println!("\nContainers:");
    if s.containers.is_empty() {
        println!("  (none)");
    } else {
        let rows: Vec<Vec<String>> = s
            .containers
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.image.clone(),
                    c.runs_on.clone().unwrap_or_else(dash),
                    match &c.pending {
                        _ if c.pinned => "pinned (io.rebasefs.pin)".to_string(),
                        Some(p) => format!("moves onto {p} at next (re)start"),
                        None => dash(),
                    },
                ]
            })
            .collect();
        output::table(&["CONTAINER", "IMAGE", "RUNS ON", "PENDING"], &rows);
        for c in &s.containers {
            if let Some(problem) = &c.problem {
                println!("  {}: {problem}", c.name);
            }
        }
    }
    if !s.rebased_layers.is_empty() {
        println!("\nRebased layers in the repository:");
        let rows: Vec<Vec<String>> = s
            .rebased_layers
            .iter()
            .map(|l| {
                vec![
                    short(&l.id).to_string(),
                    short(&l.source).to_string(),
                    l.new_base.clone(),
                    l.conflicts.to_string(),
                    l.hits.to_string(),
                ]
            })
            .collect();
        output::table(
            &["REBASED ID", "FROM LAYER", "ON BASE", "CONFLICTS", "HITS"],
            &rows,
        );
    }
    if !s.resolutions.is_empty() {
        println!("\nResolutions:");
        let rows: Vec<Vec<String>> = s
            .resolutions
            .iter()
            .map(|r| {
                vec![
                    short(&r.id).to_string(),
                    r.policy.clone(),
                    r.dir.clone().unwrap_or_else(|| "(nothing to write)".into()),
                    r.hits.to_string(),
                ]
            })
            .collect();
        output::table(&["ID", "POLICY", "DIRECTORY", "HITS"], &rows);
    }
    Ok(0)
}
