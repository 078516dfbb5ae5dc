//! The 3-way cases on synthetic sqlite rpmdbs (the real-rpm checks are in
//! `plugin/tests/rpm_real.rs`).

use super::header::{build, Type, Value, *};
use super::*;
use crate::pkgdb::view::Root;

const SCHEMA: &[&str] = &[
    "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)",
    "CREATE TABLE 'Name' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
    "CREATE TABLE 'Providename' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
    "CREATE TABLE 'Requirename' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
    "CREATE TABLE 'Sha1header' (key 'TEXT' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
    "CREATE TABLE 'Installtid' (key 'BLOB' NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))",
];

fn pkg(name: &str, version: &str, requires: &[(&str, u64, &str)]) -> Header {
    let s = |v: &str| Value::Strings(vec![v.to_string()]);
    let mut entries = vec![
        (TAG_NAME, Type::String, s(name)),
        (TAG_VERSION, Type::String, s(version)),
        (TAG_RELEASE, Type::String, s("1")),
        (TAG_ARCH, Type::String, s("noarch")),
        (
            TAG_SHA1HEADER,
            Type::String,
            s(&format!("sha-{name}-{version}")),
        ),
        (TAG_INSTALLTID, Type::Int32, Value::Ints(vec![0x6b0f_6cf6])),
        (
            TAG_PROVIDENAME,
            Type::StringArray,
            Value::Strings(vec![name.into()]),
        ),
        (TAG_PROVIDEFLAGS, Type::Int32, Value::Ints(vec![8])),
        (
            TAG_PROVIDEVERSION,
            Type::StringArray,
            Value::Strings(vec![format!("{version}-1")]),
        ),
    ];
    if !requires.is_empty() {
        let names = requires.iter().map(|r| r.0.to_string()).collect();
        let flags = requires.iter().map(|r| r.1).collect();
        let versions = requires.iter().map(|r| r.2.to_string()).collect();
        entries.push((TAG_REQUIRENAME, Type::StringArray, Value::Strings(names)));
        entries.push((TAG_REQUIREFLAGS, Type::Int32, Value::Ints(flags)));
        entries.push((
            TAG_REQUIREVERSION,
            Type::StringArray,
            Value::Strings(versions),
        ));
    }
    Header::parse(build(&entries), Path::new("built")).unwrap()
}

fn template() -> Db {
    Db {
        packages: Vec::new(),
        sequence: 0,
        schema: SCHEMA.iter().map(|s| s.to_string()).collect(),
        user_version: 0,
        wal: true,
        source: PathBuf::from("template"),
    }
}

fn root(dir: &Path, packages: &[(u32, &Header)], sequence: u32) -> Root {
    let db_dir = dir.join("var/lib/rpm");
    std::fs::create_dir_all(&db_dir).unwrap();
    rpmdb::write(
        &template(),
        packages,
        sequence,
        &db_dir.join(rpmdb::SQLITE_NAME),
    )
    .unwrap();
    Root(dir.to_path_buf())
}

const GE: u64 = (1 << 2) | (1 << 3);

