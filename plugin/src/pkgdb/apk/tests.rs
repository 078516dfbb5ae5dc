//! The 3-way cases on synthetic apk databases (apk-tools is not packaged in Debian).

use super::*;
use crate::pkgdb::merge3::Case;
use crate::pkgdb::view::Root;
use crate::pkgdb::Serve;
use crate::test_support::write;

fn pkg(name: &str, version: &str, deps: &str) -> String {
    let csum = version.replace('.', "");
    let mut s =
        format!("C:Q1{name}{csum}=\nP:{name}\nV:{version}\nA:x86_64\nT:test package {name}\n");
    if !deps.is_empty() {
        s.push_str(&format!("D:{deps}\n"));
    }
    s.push_str(&format!(
        "p:cmd:{name}={version}\nF:usr/bin\nR:{name}\na:0:0:755\nZ:Q1sum{name}{version}=\n"
    ));
    s
}

fn db(pkgs: &[String]) -> String {
    pkgs.iter().map(|p| format!("{p}\n")).collect()
}

fn scripts(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn content<'a>(m: &'a Merged, rel: &str) -> &'a [u8] {
    m.files
        .iter()
        .find_map(|f| match &f.serve {
            Serve::Content(c) if f.path == Path::new(rel) => Some(c.as_slice()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {rel}"))
}

#[test]
fn every_three_way_case() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, t, o) = (
        tmp.path().join("a"),
        tmp.path().join("t"),
        tmp.path().join("o"),
    );
    write(
        &a,
        INSTALLED,
        &db(&[
            pkg("musl", "1.2.4-r1", ""),
            pkg("busybox", "1.36.1-r5", "so:libc"),
            pkg("zlib", "1.3-r0", ""),
            pkg("old", "1-r0", ""),
            pkg("both", "1-r0", ""),
        ]),
    );
    write(
        &t,
        INSTALLED,
        &db(&[
            pkg("musl", "1.2.4-r2", ""),
            pkg("busybox", "1.36.1-r5", "so:libc"),
            pkg("zlib", "1.3-r0", ""),
            pkg("both", "2-r0", ""),
            pkg("ssl", "3.1-r0", ""),
        ]),
    );
    write(
        &o,
        INSTALLED,
        &db(&[
            pkg("musl", "1.2.4-r1", ""),
            pkg("busybox", "1.36.1-r6", "so:libc"),
            pkg("old", "1-r0", ""),
            pkg("both", "3-r0", ""),
            pkg("python3", "3.11.6-r0", "musl>=1.2 zlib cmd:busybox"),
        ]),
    );
    write(&a, WORLD, "busybox\nzlib\n");
    write(&t, WORLD, "busybox\nzlib\nssl\n");
    write(&o, WORLD, "busybox\npython3\n");
    std::fs::write(
        a.join(SCRIPTS),
        scripts(&[("busybox-1.36.1-r5.Q1busybox1361-r5=.post-install", "a")]),
    )
    .unwrap();
    std::fs::write(
        t.join(SCRIPTS),
        scripts(&[
            ("busybox-1.36.1-r5.Q1busybox1361-r5=.post-install", "a"),
            ("ssl-3.1-r0.Q1ssl31-r0=.post-install", "t"),
        ]),
    )
    .unwrap();
    std::fs::write(
        o.join(SCRIPTS),
        scripts(&[
            ("busybox-1.36.1-r6.Q1busybox1361-r6=.post-install", "o"),
            ("python3-3.11.6-r0.Q1python33116-r0=.pre-install", "p"),
        ]),
    )
    .unwrap();
    write(&t, TRIGGERS, "Q1busybox1361-r5= /bin /usr/bin\n");
    write(&o, TRIGGERS, "Q1busybox1361-r6= /bin /usr/bin\n");
    let m = merge(&Root(a), &Root(t), &Root(o), ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    let installed = String::from_utf8(content(&m, INSTALLED).to_vec()).unwrap();
    let names: Vec<&str> = installed
        .lines()
        .filter_map(|l| l.strip_prefix("P:"))
        .collect();
    // musl: base upgraded; busybox: app upgraded; zlib: app removed; both: conflict (app);
    // ssl: base added; old: base removed; python3: app added (after the base's packages).
    assert_eq!(names, ["musl", "busybox", "both", "ssl", "python3"]);
    assert!(installed.contains("P:musl\nV:1.2.4-r2\n"));
    assert!(
        installed.contains("R:python3\na:0:0:755\nZ:Q1sumpython33.11.6-r0=\n"),
        "file lists travel with the package"
    );
    assert_eq!(content(&m, WORLD), b"busybox\npython3\nssl\n");
    let mut archive = tar::Archive::new(content(&m, SCRIPTS));
    let entries: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(
        entries,
        [
            "busybox-1.36.1-r6.Q1busybox1361-r6=.post-install",
            "ssl-3.1-r0.Q1ssl31-r0=.post-install",
            "python3-3.11.6-r0.Q1python33116-r0=.pre-install"
        ]
    );
    assert_eq!(content(&m, TRIGGERS), b"Q1busybox1361-r6= /bin /usr/bin\n");
    let r = &m.report;
    assert_eq!(
        r.upgraded
            .iter()
            .map(|u| (u.name.as_str(), u.new.as_str()))
            .collect::<Vec<_>>(),
        [("musl", "1.2.4-r2")]
    );
    assert_eq!(r.both_changed.len(), 1);
    assert_eq!(r.both_changed[0].case, Case::BothChanged);
    assert_eq!(r.both_changed[0].base_vs_app.as_deref(), Some("<"));
    assert_eq!(r.removed.len(), 1);
    assert_eq!(r.app_removed.len(), 1);
    // python3 needs zlib, which the app itself removed in this synthetic case: already
    // unsatisfied in the app's db, so not blamed on the rebase.
    assert!(r.broken.is_empty(), "{:?}", r.broken);
}

#[test]
fn broken_by_the_new_base() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, t, o) = (
        tmp.path().join("a"),
        tmp.path().join("t"),
        tmp.path().join("o"),
    );
    write(&a, INSTALLED, &db(&[pkg("lib", "1-r0", "")]));
    write(&t, INSTALLED, &db(&[pkg("lib2", "2-r0", "")]));
    write(
        &o,
        INSTALLED,
        &db(&[
            pkg("lib", "1-r0", ""),
            pkg("app", "1-r0", "lib>=1 cmd:lib !conflicting"),
        ]),
    );
    let m = merge(&Root(a), &Root(t), &Root(o), ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    let b: Vec<&str> = m
        .report
        .broken
        .iter()
        .map(|b| b.relation.as_str())
        .collect();
    assert_eq!(b, ["lib>=1", "cmd:lib"]);
}

