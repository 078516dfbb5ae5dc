//! Normalised comparison of the upper directories after unmount.
//!
//! The two sides may encode the same upper-layer meaning differently; every normalisation
//! below states why it does not hide a semantic difference:
//! - Whiteouts: a char device 0/0 and a `.wh.<name>` file both mean "deleted"; their mode,
//!   owner, times and link count are not semantics (kernel overlay even hard-links all
//!   whiteouts to one shared inode). A whiteout that hides nothing in the lowers (no lower
//!   entry at that name under the directory's effective lower path) has no effect and is
//!   dropped, so a side that writes a superfluous whiteout is not flagged.
//! - Opaque directories: `trusted.overlay.opaque=y`, `user.overlay.opaque=y` and a
//!   `.wh..wh..opq` file all mean "opaque". The flag only matters when a lower directory
//!   would otherwise merge at that path, so it is compared only there.
//! - Redirects (`trusted.overlay.redirect` / `user.overlay.redirect`): kernel overlay stores
//!   a relative name when a directory is renamed within its parent and an absolute path
//!   otherwise. What matters is which lower directory merges under the upper one, so each
//!   upper directory is compared by its resolved "merges with lower path" (None when opaque
//!   or new), whether that comes from a redirect or from its own name.
//! - Other overlay-private xattrs (`trusted.overlay.*`/`user.overlay.*`: origin, impure,
//!   nlink, uuid, index bookkeeping; `user.fuseoverlayfs.*`) are implementation
//!   bookkeeping, not semantics: dropped.
//! - Hard links: kernel overlay with `index=on` copies up one name of a lower hard-link
//!   group into the upper and keeps the extra link in `workdir/index`; the other lower names
//!   reach that copy through the index. A side whose upper file has more links than names
//!   in the upper is treated as also providing the other still-visible lower names of the
//!   group (same inode). A side that copies up without keeping the link has no extra link,
//!   gets no such names, and is flagged. Raw nlink is replaced by the link group.
//! - Directory st_size and atime/ctime: backing-filesystem details (see outcome.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::fixture::{LowerHit, LowerView};
use super::outcome::{errno_name, FileType, StatInfo, Value};
use super::sys;
use super::tree::{observe, show_xattrs};

/// A normalised upper entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UKind {
    Whiteout,
    /// `merges_with`: the lower directory path merged under this one.
    Dir {
        opaque: bool,
        merges_with: Option<String>,
    },
    Other,
}

#[derive(Debug, Clone)]
pub struct UEntry {
    pub kind: UKind,
    pub stat: Option<StatInfo>,
    pub content: Option<Value>,
    pub link_target: Option<String>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// First path of the link group (regular files with several names).
    pub group: Option<String>,
    raw_ino: u64,
    raw_redirect: Option<String>,
    raw_opaque: bool,
}

fn is_private_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay.")
        || name.starts_with("user.fuseoverlayfs.")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

fn name_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[i + 1..]).unwrap_or(path)
}

fn raw_walk(
    dirfd: OwnedFd,
    path: &str,
    out: &mut BTreeMap<String, UEntry>,
    errors: &mut Vec<String>,
) {
    let ents = match sys::openat(dirfd.as_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .and_then(sys::readdir)
    {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("/{path}: readdir {}", errno_name(e)));
            return;
        }
    };
    for e in ents.iter().filter(|e| e.name != "." && e.name != "..") {
        if e.name == ".wh..wh..opq" {
            if let Some(d) = out.get_mut(path) {
                d.raw_opaque = true;
            }
            continue;
        }
        if let Some(hidden) = e.name.strip_prefix(".wh.") {
            out.insert(join(path, hidden), whiteout());
            continue;
        }
        let child = join(path, &e.name);
        let st = match sys::fstatat(dirfd.as_fd(), &e.name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(err) => {
                errors.push(format!("/{child}: lstat {}", errno_name(err)));
                continue;
            }
        };
        if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0 {
            out.insert(child, whiteout());
            continue;
        }
        let node = observe(dirfd.as_fd(), &e.name, &st);
        let entry = entry_from(node);
        let is_dir = matches!(entry.kind, UKind::Dir { .. });
        out.insert(child.clone(), entry);
        if is_dir {
            match sys::openat(
                dirfd.as_fd(),
                &e.name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => raw_walk(fd, &child, out, errors),
                Err(err) => errors.push(format!("/{child}: open {}", errno_name(err))),
            }
        }
    }
}

