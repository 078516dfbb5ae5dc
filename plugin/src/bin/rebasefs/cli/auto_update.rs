//! `rebasefs auto-update`: `podman auto-update` for rebasefs containers, by rebase.
//!
//! A container takes part when it has Podman's label `io.containers.autoupdate`
//! (`registry` or `local`) and our opt-in, label or annotation `io.rebasefs.autoupdate=rebase`.
//! Its image's base name (the build annotation) is checked: `registry` asks the registry
//! for the name's digest (`skopeo inspect`) and pulls when it differs from the local image
//! of that name; `local` looks at what the name points to locally. When the name points at
//! another image than the one the container runs on, the image is rebased onto it (the
//! engine's default policy) and the container restarted (its systemd unit when the label
//! `PODMAN_SYSTEMD_UNIT` is set, else `podman restart`); if it does not come back running
//! (or its healthcheck fails) the rebase is rolled back and it is restarted again. Each
//! move is remembered (`auto-update.json`); `--rollback` undoes the last run's moves.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rebasefs_plugin::autoupdate::{self, Move, State};
use rebasefs_plugin::rebase::{self, Options, Progress};
use rebasefs_plugin::resolve::Policy;
use rebasefs_plugin::rollback;
use rebasefs_plugin::storage::{Overrides, StorageConfig, Store};
use serde::Serialize;
use serde_json::Value;

use super::output::{self, short};
use super::progress::Bar;
use super::{Format, Global};

/// Podman's auto-update label.
const PODMAN_LABEL: &str = "io.containers.autoupdate";
/// Ours: the container moves by rebase.
const OPT_IN: &str = "io.rebasefs.autoupdate";
const UNIT_LABEL: &str = "PODMAN_SYSTEMD_UNIT";

#[derive(Debug, Args)]
pub struct AutoUpdateArgs {
    /// Check and report only: pull, rebase and restart nothing.
    #[arg(long)]
    dry_run: bool,
    /// Move the containers the last auto-update updated back onto their previous base.
    #[arg(long)]
    rollback: bool,
    /// Require HTTPS and verified certificates from registries (`--tls-verify=false` for a
    /// plain-HTTP registry).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// How long a restarted container has to be running (and healthy), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    wait: u64,
}

/// One row of the report (the field names are `podman auto-update`'s).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    unit: String,
    container: String,
    container_name: String,
    #[serde(rename = "ContainerID")]
    container_id: String,
    image: String,
    policy: String,
    /// `true`, `false`, `pending` (dry run), `rolled back` or `failed`.
    updated: String,
    base: String,
    new_base: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Row {
    fn of(c: &Candidate, updated: &str, base: String, new_base: String) -> Row {
        Row {
            unit: c.unit.clone().unwrap_or_default(),
            container: format!("{} ({})", short(&c.id), c.name),
            container_name: c.name.clone(),
            container_id: c.id.clone(),
            image: c.image_name.clone(),
            policy: c.policy.clone(),
            updated: updated.into(),
            base,
            new_base,
            error: None,
        }
    }

    /// The container's update failed with `e` (one line in the report).
    fn failed(&mut self, e: &anyhow::Error) {
        self.updated = "failed".into();
        self.error = Some(format!("{e:#}").replace('\n', " "));
    }
}

/// What `podman container inspect` says about a container, the parts used here.
struct Candidate {
    id: String,
    name: String,
    image_id: String,
    image_name: String,
    policy: String,
    unit: Option<String>,
    healthcheck: bool,
}

impl Candidate {
    /// The record of this container moved from base `from` to `to`.
    fn moved(&self, from: String, to: String, outcome: String) -> Move {
        Move {
            container: self.name.clone(),
            image_id: self.image_id.clone(),
            from_base: from,
            to_base: to,
            outcome,
            at: rebasefs_plugin::repo::now(),
        }
    }
}

pub fn run(global: &Global, args: &AutoUpdateArgs) -> anyhow::Result<i32> {
    let podman = Podman::new(global);
    let progress = Bar::new(global.format == Format::Text);
    let rows = if args.rollback {
        undo_last(global, &podman, args)?
    } else {
        update_all(global, &podman, args, &progress)?
    };
    match global.format {
        Format::Json => output::json(&rows)?,
        Format::Text => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.unit.clone(),
                        r.container.clone(),
                        r.image.clone(),
                        r.policy.clone(),
                        r.updated.clone(),
                    ]
                })
                .collect();
            output::table_at(
                0,
                &["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"],
                &table,
            );
            for r in rows.iter().filter(|r| r.error.is_some()) {
                eprintln!(
                    "rebasefs: {}: {}",
                    r.container_name,
                    r.error.as_deref().unwrap_or_default()
                );
            }
        }
    }
    Ok(if rows.iter().any(|r| r.updated == "failed") {
        1
    } else {
        0
    })
}

