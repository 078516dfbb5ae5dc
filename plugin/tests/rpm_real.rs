//! The rpm merge against the real rpm (Debian's `rpm` 4.18, installed by scripts/setup.sh):
//! old base / new base (one package upgraded) / app (one more package, which Requires a
//! base package) made with `rpm --root --initdb` + `rpm -i` of RPMs built by rpmbuild.
//! The merged tree (new base + the app's layer + the merged rpmdb) must answer `-qa`,
//! `-qf`, `--whatprovides` and `-V -a` like the rebuild (the app installed on the new
//! base), and its index tables must equal the ones rpm wrote for the rebuild.

mod common;

use std::path::Path;
use std::process::Command;

use common::{copy_tree, fixture, run};
use rebasefs_plugin::pkgdb::rpm::{self, rpmdb};
use rebasefs_plugin::pkgdb::view::Root;
use rebasefs_plugin::pkgdb::{ConflictChoice, Serve};

fn rpm_q(root: &Path, args: &[&str]) -> String {
    run(Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args))
}

#[test]
fn merged_rpmdb_answers_like_a_rebuild() {
    let fx = fixture("rpm");
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    copy_tree(&fx.join("new-base"), &merged);
    run(Command::new("tar")
        .arg("-C")
        .arg(&merged)
        .arg("-xf")
        .arg(fx.join("app-layer.tar")));
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let result = rpm::merge(
        &Root(fx.join("old-base")),
        &Root(fx.join("new-base")),
        &Root(fx.join("app")),
        ConflictChoice::Ours,
        &scratch,
    )
    .unwrap()
    .expect("the trees have an rpmdb");
    for file in &result.files {
        let path = merged.join(&file.path);
        match &file.serve {
            Serve::Content(bytes) => std::fs::write(&path, bytes).unwrap(),
            Serve::Whiteout => {
                let _ = std::fs::remove_file(&path);
            }
            other => panic!("unexpected {other:?} for {}", file.path.display()),
        }
    }
    // Written checkpointed: nothing beside the database (before rpm itself opens it).
    for side in ["rpmdb.sqlite-wal", "rpmdb.sqlite-shm"] {
        assert!(
            !merged.join("var/lib/rpm").join(side).exists(),
            "{side} left behind"
        );
    }
    let rebuild = fx.join("rebuild");
    assert_eq!(rpm_q(&merged, &["-qa"]), rpm_q(&rebuild, &["-qa"]));
    assert_eq!(
        rpm_q(&merged, &["-qa"]).lines().collect::<Vec<_>>(),
        [
            "rpmfix-lib-1.0-1.noarch",
            "rpmfix-base-1.1-1.noarch",
            "rpmfix-app-1.0-1.noarch"
        ]
    );
    assert_eq!(rpm_q(&merged, &["-V", "-a"]), "", "rpm -V -a is clean");
    assert_eq!(
        rpm_q(&merged, &["-qf", "/usr/share/rpmfix-app/data.txt"]).trim(),
        "rpmfix-app-1.0-1.noarch"
    );
    assert_eq!(
        rpm_q(&merged, &["-q", "--whatprovides", "rpmfix-lib-capability"]).trim(),
        "rpmfix-lib-1.0-1.noarch"
    );
    assert_eq!(
        rpm_q(&merged, &["-q", "--whatrequires", "rpmfix-lib"]).trim(),
        "rpmfix-app-1.0-1.noarch"
    );
    // Every index row (key, hnum, idx) is what rpm itself wrote for the rebuild.
    let db = Path::new("var/lib/rpm/rpmdb.sqlite");
    let ours = rpmdb::dump_indexes(&merged.join(db)).unwrap();
    let theirs = rpmdb::dump_indexes(&rebuild.join(db)).unwrap();
    assert_eq!(ours.len(), 18, "all of rpm 4.18's index tables");
    for (table, rows) in &theirs {
        assert_eq!(ours.get(table), Some(rows), "index table {table}");
    }
    // The report: the base upgraded rpmfix-base, the app's rpmfix-app is kept, and its
    // Requires are satisfied by the merged set.
    let r = &result.report;
    assert_eq!(r.upgraded.len(), 1);
    assert_eq!(
        (
            r.upgraded[0].name.as_str(),
            r.upgraded[0].old.as_str(),
            r.upgraded[0].new.as_str()
        ),
        ("rpmfix-base.noarch", "1.0-1", "1.1-1")
    );
    assert_eq!(r.app_kept.len(), 1);
    assert!(r.broken.is_empty(), "{:?}", r.broken);
    assert!(r.both_changed.is_empty());
}
