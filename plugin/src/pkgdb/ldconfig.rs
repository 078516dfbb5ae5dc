//! `/etc/ld.so.cache` regenerated for a stack of layers without mounting it.
//!
//! ldconfig reads only `ld.so.conf` (with its includes) and the library directories it
//! names plus the trusted ones. Those are replicated into a scratch root: directories
//! made, symlinks recreated (so merged-/usr links resolve as in the image), files
//! hard-linked from their layer (copied when the scratch is on another filesystem).
//! `ldconfig -X -r SCRATCH` then writes the cache the merged tree would get; nothing is
//! written into a layer.

use std::path::{Component, Path, PathBuf};

use super::error::{io_err, Result};
use super::generated::{regenerate_ld_so_cache, LD_SO_CACHE};
use super::view::{lookup, read_text, Stack, View};
use crate::tree::{Kind, Lookup};

/// Directories ldconfig always scans (glibc's trusted directories on Debian and Fedora).
const TRUSTED: &[&str] = &["lib", "usr/lib", "lib64", "usr/lib64"];
const CONF: &str = "etc/ld.so.conf";
/// Symlink hops followed before giving up (as the kernel's 40).
const MAX_LINKS: usize = 40;

/// The cache `ldconfig` writes for the tree `top_first` shows; `scratch_parent` holds the
/// scratch root (best on the layers' filesystem, so files are linked, not copied).
pub fn regenerate(top_first: &[PathBuf], scratch_parent: &Path) -> Result<Vec<u8>> {
    let scratch = tempfile::Builder::new()
        .prefix("ldconfig-")
        .tempdir_in(scratch_parent)
        .map_err(io_err(format!(
            "creating a scratch directory in {}",
            scratch_parent.display()
        )))?;
    let root = scratch.path();
    let stack = Stack { top_first };
    let mut dirs: Vec<PathBuf> = TRUSTED.iter().map(PathBuf::from).collect();
    let mut confs = vec![PathBuf::from(CONF)];
    while let Some(conf) = confs.pop() {
        let Some(text) = read_text(&stack, &conf)? else {
            continue;
        };
        write_file(root, &conf, text.as_bytes())?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(pattern) = line.strip_prefix("include").map(str::trim) {
                confs.extend(matching(&stack, &conf, pattern)?);
            } else if line.starts_with('/') {
                for dir in line.split([' ', '\t', ',', ':']).filter(|d| !d.is_empty()) {
                    dirs.push(PathBuf::from(dir.trim_start_matches('/')));
                }
            }
        }
    }
    for dir in &dirs {
        if let Some(real) = resolve_dir(top_first, root, dir, 0)? {
            replicate(top_first, root, &real, 0)?;
        }
    }
    for dir in ["etc", "var/cache/ldconfig"] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(io_err(format!("creating {}", root.join(dir).display())))?;
    }
    let _ = std::fs::remove_file(root.join(LD_SO_CACHE));
    regenerate_ld_so_cache(root)
}

fn write_file(root: &Path, rel: &Path, bytes: &[u8]) -> Result<()> {
    let target = root.join(rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("creating {}", parent.display())))?;
    }
    std::fs::write(&target, bytes).map_err(io_err(format!("writing {}", target.display())))
}

/// The files an `include PATTERN` line of `conf` names (one `*` per name, as in practice).
fn matching(stack: &Stack<'_>, conf: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let pattern = if pattern.starts_with('/') {
        PathBuf::from(pattern.trim_start_matches('/'))
    } else {
        conf.parent().unwrap_or(Path::new("")).join(pattern)
    };
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Ok(Vec::new());
    };
    let name = name.to_string_lossy();
    let (prefix, suffix) = name.split_once('*').unwrap_or((&name, ""));
    let exact = !name.contains('*');
    let mut out: Vec<PathBuf> = stack
        .list(dir)?
        .into_iter()
        .filter(|n| {
            if exact {
                n == prefix
            } else {
                n.len() >= prefix.len() + suffix.len()
                    && n.starts_with(prefix)
                    && n.ends_with(suffix)
            }
        })
        .map(|n| dir.join(n))
        .collect();
    out.sort();
    Ok(out)
}

