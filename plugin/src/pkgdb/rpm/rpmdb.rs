//! The sqlite rpmdb (`rpmdb.sqlite`; rpm's `lib/backend/sqlite.c` and `lib/rpmdb.c` read
//! as facts): `Packages(hnum, blob)` holds one header per installed package; every index
//! table `(key, hnum, idx)` is derived from the headers (`tag2index`). Reading copies the
//! database (and its `-wal`) to a scratch directory first, so a layer is never written
//! and a WAL left in a layer is honoured. Writing builds a fresh file from the template
//! database's schema, inserts the headers with chosen `hnum`s, rebuilds every index the
//! schema has, and closes it in rollback-journal mode: no `-wal`/`-shm` remain, and a
//! read-only tree can be queried.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags};

use super::header::{self, Header, Type, Value};
use super::rich;
use crate::pkgdb::error::{io_err, sql_err, Error, Result};
use crate::pkgdb::view::View;

/// Where rpm keeps its database, most specific first (Fedora 36+/RHEL 9+ move it to
/// `/usr/lib/sysimage/rpm` and leave `/var/lib/rpm` a symlink; some images use
/// `/usr/share/rpm`).
pub const DB_DIRS: &[&str] = &["usr/lib/sysimage/rpm", "var/lib/rpm", "usr/share/rpm"];
pub const SQLITE_NAME: &str = "rpmdb.sqlite";

/// Which database a tree has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    Sqlite {
        dir: PathBuf,
    },
    /// Berkeley DB (`Packages`) or ndb (`Packages.db`): recognised, not merged.
    Unsupported {
        dir: PathBuf,
        file: String,
    },
}

/// Finds the rpmdb of a tree; `None` when there is none.
pub fn locate(view: &dyn View) -> Result<Option<Located>> {
    for dir in DB_DIRS {
        let dir = Path::new(dir);
        if !view.is_dir(dir)? {
            continue;
        }
        let names = view.list(dir)?;
        if names.iter().any(|n| n == SQLITE_NAME) {
            return Ok(Some(Located::Sqlite {
                dir: dir.to_path_buf(),
            }));
        }
        if let Some(file) = names
            .iter()
            .find(|n| *n == "Packages" || *n == "Packages.db")
        {
            return Ok(Some(Located::Unsupported {
                dir: dir.to_path_buf(),
                file: file.clone(),
            }));
        }
    }
    Ok(None)
}

/// One installed header with its `hnum`.
#[derive(Debug, Clone)]
pub struct Installed {
    pub hnum: u32,
    pub header: Header,
}

/// A read database: headers in `hnum` order, the next-hnum counter, the schema.
#[derive(Debug, Clone)]
pub struct Db {
    pub packages: Vec<Installed>,
    /// `sqlite_sequence` of `Packages` (the last hnum handed out).
    pub sequence: u32,
    /// `CREATE` statements in creation order (no `sqlite_*` objects).
    pub schema: Vec<String>,
    pub user_version: i64,
    pub wal: bool,
    /// The database as named in errors.
    pub source: PathBuf,
}

/// Reads the sqlite rpmdb in `dir` of `view` through a scratch copy.
pub fn read(view: &dyn View, dir: &Path, scratch: &Path) -> Result<Db> {
    let db_rel = dir.join(SQLITE_NAME);
    let source = view.source(&db_rel);
    let copy = scratch.join(SQLITE_NAME);
    for suffix in ["", "-wal"] {
        let rel = dir.join(format!("{SQLITE_NAME}{suffix}"));
        if let Some(bytes) = view.read(&rel)? {
            let to = scratch.join(format!("{SQLITE_NAME}{suffix}"));
            std::fs::write(&to, bytes).map_err(io_err(format!("writing {}", to.display())))?;
        }
    }
    let conn = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sql_err(&source))?;
    let schema: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid")
            .map_err(sql_err(&source))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err(&source))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(sql_err(&source))?
    };
    if !schema
        .iter()
        .any(|s| s.contains("'Packages'") || s.contains("\"Packages\"") || s.contains(" Packages "))
    {
        return Err(Error::Unsupported {
            path: source,
            reason: "an sqlite file without rpm's Packages table".into(),
        });
    }
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_err(&source))?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sql_err(&source))?;
    let sequence: u32 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'Packages'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let mut packages = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
            .map_err(sql_err(&source))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(sql_err(&source))?;
        for row in rows {
            let (hnum, blob) = row.map_err(sql_err(&source))?;
            let header = Header::parse(blob, &source.join(format!("Packages[hnum={hnum}]")))?;
            packages.push(Installed { hnum, header });
        }
    }
    drop(conn);
    let sequence = sequence.max(packages.iter().map(|p| p.hnum).max().unwrap_or(0));
    Ok(Db {
        packages,
        sequence,
        schema,
        user_version,
        wal: journal.eq_ignore_ascii_case("wal"),
        source,
    })
}

