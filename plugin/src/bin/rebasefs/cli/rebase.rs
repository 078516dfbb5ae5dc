//! `rebasefs rebase` and `rebasefs rollback`.

use clap::Args;
use rebasefs_plugin::rebase::{self, Options, RebaseReport};
use rebasefs_plugin::resolve::{How, Policy};
use rebasefs_plugin::rollback;

use super::output::{self, short};
use super::progress::Bar;
use super::{Format, Global};

/// What a rebase plan is made of besides the image and the new base; `rebase`, `commit`
/// and `mount --onto` take the same flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The image's current base, when it cannot be found from annotations or layers.
    #[arg(long, value_name = "OLDBASE")]
    base: Option<String>,
    /// Conflict policy; repeatable, each value changes the default (merge passwd, group,
    /// shadow and the package databases; other conflicts keep the app's version):
    /// upper-wins, refuse, merge, no-merge, packages, no-packages, plain (no merges),
    /// base-wins=PATH[,PATH]. Without it the image keeps the policy of its current rebase.
    #[arg(long, value_name = "POLICY")]
    policy: Vec<String>,
    /// Go ahead even when the new base no longer satisfies a dependency of an app package
    /// (Depends/Pre-Depends, Requires, D:); without it such a rebase is refused.
    #[arg(long)]
    allow_broken_deps: bool,
}

impl PlanArgs {
    /// The engine's options for rebasing `image` onto `onto` with these flags.
    pub fn options(
        &self,
        image: &str,
        onto: Option<String>,
        dry_run: bool,
        assign: bool,
    ) -> anyhow::Result<Options> {
        Ok(Options {
            image: image.to_string(),
            onto,
            base: self.base.clone(),
            policy: Policy::parse(&self.policy)?,
            policy_given: !self.policy.is_empty(),
            dry_run,
            assign,
            allow_broken_deps: self.allow_broken_deps,
        })
    }
}

#[derive(Debug, Args)]
pub struct RebaseArgs {
    /// Image name or id.
    image: String,
    /// The new base (default: what the image's base name resolves to now).
    #[arg(long, value_name = "NEWBASE")]
    onto: Option<String>,
    /// Plan and report only; record nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(global: &Global, args: &RebaseArgs) -> anyhow::Result<i32> {
    let opts = args
        .plan
        .options(&args.image, args.onto.clone(), args.dry_run, true)?;
    let store = global.open_store()?;
    let progress = Bar::new(global.format == Format::Text);
    let report = rebase::rebase(&store, &opts, &progress)?;
    match global.format {
        Format::Json => output::json(&report)?,
        Format::Text => print_report(&report),
    }
    Ok(0)
}

