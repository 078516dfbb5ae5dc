//! The overlay state shared by all request threads: the current stack, the node table,
//! open handles, and node resolution (re-done lazily when the stack generation changes
//! or the descriptor budget evicted the cached one).

mod copyup;
pub mod dirindex;
pub mod idmap;
pub mod inode;
pub mod layer;
pub mod lookup;
pub mod namespace;
pub mod readdir;
mod rename;
pub mod whiteout;
mod xattr;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use fuser::{Errno, FileAttr, Notifier};
use parking_lot::{Mutex, RwLock};

use crate::config::OverlayConfig;
use crate::fdbudget::{FdBudget, HeldFd};
use crate::sys;
use idmap::IdMapper;
use inode::{BackingFile, Node, NodeTable, ROOT_ID};
use layer::Stack;
use lookup::Resolved;
use readdir::MergedEntry;

pub type Res<T> = Result<T, Errno>;

pub fn errno(e: std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno::from_i32(n),
        _ => Errno::EIO,
    }
}

pub const NAME_MAX: usize = 255;

/// An open file or directory.
#[derive(Debug)]
pub enum Handle {
    File {
        /// Swapped to the upper copy when the file is copied up while open.
        fd: RwLock<Arc<HeldFd>>,
        node: u64,
        /// Served through this daemon (not passthrough).
        cached: bool,
        /// Keeps the passthrough registration alive while the file is open.
        #[allow(dead_code)]
        backing: Option<Arc<BackingFile>>,
    },
    Dir {
        node: u64,
        entries: Mutex<Option<Arc<Vec<DirItem>>>>,
    },
}

/// One readdir item with the node id it will have when looked up.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub name: OsString,
    pub ino: u64,
    pub kind: fuser::FileType,
}

#[derive(Debug)]
pub struct Overlay {
    pub config: OverlayConfig,
    pub ids: IdMapper,
    stack: RwLock<Arc<Stack>>,
    pub nodes: NodeTable,
    handles: Vec<RwLock<HashMap<u64, Arc<Handle>>>>,
    next_fh: AtomicU64,
    /// Serialises every change to the merged namespace and copy-ups.
    pub tree: Mutex<()>,
    pub passthrough: AtomicBool,
    pub notifier: OnceLock<Notifier>,
    tmp_counter: AtomicU64,
    /// Names answered "absent" with a cacheable negative entry, to invalidate on a
    /// stack swap (bounded; past the bound negative entries are not cached).
    pub negative: Mutex<std::collections::HashSet<(u64, OsString)>>,
}

const NEGATIVE_CAP: usize = 200_000;

const HANDLE_SHARDS: usize = 16;

impl Overlay {
    pub fn new(config: OverlayConfig, stack: Stack) -> std::io::Result<Overlay> {
        let root = lookup::resolve_root(&stack)?;
        let budget = FdBudget::for_process(config.threads.max(1));
        let ov = Overlay {
            ids: IdMapper::new(&config),
            config,
            nodes: NodeTable::new(budget),
            handles: (0..HANDLE_SHARDS)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            next_fh: AtomicU64::new(1),
            tree: Mutex::new(()),
            passthrough: AtomicBool::new(false),
            notifier: OnceLock::new(),
            tmp_counter: AtomicU64::new(0),
            negative: Mutex::new(std::collections::HashSet::new()),
            stack: RwLock::new(Arc::new(stack)),
        };
        let stack = ov.stack();
        let identity = root.identity(&stack);
        ov.nodes.insert_root(identity, Arc::new(root));
        Ok(ov)
    }

    pub fn stack(&self) -> Arc<Stack> {
        self.stack.read().clone()
    }

    /// Swaps in a new stack; cached resolutions go stale by generation.
    pub fn set_stack(&self, stack: Stack) {
        let _t = self.tree.lock();
        *self.stack.write() = Arc::new(stack);
    }

    pub fn node(&self, id: u64) -> Res<Arc<Node>> {
        self.nodes.get(id).ok_or(Errno::ENOENT)
    }

    /// The node's current resolution, recomputed through its parent when stale.
    pub fn resolve(&self, node: &Node) -> Res<Arc<Resolved>> {
        let stack = self.stack();
        self.resolve_in(&stack, node, 0)
    }

