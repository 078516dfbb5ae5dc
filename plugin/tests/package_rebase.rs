//! The rebase engine with package databases, on hand-written stores: with the default
//! policy the resolution layer serves the merged databases (apk three-way; dpkg `info/`
//! files of the winning stanza copied or hidden), a broken dependency refuses the rebase
//! unless allowed, and a malformed database fails with its file and line, writing nothing.

mod fake_store;

use std::fs;
use std::path::Path;

use fake_store::Fake;
use rebasefs_plugin::rebase::{self, NoProgress, Options};
use rebasefs_plugin::Error;

fn apk(name: &str, version: &str, deps: &str) -> String {
    let mut s = format!(
        "C:Q1{name}{}=\nP:{name}\nV:{version}\nA:x86_64\n",
        version.len()
    );
    if !deps.is_empty() {
        s.push_str(&format!("D:{deps}\n"));
    }
    s.push_str(&format!("F:usr/bin\nR:{name}\n\n"));
    s
}

fn dpkg(name: &str, version: &str, depends: &str) -> String {
    let mut s = format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n"
    );
    if !depends.is_empty() {
        s.push_str(&format!("Depends: {depends}\n"));
    }
    s.push('\n');
    s
}

fn opts(onto: &str) -> Options {
    Options {
        image: "app:1".into(),
        onto: Some(onto.into()),
        assign: true,
        ..Default::default()
    }
}