/// The index tables rpm 4.16+ maintains, with the tag each is built from.
pub const INDEXES: &[(&str, u32)] = &[
    ("Name", header::TAG_NAME),
    ("Basenames", header::TAG_BASENAMES),
    ("Group", header::TAG_GROUP),
    ("Requirename", header::TAG_REQUIRENAME),
    ("Providename", header::TAG_PROVIDENAME),
    ("Conflictname", header::TAG_CONFLICTNAME),
    ("Obsoletename", header::TAG_OBSOLETENAME),
    ("Triggername", header::TAG_TRIGGERNAME),
    ("Dirnames", header::TAG_DIRNAMES),
    ("Installtid", header::TAG_INSTALLTID),
    ("Sigmd5", header::TAG_SIGMD5),
    ("Sha1header", header::TAG_SHA1HEADER),
    ("Filetriggername", header::TAG_FILETRIGGERNAME),
    ("Transfiletriggername", header::TAG_TRANSFILETRIGGERNAME),
    ("Recommendname", header::TAG_RECOMMENDNAME),
    ("Suggestname", header::TAG_SUGGESTNAME),
    ("Supplementname", header::TAG_SUPPLEMENTNAME),
    ("Enhancename", header::TAG_ENHANCENAME),
];

/// An index key: text for string tags, bytes otherwise (integers in host byte order,
/// as rpm binds them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Text(String),
    Blob(Vec<u8>),
}

// rpmds.h: a Requires only needed at install time (rpmlib(), %pre/%post, pretrans, ...)
// is not indexed (`isTransientReq`).
const SENSE_PREREQ: u64 = 1 << 6;
const INSTALL_ONLY: u64 = (1 << 9) | (1 << 10) | (1 << 24) | (1 << 26) | (1 << 7) | (1 << 5);
const ERASE_ONLY: u64 = (1 << 11) | (1 << 12);
const SENSE_META: u64 = 1 << 29;

fn is_transient_req(flags: u64) -> bool {
    let f = flags & !SENSE_PREREQ;
    (f & INSTALL_ONLY) != 0 && (f & ERASE_ONLY) == 0 && (flags & SENSE_META) == 0
}

/// The `(key, idx)` rows header `h` puts into the index built from `tag`.
pub fn index_rows(h: &Header, tag: u32) -> Vec<(Key, u32)> {
    let mut rows = Vec::new();
    let Some(value) = h.get(tag) else {
        if tag == header::TAG_GROUP {
            rows.push((Key::Text("Unknown".into()), 0));
        }
        return rows;
    };
    let rich_tags = [
        header::TAG_REQUIRENAME,
        header::TAG_CONFLICTNAME,
        header::TAG_SUGGESTNAME,
        header::TAG_SUPPLEMENTNAME,
        header::TAG_RECOMMENDNAME,
        header::TAG_ENHANCENAME,
    ];
    match value {
        Value::Strings(strings) => {
            // rpm reads an i18n string in the C locale: its first entry.
            let strings: &[String] = if h.type_of(tag) == Some(Type::I18nString) {
                &strings[..strings.len().min(1)]
            } else {
                strings
            };
            let trigger_index = match tag {
                header::TAG_FILETRIGGERNAME => Some(h.ints(header::TAG_FILETRIGGERINDEX)),
                header::TAG_TRANSFILETRIGGERNAME => Some(h.ints(header::TAG_TRANSFILETRIGGERINDEX)),
                _ => None,
            };
            let req_flags = h.ints(header::TAG_REQUIREFLAGS);
            for (i, s) in strings.iter().enumerate() {
                if tag == header::TAG_REQUIRENAME
                    && req_flags.get(i).is_some_and(|f| is_transient_req(*f))
                {
                    continue;
                }
                if tag == header::TAG_TRIGGERNAME && strings[..i].contains(s) {
                    continue;
                }
                let idx = match trigger_index {
                    Some(ix) => ix.get(i).copied().unwrap_or(0) as u32,
                    None => i as u32,
                };
                rows.push((Key::Text(s.clone()), idx));
                if s.starts_with('(')
                    && rich_tags.contains(&tag)
                    && h.type_of(tag) == Some(Type::StringArray)
                {
                    for name in rich::index_names(s).unwrap_or_default() {
                        rows.push((Key::Text(name), idx));
                    }
                }
            }
        }
        Value::Ints(ints) => {
            let width = match h.type_of(tag) {
                Some(Type::Char | Type::Int8) => 1,
                Some(Type::Int16) => 2,
                Some(Type::Int64) => 8,
                _ => 4,
            };
            for (i, v) in ints.iter().enumerate() {
                let bytes = v.to_ne_bytes();
                let key = if cfg!(target_endian = "little") {
                    bytes[..width].to_vec()
                } else {
                    bytes[8 - width..].to_vec()
                };
                rows.push((Key::Blob(key), i as u32));
            }
        }
        Value::Bin(b) => rows.push((Key::Blob(b.clone()), 0)),
        Value::Null => {}
    }
    rows
}