/// Lexically joins `target` (a symlink's) to the directory `at`, inside the root.
fn join_inside(at: &Path, target: &Path) -> PathBuf {
    let mut out = if target.is_absolute() {
        PathBuf::new()
    } else {
        at.to_path_buf()
    };
    for c in target.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Makes `rel` reachable in the scratch root as in the tree (directories and the
/// symlinks on the way); returns the real directory it names, `None` when it is none.
fn resolve_dir(
    top_first: &[PathBuf],
    root: &Path,
    rel: &Path,
    hops: usize,
) -> Result<Option<PathBuf>> {
    if hops > MAX_LINKS {
        return Ok(None);
    }
    let mut real = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        let next = real.join(name);
        let Lookup::Found(entry) = lookup(top_first, &next)? else {
            return Ok(None);
        };
        let target = root.join(&next);
        match entry.kind {
            Kind::Dir => {
                std::fs::create_dir_all(&target)
                    .map_err(io_err(format!("creating {}", target.display())))?;
                real = next;
            }
            Kind::Symlink => {
                let link = std::fs::read_link(&entry.source)
                    .map_err(io_err(format!("readlink {}", entry.source.display())))?;
                if std::fs::symlink_metadata(&target).is_err() {
                    std::os::unix::fs::symlink(&link, &target)
                        .map_err(io_err(format!("symlink {}", target.display())))?;
                }
                match resolve_dir(top_first, root, &join_inside(&real, &link), hops + 1)? {
                    Some(r) => real = r,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(real))
}

/// Links every file and symlink of directory `real` into the scratch root (and its
/// `glibc-hwcaps` subdirectories, which ldconfig also scans).
fn replicate(top_first: &[PathBuf], root: &Path, real: &Path, depth: usize) -> Result<()> {
    let stack = Stack { top_first };
    for name in stack.list(real)? {
        let rel = real.join(&name);
        let Lookup::Found(entry) = lookup(top_first, &rel)? else {
            continue;
        };
        let target = root.join(&rel);
        if std::fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        match entry.kind {
            // Linked where it can be (same filesystem), copied otherwise.
            Kind::File if std::fs::hard_link(&entry.source, &target).is_err() => {
                std::fs::copy(&entry.source, &target).map_err(io_err(format!(
                    "copying {} to {}",
                    entry.source.display(),
                    target.display()
                )))?;
            }
            Kind::Symlink => {
                let link = std::fs::read_link(&entry.source)
                    .map_err(io_err(format!("readlink {}", entry.source.display())))?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_err(format!("symlink {}", target.display())))?;
            }
            Kind::Dir if depth < 2 && (depth == 1 || name == "glibc-hwcaps") => {
                std::fs::create_dir_all(&target)
                    .map_err(io_err(format!("creating {}", target.display())))?;
                replicate(top_first, root, &rel, depth + 1)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkgdb::generated::parse_ld_so_cache;
    use crate::test_support::write;

    const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

    /// A host library as `file` plus its soname link `link` in `layer`.
    fn add_lib(layer: &Path, file: &str, link: &str) {
        let to = layer.join(LIBDIR).join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(Path::new("/").join(LIBDIR).join(link), to).unwrap();
        std::os::unix::fs::symlink(file, layer.join(LIBDIR).join(link)).unwrap();
    }

    #[test]
    fn cache_of_a_stack_lists_what_the_stack_shows() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, app) = (tmp.path().join("base"), tmp.path().join("app"));
        write(&base, CONF, "include /etc/ld.so.conf.d/*.conf\n");
        write(
            &base,
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "# multiarch\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n",
        );
        std::os::unix::fs::symlink("usr/lib", base.join("lib")).unwrap();
        add_lib(&base, "libz.so.1.x", "libz.so.1");
        add_lib(&base, "libzstd.so.1.x", "libzstd.so.1");
        // The app adds a library and deletes one (AUFS whiteouts, as under a mount program).
        add_lib(&app, "liblzma.so.5.x", "liblzma.so.5");
        write(&app, &format!("{LIBDIR}/.wh.libzstd.so.1"), "");
        write(&app, &format!("{LIBDIR}/.wh.libzstd.so.1.x"), "");
        let stack = [app.clone(), base.clone()];
        let bytes = regenerate(&stack, tmp.path()).unwrap();
        let names: Vec<(String, String)> = parse_ld_so_cache(&bytes, Path::new("c"))
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.path))
            .collect();
        for lib in ["libz.so.1", "liblzma.so.5"] {
            let want = (lib.to_string(), format!("/lib/x86_64-linux-gnu/{lib}"));
            assert!(names.contains(&want), "{lib}: {names:?}");
        }
        assert!(!names.iter().any(|(n, _)| n == "libzstd.so.1"), "{names:?}");
        // Nothing was written into a layer, and the scratch root is gone.
        assert!(!base.join(LD_SO_CACHE).exists() && !app.join(LD_SO_CACHE).exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