/// Names in the store's rebasefs directory (nothing but the writer lock after a failure).
fn rebasefs_dir(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("rebasefs"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn apk_databases_merge_three_way_and_broken_dependencies_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let installed_1 = apk("musl", "1.2.3-r0", "") + &apk("busybox", "1.36-r0", "so:libc.musl");
    let b = fake.layer(
        None,
        &[
            ("lib/apk/db/installed", &installed_1),
            ("etc/apk/world", "busybox\n"),
        ],
    );
    // The base update: musl upgraded, a package added.
    let installed_2 = apk("musl", "1.2.3-r1", "")
        + &apk("busybox", "1.36-r0", "so:libc.musl")
        + &apk("tzdata", "2024a-r0", "");
    let n = fake.layer(
        None,
        &[
            ("lib/apk/db/installed", &installed_2),
            ("etc/apk/world", "busybox\ntzdata\n"),
        ],
    );
    // A new base without musl: what curl needs is gone.
    let installed_broken = apk("busybox", "1.36-r0", "");
    let broken = fake.layer(
        None,
        &[
            ("lib/apk/db/installed", &installed_broken),
            ("etc/apk/world", "busybox\n"),
        ],
    );
    // The app installs curl (needs musl >= 1.2).
    let installed_app = installed_1.clone() + &apk("curl", "8.5.0-r0", "musl>=1.2");
    let a = fake.layer(
        Some(&b),
        &[
            ("lib/apk/db/installed", &installed_app),
            ("etc/apk/world", "busybox\ncurl\n"),
            ("usr/bin/curl", "curl"),
        ],
    );
    fake.image("localhost/base:1", &b, None);
    fake.image("localhost/base:2", &n, None);
    fake.image("localhost/base:broken", &broken, None);
    fake.image("localhost/app:1", &a, Some("localhost/base:1"));
    fake.save();
    let store = fake.store();

    let refused = rebase::rebase(&store, &opts("base:broken"), &NoProgress);
    match refused {
        Err(Error::BrokenDependencies { relations, .. }) => {
            assert!(
                relations.contains("curl") && relations.contains("musl>=1.2"),
                "{relations}"
            )
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(
        rebasefs_dir(tmp.path()),
        ["writer.lock"],
        "a refused rebase wrote"
    );
    let allowed = rebase::rebase(
        &store,
        &Options {
            dry_run: true,
            allow_broken_deps: true,
            ..opts("base:broken")
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        allowed.packages[0].broken.len(),
        1,
        "{:?}",
        allowed.packages
    );

    let report = rebase::rebase(&store, &opts("base:2"), &NoProgress).unwrap();
    let apk_report = &report.packages[0];
    let upgraded: Vec<(&str, &str, &str)> = apk_report
        .upgraded
        .iter()
        .map(|u| (u.name.as_str(), u.old.as_str(), u.new.as_str()))
        .collect();
    assert_eq!(upgraded, [("musl", "1.2.3-r0", "1.2.3-r1")]);
    assert_eq!(apk_report.added[0].name, "tzdata");
    assert_eq!(apk_report.app_kept[0].name, "curl");
    let resolution = &report.lowers[0];
    let merged = fs::read_to_string(resolution.join("lib/apk/db/installed")).unwrap();
    let names: Vec<&str> = merged
        .lines()
        .filter_map(|l| l.strip_prefix("P:"))
        .collect();
    let versions: Vec<&str> = merged
        .lines()
        .filter_map(|l| l.strip_prefix("V:"))
        .collect();
    assert_eq!(names, ["musl", "busybox", "tzdata", "curl"], "{merged}");
    assert_eq!(versions[0], "1.2.3-r1");
    let world = fs::read_to_string(resolution.join("etc/apk/world")).unwrap();
    assert_eq!(world, "busybox\ncurl\ntzdata\n");

    // Again: the resolution and its package report come from the repository.
    let again = rebase::rebase(&store, &opts("base:2"), &NoProgress).unwrap();
    assert!(again.resolution_reused);
    assert_eq!(again.packages, report.packages);
}

#[test]
fn dpkg_info_files_follow_the_winning_stanza_and_malformed_status_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = Fake::new(tmp.path());
    let status_1 = dpkg("libc6", "2.36-9", "") + &dpkg("libfoo", "1.0", "libc6");
    let b = fake.layer(
        None,
        &[
            ("var/lib/dpkg/status", &status_1),
            ("var/lib/dpkg/info/libfoo.list", "/usr/lib/libfoo.so.1\n"),
            ("var/lib/dpkg/info/libfoo.postinst", "#!/bin/sh\n"),
            ("usr/lib/libfoo.so.1", "foo 1.0"),
        ],
    );
    let status_2 = dpkg("libc6", "2.36-9", "") + &dpkg("libfoo", "1.1", "libc6");
    let n = fake.layer(
        None,
        &[
            ("var/lib/dpkg/status", &status_2),
            (
                "var/lib/dpkg/info/libfoo.list",
                "/usr/lib/libfoo.so.1\n/usr/share/doc/libfoo\n",
            ),
            (
                "var/lib/dpkg/info/libfoo.triggers",
                "activate-noawait ldconfig\n",
            ),
            ("usr/lib/libfoo.so.1", "foo 1.1"),
        ],
    );
    // The app installs app-tool and (as a reinstall does) rewrites libfoo's info files.
    let status_app = status_1.clone() + &dpkg("app-tool", "3.0", "libfoo (>= 1.0)");
    let a = fake.layer(
        Some(&b),
        &[
            ("var/lib/dpkg/status", &status_app),
            ("var/lib/dpkg/info/app-tool.list", "/usr/bin/app-tool\n"),
            ("var/lib/dpkg/info/libfoo.list", "/usr/lib/libfoo.so.1\n"),
            ("var/lib/dpkg/info/libfoo.postinst", "#!/bin/sh\n"),
            ("usr/bin/app-tool", "tool"),
        ],
    );
    let bad = fake.layer(
        Some(&b),
        &[(
            "var/lib/dpkg/status",
            &(status_1.clone() + "Package: broken\nVersion 1.0\n"),
        )],
    );
    fake.image("localhost/base:1", &b, None);
    fake.image("localhost/base:2", &n, None);
    fake.image("localhost/app:1", &a, Some("localhost/base:1"));
    fake.image("localhost/bad:1", &bad, Some("localhost/base:1"));
    fake.save();
    let store = fake.store();

    let failed = rebase::rebase(
        &store,
        &Options {
            image: "bad:1".into(),
            ..opts("base:2")
        },
        &NoProgress,
    );
    match failed {
        Err(e @ Error::PackageDb(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("var/lib/dpkg/status:") && text.contains(&bad),
                "{text}"
            );
        }
        other => panic!("malformed status accepted: {other:?}"),
    }
    assert_eq!(
        rebasefs_dir(tmp.path()),
        ["writer.lock"],
        "a failed rebase wrote"
    );

    let report = rebase::rebase(&store, &opts("base:2"), &NoProgress).unwrap();
    let dpkg_report = &report.packages[0];
    assert_eq!(dpkg_report.upgraded[0].name, "libfoo:amd64");
    assert_eq!(dpkg_report.app_kept[0].name, "app-tool:amd64");
    assert!(dpkg_report.broken.is_empty(), "{:?}", dpkg_report.broken);
    let layer = &report.lowers[0];
    let info = layer.join("var/lib/dpkg/info");
    // libfoo 1.1 won: its .list replaces the app's stale copy, the app's .postinst (which
    // 1.1 does not have) is hidden; the new .triggers already shows (nothing written).
    assert_eq!(
        fs::read_to_string(info.join("libfoo.list")).unwrap(),
        "/usr/lib/libfoo.so.1\n/usr/share/doc/libfoo\n"
    );
    assert!(info.join(".wh.libfoo.postinst").exists());
    assert!(!info.join("libfoo.triggers").exists() && !info.join("app-tool.list").exists());
    let status = fs::read_to_string(layer.join("var/lib/dpkg/status")).unwrap();
    assert_eq!(
        status,
        dpkg("app-tool", "3.0", "libfoo (>= 1.0)") + &status_2,
        "merged status, sorted as dpkg writes it"
    );
}
