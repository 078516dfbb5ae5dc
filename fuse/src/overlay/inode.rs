//! The node table: FUSE node ids, their lookup counts and cached resolutions.
//!
//! fuser sends `attr.ino` as the FUSE node id, so a node id *is* the `st_ino` users see.
//! It is derived from the underlying (dev, ino): the plain inode number on the first
//! device seen, with the device's index in the top bits for others (like overlay xino).
//! Copied-up files keep their origin's number through an upper→origin map that lives
//! as long as the mount. Collisions (a reused upper inode number while the old node is
//! still known) fall back to numbers allocated from a reserved range.
//!
//! Cached resolutions hold layer fds; the table admits each one to the descriptor
//! budget ([`FdBudget`]), which evicts the least recently used when the process holds
//! too many. A node without a cached resolution is resolved again on use.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::lookup::Resolved;
use crate::fdbudget::{CacheSlot, FdBudget};

pub const ROOT_ID: u64 = 1;
const SHARDS: usize = 32;
const ALLOC_BASE: u64 = 1 << 62;

/// Where a node was last seen in the merged tree, and what it resolved to.
#[derive(Debug)]
pub struct NodeState {
    pub parent: u64,
    pub name: OsString,
    pub res: Option<Arc<Resolved>>,
    /// Removed from the tree while the kernel still holds it.
    pub unlinked: bool,
    /// Every (parent, name) this node was looked up by (hard links have several).
    pub names: Vec<(u64, OsString)>,
}

const MAX_NAMES: usize = 32;

impl NodeState {
    pub fn add_name(&mut self, parent: u64, name: &OsStr) {
        if !self.names.iter().any(|(p, n)| *p == parent && n == name)
            && self.names.len() < MAX_NAMES
        {
            self.names.push((parent, name.to_os_string()));
        }
    }

    /// Makes `parent/name` the name this node resolves through (and copies up as):
    /// an operation on one name of a hard link must act on that name, not on the
    /// one the kernel looked up last.
    pub fn resolve_through(&mut self, parent: u64, name: &OsStr) {
        if self.parent != parent || self.name != name {
            self.parent = parent;
            self.name = name.to_os_string();
            self.res = None;
        }
        self.add_name(parent, name);
    }

    /// Forgets one name; when another is known, the node moves there. Returns whether
    /// the node is still reachable by name.
    pub fn drop_name(&mut self, parent: u64, name: &OsStr) -> bool {
        self.names.retain(|(p, n)| !(*p == parent && n == name));
        if self.parent == parent && self.name == name {
            match self.names.last() {
                Some((p, n)) => {
                    self.parent = *p;
                    self.name = n.clone();
                    self.res = None;
                    true
                }
                None => false,
            }
        } else {
            true
        }
    }
}

#[derive(Debug)]
pub struct Node {
    pub id: u64,
    pub identity: (u64, u64),
    lookups: AtomicU64,
    pub state: Mutex<NodeState>,
    /// Serialises copy-up and passthrough backing setup of this node.
    pub io: Mutex<NodeIo>,
    /// Where the cached resolution stands for eviction.
    pub slot: CacheSlot,
}

/// Hard-link bookkeeping of one lower file, kept for the whole mount (nodes come and
/// go): how many names it had in the lower layer, and how many it gained and lost since.
/// Like kernel overlay (`index=on`), which keeps one link count per overlay inode, a
/// name counts wherever it is: lower or upper-only, moved by rename or exchange.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCount {
    /// Names of the lower file (0: not a lower hard link).
    pub lower_links: u32,
    /// Names removed (unlink, renamed over).
    pub gone: u32,
    /// Names added by link().
    pub extra: u32,
}

/// Per-node open-file bookkeeping (passthrough backing ids must be shared per inode).
#[derive(Debug, Default)]
pub struct NodeIo {
    pub backing: Option<std::sync::Weak<BackingFile>>,
    /// Open handles served by the daemon; while any is open the kernel refuses
    /// passthrough opens of the inode.
    pub cached_opens: u32,
    /// Open handles on a lower copy, swapped to the upper one on copy-up.
    pub lower_fhs: Vec<u64>,
}

/// A passthrough backing registration and the (dev, ino) of the file it refers to.
#[derive(Debug)]
pub struct BackingFile {
    pub id: fuser::BackingId,
    pub file: (u64, u64),
}

/// Stored on the upper copy of a lower hard link so the counts survive a remount.
pub const LINKS_XATTR: &str = "trusted.overlay.rebasefs.links";

