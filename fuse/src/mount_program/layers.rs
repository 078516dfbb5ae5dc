//! Layer paths: splitting `lowerdir=` and resolving every layer path to a real directory.
//!
//! containers-storage passes lowers either as `<home>/l/<short>` symlinks (often relative,
//! with cwd = `<graphroot>/overlay`) or as `<home>/<id>/diff`. Both are canonicalized here,
//! before the daemon forks and changes directory, so the filesystem gets absolute real paths.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Splits `TOP:...:BASE` at colons not escaped by a backslash; `\x` stands for `x`.
pub fn split_lowerdir(value: &str) -> Result<Vec<String>> {
    let mut layers = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next().unwrap_or('\\')),
            ':' => layers.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    layers.push(current);
    if layers.iter().any(String::is_empty) {
        bail!("lowerdir={value}: empty layer path");
    }
    Ok(layers)
}

/// Removes backslash escapes from a single path (`upperdir=`, `workdir=`).
pub fn unescape(value: &str) -> String {
    let mut path = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => path.push(chars.next().unwrap_or('\\')),
            _ => path.push(c),
        }
    }
    path
}

/// Resolves `path` (relative to `cwd`) to a canonical existing directory.
///
/// `role` names the path in the error ("lower layer", "upperdir", "mountpoint").
pub fn resolve_directory(role: &str, path: &Path, cwd: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let resolved = match std::fs::canonicalize(&joined) {
        Ok(resolved) => resolved,
        Err(error) => bail!("{role} {}: {error}", path.display()),
    };
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => Ok(resolved),
        Ok(_) => bail!("{role} {}: not a directory", path.display()),
        Err(error) => bail!("{role} {}: {error}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    fn scratch(name: &str) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new()
            .prefix(&format!("rebasefs-layers-test-{name}-"))
            .tempdir()?)
    }

    #[test]
    fn splits_and_unescapes() {
        assert_eq!(
            split_lowerdir("l/A:l/B:/x/diff").ok(),
            Some(vec!["l/A".into(), "l/B".into(), "/x/diff".into()])
        );
        assert_eq!(
            split_lowerdir("/a\\:b:/c\\\\d").ok(),
            Some(vec!["/a:b".into(), "/c\\d".into()])
        );
        assert_eq!(split_lowerdir("/one").ok(), Some(vec!["/one".into()]));
        assert_eq!(
            split_lowerdir("/trailing\\").ok(),
            Some(vec!["/trailing\\".into()])
        );
    }

    #[test]
    fn rejects_empty_layers() {
        assert!(split_lowerdir("").is_err());
        assert!(split_lowerdir("/a::/b").is_err());
        assert!(split_lowerdir("/a:").is_err());
        assert!(split_lowerdir(":/a").is_err());
    }

    #[test]
    fn unescape_single_path() {
        assert_eq!(unescape("/u\\:1"), "/u:1");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn resolves_both_containers_storage_forms() -> Result<()> {
        let home = scratch("forms")?;
        let diff = home.path().join("layerid").join("diff");
        std::fs::create_dir_all(&diff)?;
        std::fs::create_dir(home.path().join("l"))?;
        std::os::unix::fs::symlink("../layerid/diff", home.path().join("l").join("SHORT"))?;
        let canonical = std::fs::canonicalize(&diff)?;

        // Relative short-link form, as run with cwd = <graphroot>/overlay.
        let via_link = resolve_directory("lower layer", Path::new("l/SHORT"), home.path())?;
        assert_eq!(via_link, canonical);
        // Absolute <id>/diff form.
        let direct = resolve_directory("lower layer", &diff, Path::new("/nonexistent"))?;
        assert_eq!(direct, canonical);
        Ok(())
    }

    #[test]
    fn missing_and_non_directory_layers_fail() -> Result<()> {
        let home = scratch("missing")?;
        let file = home.path().join("file");
        std::fs::write(&file, b"x")?;
        let missing = resolve_directory("lower layer", Path::new("nope"), home.path());
        assert!(missing.is_err());
        let message = format!("{:#}", missing.err().unwrap_or_else(|| anyhow::anyhow!("")));
        assert!(message.contains("lower layer nope"), "{message}");
        let not_dir = resolve_directory("upperdir", &file, home.path());
        let message = format!("{:#}", not_dir.err().unwrap_or_else(|| anyhow::anyhow!("")));
        assert!(message.contains("not a directory"), "{message}");
        Ok(())
    }
}
