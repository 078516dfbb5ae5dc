//! `rebasefs commit`: write a rebased image into containers-storage as a real image.

use super::rebase::PlanArgs;
use clap::Args;
use rebasefs_plugin::commit::{self, CommitOptions};

use super::output::{self, short};
use super::progress::Bar;
use super::{Format, Global};

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Image name or id.
    image: String,
    /// The new base (default: what the image's base name resolves to now).
    #[arg(long, value_name = "NEWBASE")]
    onto: Option<String>,
    /// The name of the new image (e.g. `app:rebased`, `registry.example:5000/app:2`).
    #[arg(long, value_name = "NAME")]
    tag: String,
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(global: &Global, args: &CommitArgs) -> anyhow::Result<i32> {
    let opts = CommitOptions {
        rebase: args
            .plan
            .options(&args.image, args.onto.clone(), false, false)?,
        tag: args.tag.clone(),
    };
    let store = global.open_store()?;
    let progress = Bar::new(global.format == Format::Text);
    let report = commit::commit(&store, &opts, &progress)?;
    match global.format {
        Format::Json => output::json(&report)?,
        Format::Text => {
            println!(
                "Committed {} ({}): {} rebased from {} onto {}",
                report.name,
                short(&report.image_id),
                report.rebase.image,
                report.rebase.old_base,
                report.rebase.new_base
            );
            let rows: Vec<Vec<String>> = report
                .layers
                .iter()
                .map(|l| {
                    vec![
                        short(&l.id).to_string(),
                        l.kind.to_string(),
                        short(rebasefs_plugin::chain::hex_of(&l.diff_id)).to_string(),
                        match (&l.source, l.created) {
                            (Some(s), true) => format!("linked from {}", short(s)),
                            (None, true) => "written".into(),
                            (_, false) => "already in the store".into(),
                        },
                    ]
                })
                .collect();
            output::table(&["LAYER", "KIND", "DIFFID", "CONTENT"], &rows);
            println!(
                "  {} file(s) hard-linked, done in {} ms",
                report.files_linked, report.elapsed_ms
            );
        }
    }
    Ok(0)
}
