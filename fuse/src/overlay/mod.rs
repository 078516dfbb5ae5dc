//! The overlay filesystem: what every request does to the merged tree, independent of
//! FUSE's wire protocol (the adapter, `crate::adapter`, decodes requests into calls here
//! and sends the replies). This file holds the state shared by all request threads (the
//! current stack, the node table, open handles, the tree lock) and node resolution,
//! re-done lazily when the stack generation changes or the descriptor budget evicted the
//! cached one. `Overlay`'s operations live one file per concern:
//!
//! - getattr and the attributes the kernel is given in [`attr`], setattr in [`setattr`];
//! - open and create with the open policy (copy-up, passthrough or daemon-served) in
//!   [`open`], the handle table in [`handles`], data, symlink targets, sync and statfs
//!   in [`io`];
//! - extended attributes in [`xattr`], directory listings in [`readdir`];
//! - create, mkdir, mknod, symlink, link, unlink and rmdir in [`namespace`], rename in
//!   [`rename`], copy-up in [`copyup`].
//!
//! Below them: [`lookup`] (resolving a name through the layers), [`layer`] (the opened
//! stack), [`dirindex`] (lower-directory name indexes), [`whiteout`] (whiteouts, opaque
//! directories and redirects on disk), [`inode`] (the node table), [`idmap`] (id mapping),
//! [`tree`] (the tree lock and the guard copy-up asks for).

pub mod attr;
mod copyup;
pub mod dirindex;
pub mod handles;
pub mod idmap;
pub mod inode;
pub mod io;
pub mod killpriv;
pub mod layer;
pub mod lookup;
pub mod namespace;
pub mod open;
pub mod readdir;
mod rename;
pub mod setattr;
mod tree;
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
use handles::{Handle, HANDLE_SHARDS};
use idmap::IdMapper;
use inode::{Node, NodeTable, ROOT_ID};
use layer::Stack;
use lookup::Resolved;
use tree::TreeLock;

pub type Res<T> = Result<T, Errno>;

pub fn errno(e: std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno::from_i32(n),
        _ => Errno::EIO,
    }
}

pub const NAME_MAX: usize = 255;

#[derive(Debug)]
pub struct Overlay {
    pub config: OverlayConfig,
    pub ids: IdMapper,
    stack: RwLock<Arc<Stack>>,
    pub nodes: NodeTable,
    handles: Vec<RwLock<HashMap<u64, Arc<Handle>>>>,
    next_fh: AtomicU64,
    /// Serialises every change to the merged namespace and copy-ups.
    tree: TreeLock,
    pub passthrough: AtomicBool,
    pub notifier: OnceLock<Notifier>,
    tmp_counter: AtomicU64,
    /// Names answered "absent" with a cacheable negative entry, to invalidate on a
    /// stack swap (bounded; past the bound negative entries are not cached).
    pub negative: Mutex<std::collections::HashSet<(u64, OsString)>>,
    /// Open files whose writes may have to drop S_ISGID (see [`killpriv`]).
    setgid_watch: killpriv::SgidWatch,
}

const NEGATIVE_CAP: usize = 200_000;

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
            tree: TreeLock::default(),
            passthrough: AtomicBool::new(false),
            notifier: OnceLock::new(),
            tmp_counter: AtomicU64::new(0),
            negative: Mutex::new(std::collections::HashSet::new()),
            setgid_watch: killpriv::SgidWatch::default(),
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

    /// A kernel lookup of `name` under `parent`: the entry's attributes, or for an absent
    /// name that may be cached as absent, a negative entry (node id 0) the kernel keeps for
    /// the entry TTL.
    pub fn lookup_entry(&self, parent: u64, name: &OsStr) -> Res<FileAttr> {
        match self.node(parent).and_then(|p| self.lookup(&p, name)) {
            Ok((_, attr)) => Ok(attr),
            Err(e)
                if e == Errno::ENOENT
                    && !self.config.entry_timeout.is_zero()
                    && self.note_negative(parent, name) =>
            {
                let mut attr = idmap::file_attr(0, &sys::zero_stat(), false, &self.ids);
                attr.ino = fuser::INodeNo(0);
                Ok(attr)
            }
            Err(e) => Err(e),
        }
    }

    /// Every node the kernel knows, for cache invalidation after a stack swap.
    pub fn known_nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.all()
    }
}
