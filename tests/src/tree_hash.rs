//! A full listing of a root filesystem for comparing two views of one image: every entry's
//! path, type, mode, owner, and content digest (files), target (symlinks) or device number,
//! without following links. Paths a container runtime adds are left out by the caller.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{Context, Result};

/// One line per entry, sorted by path; `skip` says which relative paths to leave out
/// (a skipped directory is not descended into).
pub fn full_tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    walk(root, root, skip, &mut lines)?;
    lines.sort();
    Ok(lines)
}

fn walk(root: &Path, dir: &Path, skip: &dyn Fn(&str) -> bool, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if skip(&rel) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)?;
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            "dir".to_string()
        } else if kind.is_symlink() {
            format!("link -> {}", std::fs::read_link(&path)?.display())
        } else if kind.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            format!("file {}", sha256_hex(&bytes))
        } else if kind.is_char_device() || kind.is_block_device() {
            format!("device {:x}", meta.rdev())
        } else {
            "other".to_string()
        };
        out.push(format!(
            "{rel} {:o} {}:{} {what}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ));
        if kind.is_dir() {
            walk(root, &path, skip, out)?;
        }
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