fn whiteout() -> UEntry {
    UEntry {
        kind: UKind::Whiteout,
        stat: None,
        content: None,
        link_target: None,
        xattrs: BTreeMap::new(),
        group: None,
        raw_ino: 0,
        raw_redirect: None,
        raw_opaque: false,
    }
}

fn entry_from(node: super::tree::Node) -> UEntry {
    let flag = |n: &str| node.xattrs.get(n).is_some_and(|v| v.as_slice() == b"y");
    let raw_opaque = flag("trusted.overlay.opaque") || flag("user.overlay.opaque");
    let raw_redirect = node
        .xattrs
        .get("trusted.overlay.redirect")
        .or_else(|| node.xattrs.get("user.overlay.redirect"))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let xattrs = node
        .xattrs
        .iter()
        .filter(|(k, _)| !is_private_xattr(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let is_dir = node.stat.kind == FileType::Dir;
    UEntry {
        kind: if is_dir {
            UKind::Dir {
                opaque: false,
                merges_with: None,
            }
        } else {
            UKind::Other
        },
        raw_ino: node.stat.ino,
        stat: Some(node.stat),
        content: node.content,
        link_target: node.link_target,
        xattrs,
        group: None,
        raw_redirect,
        raw_opaque,
    }
}

/// Reads and normalises the upper directory `upper` against the canonical lower view.
pub fn normalised_upper(
    upper: &Path,
    lower: &LowerView,
) -> (BTreeMap<String, UEntry>, Vec<String>) {
    let mut raw = BTreeMap::new();
    let mut errors = Vec::new();
    match sys::open_abs(upper, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(fd) => {
            if let Ok(st) = sys::fstat(fd.as_fd()) {
                let node = observe(fd.as_fd(), ".", &st);
                raw.insert(String::new(), entry_from(node));
            }
            raw_walk(fd, "", &mut raw, &mut errors);
        }
        Err(e) => errors.push(format!("open upper {}: {}", upper.display(), errno_name(e))),
    }

    // Resolve which lower directory each upper directory merges with (parents first: the
    // BTreeMap order puts "a" before "a/b").
    let mut merges: BTreeMap<String, Option<String>> = BTreeMap::new();
    merges.insert(String::new(), Some(String::new()));
    let paths: Vec<String> = raw.keys().cloned().collect();
    let mut out: BTreeMap<String, UEntry> = BTreeMap::new();
    for p in &paths {
        let Some(e) = raw.get(p) else { continue };
        let parent_lp = if p.is_empty() {
            None
        } else {
            merges.get(parent_of(p)).cloned().flatten()
        };
        let mut e = e.clone();
        match e.kind {
            UKind::Whiteout => {
                let hides = parent_lp
                    .as_ref()
                    .is_some_and(|pl| lower.lookup(&join(pl, name_of(p))).is_some());
                if !hides {
                    continue;
                }
            }
            UKind::Dir { .. } => {
                let would_be = if p.is_empty() {
                    Some(String::new())
                } else {
                    match &e.raw_redirect {
                        Some(r) if r.starts_with('/') => {
                            Some(r.trim_start_matches('/').to_string())
                        }
                        Some(r) => parent_lp.as_ref().map(|pl| join(pl, r)),
                        None => parent_lp.as_ref().map(|pl| join(pl, name_of(p))),
                    }
                };
                let lower_dir = would_be.filter(|w| lower.lookup(w) == Some(LowerHit::Dir));
                let opaque = e.raw_opaque && lower_dir.is_some() && !p.is_empty();
                let merges_with = if opaque { None } else { lower_dir };
                merges.insert(p.clone(), merges_with.clone());
                e.kind = UKind::Dir {
                    opaque,
                    merges_with,
                };
            }
            UKind::Other => {}
        }
        out.insert(p.clone(), e);
    }

    // Hard-link closure (see the module comment).
    let mut names_per_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (p, e) in &out {
        if e.kind == UKind::Other && e.stat.as_ref().is_some_and(|s| s.kind == FileType::Reg) {
            names_per_ino.entry(e.raw_ino).or_default().push(p.clone());
        }
    }
    // Upper directory merging with each lower directory (inverse of `merges`).
    let lower_to_upper: BTreeMap<String, String> = merges
        .iter()
        .filter_map(|(up, low)| low.as_ref().map(|l| (l.clone(), up.clone())))
        .collect();
    let mut synthetic: Vec<(String, UEntry)> = Vec::new();
    for names in names_per_ino.values() {
        let Some(first) = names.first().and_then(|n| out.get(n)) else {
            continue;
        };
        let nlink = first.stat.as_ref().map(|s| s.nlink).unwrap_or(1);
        if nlink as usize <= names.len() {
            continue;
        }
        for n in names {
            let Some(Some(pl)) = merges.get(parent_of(n)) else {
                continue;
            };
            let Some(LowerHit::NonDir {
                link_group: Some(g),
                ..
            }) = lower.lookup(&join(pl, name_of(n)))
            else {
                continue;
            };
            for lower_q in lower.link_group_members(&g) {
                // Where the member shows in the merged tree: under the upper directory that
                // merges with its lower parent (it may have been renamed: redirect), else
                // at its own path if nothing above it changed.
                let lower_parent = parent_of(&lower_q);
                let q = match lower_to_upper.get(lower_parent) {
                    Some(up) => join(up, name_of(&lower_q)),
                    None if reachable_unchanged(&lower_q, &out) => lower_q.clone(),
                    None => continue,
                };
                if out.contains_key(&q) || synthetic.iter().any(|(s, _)| *s == q) {
                    continue;
                }
                synthetic.push((q, first.clone()));
            }
        }
    }
    out.extend(synthetic);

    // Link groups by inode.
    let mut first_by_ino: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    for (p, e) in &out {
        if e.kind == UKind::Other {
            let slot = first_by_ino
                .entry(e.raw_ino)
                .or_insert_with(|| (p.clone(), 0));
            slot.1 += 1;
        }
    }
    for e in out.values_mut() {
        if e.kind == UKind::Other {
            if let Some((first, count)) = first_by_ino.get(&e.raw_ino) {
                if *count > 1 {
                    e.group = Some(first.clone());
                }
            }
        }
    }
    (out, errors)
}

/// Whether the merged path `q` still shows the lower entry at the same path: every
/// ancestor present in the upper is a directory merging with its own lower path.
fn reachable_unchanged(q: &str, upper: &BTreeMap<String, UEntry>) -> bool {
    let mut a = parent_of(q);
    loop {
        if let Some(e) = upper.get(a) {
            match &e.kind {
                UKind::Dir {
                    merges_with: Some(m),
                    ..
                } if m == a => {}
                _ => return false,
            }
        }
        if a.is_empty() {
            return true;
        }
        a = parent_of(a);
    }
}

/// Differences between the normalised kernel upper `k` and candidate upper `c`.
pub fn upper_diff(
    k: &BTreeMap<String, UEntry>,
    c: &BTreeMap<String, UEntry>,
    recent: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = k.keys().chain(c.keys()).collect();
    let desc = |e: &UEntry| match &e.kind {
        UKind::Whiteout => "whiteout".to_string(),
        UKind::Dir {
            opaque,
            merges_with,
        } => format!("dir opaque={opaque} merges_with={merges_with:?}"),
        UKind::Other => format!("{:?}", e.stat.as_ref().map(|s| s.kind)),
    };
    for p in paths {
        let show = format!("upper /{p}");
        match (k.get(p), c.get(p)) {
            (Some(a), None) => out.push(format!("{show}: only in kernel upper ({})", desc(a))),
            (None, Some(b)) => out.push(format!("{show}: only in candidate upper ({})", desc(b))),
            (Some(a), Some(b)) => {
                if a.kind != b.kind {
                    out.push(format!("{show}: {} vs {}", desc(a), desc(b)));
                    continue;
                }
                if let (Some(sa), Some(sb)) = (&a.stat, &b.stat) {
                    let mut sa = sa.clone();
                    let mut sb = sb.clone();
                    sa.nlink = 0;
                    sb.nlink = 0;
                    for d in sa.diff(&sb, recent) {
                        out.push(format!("{show}: {d}"));
                    }
                }
                if a.content != b.content {
                    out.push(format!("{show}: content differs"));
                }
                if a.link_target != b.link_target {
                    out.push(format!(
                        "{show}: symlink target {:?} vs {:?}",
                        a.link_target, b.link_target
                    ));
                }
                if a.xattrs != b.xattrs {
                    out.push(format!(
                        "{show}: xattrs {} vs {}",
                        show_xattrs(&a.xattrs),
                        show_xattrs(&b.xattrs)
                    ));
                }
                if a.group != b.group {
                    out.push(format!("{show}: link group {:?} vs {:?}", a.group, b.group));
                }
            }
            (None, None) => {}
        }
    }
    out
}
