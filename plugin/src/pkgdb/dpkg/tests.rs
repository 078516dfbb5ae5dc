//! The 3-way cases of issue 10 on synthetic admin directories.

use super::*;
use crate::pkgdb::view::Root;
use crate::test_support::write;

fn stanza(name: &str, arch: &str, version: &str, extra: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n{extra}"
    )
}

fn status(stanzas: &[String]) -> String {
    stanzas.iter().map(|s| format!("{s}\n")).collect()
}

struct Trees {
    _tmp: tempfile::TempDir,
    a: Root,
    t: Root,
    o: Root,
}

fn trees(a: &[String], t: &[String], o: &[String]) -> Trees {
    let tmp = tempfile::tempdir().unwrap();
    let root = |n: &str, st: &[String]| {
        let dir = tmp.path().join(n);
        write(&dir, STATUS, &status(st));
        Root(dir)
    };
    let (a, t, o) = (root("a", a), root("t", t), root("o", o));
    Trees { _tmp: tmp, a, t, o }
}

fn content<'a>(m: &'a Merged, rel: &str) -> &'a str {
    m.files
        .iter()
        .find_map(|f| match &f.serve {
            Serve::Content(c) if f.path == Path::new(rel) => std::str::from_utf8(c).ok(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no content for {rel}"))
}

fn served(m: &Merged, rel: &str) -> Option<Serve> {
    m.files
        .iter()
        .find(|f| f.path == Path::new(rel))
        .map(|f| f.serve.clone())
}

#[test]
fn every_three_way_case() {
    let conf = "Conffiles:\n /etc/a.conf 0123456789abcdef0123456789abcdef\n";
    let a = [
        stanza("base-only-changed", "amd64", "1.0", ""),
        stanza("app-only-changed", "amd64", "1.0", ""),
        stanza("both-changed", "amd64", "1.0", ""),
        stanza("removed-by-app", "amd64", "1.0", ""),
        stanza("removed-by-base", "all", "1.0", ""),
        stanza("app-removed-base-upgraded", "amd64", "1.0", ""),
        stanza("libm", "amd64", "1.0", "Multi-Arch: same\n"),
        stanza("libm", "i386", "1.0", "Multi-Arch: same\n"),
        stanza("untouched", "amd64", "1.0", conf),
    ];
    let t = [
        stanza("base-only-changed", "amd64", "1.1", "Config-Version: 1.0\n"),
        stanza("app-only-changed", "amd64", "1.0", ""),
        stanza("both-changed", "amd64", "1.2", ""),
        stanza("removed-by-app", "amd64", "1.0", ""),
        stanza("added-by-base", "amd64", "3.0", ""),
        stanza("app-removed-base-upgraded", "amd64", "1.1", ""),
        stanza("libm", "amd64", "1.1", "Multi-Arch: same\n"),
        stanza("libm", "i386", "1.0", "Multi-Arch: same\n"),
        stanza("untouched", "amd64", "1.0", conf),
    ];
    let o = [
        stanza(
            "app",
            "amd64",
            "7",
            "Depends: base-only-changed (>= 1.0), libm (>= 1.0)\n",
        ),
        stanza(
            "app-only-changed",
            "amd64",
            "1.0",
            "Triggers-Pending: ldconfig\n",
        ),
        stanza("base-only-changed", "amd64", "1.0", ""),
        stanza("both-changed", "amd64", "1.1", ""),
        stanza("libm", "amd64", "1.0", "Multi-Arch: same\n"),
        stanza("libm", "i386", "1.1", "Multi-Arch: same\n"),
        stanza("removed-by-base", "all", "1.0", ""),
        stanza("untouched", "amd64", "1.0", conf),
    ];
    let tr = trees(&a, &t, &o);
    let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    let expected = status(&[
        stanza("added-by-base", "amd64", "3.0", ""),
        stanza(
            "app",
            "amd64",
            "7",
            "Depends: base-only-changed (>= 1.0), libm (>= 1.0)\n",
        ),
        stanza(
            "app-only-changed",
            "amd64",
            "1.0",
            "Triggers-Pending: ldconfig\n",
        ),
        stanza("base-only-changed", "amd64", "1.1", "Config-Version: 1.0\n"),
        stanza("both-changed", "amd64", "1.1", ""),
        stanza("libm", "amd64", "1.1", "Multi-Arch: same\n"),
        stanza("libm", "i386", "1.1", "Multi-Arch: same\n"),
        stanza("untouched", "amd64", "1.0", conf),
    ]);
    assert_eq!(content(&m, STATUS), expected);
    let r = &m.report;
    let names =
        |v: &[crate::pkgdb::report::Package]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    let upgraded: Vec<(String, String, String)> = r
        .upgraded
        .iter()
        .map(|u| (u.name.clone(), u.old.clone(), u.new.clone()))
        .collect();
    assert_eq!(
        upgraded,
        [
            ("base-only-changed:amd64".into(), "1.0".into(), "1.1".into()),
            ("libm:amd64".into(), "1.0".into(), "1.1".into()),
        ]
    );
    assert_eq!(names(&r.added), ["added-by-base:amd64"]);
    assert_eq!(names(&r.removed), ["removed-by-base:all"]);
    assert_eq!(
        names(&r.app_kept),
        ["app:amd64", "app-only-changed:amd64", "libm:i386"]
    );
    assert_eq!(
        names(&r.app_removed),
        ["app-removed-base-upgraded:amd64", "removed-by-app:amd64"]
    );
    assert_eq!(r.both_changed.len(), 1);
    let both = &r.both_changed[0];
    assert_eq!(both.name, "both-changed:amd64");
    assert_eq!(
        (
            both.base.as_deref(),
            both.app.as_deref(),
            both.base_vs_app.as_deref()
        ),
        (Some("1.2"), Some("1.1"), Some(">"))
    );
    assert_eq!(both.chosen, Winner::Ours);
    assert!(r.broken.is_empty(), "{:?}", r.broken);

    // Theirs for conflicts: the new base's stanza.
    let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Theirs)
        .unwrap()
        .unwrap();
    assert!(content(&m, STATUS).contains(
        "Package: both-changed\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.2\n"
    ));
}

#[test]
fn broken_dependencies_are_reported() {
    let a = [stanza("libx", "amd64", "1.0", "")];
    let t = [stanza(
        "libx2",
        "amd64",
        "2.0",
        "Provides: libx-compat (= 1.5)\n",
    )];
    let o = [
        stanza("libx", "amd64", "1.0", ""),
        stanza(
            "app",
            "amd64",
            "1",
            "Depends: libx (>= 1.0) | libx-compat (>= 1.6)\nPre-Depends: libx-compat\n",
        ),
    ];
    let tr = trees(&a, &t, &o);
    let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    let broken: Vec<(&str, &str)> = m
        .report
        .broken
        .iter()
        .map(|b| (b.field.as_str(), b.relation.as_str()))
        .collect();
    // Pre-Depends on the virtual package was not satisfied before either: not blamed.
    assert_eq!(
        broken,
        [("Depends", "libx (>= 1.0) | libx-compat (>= 1.6)")]
    );
    assert!(m.report.text().contains("BROKEN: app:amd64 1: Depends"));
}

#[test]
fn journal_is_folded_and_hidden() {
    let a = [stanza("p", "amd64", "1", "")];
    let tr = trees(&a, &a, &a);
    write(
        &tr.o.0,
        "var/lib/dpkg/updates/0001",
        &stanza("p", "amd64", "2", ""),
    );
    write(
        &tr.o.0,
        "var/lib/dpkg/updates/0000",
        &stanza("q", "amd64", "1", ""),
    );
    write(
        &tr.o.0,
        "var/lib/dpkg/updates/tmp.i",
        "garbage that dpkg ignores",
    );
    let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    assert_eq!(
        content(&m, STATUS),
        status(&[stanza("p", "amd64", "2", ""), stanza("q", "amd64", "1", "")])
    );
    assert_eq!(
        served(&m, "var/lib/dpkg/updates/0000"),
        Some(Serve::Whiteout)
    );
    assert_eq!(
        served(&m, "var/lib/dpkg/updates/0001"),
        Some(Serve::Whiteout)
    );
    assert_eq!(served(&m, "var/lib/dpkg/updates/tmp.i"), None);
}

#[test]
fn malformed_stanza_is_an_error_naming_the_file_and_line() {
    let a = [stanza("p", "amd64", "1", "")];
    let tr = trees(&a, &a, &a);
    write(
        &tr.t.0,
        STATUS,
        "Package: p\nStatus: install ok installed\nthis line is broken\n",
    );
    let err = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}:3: expected `Field: value`, found \"this line is broken\"",
            tr.t.0.join(STATUS).display()
        )
    );
    write(&tr.t.0, STATUS, &status(&[a[0].clone(), a[0].clone()]));
    let err = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap_err()
        .to_string();
    assert!(err.ends_with(":6: second stanza for p:amd64"), "{err}");
}