#[test]
fn merges_header_sets_and_numbers_like_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (base1, base2, lib, gone, app, applib) = (
        pkg("base", "1.0", &[]),
        pkg("base", "1.1", &[]),
        pkg("lib", "1.0", &[]),
        pkg("gone", "1.0", &[]),
        pkg(
            "app",
            "1.0",
            &[
                ("lib", GE, "1.0"),
                ("rpmlib(X)", 1 << 24, "1"),
                ("gone", 0, ""),
            ],
        ),
        pkg("applib", "2.0", &[]),
    );
    let a = root(&t.join("a"), &[(1, &base1), (2, &lib), (3, &gone)], 3);
    // New base: base upgraded (old header gone, new one at hnum 4), gone removed.
    let th = root(&t.join("t"), &[(2, &lib), (4, &base2)], 4);
    // App: installed app and applib on the old base.
    let o = root(
        &t.join("o"),
        &[(1, &base1), (2, &lib), (3, &gone), (4, &app), (5, &applib)],
        5,
    );
    let scratch = t.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let m = merge(&a, &th, &o, ConflictChoice::Ours, &scratch)
        .unwrap()
        .unwrap();
    let Serve::Content(bytes) = &m.files[0].serve else {
        panic!("first file is the database")
    };
    assert_eq!(m.files[0].path, Path::new("var/lib/rpm/rpmdb.sqlite"));
    assert_eq!(m.files[1].serve, Serve::Whiteout);
    let merged = t.join("check");
    std::fs::create_dir_all(merged.join("var/lib/rpm")).unwrap();
    std::fs::write(merged.join("var/lib/rpm/rpmdb.sqlite"), bytes).unwrap();
    let db = rpmdb::read(
        &Root(merged.clone()),
        Path::new("var/lib/rpm"),
        &t.join("scratch2").tap_mkdir(),
    )
    .unwrap();
    let got: Vec<(u32, String)> = db
        .packages
        .iter()
        .map(|p| (p.hnum, p.header.nevra()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "lib-1.0-1.noarch".to_string()),
            (4, "base-1.1-1.noarch".to_string()),
            (5, "app-1.0-1.noarch".to_string()),
            (6, "applib-2.0-1.noarch".to_string()),
        ]
    );
    assert_eq!(db.sequence, 6);
    let idx = rpmdb::dump_indexes(&merged.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    let req: Vec<(String, u32, u32)> = idx["Requirename"]
        .iter()
        .map(|(k, h, i)| (format!("{k:?}"), *h, *i))
        .collect();
    // rpmlib() requires are install-time only: not indexed.
    assert_eq!(
        req,
        [
            ("Text(\"gone\")".into(), 5, 2),
            ("Text(\"lib\")".into(), 5, 0)
        ]
    );
    assert_eq!(
        idx["Installtid"][0].0,
        rpmdb::Key::Blob(0x6b0f_6cf6u32.to_le_bytes().to_vec())
    );
    let r = &m.report;
    assert_eq!(r.upgraded.len(), 1);
    assert_eq!(
        (r.upgraded[0].old.as_str(), r.upgraded[0].new.as_str()),
        ("1.0-1", "1.1-1")
    );
    assert_eq!(r.removed.len(), 1);
    assert_eq!(
        r.app_kept
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["app.noarch", "applib.noarch"]
    );
    let broken: Vec<&str> = r.broken.iter().map(|b| b.relation.as_str()).collect();
    assert_eq!(broken, ["gone"], "the base removed what app requires");
}

#[test]
fn both_changed_and_app_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (x1, x2, x3, y1, y2) = (
        pkg("x", "1", &[]),
        pkg("x", "2", &[]),
        pkg("x", "3", &[]),
        pkg("y", "1", &[]),
        pkg("y", "2", &[]),
    );
    let a = root(&t.join("a"), &[(1, &x1), (2, &y1)], 2);
    let th = root(&t.join("t"), &[(3, &x2), (4, &y2)], 4);
    let o = root(&t.join("o"), &[(3, &x3)], 3); // app upgraded x to 3 and removed y
    let scratch = t.join("s");
    std::fs::create_dir_all(&scratch).unwrap();
    let m = merge(&a, &th, &o, ConflictChoice::Ours, &scratch)
        .unwrap()
        .unwrap();
    let b = &m.report.both_changed;
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0].base.as_deref(),
            b[0].app.as_deref(),
            b[0].base_vs_app.as_deref()
        ),
        (Some("2-1"), Some("3-1"), Some("<"))
    );
    assert_eq!(m.report.app_removed.len(), 1, "y stays removed");
}

#[test]
fn berkeley_db_is_reported_unsupported() {
    let tmp = tempfile::tempdir().unwrap();
    crate::test_support::write(tmp.path(), "var/lib/rpm/Packages", "bdb");
    let r = Root(tmp.path().to_path_buf());
    let scratch = tmp.path().join("s");
    std::fs::create_dir_all(&scratch).unwrap();
    let err = merge(&r, &r, &r, ConflictChoice::Ours, &scratch)
        .unwrap_err()
        .to_string();
    assert!(err.contains("var/lib/rpm/Packages: rpm database in the Packages format (Berkeley DB/ndb) is not supported"), "{err}");
}

#[test]
fn corrupt_header_in_a_database_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var/lib/rpm");
    std::fs::create_dir_all(&dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join("rpmdb.sqlite")).unwrap();
    conn.execute_batch(SCHEMA[0]).unwrap();
    conn.execute("INSERT INTO Packages VALUES (1, x'00000001')", [])
        .unwrap();
    drop(conn);
    let scratch = tmp.path().join("s");
    std::fs::create_dir_all(&scratch).unwrap();
    let r = Root(tmp.path().to_path_buf());
    let err = merge(&r, &r, &r, ConflictChoice::Ours, &scratch)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Packages[hnum=1]: at byte 4: header shorter than 8 bytes"),
        "{err}"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