fn update_all(
    global: &Global,
    podman: &Podman,
    args: &AutoUpdateArgs,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Row>> {
    let candidates = podman.candidates()?;
    let graphroot = global.storage()?.graphroot;
    let mut rows = Vec::new();
    let mut moves = Vec::new();
    // Images rebased in this run: their other containers restart too.
    let mut rebased: HashMap<String, (String, String)> = HashMap::new();
    for c in &candidates {
        let mut row = Row::of(c, "false", String::new(), String::new());
        match update_one(podman, args, c, &mut rebased, progress) {
            Ok(Some((from, to, outcome))) => {
                row.base = from.clone();
                row.new_base = to.clone();
                row.updated = outcome.clone();
                if !args.dry_run {
                    moves.push(c.moved(from, to, outcome));
                }
            }
            Ok(None) => {}
            Err(e) => row.failed(&e),
        }
        rows.push(row);
    }
    State::record(&graphroot, &moves)?;
    Ok(rows)
}

/// Checks and moves one container: `None` = nothing to do, else (from, to, outcome).
fn update_one(
    podman: &Podman,
    args: &AutoUpdateArgs,
    c: &Candidate,
    rebased: &mut HashMap<String, (String, String)>,
    progress: &dyn Progress,
) -> anyhow::Result<Option<(String, String, String)>> {
    if let Some((from, to)) = rebased.get(&c.image_id).cloned() {
        let outcome = restart_checked(podman, args, c)?;
        return Ok(Some((from, to, outcome)));
    }
    let store = podman.store()?;
    let Some(base) = autoupdate::base_of(&store, &c.image_id)? else {
        bail!("image {} has no base name to follow", c.image_name);
    };
    if c.policy == "registry" {
        let remote = podman.remote_digest(&base.name, args.tls_verify)?;
        let local = store
            .image(&base.name)
            .ok()
            .is_some_and(|i| i.has_manifest_digest(&remote));
        if !local {
            if args.dry_run {
                return Ok(Some((base.current_display, base.name, "pending".into())));
            }
            progress.phase(&format!("pulling {}", base.name), 0);
            let pulled = podman.pull(&base.name, args.tls_verify);
            progress.done();
            pulled?;
        }
    }
    let store = podman.store()?;
    let target = store
        .image(&base.name)
        .with_context(|| format!("base {} is not in local storage", base.name))?;
    if target.id == base.current_id {
        return Ok(None);
    }
    let to = target.display_name();
    if args.dry_run {
        return Ok(Some((base.current_display, to, "pending".into())));
    }
    let opts = Options {
        image: c.image_id.clone(),
        onto: Some(target.id.clone()),
        policy: Policy::parse(&[] as &[String])?,
        policy_given: false,
        assign: true,
        ..Options::default()
    };
    rebase::rebase(&store, &opts, progress)
        .with_context(|| format!("rebasing {} onto {to}", c.image_name))?;
    rebased.insert(
        c.image_id.clone(),
        (base.current_display.clone(), to.clone()),
    );
    let outcome = restart_checked(podman, args, c)?;
    Ok(Some((base.current_display, to, outcome)))
}

/// Restarts `c`; when it does not come up, rolls its image back and restarts it again.
fn restart_checked(
    podman: &Podman,
    args: &AutoUpdateArgs,
    c: &Candidate,
) -> anyhow::Result<String> {
    let wait = Duration::from_secs(args.wait);
    let first = podman
        .restart(c)
        .and_then(|()| podman.wait_healthy(c, wait));
    let Err(failure) = first else {
        return Ok("true".into());
    };
    tracing::warn!(container = %c.name, error = %format!("{failure:#}"), "rolling back");
    let store = podman.store()?;
    rollback::rollback(&store, &c.image_id)
        .with_context(|| format!("rolling back {} after: {failure:#}", c.image_name))?;
    podman
        .restart(c)
        .and_then(|()| podman.wait_healthy(c, wait))
        .with_context(|| format!("restarting on the old base after: {failure:#}"))?;
    Ok("rolled back".into())
}

/// `--rollback`: the containers the last run updated go back onto their previous base.
fn undo_last(global: &Global, podman: &Podman, args: &AutoUpdateArgs) -> anyhow::Result<Vec<Row>> {
    let graphroot = global.storage()?.graphroot;
    let state = State::load(&graphroot)?;
    let candidates = podman.candidates()?;
    let mut rows = Vec::new();
    let mut moves = Vec::new();
    let mut rolled: Vec<String> = Vec::new();
    for c in &candidates {
        let Some(last) = state.last_update(&c.name) else {
            continue;
        };
        let mut row = Row::of(
            c,
            "rolled back",
            last.to_base.clone(),
            last.from_base.clone(),
        );
        if args.dry_run {
            row.updated = "pending".into();
            rows.push(row);
            continue;
        }
        let result = (|| -> anyhow::Result<()> {
            if !rolled.contains(&c.image_id) {
                rollback::rollback(&podman.store()?, &c.image_id)?;
                rolled.push(c.image_id.clone());
            }
            podman.restart(c)?;
            podman.wait_healthy(c, Duration::from_secs(args.wait))
        })();
        match result {
            Ok(()) => moves.push(c.moved(
                last.to_base.clone(),
                last.from_base.clone(),
                "rolled back".into(),
            )),
            Err(e) => row.failed(&e),
        }
        rows.push(row);
    }
    State::record(&graphroot, &moves)?;
    Ok(rows)
}

/// `podman` (and `skopeo`, `systemctl`) on the store rebasefs was pointed at.
struct Podman<'a> {
    global: &'a Global,
}