impl LinkCount {
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.lower_links, self.gone, self.extra)
    }
    pub fn decode(v: &[u8]) -> Option<LinkCount> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.split(':').map(|x| x.parse::<u32>().ok());
        Some(LinkCount {
            lower_links: it.next()??,
            gone: it.next()??,
            extra: it.next()??,
        })
    }
}

impl Node {
    pub fn parent_and_name(&self) -> (u64, OsString) {
        let s = self.state.lock();
        (s.parent, s.name.clone())
    }
}

#[derive(Debug)]
pub struct NodeTable {
    shards: Vec<RwLock<HashMap<u64, Arc<Node>>>>,
    aliases: Mutex<HashMap<(u64, u64), u64>>,
    devs: Mutex<Vec<u64>>,
    origins: RwLock<HashMap<(u64, u64), (u64, u64)>>,
    next_alloc: AtomicU64,
    links: Mutex<HashMap<(u64, u64), LinkCount>>,
    budget: FdBudget,
}

impl NodeTable {
    pub fn new(budget: FdBudget) -> Self {
        Self {
            budget,
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            aliases: Mutex::new(HashMap::new()),
            devs: Mutex::new(Vec::new()),
            origins: RwLock::new(HashMap::new()),
            next_alloc: AtomicU64::new(ALLOC_BASE),
            links: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, id: u64) -> &RwLock<HashMap<u64, Arc<Node>>> {
        let i = (id as usize ^ (id >> 32) as usize) % SHARDS;
        // SHARDS entries always exist; `i < SHARDS`.
        &self.shards[i]
    }

    pub fn get(&self, id: u64) -> Option<Arc<Node>> {
        self.shard(id).read().get(&id).cloned()
    }

    pub fn link_count(&self, identity: (u64, u64)) -> LinkCount {
        self.links
            .lock()
            .get(&identity)
            .copied()
            .unwrap_or_default()
    }

    pub fn update_link_count(
        &self,
        identity: (u64, u64),
        f: impl FnOnce(&mut LinkCount),
    ) -> LinkCount {
        let mut m = self.links.lock();
        let c = m.entry(identity).or_default();
        f(c);
        *c
    }

    /// Records that the upper file `upper` is a copy-up of `origin`.
    pub fn add_origin(&self, upper: (u64, u64), origin: (u64, u64)) {
        if upper != origin {
            self.origins.write().insert(upper, origin);
        }
    }

    /// The identity a resolved entry is known by (its origin when copied up).
    pub fn canonical(&self, identity: (u64, u64)) -> (u64, u64) {
        self.origins
            .read()
            .get(&identity)
            .copied()
            .unwrap_or(identity)
    }

    fn natural_id(&self, (dev, ino): (u64, u64)) -> u64 {
        let idx = {
            let mut devs = self.devs.lock();
            match devs.iter().position(|d| *d == dev) {
                Some(i) => i as u64,
                None => {
                    devs.push(dev);
                    (devs.len() - 1) as u64
                }
            }
        };
        let id = if idx == 0 {
            ino
        } else if ino < (1 << 56) && idx < 64 {
            ino | (idx << 56)
        } else {
            0
        };
        if id == 0 || id == ROOT_ID || id >= ALLOC_BASE {
            0
        } else {
            id
        }
    }

    fn alloc(&self, identity: (u64, u64)) -> u64 {
        let id = self.next_alloc.fetch_add(1, Ordering::Relaxed);
        self.aliases.lock().insert(identity, id);
        id
    }

    /// The id `identity` would get (without registering a lookup).
    pub fn id_for(&self, identity: (u64, u64)) -> u64 {
        let identity = self.canonical(identity);
        if let Some(id) = self.aliases.lock().get(&identity) {
            return *id;
        }
        match self.natural_id(identity) {
            0 => self.alloc(identity),
            id => {
                // Collides with a live node of another identity: allocate.
                match self.get(id) {
                    Some(n) if n.identity != identity => self.alloc(identity),
                    _ => id,
                }
            }
        }
    }

    /// Installs the root node (never forgotten).
    pub fn insert_root(&self, identity: (u64, u64), res: Arc<Resolved>) {
        let node = Arc::new(Node {
            id: ROOT_ID,
            identity,
            lookups: AtomicU64::new(1),
            state: Mutex::new(NodeState {
                parent: ROOT_ID,
                name: OsString::new(),
                res: Some(res),
                unlinked: false,
                names: Vec::new(),
            }),
            io: Mutex::new(NodeIo::default()),
            slot: CacheSlot::default(),
        });
        self.shard(ROOT_ID).write().insert(ROOT_ID, node);
    }

    /// Finds or creates the node for a resolved name and counts one kernel lookup
    /// (`count_lookup` false for `.`/`..` in readdirplus).
    pub fn lookup(
        &self,
        identity: (u64, u64),
        parent: u64,
        name: &OsString,
        res: Arc<Resolved>,
        count_lookup: bool,
    ) -> Arc<Node> {
        let identity = self.canonical(identity);
        let mut id = self.id_for(identity);
        loop {
            let mut shard = self.shard(id).write();
            match shard.get(&id) {
                Some(n) if n.identity == identity => {
                    let n = n.clone();
                    drop(shard);
                    if count_lookup {
                        n.lookups.fetch_add(1, Ordering::AcqRel);
                    }
                    n.slot.touch();
                    if n.id != ROOT_ID {
                        let mut s = n.state.lock();
                        s.parent = parent;
                        s.name = name.clone();
                        // Another name of a copied-up hard link still resolves to the
                        // lower file: keep serving the upper copy.
                        let keep = s.res.as_ref().is_some_and(|old| {
                            old.generation == res.generation
                                && old.has_upper_top()
                                && !res.has_upper_top()
                                && old.top().is_some_and(|t| {
                                    crate::sys::stat_fd(t.fd()).is_ok_and(|st| st.st_nlink > 0)
                                })
                        });
                        if !keep {
                            s.res = Some(res);
                        }
                        s.unlinked = false;
                        s.add_name(parent, name);
                        drop(s);
                        self.admit(&n);
                    }
                    return n;
                }
                Some(_) => {
                    drop(shard);
                    id = self.alloc(identity);
                    continue;
                }
                None => {
                    let n = Arc::new(Node {
                        id,
                        identity,
                        lookups: AtomicU64::new(u64::from(count_lookup)),
                        state: Mutex::new(NodeState {
                            parent,
                            name: name.clone(),
                            res: Some(res),
                            unlinked: false,
                            names: vec![(parent, name.clone())],
                        }),
                        io: Mutex::new(NodeIo::default()),
                        slot: CacheSlot::default(),
                    });
                    shard.insert(id, n.clone());
                    drop(shard);
                    self.admit(&n);
                    return n;
                }
            }
        }
    }

    /// Caches `res` as `node`'s resolution (counted against the descriptor budget).
    pub fn cache(&self, node: &Node, res: Arc<Resolved>) {
        node.state.lock().res = Some(res);
        self.admit(node);
    }

    /// Admits `node`'s cached resolution to the budget; may evict others'. No node lock
    /// may be held by the caller.
    fn admit(&self, node: &Node) {
        self.budget.admit(node, |id| self.get(id));
    }

    /// Makes room in the descriptor budget for `n` more held fds (open files).
    pub fn reserve_fds(&self, n: usize) {
        self.budget.reserve(n, |id| self.get(id));
    }

    /// Drops cached resolutions after a request ran out of descriptors.
    pub fn shed(&self) {
        self.budget.shed(|id| self.get(id));
    }

    /// Drops `n` kernel lookups of node `id`; removes it when none remain.
    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut shard = self.shard(id).write();
        let remove = match shard.get(&id) {
            Some(node) => {
                let prev = node.lookups.load(Ordering::Acquire);
                let left = prev.saturating_sub(n);
                node.lookups.store(left, Ordering::Release);
                left == 0
            }
            None => false,
        };
        if remove {
            shard.remove(&id);
        }
    }

