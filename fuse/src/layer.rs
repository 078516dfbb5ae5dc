//! The layer stack being served: layer roots held open as `O_PATH` directory fds.
//!
//! Layer index 0 is the upper layer when there is one; lower layers follow top first.
//! A stack carries a generation number so cached per-node resolutions can tell when
//! the stack has been replaced.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::config::StackSpec;
use crate::dirindex::DirIndex;
use crate::sys;

/// One layer root.
#[derive(Debug)]
#[allow(dead_code)] // path and dev are kept for diagnostics
pub struct Layer {
    pub path: PathBuf,
    pub root: Arc<OwnedFd>,
    pub dev: u64,
}

/// An opened stack.
#[derive(Debug)]
pub struct Stack {
    pub generation: u64,
    /// Upper first (if any), then lowers top first.
    pub layers: Vec<Layer>,
    pub has_upper: bool,
    pub work: Option<Arc<OwnedFd>>,
    /// Name indexes of lower-layer directories, keyed by (dev, ino).
    indexes: RwLock<HashMap<(u64, u64), Arc<DirIndex>>>,
    index_weight: std::sync::atomic::AtomicUsize,
}

/// Upper bound on indexed entries kept per stack (about 100 bytes each).
const INDEX_CAP: usize = 4_000_000;

fn open_layer(path: &std::path::Path) -> io::Result<Layer> {
    let root = sys::open_root(path)?;
    let st = sys::stat_fd(root.as_fd())?;
    Ok(Layer {
        path: path.to_path_buf(),
        root: Arc::new(root),
        dev: st.st_dev,
    })
}

impl Stack {
    pub fn open(spec: &StackSpec, generation: u64) -> io::Result<Stack> {
        let mut layers = Vec::new();
        let mut has_upper = false;
        if let Some(u) = &spec.upper {
            layers.push(open_layer(u).map_err(|e| ctx(e, u))?);
            has_upper = true;
        }
        for l in &spec.lowers {
            layers.push(open_layer(l).map_err(|e| ctx(e, l))?);
        }
        let work = match (&spec.work, has_upper) {
            (Some(w), true) => Some(Arc::new(sys::open_root(w).map_err(|e| ctx(e, w))?)),
            _ => None,
        };
        Ok(Stack {
            generation,
            layers,
            has_upper,
            work,
            indexes: RwLock::new(HashMap::new()),
            index_weight: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The name index of a lower-layer directory (None for the upper layer, which
    /// changes, or when the cache is full or the directory cannot be read).
    pub fn index(
        &self,
        layer: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        st: &crate::sys::Stat,
    ) -> Option<Arc<DirIndex>> {
        use std::sync::atomic::Ordering;
        if self.is_upper(layer) {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(i) = self.indexes.read().get(&key) {
            return Some(i.clone());
        }
        if self.index_weight.load(Ordering::Relaxed) > INDEX_CAP {
            return None;
        }
        let idx = Arc::new(DirIndex::build(fd).ok()?);
        self.index_weight.fetch_add(idx.weight(), Ordering::Relaxed);
        self.indexes
            .write()
            .entry(key)
            .or_insert_with(|| idx.clone());
        Some(idx)
    }

    pub fn is_upper(&self, layer: usize) -> bool {
        self.has_upper && layer == 0
    }
}

fn ctx(e: io::Error, p: &std::path::Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}
