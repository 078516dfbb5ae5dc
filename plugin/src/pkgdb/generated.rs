//! Generated files both sides rewrite (caches and logs): what the rebased tree serves.
//!
//! Decisions (measured on the bookworm fixture, see `plugin/src/pkgdb/README.md`):
//! - `/etc/ld.so.cache`: a function of the library files and `ld.so.conf`. When only one
//!   side changed it, that side's is right (the other side added no libraries). When
//!   both changed it, it is regenerated for the merged tree with the host's
//!   `ldconfig -X -r ROOT` on a writable scratch mount of the rebased stack
//!   ([`regenerate_ld_so_cache`]): 0.13 s and byte-identical to the cache the rebuild's
//!   own ldconfig wrote (glibc 2.36). [`parse_ld_so_cache`] lists a cache's entries so a
//!   served cache can be checked against the tree ([`missing_libraries`]).
//! - `/var/cache/ldconfig/aux-cache`: ldconfig's own speed-up, keyed by inode and ctime,
//!   so only meaningful for the tree it was made on: follows ld.so.cache's winner;
//!   regenerated along with it.
//! - Append-only logs (`dpkg.log`, apt `history.log`/`term.log`, `alternatives.log`): the
//!   new base's log plus what the app appended ([`merge3::merge_log`]), as a rebuild's.
//! - `eipp.log.xz` (rewritten by every apt run) and lock files: the app's, as the overlay
//!   serves them.
//! - apt's `pkgcache.bin`/`srcpkgcache.bin`: hidden when both sides changed them (apt
//!   rebuilds them; a stale one describes the wrong status).

use std::path::Path;

use super::error::{io_err, Error, Result};
use super::merge3::{self, LogMerge};
use super::report::Generated;
use super::view::View;
use super::{Serve, Served};

pub const LD_SO_CACHE: &str = "etc/ld.so.cache";
pub const AUX_CACHE: &str = "var/cache/ldconfig/aux-cache";
pub const LOGS: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/alternatives.log",
];
pub const APT_CACHES: &[&str] = &[
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
];

/// What to do with the generated files, plus what needs work only the caller can do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub files: Vec<Served>,
    /// Both sides changed ld.so.cache: call [`regenerate_ld_so_cache`] on a writable
    /// mount of the rebased tree and serve its result (and its aux-cache).
    pub regenerate_ld_so_cache: bool,
    pub report: Vec<Generated>,
}

fn note(plan: &mut Plan, path: &str, decision: &str) {
    plan.report.push(Generated {
        path: format!("/{path}"),
        decision: decision.to_string(),
    });
}

/// Decides every generated file from the three trees.
pub fn plan(ancestor: &dyn View, theirs: &dyn View, ours: &dyn View) -> Result<Plan> {
    let mut plan = Plan::default();
    let read3 = |rel: &str| -> Result<[Option<Vec<u8>>; 3]> {
        let rel = Path::new(rel);
        Ok([ancestor.read(rel)?, theirs.read(rel)?, ours.read(rel)?])
    };
    let [a, t, o] = read3(LD_SO_CACHE)?;
    if t.is_some() || o.is_some() {
        if t == a || t == o {
            note(
                &mut plan,
                LD_SO_CACHE,
                "the app's (the base update did not change it)",
            );
        } else if o == a {
            plan.files.push(Served::new(LD_SO_CACHE, Serve::NewBase));
            plan.files.push(Served::new(AUX_CACHE, Serve::NewBase));
            note(
                &mut plan,
                LD_SO_CACHE,
                "the new base's (the app added no libraries)",
            );
        } else {
            plan.regenerate_ld_so_cache = true;
            note(
                &mut plan,
                LD_SO_CACHE,
                "regenerated for the merged tree (ldconfig -X -r)",
            );
        }
    }
    for log in LOGS {
        let [a, t, o] = read3(log)?;
        let (Some(t), Some(o)) = (t, o) else { continue };
        let (merged, how) = merge3::merge_log(a.as_deref().unwrap_or(b""), &t, &o);
        let decision = match how {
            LogMerge::Appended => "the new base's log plus the app's entries",
            LogMerge::Theirs => "the new base's (the app wrote no entries)",
            LogMerge::Ours => "the app's (it rewrote the log; the base's entries are lost)",
        };
        if how != LogMerge::Ours {
            plan.files.push(Served::content(*log, merged));
        }
        note(&mut plan, log, decision);
    }
    for cache in APT_CACHES {
        let [a, t, o] = read3(cache)?;
        if t.is_some() && o.is_some() && t != a && o != a && t != o {
            plan.files.push(Served::new(*cache, Serve::Whiteout));
            note(
                &mut plan,
                cache,
                "hidden (apt rebuilds it from the merged status)",
            );
        }
    }
    Ok(plan)
}