#[test]
fn malformed_installed_db() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("r");
    write(&r, INSTALLED, "P:a\nV:1\nthis is not apk\n");
    let err = merge(
        &Root(r.clone()),
        &Root(r.clone()),
        &Root(r.clone()),
        ConflictChoice::Ours,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with("lib/apk/db/installed:3: expected `Field: value`, found \"this is not apk\""),
        "{err}"
    );
    write(&r, INSTALLED, "V:1\n");
    let err = merge(
        &Root(r.clone()),
        &Root(r.clone()),
        &Root(r),
        ConflictChoice::Ours,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with(":1: stanza has no P: (package name)"),
        "{err}"
    );
}

/// Generated installed databases survive parse -> write, and a self-merge is the identity.
#[test]
fn generated_round_trip() {
    let mut rng = crate::pkgdb::testgen::Rng::new(11);
    for round in 0..50 {
        let n = 1 + rng.below(8);
        let pkgs: Vec<String> = (0..n)
            .map(|i| {
                pkg(
                    &format!("p{i}{}", rng.word("abc", 3)),
                    &format!("{}.{}-r{}", rng.below(5), rng.below(9), rng.below(3)),
                    "",
                )
            })
            .collect();
        let text = db(&pkgs);
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("r");
        write(&r, INSTALLED, &text);
        let m = merge(
            &Root(r.clone()),
            &Root(r.clone()),
            &Root(r),
            ConflictChoice::Ours,
        )
        .unwrap()
        .unwrap();
        assert_eq!(content(&m, INSTALLED), text.as_bytes(), "round {round}");
    }
}
