//! A rebased container must equal a rebuild (issue 10), on real images and real Podman.
//!
//! Debian: old base = debootstrap minbase bookworm, new base = the same plus the real
//! bookworm-updates/-security upgrades (scripts/pkg-fixtures.sh, cached), app = python3
//! installed offline on the old base. The app's container c1 is rebased with the default
//! policy and restarted; the rebuild is the same install on the new base. They must agree
//! on `dpkg-query -W`, `dpkg --audit` must be empty, `apt-get check` clean, python3 must
//! run and c1's own file must survive. rpm: tiny RPMs installed with `rpm --root`; the
//! rebased tree's `rpm -qa` must equal the rebuild's and `rpm -Va` be clean. And the safe
//! default: a new base that breaks an app package's dependency refuses the rebase.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::pkg_fixtures::{
    build_deb_app, build_rpm_app, dpkg_versions, fixture, import_rootfs, rpm_query,
};
use rebasefs_tests::podman::Podman;
use rebasefs_tests::rebase_story::{hooks_dir, Cli, InspectMount};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const BASE: &str = "localhost/pkgdb/debian:bookworm";
const APP: &str = "localhost/pkgdb/app:1";
const REBUILD: &str = "localhost/pkgdb/app-rebuild:1";
const QUERY: &str = "dpkg-query -W -f '${Package} ${Version} ${Status}\\n'";
/// dpkg and apt must find nothing wrong, and the app must run on the new libraries.
const HEALTH: &str = "dpkg --audit && apt-get check -q && python3 -c 'import zlib, lzma; print(zlib.ZLIB_RUNTIME_VERSION)'";

/// `name old new` per package the fixture's upgrade changed.
fn upgraded(fixture: &Path) -> Result<Vec<(String, String, String)>> {
    let text = std::fs::read_to_string(fixture.join("upgraded.txt"))?;
    let mut out: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.into(), f.next()?.into(), f.next()?.into()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Package names of a `dpkg-query` listing.
fn names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// The report of database `format` in a rebase's JSON report.
fn package_report<'a>(report: &'a Value, format: &str) -> Result<&'a Value> {
    report["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["format"] == format))
        .with_context(|| format!("no {format} package report in {report}"))
}