fn print_report(r: &RebaseReport) {
    let verb = if r.dry_run {
        "Planning (dry run)"
    } else {
        "Rebasing"
    };
    println!("{verb} {} ({})", r.image, short(&r.image_id));
    println!(
        "  old base: {} ({}), found by {}",
        r.old_base,
        short(&r.old_base_id),
        serde_json::to_value(r.base_found_by)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    println!(
        "  new base: {} ({}), {}",
        r.new_base,
        short(&r.new_base_id),
        r.platform
    );
    println!(
        "  the base update changes {} path(s){}",
        r.base_changes,
        if r.base_changes_reused {
            " (comparison reused from the repository)"
        } else {
            ""
        }
    );
    println!(
        "  app layers, each re-identified on the new base as sha256(parent + \"+\" + diffID):"
    );
    for l in &r.layers {
        println!(
            "    {} -> {}  {}{}",
            short(&l.source),
            short(&l.rebased_id),
            if l.reused {
                "reused from the repository"
            } else {
                "computed"
            },
            if l.conflicts > 0 {
                format!(", {} conflict(s)", l.conflicts)
            } else {
                String::new()
            }
        );
    }
    if r.conflicts.is_empty() {
        println!("  no conflicts: no app layer touches a path the base update changed");
    } else {
        println!("  conflicts (paths the base update changed that the app layers also touch):");
        let rows: Vec<Vec<String>> = r
            .conflicts
            .iter()
            .map(|c| {
                vec![
                    c.path.clone(),
                    format!("base {}", json_word(&c.base)),
                    format!("app {}", json_word(&c.app)),
                    format!("layer {}", short(&c.layer)),
                ]
            })
            .collect();
        output::table_at(4, &["PATH", "BASE UPDATE", "APP", "WHERE"], &rows);
        println!("  resolutions (policy: {}):", r.policy);
        let mut package_paths = (0, 0);
        let width = r
            .resolutions
            .iter()
            .filter(|x| !matches!(x.how, How::PackageDb { written: false, .. }))
            .map(|x| x.path.len())
            .max()
            .unwrap_or(0);
        for res in &r.resolutions {
            if let How::PackageDb { written, .. } = res.how {
                package_paths.0 += 1;
                package_paths.1 += usize::from(written);
                if !written {
                    continue;
                }
            }
            println!("    {:<width$}  {}", res.path, describe(&res.how));
        }
        if package_paths.0 > 0 {
            println!(
                "    package databases: {} path(s) decided, {} written into the resolution layer (the others the stack already shows)",
                package_paths.0, package_paths.1
            );
        }
        if let Some(id) = &r.resolution_id {
            if r.resolutions
                .iter()
                .any(|x| !matches!(x.how, How::UpperWins))
            {
                println!(
                    "  resolution layer {} {} (served above the app layers; app layers are untouched)",
                    short(id),
                    if r.resolution_reused { "reused from the repository" } else { "materialized once into the shared store" }
                );
            }
        }
    }
    for p in &r.packages {
        for line in p.text().lines() {
            println!("  {line}");
        }
    }
    match r.stack_id {
        Some(id) => println!(
            "  recorded as stack {id}: containers of {} run on {} from their next (re)start",
            r.image, r.new_base
        ),
        None => println!("  dry run: nothing recorded"),
    }
    println!("  done in {} ms", r.elapsed_ms);
}

fn json_word<T: rebasefs_plugin::serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn describe(how: &How) -> String {
    match how {
        How::Merged { outcome } => {
            let mut parts = vec!["merged".to_string()];
            for (label, names) in [
                ("added from the new base", &outcome.from_base),
                ("updated by the new base", &outcome.updated_by_base),
                ("dropped by the new base", &outcome.dropped_by_base),
                ("both changed, app kept", &outcome.kept_app),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{label}: {}", names.join(", ")));
                }
            }
            parts.join("; ")
        }
        How::BaseWins => "new base's version (base-wins)".into(),
        How::BaseWinsDeleted => "deleted, as in the new base (base-wins)".into(),
        How::UpperWins => "app's version stays on top (upper-wins)".into(),
        How::Unresolved => "unresolved".into(),
        How::PackageDb { format, serve, .. } => match serve.as_str() {
            "merged" if format == "generated" => {
                "regenerated or merged (see the generated lines of the package report)".into()
            }
            "merged" => format!("{format} database merged per package"),
            "new-base" => format!("new base's version ({format}: the new base's package won)"),
            "app" => format!("app's version ({format}: the app's package won)"),
            _ => format!("hidden ({format}: no package owns it any more)"),
        },
    }
}

pub fn rollback(global: &Global, image: &str) -> anyhow::Result<i32> {
    let store = global.open_store()?;
    let report = rollback::rollback(&store, image)?;
    let (image, stack) = (&report.image, &report.stack);
    if let (Some(s), Some(reason)) = (stack, &report.not_servable) {
        eprintln!(
            "rebasefs: warning: stack {} (onto {}) cannot be served: {reason}; containers of {} will run on their original base instead",
            s.id,
            s.new_base_name,
            image.display_name()
        );
    }
    match global.format {
        Format::Json => output::json(&serde_json::json!({
            "image": image.display_name(),
            "image_id": image.id,
            "stack_id": stack.as_ref().map(|s| s.id),
            "runs_on": stack.as_ref().map(|s| s.new_base_name.clone()),
            "not_servable": report.not_servable,
            "holds_released": report.holds.released,
        }))?,
        Format::Text => match stack {
            Some(s) => println!(
                "{} is back on stack {} (base {}); containers move at their next (re)start",
                image.display_name(),
                s.id,
                s.new_base_name
            ),
            None => println!(
                "{} is back on its original base; containers move at their next (re)start",
                image.display_name()
            ),
        },
    }
    Ok(0)
}