    fn resolve_in(&self, stack: &Stack, node: &Node, depth: usize) -> Res<Arc<Resolved>> {
        let (parent, name, others) = {
            let s = node.state.lock();
            if let Some(r) = &s.res {
                if r.generation == stack.generation {
                    node.slot.touch();
                    return Ok(r.clone());
                }
            }
            if s.unlinked {
                return Err(Errno::ENOENT);
            }
            (s.parent, s.name.clone(), s.names.clone())
        };
        if depth > 4096 {
            return Err(Errno::ELOOP);
        }
        let res = if node.id == ROOT_ID {
            lookup::resolve_root(stack).map_err(errno)?
        } else {
            // The name it was last seen by; another known name of a hard link if the
            // kernel has forgotten that one's parent.
            let (pnode, pname) = match self.node(parent) {
                Ok(p) => (p, name),
                Err(e) => others
                    .into_iter()
                    .find_map(|(p, n)| self.node(p).ok().map(|p| (p, n)))
                    .ok_or(e)?,
            };
            let pres = self.resolve_in(stack, &pnode, depth + 1)?;
            self.retry_on_emfile(|| lookup::lookup_child(stack, &pres, &pname).map_err(errno))?
                .ok_or(Errno::ENOENT)?
        };
        let res = Arc::new(res);
        self.nodes.cache(node, res.clone());
        Ok(res)
    }

    /// Runs `f` again after dropping cached resolutions when it ran out of descriptors
    /// (the budget is an estimate; the limit is what counts).
    pub fn retry_on_emfile<T>(&self, f: impl Fn() -> Res<T>) -> Res<T> {
        match f() {
            Err(e) if e == Errno::EMFILE || e == Errno::ENFILE => {
                self.nodes.shed();
                f()
            }
            r => r,
        }
    }

    /// Drops a node's cached resolution (after the layers under it changed).
    pub fn invalidate(&self, node: &Node) {
        node.state.lock().res = None;
    }

