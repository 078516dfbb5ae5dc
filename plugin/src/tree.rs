//! Walking layer directories with overlay semantics, in both whiteout encodings.
//!
//! A layer may mark deletions as AUFS files (`.wh.NAME`, opaque `.wh..wh..opq`; written when
//! layers are extracted under a mount program) or as kernel-overlay char devices 0/0 with
//! opaque xattrs (`trusted.overlay.opaque`, `user.overlay.opaque`,
//! `user.fuseoverlayfs.opaque`). The names are the filesystem's own ([`rebasefs_fuse`]'s
//! whiteout vocabulary), so a walk sees what a mount serves. Walks never follow symlinks:
//! entries are read with `symlink_metadata`, and only real directories are descended into.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Read;
use std::ops::Bound;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rebasefs_fuse::{
    aufs_hidden_name, aufs_whiteout_name, is_aufs_name, OPAQUE_MARKER, OPAQUE_XATTRS,
};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// One visible filesystem object, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: u64,
    /// Absolute path of the object inside its layer directory.
    pub source: PathBuf,
}

/// What one layer directory contributes.
#[derive(Debug, Default)]
pub struct LayerScan {
    /// Objects present in the layer, by path relative to the root (`etc/passwd`).
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Paths the layer deletes.
    pub whiteouts: BTreeSet<PathBuf>,
    /// Directories whose lower contents the layer hides.
    pub opaque_dirs: BTreeSet<PathBuf>,
}

/// Reads the metadata of `path` without following a final symlink.
pub fn entry_of(path: &Path) -> Result<Entry> {
    let meta =
        std::fs::symlink_metadata(path).map_err(io_err(format!("stat {}", path.display())))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    };
    Ok(Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        rdev: meta.rdev(),
        source: path.to_path_buf(),
    })
}

fn is_opaque_dir(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|name| crate::sys::lgetxattr(path, name).is_some_and(|v| v == b"y"))
}

/// Scans one layer directory.
pub fn scan_layer(root: &Path) -> Result<LayerScan> {
    let mut scan = LayerScan::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        let reader =
            std::fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))?;
        for item in reader {
            let item = item.map_err(io_err(format!("reading {}", dir.display())))?;
            let name = item.file_name();
            let child_rel = rel.join(&name);
            if let Some(target) = whiteout_target(&name) {
                match target {
                    WhiteoutName::Opaque => {
                        scan.opaque_dirs.insert(rel.clone());
                    }
                    WhiteoutName::Meta => {}
                    WhiteoutName::Deletes(target) => {
                        scan.whiteouts.insert(rel.join(target));
                    }
                }
                continue;
            }
            let entry = entry_of(&item.path())?;
            if entry.kind == Kind::Char && entry.rdev == 0 {
                scan.whiteouts.insert(child_rel);
                continue;
            }
            if entry.kind == Kind::Dir {
                if is_opaque_dir(&entry.source) {
                    scan.opaque_dirs.insert(child_rel.clone());
                }
                pending.push(child_rel.clone());
            }
            scan.entries.insert(child_rel, entry);
        }
    }
    Ok(scan)
}

enum WhiteoutName<'a> {
    Opaque,
    /// Other `.wh..wh.*` AUFS bookkeeping files (`.wh..wh.plnk`, ...).
    Meta,
    Deletes(&'a OsStr),
}

fn whiteout_target(name: &OsStr) -> Option<WhiteoutName<'_>> {
    if name == OPAQUE_MARKER {
        return Some(WhiteoutName::Opaque);
    }
    if let Some(hidden) = aufs_hidden_name(name) {
        return Some(WhiteoutName::Deletes(hidden));
    }
    is_aufs_name(name).then_some(WhiteoutName::Meta)
}

/// Removes every path strictly below `dir`.
fn remove_below(view: &mut BTreeMap<PathBuf, Entry>, dir: &Path) {
    let below: Vec<PathBuf> = view
        .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
        .map(|(p, _)| p)
        .take_while(|p| p.starts_with(dir))
        .cloned()
        .collect();
    for p in below {
        view.remove(&p);
    }
}

/// The merged tree of `layers` (bottom first), as kernel overlay would show it.
pub fn merged_view(layers_bottom_first: &[PathBuf]) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut view = BTreeMap::new();
    for layer in layers_bottom_first {
        let scan = scan_layer(layer)?;
        apply_layer(&mut view, scan);
    }
    Ok(view)
}

/// Stacks one scanned layer onto a merged view.
pub fn apply_layer(view: &mut BTreeMap<PathBuf, Entry>, scan: LayerScan) {
    for dir in &scan.opaque_dirs {
        remove_below(view, dir);
    }
    for gone in &scan.whiteouts {
        view.remove(gone);
        remove_below(view, gone);
    }
    for (path, entry) in scan.entries {
        if entry.kind != Kind::Dir {
            remove_below(view, &path);
        }
        view.insert(path, entry);
    }
}

/// What a stack shows at one path, looked up top-down without merging whole trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Entry),
    Absent,
}