#[test]
fn extended_states_admin_files_and_info() {
    let a = [
        stanza("z", "amd64", "1", ""),
        stanza("gone", "all", "1", ""),
    ];
    let t = [stanza("z", "amd64", "2", "")];
    let o = [
        stanza("z", "amd64", "1", ""),
        stanza("gone", "all", "1", ""),
        stanza("py", "amd64", "3", ""),
    ];
    let tr = trees(&a, &t, &o);
    let es = "Package: libfoo\nArchitecture: amd64\nAuto-Installed: 1\n";
    write(
        &tr.o.0,
        EXTENDED_STATES,
        &format!("{es}\nPackage: py-dep\nArchitecture: amd64\nAuto-Installed: 1\n"),
    );
    write(&tr.a.0, EXTENDED_STATES, es);
    write(
        &tr.t.0,
        EXTENDED_STATES,
        &format!("{es}\nPackage: newdep\nArchitecture: all\nAuto-Installed: 1\n"),
    );
    write(
        &tr.t.0,
        "var/lib/dpkg/triggers/File",
        "/usr/lib/x86_64-linux-gnu libc-bin\n",
    );
    write(
        &tr.o.0,
        "var/lib/dpkg/triggers/File",
        "/usr/lib/x86_64-linux-gnu libc-bin\n/usr/share/py py\n",
    );
    write(
        &tr.a.0,
        "var/lib/dpkg/triggers/File",
        "/usr/lib/x86_64-linux-gnu libc-bin\n",
    );
    write(
        &tr.t.0,
        "var/lib/dpkg/statoverride",
        "root crontab 2755 /usr/bin/crontab\n",
    );
    for (root, files) in [
        (&tr.t.0, &["z.list", "z.md5sums", "format"][..]),
        (&tr.o.0, &["z.list", "gone.list", "py.list", "format"][..]),
    ] {
        for f in files {
            write(root, &format!("{}/{f}", info::INFO_DIR), "x\n");
        }
    }
    // status-old and available merge like status (no journal).
    write(&tr.a.0, "var/lib/dpkg/status-old", &status(&a));
    write(&tr.t.0, "var/lib/dpkg/status-old", &status(&t));
    write(&tr.o.0, "var/lib/dpkg/status-old", &status(&o));
    write(
        &tr.o.0,
        "var/lib/dpkg/available",
        "Package: py\nVersion: 3\n",
    );
    let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
        .unwrap()
        .unwrap();
    assert_eq!(
        content(&m, "var/lib/dpkg/status-old"),
        status(&[o[2].clone(), t[0].clone()])
    );
    assert_eq!(
        content(&m, "var/lib/dpkg/available"),
        "Package: py\nVersion: 3\n"
    );
    assert_eq!(
        content(&m, EXTENDED_STATES),
        format!("{es}\nPackage: newdep\nArchitecture: all\nAuto-Installed: 1\n\nPackage: py-dep\nArchitecture: amd64\nAuto-Installed: 1\n")
    );
    assert_eq!(
        content(&m, "var/lib/dpkg/triggers/File"),
        "/usr/lib/x86_64-linux-gnu libc-bin\n/usr/share/py py\n"
    );
    assert_eq!(
        content(&m, "var/lib/dpkg/statoverride"),
        "root crontab 2755 /usr/bin/crontab\n"
    );
    let info = |f: &str| served(&m, &format!("{}/{f}", info::INFO_DIR));
    assert_eq!(info("z.list"), Some(Serve::NewBase));
    assert_eq!(info("z.md5sums"), Some(Serve::NewBase));
    assert_eq!(info("gone.list"), Some(Serve::Whiteout));
    assert_eq!(info("py.list"), Some(Serve::App));
    assert_eq!(info("format"), None);
}