impl<'a> Podman<'a> {
    fn new(global: &'a Global) -> Self {
        Self { global }
    }

    fn store(&self) -> anyhow::Result<Store> {
        self.global.open_store()
    }

    /// `podman ARGS`. `--root`/`--runroot` go along only when they name another store than
    /// storage.conf does: Podman drops storage.conf's options (the mount program among
    /// them) when either is on its command line.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        let configured = StorageConfig::discover(&Overrides::default()).ok();
        let same = |given: &std::path::Path, pick: fn(&StorageConfig) -> &std::path::Path| {
            configured.as_ref().is_some_and(|c| pick(c) == given)
        };
        if let Some(root) = self
            .global
            .root
            .as_deref()
            .filter(|r| !same(r, |c| &c.graphroot))
        {
            command.arg("--root").arg(root);
        }
        if let Some(runroot) = self
            .global
            .runroot
            .as_deref()
            .filter(|r| !same(r, |c| &c.runroot))
        {
            command.arg("--runroot").arg(runroot);
        }
        command.args(args);
        command
    }

    fn output(&self, mut command: Command) -> anyhow::Result<String> {
        let shown = format!("{command:?}");
        let started = Instant::now();
        let out = command
            .output()
            .with_context(|| format!("running {shown}"))?;
        tracing::debug!(command = %shown, ms = started.elapsed().as_millis(), status = %out.status, "ran");
        if !out.status.success() {
            bail!(
                "{shown} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Containers that opted in.
    fn candidates(&self) -> anyhow::Result<Vec<Candidate>> {
        let ids = self.output(self.command(&["ps", "--all", "--quiet", "--no-trunc"]))?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["container", "inspect"];
        args.extend(&ids);
        let text = self.output(self.command(&args))?;
        let all: Vec<Value> =
            serde_json::from_str(&text).context("parsing podman container inspect")?;
        let mut out = Vec::new();
        for c in &all {
            let get = |key: &str, map: &str| {
                c.pointer(&format!("/Config/{map}/{}", key.replace('/', "~1")))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let Some(policy) = get(PODMAN_LABEL, "Labels") else {
                continue;
            };
            let ours = get(OPT_IN, "Labels").or_else(|| get(OPT_IN, "Annotations"));
            if ours.as_deref() != Some("rebase")
                || !["registry", "local"].contains(&policy.as_str())
            {
                continue;
            }
            let text = |p: &str| {
                c.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(Candidate {
                id: text("/Id"),
                name: text("/Name"),
                image_id: text("/Image"),
                image_name: text("/ImageName"),
                policy,
                unit: get(UNIT_LABEL, "Labels"),
                healthcheck: c
                    .pointer("/Config/Healthcheck")
                    .is_some_and(|h| !h.is_null()),
            });
        }
        Ok(out)
    }

    fn remote_digest(&self, name: &str, tls_verify: bool) -> anyhow::Result<String> {
        let mut command = Command::new("skopeo");
        command.args([
            "inspect",
            &format!("--tls-verify={tls_verify}"),
            "--format",
            "{{.Digest}}",
            &format!("docker://{name}"),
        ]);
        Ok(self.output(command)?.trim().to_string())
    }

    fn pull(&self, name: &str, tls_verify: bool) -> anyhow::Result<()> {
        let tls = format!("--tls-verify={tls_verify}");
        self.output(self.command(&["pull", "--quiet", &tls, name]))
            .map(drop)
    }

    fn restart(&self, c: &Candidate) -> anyhow::Result<()> {
        match &c.unit {
            Some(unit) => {
                let mut command = Command::new("systemctl");
                command.args(["restart", unit]);
                self.output(command).map(drop)
            }
            None => self
                // The container's own stop timeout applies, as with `podman restart`.
                .output(self.command(&["restart", &c.id]))
                .map(drop),
        }
    }

    /// Waits until `c` runs (and its healthcheck passes, if it has one).
    fn wait_healthy(&self, c: &Candidate, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let running = self
                .output(self.command(&[
                    "container",
                    "inspect",
                    "--format",
                    "{{.State.Running}}",
                    &c.id,
                ]))
                .map(|s| s.trim() == "true")
                .unwrap_or(false);
            let healthy = running
                && (!c.healthcheck
                    || self
                        .output(self.command(&["healthcheck", "run", &c.id]))
                        .is_ok());
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "container {} is not {} after {} s",
                    c.name,
                    if running { "healthy" } else { "running" },
                    wait.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