/// Writes a fresh database at `out` (which must not exist) with `template`'s schema and
/// these `(hnum, header)`s; `sequence` becomes `Packages`' autoincrement counter.
pub fn write(template: &Db, packages: &[(u32, &Header)], sequence: u32, out: &Path) -> Result<()> {
    if out.exists() {
        return Err(Error::Io {
            context: format!("writing {}", out.display()),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let result = write_inner(template, packages, sequence, out);
    if result.is_err() {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
        }
    }
    result
}

fn write_inner(
    template: &Db,
    packages: &[(u32, &Header)],
    sequence: u32,
    out: &Path,
) -> Result<()> {
    let sql = || sql_err(out);
    let mut conn = Connection::open(out).map_err(sql())?;
    conn.execute_batch("PRAGMA secure_delete = OFF")
        .map_err(sql())?;
    let tx = conn.transaction().map_err(sql())?;
    for stmt in &template.schema {
        tx.execute_batch(stmt).map_err(sql())?;
    }
    tx.pragma_update(None, "user_version", template.user_version)
        .map_err(sql())?;
    let tables: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .map_err(sql())?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sql())?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql())?
    };
    {
        let mut insert = tx
            .prepare("INSERT INTO Packages (hnum, blob) VALUES (?1, ?2)")
            .map_err(sql())?;
        for (hnum, h) in packages {
            insert.execute(params![hnum, h.blob]).map_err(sql())?;
        }
    }
    for (table, tag) in INDEXES {
        if !tables.iter().any(|t| t == table) {
            continue;
        }
        let mut insert = tx
            .prepare(&format!(
                "INSERT INTO '{table}' (key, hnum, idx) VALUES (?1, ?2, ?3)"
            ))
            .map_err(sql())?;
        for (hnum, h) in packages {
            for (key, idx) in index_rows(h, *tag) {
                match key {
                    Key::Text(s) => insert.execute(params![s, hnum, idx]),
                    Key::Blob(b) => insert.execute(params![b, hnum, idx]),
                }
                .map_err(sql())?;
            }
        }
    }
    let max = packages.iter().map(|(h, _)| *h).max().unwrap_or(0);
    let seq = sequence.max(max);
    if seq > 0 {
        tx.execute("DELETE FROM sqlite_sequence WHERE name = 'Packages'", [])
            .map_err(sql())?;
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('Packages', ?1)",
            params![seq],
        )
        .map_err(sql())?;
    }
    tx.commit().map_err(sql())?;
    // Left in rollback-journal mode even when the template was in WAL mode: a WAL-mode
    // file cannot be opened on a read-only tree (an inspection mount, a scanner's
    // mount) without a `-shm` beside it, and rpm switches the file back to WAL on its
    // first write anyway.
    conn.close().map_err(|(_, e)| Error::Sqlite {
        path: out.to_path_buf(),
        source: e,
    })?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", out.display()));
        if side.exists() {
            return Err(Error::Io {
                context: format!("closing {}", out.display()),
                source: std::io::Error::other(format!("{} was left behind", side.display())),
            });
        }
    }
    Ok(())
}

/// Index rows `(key, hnum, idx)` per table.
pub type IndexDump = BTreeMap<String, Vec<(Key, u32, u32)>>;

/// Every index row of a database, sorted per table (tests compare databases).
pub fn dump_indexes(path: &Path) -> Result<IndexDump> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_err(path))?;
    let mut out = BTreeMap::new();
    for (table, _) in INDEXES {
        let Ok(mut stmt) = conn.prepare(&format!("SELECT key, hnum, idx FROM '{table}'")) else {
            continue;
        };
        let rows = stmt
            .query_map([], |r| {
                let key = match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(t) => {
                        Key::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    other => Key::Blob(other.as_blob().map(<[u8]>::to_vec).unwrap_or_default()),
                };
                Ok((key, r.get::<_, u32>(1)?, r.get::<_, u32>(2)?))
            })
            .map_err(sql_err(path))?;
        let mut rows: Vec<(Key, u32, u32)> = rows
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err(path))?;
        rows.sort();
        out.insert(table.to_string(), rows);
    }
    Ok(out)
}