/// Resolves `rel` in a stack (top first): the first layer that has it, deletes it, or
/// hides it (whiteout or opaque parent, or a non-directory at a parent path) decides.
pub fn lookup(layers_top_first: &[PathBuf], rel: &Path) -> Result<Lookup> {
    let ancestors: Vec<&Path> = rel
        .ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .collect();
    for layer in layers_top_first {
        // A parent replaced or deleted in this layer hides everything below it.
        for ancestor in &ancestors {
            let p = layer.join(ancestor);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Lookup::Absent),
                Err(_) => {
                    if has_whiteout(layer, ancestor) {
                        return Ok(Lookup::Absent);
                    }
                }
            }
        }
        let path = layer.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => {
                let entry = entry_of(&path)?;
                if entry.kind == Kind::Char && entry.rdev == 0 {
                    return Ok(Lookup::Absent);
                }
                return Ok(Lookup::Found(entry));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
        }
        if has_whiteout(layer, rel) {
            return Ok(Lookup::Absent);
        }
        // An opaque directory at any ancestor in this layer stops the search here.
        for ancestor in &ancestors {
            let dir = layer.join(ancestor);
            if dir.join(OPAQUE_MARKER).exists() || is_opaque_dir(&dir) {
                return Ok(Lookup::Absent);
            }
        }
    }
    Ok(Lookup::Absent)
}

fn has_whiteout(layer: &Path, rel: &Path) -> bool {
    let Some(name) = rel.file_name() else {
        return false;
    };
    let aufs = layer
        .join(rel.parent().unwrap_or(Path::new("")))
        .join(aufs_whiteout_name(name));
    std::fs::symlink_metadata(aufs).is_ok()
}

/// True when two entries show the same object: same kind and metadata, and same content
/// (same layer file, or equal bytes / link target). Directory timestamps are ignored.
pub fn same_object(a: &Entry, b: &Entry) -> Result<bool> {
    if a.kind != b.kind || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid {
        return Ok(false);
    }
    if a.source == b.source {
        return Ok(true);
    }
    match a.kind {
        Kind::Dir | Kind::Fifo | Kind::Socket => Ok(true),
        Kind::Char | Kind::Block => Ok(a.rdev == b.rdev),
        Kind::Symlink => {
            let ta = std::fs::read_link(&a.source)
                .map_err(io_err(format!("readlink {}", a.source.display())))?;
            let tb = std::fs::read_link(&b.source)
                .map_err(io_err(format!("readlink {}", b.source.display())))?;
            Ok(ta == tb)
        }
        Kind::File => {
            if a.size != b.size {
                return Ok(false);
            }
            same_bytes(&a.source, &b.source)
        }
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let mut fa = std::fs::File::open(a).map_err(io_err(format!("opening {}", a.display())))?;
    let mut fb = std::fs::File::open(b).map_err(io_err(format!("opening {}", b.display())))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io_err(format!("reading {}", a.display())))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io_err(format!("reading {}", b.display())))?;
        if na != nb || ba.get(..na) != bb.get(..nb) {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// `etc/passwd` -> `/etc/passwd`, for people.
pub fn display(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// `/etc/passwd` -> `etc/passwd`; rejects `..` so a user-given path stays inside a layer.
pub fn relative(path: &str) -> Option<PathBuf> {
    let rel = PathBuf::from(path.trim_start_matches('/'));
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::write;
    use std::fs;

    #[test]
    fn merged_view_honours_both_whiteout_encodings() {
        let tmp = tempfile::tempdir().unwrap();
        let (l1, l2, l3) = (
            tmp.path().join("1"),
            tmp.path().join("2"),
            tmp.path().join("3"),
        );
        write(&l1, "etc/a", "a");
        write(&l1, "etc/b", "b");
        write(&l1, "opt/x/y", "y");
        write(&l1, "var/k", "k");
        // AUFS whiteout and opaque marker.
        write(&l2, "etc/.wh.a", "");
        write(&l2, "opt/x/.wh..wh..opq", "");
        write(&l2, "opt/x/z", "z");
        // Kernel whiteout (char 0/0).
        fs::create_dir_all(l3.join("etc")).unwrap();
        nix::sys::stat::mknod(
            &l3.join("etc/b"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        write(&l3, "var", "now a file");
        let view = merged_view(&[l1.clone(), l2.clone(), l3.clone()]).unwrap();
        let keys: Vec<String> = view.keys().map(|k| display(k)).collect();
        assert_eq!(keys, ["/etc", "/opt", "/opt/x", "/opt/x/z", "/var"]);
        let top = [l3, l2, l1];
        assert_eq!(lookup(&top, Path::new("etc/a")).unwrap(), Lookup::Absent);
        assert_eq!(lookup(&top, Path::new("etc/b")).unwrap(), Lookup::Absent);
        assert_eq!(lookup(&top, Path::new("opt/x/y")).unwrap(), Lookup::Absent);
        assert_eq!(lookup(&top, Path::new("var/k")).unwrap(), Lookup::Absent);
        assert!(matches!(
            lookup(&top, Path::new("opt/x/z")).unwrap(),
            Lookup::Found(_)
        ));
    }

    #[test]
    fn relative_rejects_escapes() {
        assert_eq!(relative("/etc/passwd"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(relative("/etc/../x"), None);
        assert_eq!(relative("/"), None);
    }
}