/// Package names (without `:arch`) of one report list.
fn listed(report: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = report[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["name"].as_str())
                .map(|n| n.split(':').next().unwrap_or(n).to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn debian_rebase_equals_rebuild() -> Result<()> {
    let _serial = serial();
    let started = Instant::now();
    let fx = fixture("deb")?;
    let podman = Podman::new()?;
    let cli = Cli::new(&podman);
    let hooks = hooks_dir(&podman)?;
    let hooks = hooks.to_string_lossy().into_owned();

    // The app on the old base, and its container c1 writing a file of its own.
    import_rootfs(&podman, &fx.join("old-base.tar"), BASE)?;
    build_deb_app(&podman, &fx, BASE, APP)?;
    podman.run(&[
        "--hooks-dir",
        &hooks,
        "run",
        "--detach",
        "--name",
        "c1",
        APP,
        "sleep",
        "1000000",
    ])?;
    podman.run(&["exec", "c1", "sh", "-c", "echo mine > /root/c1-note"])?;
    // The base update: the tag moves to the upgraded base; the rebuild is built FROM it.
    import_rootfs(&podman, &fx.join("new-base.tar"), BASE)?;
    build_deb_app(&podman, &fx, BASE, REBUILD)?;
    let images_ready = started.elapsed();

    // The plan first (nothing written), then the rebase with the default policy.
    let dry = cli.json(&["rebase", APP, "--dry-run"])?;
    let step = Instant::now();
    let report = cli.json(&["rebase", APP])?;
    let rebase_wall = step.elapsed();
    let text = cli.run(&["rebase", APP, "--dry-run"])?;
    eprintln!("--- rebasefs rebase {APP} --dry-run (after the rebase) ---\n{text}---");
    ensure!(
        report["policy"] == "upper-wins merge packages",
        "default policy: {}",
        report["policy"]
    );
    for r in [&dry, &report] {
        let dpkg = package_report(r, "dpkg")?;
        let want: Vec<(String, String, String)> = upgraded(&fx)?;
        let mut got: Vec<(String, String, String)> = dpkg["upgraded"]
            .as_array()
            .context("upgraded")?
            .iter()
            .map(|u| {
                let name = u["name"].as_str().unwrap_or("");
                (
                    name.split(':').next().unwrap_or(name).to_string(),
                    u["old"].as_str().unwrap_or("").to_string(),
                    u["new"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        got.sort();
        ensure!(got == want, "upgraded: {got:?}\nwant {want:?}");
        let mut app_added: Vec<String> = names(&dpkg_versions(&fx.join("app"))?)
            .into_iter()
            .filter(|n| {
                !names(&dpkg_versions(&fx.join("old-base")).unwrap_or_default()).contains(n)
            })
            .collect();
        app_added.sort();
        ensure!(
            listed(dpkg, "app_kept") == app_added,
            "app kept: {:?} want {app_added:?}",
            listed(dpkg, "app_kept")
        );
        ensure!(
            dpkg["broken"] == serde_json::json!([]),
            "broken: {}",
            dpkg["broken"]
        );
        ensure!(
            dpkg["both_changed"] == serde_json::json!([]),
            "both: {}",
            dpkg["both_changed"]
        );
    }

    // c1 moves onto the new base at its restart.
    podman.run(&["--hooks-dir", &hooks, "restart", "--time", "0", "c1"])?;
    let rebased = podman.run(&["exec", "c1", "sh", "-c", QUERY])?;
    let rebuilt = podman.run(&["run", "--rm", REBUILD, "sh", "-c", QUERY])?;
    ensure!(
        rebased == rebuilt,
        "dpkg-query differs:\n{}",
        diff_lines(&rebased, &rebuilt)
    );
    let health = podman.run(&["exec", "c1", "sh", "-c", HEALTH])?;
    let rebuilt_health = podman.run(&["run", "--rm", REBUILD, "sh", "-c", HEALTH])?;
    ensure!(
        health == rebuilt_health && health.trim().ends_with("1.2.13"),
        "health: {health:?} vs rebuild {rebuilt_health:?}"
    );
    let verify = "dpkg -V; echo rc=$?";
    let (v1, v2) = (
        podman.run(&["exec", "c1", "sh", "-c", verify])?,
        podman.run(&["run", "--rm", REBUILD, "sh", "-c", verify])?,
    );
    ensure!(v1 == v2, "dpkg -V: {v1:?} vs rebuild {v2:?}");
    let note = podman.run(&["exec", "c1", "cat", "/root/c1-note"])?;
    ensure!(note == "mine\n", "c1's own file: {note:?}");

    // What a scanner reading the image (not a container) sees.
    let dir = podman.dir().join("inspect");
    std::fs::create_dir_all(&dir)?;
    let dir_arg = dir.to_string_lossy().into_owned();
    cli.run(&["mount", APP, &dir_arg])?;
    let inspect = InspectMount::new(dir.clone());
    let mounted = dpkg_versions(&dir);
    inspect.unmount(&cli)?;
    ensure!(mounted? == rebuilt, "inspection mount's dpkg-query differs");

    // status shows the stack's package counts.
    let status = cli.json(&["status"])?;
    let app = status["images"]
        .as_array()
        .and_then(|is| is.iter().find(|i| i["name"] == APP))
        .context("app in status")?;
    ensure!(
        app["packages"]["upgraded"].as_u64() == Some(upgraded(&fx)?.len() as u64),
        "status packages: {}",
        app["packages"]
    );
    eprintln!(
        "debian: images {images_ready:?}, rebase {rebase_wall:?} (engine {} ms), total {:?}",
        report["elapsed_ms"],
        started.elapsed()
    );
    podman.run(&["rm", "--force", "--time", "0", "c1"])?;
    podman.finish()
}

/// The lines only one side has, for a failure message.
fn diff_lines(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in la.iter().filter(|l| !lb.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in lb.iter().filter(|l| !la.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

#[test]
fn rpm_rebase_equals_rebuild_and_broken_requires_refuse() -> Result<()> {
    let _serial = serial();
    let started = Instant::now();
    let fx = fixture("rpm")?;
    let podman = Podman::new()?;
    let cli = Cli::new(&podman);
    let (base1, base2, app, rebuild) = (
        "localhost/pkgdb/rpmbase:1",
        "localhost/pkgdb/rpmbase:2",
        "localhost/pkgdb/rpmapp:1",
        "localhost/pkgdb/rpmapp-rebuild:1",
    );
    import_rootfs(&podman, &fx.join("old-base.tar"), base1)?;
    import_rootfs(&podman, &fx.join("new-base.tar"), base2)?;
    build_rpm_app(&podman, &fx, "app-layer.tar", base1, app)?;
    build_rpm_app(&podman, &fx, "rebuild-layer.tar", base2, rebuild)?;

    // A new base without the library the app Requires: refused, and named.
    let broken_root = podman.work().join("rpm-broken-base");
    copy_dir(&fx.join("new-base"), &broken_root)?;
    rpm_query(&broken_root, &["-e", "--nodeps", "rpmfix-lib"])?;
    let tar = podman.work().join("rpm-broken-base.tar");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(&broken_root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()?;
    ensure!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    import_rootfs(&podman, &tar, "localhost/pkgdb/rpmbase:broken")?;
    let (code, stderr) = cli.fail(&["rebase", app, "--onto", "localhost/pkgdb/rpmbase:broken"])?;
    ensure!(
        code == 1 && stderr.contains("rpmfix-lib") && stderr.contains("--allow-broken-deps"),
        "refusal: {code} {stderr}"
    );
    let allowed = cli.json(&[
        "rebase",
        app,
        "--onto",
        "localhost/pkgdb/rpmbase:broken",
        "--dry-run",
        "--allow-broken-deps",
    ])?;
    let broken = &package_report(&allowed, "rpm")?["broken"];
    ensure!(
        broken.as_array().is_some_and(|b| b.len() == 1)
            && broken[0]["relation"]
                .as_str()
                .is_some_and(|r| r.starts_with("rpmfix-lib")),
        "broken: {broken}"
    );

    // The real rebase: rpm on the rebased tree agrees with the rebuild.
    let report = cli.json(&["rebase", app, "--onto", base2])?;
    let rpm = package_report(&report, "rpm")?;
    ensure!(
        listed(rpm, "upgraded") == ["rpmfix-base.noarch"]
            && listed(rpm, "app_kept") == ["rpmfix-app.noarch"],
        "rpm report: {rpm}"
    );
    let dir = podman.dir().join("inspect");
    std::fs::create_dir_all(&dir)?;
    let dir_arg = dir.to_string_lossy().into_owned();
    cli.run(&["mount", app, &dir_arg])?;
    let inspect = InspectMount::new(dir.clone());
    let rebased = rpm_query(&dir, &["-qa"]);
    let verify = rpm_query(&dir, &["-Va"]);
    let leftovers = ["rpmdb.sqlite-wal", "rpmdb.sqlite-shm"]
        .iter()
        .filter(|f| dir.join("var/lib/rpm").join(f).exists())
        .count();
    inspect.unmount(&cli)?;
    let mnt = podman.run(&["image", "mount", rebuild])?;
    let rebuilt = rpm_query(Path::new(mnt.trim()), &["-qa"]);
    podman.run(&["image", "umount", rebuild])?;
    let (rebased, rebuilt) = (rebased?, rebuilt?);
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort();
        v.join("\n")
    };
    ensure!(
        sorted(&rebased) == sorted(&rebuilt),
        "rpm -qa: {rebased} vs {rebuilt}"
    );
    ensure!(verify?.is_empty(), "rpm -Va is not clean");
    ensure!(leftovers == 0, "stale -wal/-shm in the rebased rpmdb");
    eprintln!(
        "rpm: {:?} (rebase {} ms)",
        started.elapsed(),
        report["elapsed_ms"]
    );
    podman.finish()
}

/// `cp -a` of a fixture root.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()?;
    ensure!(
        out.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