/// Regenerates `etc/ld.so.cache` (and ldconfig's aux-cache) of the tree mounted writable
/// at `root` with the host's ldconfig, without touching library links (`-X`). Returns
/// the new cache's bytes; the caller takes both files from the mount's upper layer.
pub fn regenerate_ld_so_cache(root: &Path) -> Result<Vec<u8>> {
    let out = std::process::Command::new("ldconfig")
        .arg("-X")
        .arg("-r")
        .arg(root)
        .output()
        .map_err(io_err("running ldconfig -X -r"))?;
    if !out.status.success() {
        return Err(Error::Io {
            context: format!("ldconfig -X -r {}", root.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    let cache = root.join(LD_SO_CACHE);
    std::fs::read(&cache).map_err(io_err(format!("reading {}", cache.display())))
}

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";

/// One cache entry: library name and the path it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub name: String,
    pub path: String,
}

/// Parses glibc's `ld.so.cache` (the `glibc-ld.so.cache1.1` format of glibc 2.32+,
/// optionally after an old-format block; glibc `elf/cache.c` read as facts).
pub fn parse_ld_so_cache(bytes: &[u8], file: &Path) -> Result<Vec<CacheEntry>> {
    let bad = |offset: usize, reason: &str| Error::BadBinary {
        file: file.to_path_buf(),
        offset,
        reason: reason.to_string(),
    };
    let u32_at = |at: usize| -> Option<u32> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut start = 0;
    if bytes.starts_with(OLD_MAGIC) {
        // Old header: magic[11] + pad + nlibs, then nlibs entries of 3 ints.
        let n = u32_at(12).ok_or_else(|| bad(12, "truncated old-format header"))? as usize;
        start = 16 + n * 12;
        start = (start + 7) & !7;
    }
    let header = bytes.get(start..).ok_or_else(|| bad(start, "truncated"))?;
    if !header.starts_with(NEW_MAGIC) {
        return Err(bad(start, "not a glibc-ld.so.cache1.1 file"));
    }
    let nlibs = u32_at(start + 20).ok_or_else(|| bad(start + 20, "truncated header"))? as usize;
    // Header: magic+version (20), nlibs, len_strings, flags+pad (4), extension offset,
    // 3 unused words = 48 bytes; entries of 24 bytes follow.
    let entries = start + 48;
    let mut out = Vec::new();
    let string_at = |off: usize| -> Option<String> {
        // New-format string offsets are relative to the new header.
        let s = bytes.get(off..)?;
        let end = s.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    for i in 0..nlibs {
        let at = entries + i * 24;
        let (Some(key), Some(value)) = (u32_at(at + 4), u32_at(at + 8)) else {
            return Err(bad(at, "truncated entry"));
        };
        let (Some(name), Some(path)) = (
            string_at(start + key as usize),
            string_at(start + value as usize),
        ) else {
            return Err(bad(at, "entry points outside the file"));
        };
        out.push(CacheEntry { name, path });
    }
    Ok(out)
}

/// Entries of a cache whose library is not in the tree (a stale cache).
pub fn missing_libraries(entries: &[CacheEntry], tree: &dyn View) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for e in entries {
        let rel = Path::new(e.path.trim_start_matches('/'));
        // Libraries are often symlinks (libz.so.1 -> libz.so.1.2.13): a directory entry
        // of any kind counts; the merged-/usr `/lib` link is followed by hand.
        let candidates = [rel.to_path_buf(), Path::new("usr").join(rel)];
        let mut found = false;
        for c in &candidates {
            let (Some(parent), Some(name)) = (c.parent(), c.file_name()) else {
                continue;
            };
            if tree
                .list(parent)?
                .iter()
                .any(|n| std::ffi::OsStr::new(n) == name)
            {
                found = true;
                break;
            }
        }
        if !found {
            missing.push(e.path.clone());
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkgdb::view::Root;
    use crate::test_support::write;

    #[test]
    fn host_cache_parses_and_matches_the_host() {
        let bytes =
            std::fs::read("/etc/ld.so.cache").expect("the host (Debian) has /etc/ld.so.cache");
        let entries = parse_ld_so_cache(&bytes, Path::new("/etc/ld.so.cache")).unwrap();
        assert!(entries.iter().any(|e| e.name == "libc.so.6"), "{entries:?}");
        let missing = missing_libraries(&entries, &Root("/".into())).unwrap();
        assert!(missing.is_empty(), "{missing:?}");
        assert!(parse_ld_so_cache(&bytes[..30], Path::new("c")).is_err());
        assert!(parse_ld_so_cache(b"garbage", Path::new("c")).is_err());
    }

    #[test]
    fn decisions() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, t, o) = (
            tmp.path().join("a"),
            tmp.path().join("t"),
            tmp.path().join("o"),
        );
        for (root, cache, log) in [
            (&a, "A", "1\n"),
            (&t, "T", "1\nbase\n"),
            (&o, "A", "1\napp\n"),
        ] {
            write(root, LD_SO_CACHE, cache);
            write(root, "var/log/dpkg.log", log);
        }
        let p = plan(&Root(a.clone()), &Root(t.clone()), &Root(o.clone())).unwrap();
        assert!(!p.regenerate_ld_so_cache);
        assert!(p.files.contains(&Served::new(LD_SO_CACHE, Serve::NewBase)));
        assert!(p
            .files
            .contains(&Served::content("var/log/dpkg.log", "1\nbase\napp\n")));
        write(&o, LD_SO_CACHE, "O");
        let p = plan(&Root(a), &Root(t), &Root(o)).unwrap();
        assert!(p.regenerate_ld_so_cache);
    }
}
