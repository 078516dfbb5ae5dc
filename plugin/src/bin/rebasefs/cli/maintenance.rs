//! `rebasefs gc` and `rebasefs check`.

use rebasefs_plugin::maintenance;

use super::output;
use super::{Format, Global};

pub fn gc(global: &Global) -> anyhow::Result<i32> {
    let store = global.open_store()?;
    let r = maintenance::gc(&store)?;
    match global.format {
        Format::Json => output::json(&r)?,
        Format::Text => println!(
            "removed {} stack(s), {} rebased layer record(s), {} resolution(s), {} director(ies), {} container record(s), {} dead daemon's mount record(s); released {} base image hold(s)",
            r.stacks_removed, r.rebased_layers_removed, r.resolutions_removed, r.directories_removed,
            r.container_records_removed, r.mount_records_removed, r.holds_released
        ),
    }
    Ok(0)
}

pub fn check(global: &Global, repair: bool) -> anyhow::Result<i32> {
    let store = global.open_store()?;
    let repaired = if repair {
        Some(rebasefs_plugin::repair::repair(&store)?)
    } else {
        None
    };
    let r = maintenance::check(&store)?;
    match global.format {
        Format::Json => {
            output::json(&serde_json::json!({ "ok": r.ok(), "report": r, "repaired": repaired }))?
        }
        Format::Text => {
            for action in repaired.iter().flat_map(|r| &r.actions) {
                println!("repaired: {action}");
            }
            match &r.repository {
                None => println!("no repository yet: nothing to check"),
                Some(p) => println!(
                    "{}: schema {}, {} stack(s), {} rebased layer(s), {} resolution(s)",
                    p.display(),
                    r.schema_version,
                    r.stacks,
                    r.rebased_layers,
                    r.resolutions
                ),
            }
            for p in &r.problems {
                println!("  problem: {p}");
            }
            for w in &r.warnings {
                println!("  warning: {w} (`rebasefs gc` cleans this up)");
            }
            if r.ok() && r.repository.is_some() {
                println!("  ok");
            } else if !r.ok() {
                println!("  `rebasefs check --repair` drops what cannot be served");
            }
        }
    }
    Ok(if r.ok() { 0 } else { 1 })
}
