//! Reading files of a merged tree: a stack of layer directories (top first, overlay
//! semantics through [`crate::tree::lookup`]) or one plain root directory.
//!
//! Phase 2 may move [`Stack::list`] next to `tree::lookup`; nothing else in the plugin
//! lists one directory of a stack without merging the whole tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{io_err, Error, Result};
use crate::tree::{self, Kind, Lookup};

/// A read-only merged tree.
pub trait View {
    /// The bytes of regular file `rel` (`var/lib/dpkg/status`), `None` when absent or
    /// not a regular file.
    fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>>;
    /// Names in directory `rel` (empty when absent).
    fn list(&self, rel: &Path) -> Result<Vec<String>>;
    /// True when `rel` is a directory.
    fn is_dir(&self, rel: &Path) -> Result<bool>;
    /// Where `rel` comes from, for error messages.
    fn source(&self, rel: &Path) -> PathBuf;
}

/// Layer directories, top first.
pub struct Stack<'a> {
    pub top_first: &'a [PathBuf],
}

fn to_pkgdb(e: crate::Error) -> Error {
    match e {
        crate::Error::Io { context, source } => Error::Io { context, source },
        other => Error::Io {
            context: "reading layers".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// [`tree::lookup`] with this module's error type.
pub fn lookup(top_first: &[PathBuf], rel: &Path) -> Result<Lookup> {
    tree::lookup(top_first, rel).map_err(to_pkgdb)
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(io_err(format!("reading {}", path.display())))
}

impl View for Stack<'_> {
    fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>> {
        match tree::lookup(self.top_first, rel).map_err(to_pkgdb)? {
            Lookup::Found(e) if e.kind == Kind::File => Ok(Some(read_file(&e.source)?)),
            _ => Ok(None),
        }
    }

    fn list(&self, rel: &Path) -> Result<Vec<String>> {
        let mut candidates = BTreeSet::new();
        for layer in self.top_first {
            let dir = layer.join(rel);
            let Ok(reader) = std::fs::read_dir(&dir) else {
                continue;
            };
            for item in reader {
                let item = item.map_err(io_err(format!("reading {}", dir.display())))?;
                let name = item.file_name();
                if rebasefs_fuse::is_aufs_name(&name) {
                    continue;
                }
                if let Some(name) = name.to_str() {
                    candidates.insert(name.to_string());
                }
            }
        }
        let mut names = Vec::new();
        for name in candidates {
            if let Lookup::Found(_) =
                tree::lookup(self.top_first, &rel.join(&name)).map_err(to_pkgdb)?
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn is_dir(&self, rel: &Path) -> Result<bool> {
        Ok(matches!(
            tree::lookup(self.top_first, rel).map_err(to_pkgdb)?,
            Lookup::Found(e) if e.kind == Kind::Dir
        ))
    }

    fn source(&self, rel: &Path) -> PathBuf {
        match tree::lookup(self.top_first, rel) {
            Ok(Lookup::Found(e)) => e.source,
            _ => Path::new("/").join(rel),
        }
    }
}

/// One plain directory tree (a fixture root, a mounted image).
pub struct Root(pub PathBuf);

impl View for Root {
    fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>> {
        let path = self.0.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(read_file(&path)?)),
            _ => Ok(None),
        }
    }

    fn list(&self, rel: &Path) -> Result<Vec<String>> {
        let dir = self.0.join(rel);
        let Ok(reader) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for item in reader {
            let item = item.map_err(io_err(format!("reading {}", dir.display())))?;
            if let Some(name) = item.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn is_dir(&self, rel: &Path) -> Result<bool> {
        Ok(std::fs::symlink_metadata(self.0.join(rel)).is_ok_and(|m| m.is_dir()))
    }

    fn source(&self, rel: &Path) -> PathBuf {
        self.0.join(rel)
    }
}

/// Reads `rel` as UTF-8 text (`None` when absent); invalid UTF-8 is a malformed file.
pub fn read_text(view: &dyn View, rel: &Path) -> Result<Option<String>> {
    let Some(bytes) = view.read(rel)? else {
        return Ok(None);
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        Error::Malformed {
            file: view.source(rel),
            line: e.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            reason: "not valid UTF-8".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::write;

    #[test]
    fn stack_reads_and_lists_with_whiteouts() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("l"), tmp.path().join("u"));
        write(&lower, "d/a", "a");
        write(&lower, "d/b", "b");
        write(&upper, "d/.wh.a", "");
        write(&upper, "d/c", "c");
        write(&upper, "d/b", "B");
        let layers = [upper, lower];
        let stack = Stack { top_first: &layers };
        assert_eq!(stack.list(Path::new("d")).unwrap(), ["b", "c"]);
        assert_eq!(stack.read(Path::new("d/b")).unwrap().unwrap(), b"B");
        assert_eq!(stack.read(Path::new("d/a")).unwrap(), None);
        assert!(stack.is_dir(Path::new("d")).unwrap());
    }
}