#[test]
fn no_dpkg_no_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Root(tmp.path().to_path_buf());
    assert!(merge(&r, &r, &r, ConflictChoice::Ours).unwrap().is_none());
}

/// Generated status databases: parse -> write is the identity, and merging a database
/// with itself on all three sides gives it back.
#[test]
fn generated_status_round_trips_and_self_merges() {
    let mut rng = crate::pkgdb::testgen::Rng::new(99);
    for round in 0..100 {
        let n = 1 + rng.below(12);
        let mut names: Vec<String> = (0..n)
            .map(|i| format!("pkg{i}-{}", rng.word("abc", 3)))
            .collect();
        names.sort();
        names.dedup();
        let stanzas: Vec<String> = names
            .iter()
            .map(|name| {
                let extra = if rng.below(2) == 0 {
                    format!("Description: d\n d{}\n .\n more\n", rng.word("abc xyz", 20))
                } else {
                    String::new()
                };
                stanza(
                    name,
                    rng.pick(&["amd64", "all"]),
                    &format!("{}.{}", rng.below(9), rng.below(9)),
                    &extra,
                )
            })
            .collect();
        let text = status(&stanzas);
        let doc = Document::parse(&text, Path::new("g")).unwrap();
        assert_eq!(doc.write(), text, "round {round}");
        let tr = trees(&stanzas, &stanzas, &stanzas);
        let m = merge(&tr.a, &tr.t, &tr.o, ConflictChoice::Ours)
            .unwrap()
            .unwrap();
        assert_eq!(content(&m, STATUS), text, "round {round}");
    }
}