    /// Tells the kernel its cached attributes of these nodes are stale: for a request
    /// that fails after the upper layer already changed them (the kernel FUSE client
    /// only drops a parent's attributes when the request succeeds).
    pub fn attrs_changed(&self, ids: &[u64]) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        for &id in ids {
            // Offset -1: attributes only, the page cache stays.
            if let Err(e) = notifier.inval_inode(fuser::INodeNo(id), -1, 0) {
                tracing::debug!("inval_inode {id} (attributes): {e}");
            }
        }
    }

    /// Forces a fresh resolution of `node` from its parent.
    pub fn refresh(&self, node: &Node) -> Res<Arc<Resolved>> {
        self.invalidate(node);
        self.resolve(node)
    }

    /// Attributes of a node from a fresh stat of its top layer entry.
    pub fn attr(&self, node: &Node, res: &Resolved) -> Res<FileAttr> {
        let top = res.top().ok_or(Errno::ENOENT)?;
        let st = sys::stat_fd(top.fd()).map_err(errno)?;
        Ok(self.attr_from_stat(node, res, &st))
    }

    /// Attributes from a stat of the node's top file (or of an open fd of it).
    pub fn attr_from_stat(&self, node: &Node, res: &Resolved, st: &sys::Stat) -> FileAttr {
        let merged = lookup::is_dir(st) && res.entries.len() > 1;
        let mut a = idmap::file_attr(node.id, st, merged, &self.ids);
        if !lookup::is_dir(st) {
            // Kernel overlay (index=on) counts a lower hard link's names: the lower
            // ones still there plus the ones added by link().
            let mut lc = self.nodes.link_count(node.identity);
            if lc.lower_links == 0 && (st.st_nlink > 1 || res.top().is_some_and(|t| t.indexed)) {
                // A copied-up hard link seen first after a remount: counts from its xattr.
                let stored = res.upper(&self.stack()).and_then(|up| {
                    sys::get_xattr(up.fd(), OsStr::new(inode::LINKS_XATTR))
                        .ok()
                        .flatten()
                        .and_then(|v| inode::LinkCount::decode(&v))
                });
                if let Some(s) = stored {
                    lc = self.nodes.update_link_count(node.identity, |c| *c = s);
                }
            }
            let lower = if lc.lower_links > 0 {
                lc.lower_links
            } else {
                res.top().map_or(0, |t| t.lower_nlink)
            };
            if lower > 1 {
                a.nlink = (lower + lc.extra).saturating_sub(lc.gone);
            }
        }
        if let Some(top) = res.top() {
            self.apply_override(top.fd(), &mut a);
        }
        a
    }

    /// Looks `name` up under `parent`, registering the node (one kernel lookup).
    pub fn lookup(&self, parent: &Node, name: &OsStr) -> Res<(Arc<Node>, FileAttr)> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if whiteout::is_aufs_name(name) {
            return Err(Errno::ENOENT);
        }
        let stack = self.stack();
        let pres = self.resolve_in(&stack, parent, 0)?;
        if !pres.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let res = self
            .retry_on_emfile(|| lookup::lookup_child(&stack, &pres, name).map_err(errno))?
            .ok_or(Errno::ENOENT)?;
        let identity = res.identity(&stack);
        let res = Arc::new(res);
        let node = self
            .nodes
            .lookup(identity, parent.id, &name.to_os_string(), res.clone(), true);
        // The node may keep another resolution (a copied-up hard link); an eviction may
        // have dropped it already: then this lookup's own applies.
        let res = node.state.lock().res.clone().unwrap_or(res);
        // The entry was just stat'ed by the lookup itself.
        let attr = match res.top() {
            Some(top) => self.attr_from_stat(&node, &res, &top.st),
            None => {
                self.nodes.forget(node.id, 1);
                return Err(Errno::ENOENT);
            }
        };
        Ok((node, attr))
    }

    /// The readdir listing of a directory node with the ids lookups will give.
    pub fn list_dir(&self, node: &Node) -> Res<Vec<DirItem>> {
        let stack = self.stack();
        let res = self.resolve_in(&stack, node, 0)?;
        let entries = readdir::merged_entries(&stack, &res).map_err(errno)?;
        let mut items = Vec::with_capacity(entries.len() + 2);
        let parent = if node.id == ROOT_ID {
            ROOT_ID
        } else {
            node.state.lock().parent
        };
        items.push(DirItem {
            name: ".".into(),
            ino: node.id,
            kind: fuser::FileType::Directory,
        });
        items.push(DirItem {
            name: "..".into(),
            ino: parent,
            kind: fuser::FileType::Directory,
        });
        for e in entries {
            let ino = self.item_id(&stack, &res, &e);
            items.push(DirItem {
                kind: readdir::file_type_of_dtype(e.dtype),
                name: e.name,
                ino,
            });
        }
        Ok(items)
    }

    fn item_id(&self, stack: &Stack, dir: &Resolved, e: &MergedEntry) -> u64 {
        if e.dtype == libc::DT_DIR && stack.is_upper(e.layer) {
            // An upper directory may merge with lower ones: resolve it like lookup does.
            if let Ok(Some(r)) = lookup::lookup_child(stack, dir, &e.name) {
                return self.nodes.id_for(r.identity(stack));
            }
        }
        self.nodes.id_for((e.dev, e.ino))
    }

    pub fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles[(fh as usize) % HANDLE_SHARDS]
            .write()
            .insert(fh, Arc::new(h));
        fh
    }

    pub fn handle(&self, fh: u64) -> Res<Arc<Handle>> {
        self.handles[(fh as usize) % HANDLE_SHARDS]
            .read()
            .get(&fh)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    pub fn remove_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        let h = self.handles[(fh as usize) % HANDLE_SHARDS]
            .write()
            .remove(&fh)?;
        if let Handle::File {
            node, cached: true, ..
        } = &*h
        {
            if let Some(n) = self.nodes.get(*node) {
                let mut io = n.io.lock();
                io.cached_opens = io.cached_opens.saturating_sub(1);
                io.lower_fhs.retain(|f| *f != fh);
            }
        }
        Some(h)
    }

    /// After a copy-up, points the node's open read-only handles at the upper copy
    /// (kernel overlayfs readers also see the copied-up file).
    pub fn swap_open_handles(&self, node: &Node, upper: std::os::fd::BorrowedFd<'_>) {
        let fhs = std::mem::take(&mut node.io.lock().lower_fhs);
        for fh in fhs {
            if let Ok(h) = self.handle(fh) {
                if let Handle::File { fd, .. } = &*h {
                    match sys::reopen(upper, libc::O_RDONLY) {
                        Ok(f) => *fd.write() = Arc::new(HeldFd::new(f)),
                        Err(e) => tracing::warn!("reopening handle {fh} after copy-up: {e}"),
                    }
                }
            }
        }
    }

    /// A fresh name for a temporary entry in the work directory.
    pub fn tmp_name(&self) -> OsString {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        format!("#rebasefs.{}.{n}", std::process::id()).into()
    }

    pub fn work(&self, stack: &Stack) -> Res<Arc<HeldFd>> {
        stack.work.clone().ok_or(Errno::EROFS)
    }

    /// Records a negative lookup; false when it must not be cached (set full).
    pub fn note_negative(&self, parent: u64, name: &OsStr) -> bool {
        let mut n = self.negative.lock();
        if n.len() >= NEGATIVE_CAP {
            return false;
        }
        n.insert((parent, name.to_os_string()));
        true
    }

    /// Every node the kernel knows, for cache invalidation after a stack swap.
    pub fn known_nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.all()
    }

    pub fn root_fd_for_statfs(&self) -> Option<Arc<HeldFd>> {
        let stack = self.stack();
        stack.layers.first().map(|l| l.root.clone())
    }
}
