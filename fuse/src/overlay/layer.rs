//! The layer stack being served: layer roots held open as `O_PATH` directory fds.
//!
//! Layer index 0 is the upper layer when there is one; lower layers follow top first.
//! A stack carries a generation number so cached per-node resolutions can tell when
//! the stack has been replaced. Its layer directories are traps: met again inside a
//! layer (an upperdir inside a lowerdir, which kernel overlayfs mounts too), a lookup of
//! one answers ELOOP, as the kernel's does.

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;

use super::dirindex::DirIndex;
use crate::config::StackSpec;
use crate::fdbudget::HeldFd;
use crate::sys;

/// One layer root.
#[derive(Debug)]
#[allow(dead_code)] // path and dev are kept for diagnostics
pub struct Layer {
    pub path: PathBuf,
    pub root: Arc<HeldFd>,
    pub dev: u64,
    /// Hash of the layer's canonical path: names this layer in hard-link index keys.
    pub key: u64,
}

/// An opened stack.
#[derive(Debug)]
pub struct Stack {
    pub generation: u64,
    /// Upper first (if any), then lowers top first.
    pub layers: Vec<Layer>,
    pub has_upper: bool,
    pub work: Option<Arc<HeldFd>>,
    /// `work/rebasefs-index`: one link per copied-up lower hard link, named by its
    /// origin, so every lower name of it reaches the copy (kernel overlay `index=on`).
    pub link_index: Option<Arc<HeldFd>>,
    /// (dev, ino) of every layer root, the work dir and the link index.
    traps: HashSet<(u64, u64)>,
    /// Name indexes of lower-layer directories, keyed by (dev, ino).
    indexes: RwLock<HashMap<(u64, u64), Arc<DirIndex>>>,
    index_weight: std::sync::atomic::AtomicUsize,
}

pub const LINK_INDEX_DIR: &str = "rebasefs-index";

/// Upper bound on indexed entries kept per stack (about 100 bytes each).
const INDEX_CAP: usize = 4_000_000;

fn open_layer(path: &std::path::Path) -> io::Result<Layer> {
    let root = sys::open_root(path)?;
    let st = sys::stat_fd(root.as_fd())?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Layer {
        path: path.to_path_buf(),
        root: Arc::new(HeldFd::new(root)),
        dev: st.st_dev,
        key: fnv1a(canonical.as_os_str().as_encoded_bytes()),
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
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
            (Some(w), true) => Some(Arc::new(HeldFd::new(
                sys::open_root(w).map_err(|e| ctx(e, w))?,
            ))),
            _ => None,
        };
        let link_index = match &work {
            Some(w) => {
                let name = std::ffi::OsStr::new(LINK_INDEX_DIR);
                match sys::mkdir_at(w.as_fd(), name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                Some(Arc::new(HeldFd::new(sys::open_path_at(w.as_fd(), name)?)))
            }
            None => None,
        };
        let mut traps = HashSet::new();
        for fd in layers
            .iter()
            .map(|l| &l.root)
            .chain(work.iter())
            .chain(link_index.iter())
        {
            let st = sys::stat_fd(fd.as_fd())?;
            traps.insert((st.st_dev, st.st_ino));
        }
        Ok(Stack {
            traps,
            link_index,
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

    /// The link-index name of a lower file: its layer and inode number.
    pub fn link_key(&self, layer: usize, ino: u64) -> std::ffi::OsString {
        let k = self.layers.get(layer).map_or(0, |l| l.key);
        format!("{k:016x}-{ino:x}").into()
    }

    /// Whether a directory met inside a layer is one of this stack's layer directories.
    pub fn is_trap(&self, st: &sys::Stat) -> bool {
        self.traps.contains(&(st.st_dev, st.st_ino))
    }

    pub fn is_upper(&self, layer: usize) -> bool {
        self.has_upper && layer == 0
    }
}

fn ctx(e: io::Error, p: &std::path::Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}
