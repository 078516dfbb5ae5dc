//! The dpkg merge on a real Debian image: old base = debootstrap minbase bookworm, new
//! base = the same plus the real bookworm-updates/-security upgrades, app = python3 and
//! its dependencies installed offline on the old base, rebuild = the same install on the
//! new base (scripts/pkg-fixtures.sh, cached). The rebased tree is simulated as the
//! overlay would serve it (new base + the app's layer = what the app install changed in
//! the old base) plus the merge's decisions; it must agree with the rebuild on the dpkg
//! and apt state, and dpkg/apt/python3 must work in it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_tree, fixture, run};
use rebasefs_plugin::pkgdb::view::Root;
use rebasefs_plugin::pkgdb::{dpkg, generated, ConflictChoice, Serve, Served};

/// Every path below `root` (relative), not following symlinks.
fn walk(root: &Path) -> BTreeMap<PathBuf, std::fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let Ok(reader) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for item in reader.flatten() {
            let child = rel.join(item.file_name());
            let meta = std::fs::symlink_metadata(item.path()).unwrap();
            if meta.is_dir() {
                pending.push(child.clone());
            }
            out.insert(child, meta);
        }
    }
    out
}

fn same(a: &Path, b: &Path, ma: &std::fs::Metadata, mb: &std::fs::Metadata) -> bool {
    if ma.file_type() != mb.file_type() || ma.mode() != mb.mode() {
        return false;
    }
    if ma.is_symlink() {
        return std::fs::read_link(a).ok() == std::fs::read_link(b).ok();
    }
    if ma.is_file() {
        return ma.len() == mb.len() && std::fs::read(a).ok() == std::fs::read(b).ok();
    }
    true
}

/// `base` + the layer that turned `before` into `after`, as the overlay serves it.
fn overlay_app_layer(base: &Path, before: &Path, after: &Path) {
    let (b, a) = (walk(before), walk(after));
    for (rel, ma) in &a {
        let changed = b
            .get(rel)
            .is_none_or(|mb| !same(&after.join(rel), &before.join(rel), ma, mb));
        if !changed || ma.is_dir() && base.join(rel).is_dir() {
            continue;
        }
        let target = base.join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.is_dir() && !ma.is_dir() {
                std::fs::remove_dir_all(&target).unwrap();
            } else if !m.is_dir() {
                std::fs::remove_file(&target).unwrap();
            }
        }
        if ma.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else if ma.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(after.join(rel)).unwrap(), &target)
                .unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(after.join(rel), &target).unwrap();
        }
    }
    for rel in b.keys().filter(|r| !a.contains_key(*r)) {
        let target = base.join(rel);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&target).unwrap(),
            Ok(_) => std::fs::remove_file(&target).unwrap(),
            Err(_) => {}
        }
    }
}

fn apply(root: &Path, files: &[Served], new_base: &Path, app: &Path) {
    for f in files {
        let target = root.join(&f.path);
        match &f.serve {
            Serve::Content(bytes) => std::fs::write(&target, bytes).unwrap(),
            Serve::Whiteout => {
                let _ = std::fs::remove_file(&target);
            }
            Serve::NewBase => {
                std::fs::copy(new_base.join(&f.path), &target).unwrap();
            }
            Serve::App => {
                std::fs::copy(app.join(&f.path), &target).unwrap();
            }
        }
    }
}

fn in_root(root: &Path, cmd: &str) -> String {
    run(Command::new("chroot")
        .arg(root)
        .args(["sh", "-c", cmd])
        .env("LC_ALL", "C"))
}

#[test]
fn rebased_debian_tree_agrees_with_a_rebuild() {
    let fx = fixture("deb");
    let (old, new, app, rebuild) = (
        fx.join("old-base"),
        fx.join("new-base"),
        fx.join("app"),
        fx.join("rebuild"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    copy_tree(&new, &merged);
    overlay_app_layer(&merged, &old, &app);
    // Without the merge the tree has the bug of issue 10: the app's status hides the
    // new base's, so dpkg reports the old versions of every upgraded package.
    let query = "dpkg-query -W -f '${Package} ${Version} ${Status}\\n'";
    assert_ne!(in_root(&merged, query), in_root(&rebuild, query));

    let started = std::time::Instant::now();
    let result = dpkg::merge(
        &Root(old.clone()),
        &Root(new.clone()),
        &Root(app.clone()),
        ConflictChoice::Ours,
    )
    .unwrap()
    .expect("the trees have dpkg");
    let gen = generated::plan(&Root(old.clone()), &Root(new.clone()), &Root(app.clone())).unwrap();
    eprintln!("merge of the bookworm fixture: {:?}", started.elapsed());
    apply(&merged, &result.files, &new, &app);
    apply(&merged, &gen.files, &new, &app);
    assert!(
        !gen.regenerate_ld_so_cache,
        "the update changes no sonames today"
    );

    // dpkg and apt state: byte-identical to the rebuild's.
    for rel in [
        dpkg::STATUS,
        dpkg::EXTENDED_STATES,
        "var/lib/dpkg/diversions",
        "var/lib/dpkg/statoverride",
    ] {
        assert_eq!(
            std::fs::read(merged.join(rel)).ok(),
            std::fs::read(rebuild.join(rel)).ok(),
            "{rel}"
        );
    }
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/triggers"] {
        let listing = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
            walk(&root.join(dir))
                .into_iter()
                .filter(|(_, m)| m.is_file())
                .map(|(p, _)| {
                    let bytes = std::fs::read(root.join(dir).join(&p)).unwrap();
                    (p, bytes)
                })
                .collect()
        };
        let (m, r) = (listing(&merged), listing(&rebuild));
        let differing: Vec<&PathBuf> = m
            .keys()
            .chain(r.keys())
            .filter(|p| m.get(*p) != r.get(*p))
            .collect();
        assert!(differing.is_empty(), "{dir}: {differing:?}");
    }
    assert_eq!(in_root(&merged, query), in_root(&rebuild, query));
    assert_eq!(in_root(&merged, "dpkg --audit"), "");
    in_root(&merged, "apt-get check -q");
    assert_eq!(in_root(&merged, "dpkg -V"), in_root(&rebuild, "dpkg -V"));
    assert_eq!(
        in_root(
            &merged,
            "python3 -B -c 'import zlib, lzma, sqlite3; print(zlib.ZLIB_RUNTIME_VERSION)'"
        ),
        in_root(
            &rebuild,
            "python3 -B -c 'import zlib, lzma, sqlite3; print(zlib.ZLIB_RUNTIME_VERSION)'"
        )
    );

    // The report lists exactly what the new base upgraded, and the app's packages.
    let upgraded: Vec<String> = result
        .report
        .upgraded
        .iter()
        .map(|u| {
            format!(
                "{} {} {}",
                u.name.split(':').next().unwrap_or(""),
                u.old,
                u.new
            )
        })
        .collect();
    let mut expected: Vec<String> = std::fs::read_to_string(fx.join("upgraded.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    expected.sort();
    let mut got = upgraded.clone();
    got.sort();
    assert_eq!(got, expected);
    assert!(result.report.upgraded.iter().all(|u| u.upgrade));
    let debs = std::fs::read_dir(fx.join("debs")).unwrap().count();
    assert_eq!(result.report.app_kept.len(), debs);
    assert!(
        result.report.broken.is_empty(),
        "{:?}",
        result.report.broken
    );
    assert!(result.report.both_changed.is_empty());
    assert!(result.report.added.is_empty() && result.report.removed.is_empty());
    eprintln!("{}", result.report.text());
}