    /// Every node currently known to the kernel.
    pub fn all(&self) -> Vec<Arc<Node>> {
        let mut v = Vec::new();
        for s in &self.shards {
            v.extend(s.read().values().cloned());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_count_roundtrip_and_garbage() {
        let c = LinkCount {
            lower_links: 3,
            gone: 1,
            extra: 2,
        };
        let d = LinkCount::decode(c.encode().as_bytes()).unwrap();
        assert_eq!((d.lower_links, d.gone, d.extra), (3, 1, 2));
        assert!(LinkCount::decode(b"3:x:1").is_none());
        assert!(LinkCount::decode(b"3:1").is_none());
    }

    #[test]
    fn ids_stable_and_collisions_allocated() {
        let t = NodeTable::new(FdBudget::with_cap(64));
        // First device: the plain inode number; another device: index in the top bits.
        assert_eq!(t.id_for((10, 500)), 500);
        assert_eq!(t.id_for((11, 500)), 500 | (1 << 56));
        // Inode 1 would be the FUSE root id: allocated instead, stably.
        let a = t.id_for((10, 1));
        assert!(a >= ALLOC_BASE);
        assert_eq!(t.id_for((10, 1)), a);
        // A copy-up keeps its origin's id.
        t.add_origin((10, 900), (10, 500));
        assert_eq!(t.id_for((10, 900)), 500);
    }
}
