//! The descriptor budget: how many file descriptors the daemon keeps past one request,
//! and the eviction of cached node resolutions that keeps that number bounded however
//! many inodes the kernel caches.
//!
//! RLIMIT_NOFILE is per process, so the count is too: every descriptor held beyond one
//! request (layer roots, the `O_PATH` fds of cached resolutions, open files) is a
//! [`HeldFd`], counted while it lives. The cap is the soft limit (raised to the hard one)
//! minus a reserve for what is not counted: stdio, `/dev/fuse` and its per-thread clones,
//! the control socket, and the fds a request opens and closes again (directory reads,
//! copy-up). Open files legitimately need an fd each (as in fuse-overlayfs); cached
//! resolutions are what gives way: a node without one is resolved again through its
//! parent when next used.
//!
//! Eviction is CLOCK (second chance): a cache hit only sets the node's referenced bit (no
//! lock), the hand passes over a referenced node once; the ring of nodes holding a resolution is locked when one is cached or evicted,
//! never while a node's state is locked.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::overlay::inode::{Node, ROOT_ID};

/// Descriptors alive as [`HeldFd`]s in this process.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// A descriptor the daemon holds beyond one request; counted against the budget.
#[derive(Debug)]
pub struct HeldFd(OwnedFd);

impl HeldFd {
    pub fn new(fd: OwnedFd) -> HeldFd {
        HELD.fetch_add(1, Ordering::Relaxed);
        HeldFd(fd)
    }

    /// How many are open in this process now.
    pub fn live() -> usize {
        HELD.load(Ordering::Relaxed)
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsFd for HeldFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A node's place in the eviction ring.
#[derive(Debug, Default)]
pub struct CacheSlot {
    /// The node's id is in the ring.
    queued: AtomicBool,
    /// Used since the clock hand last passed.
    referenced: AtomicBool,
}

impl CacheSlot {
    /// Marks the node's cached resolution as used (a cache hit).
    pub fn touch(&self) {
        self.referenced.store(true, Ordering::Relaxed);
    }
}

/// Nodes evaluated per ring lock.
const BATCH: usize = 64;

/// Fds kept free on top of the counted reserve: a share of the limit, at least a few.
fn slack(limit: usize) -> usize {
    8 + limit / 64
}

/// The cap on [`HeldFd`]s and the ring of nodes whose cached resolutions may be evicted.
#[derive(Debug)]
pub struct FdBudget {
    cap: usize,
    ring: Mutex<VecDeque<u64>>,
}

impl FdBudget {
    /// A budget of exactly `cap` held descriptors.
    pub fn with_cap(cap: usize) -> FdBudget {
        FdBudget {
            cap: cap.max(1),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    /// The budget for this process serving with `threads` request threads: the
    /// RLIMIT_NOFILE soft limit (raised to the hard limit) minus a reserve for the
    /// descriptors that are open and not counted now, `/dev/fuse` and a clone per
    /// thread, what requests open briefly, and slack.
    pub fn for_process(threads: usize) -> FdBudget {
        let limit = usize::try_from(crate::sys::raise_nofile()).unwrap_or(usize::MAX);
        let uncounted_now = open_fds().map_or(16, |n| n.saturating_sub(HeldFd::live()));
        let reserve = uncounted_now + (threads + 1) + (2 * threads + 4) + slack(limit);
        // A reserve estimate larger than the limit must not disable caching altogether.
        let cap = limit.saturating_sub(reserve).max(limit / 4);
        tracing::debug!("fd budget: limit {limit}, reserve {reserve}, cap {cap}");
        FdBudget::with_cap(cap)
    }

    /// Registers that `node` now holds a cached resolution, then evicts others if the
    /// process holds more descriptors than the cap. The caller holds no node lock.
    /// A new resolution enters unreferenced (only reuse protects it), so a scan of
    /// many new names pushes out its own oldest entries, not the ones in use.
    pub fn admit(&self, node: &Node, get: impl Fn(u64) -> Option<Arc<Node>>) {
        if node.id != ROOT_ID && !node.slot.queued.swap(true, Ordering::AcqRel) {
            self.ring.lock().push_back(node.id);
        }
        if HeldFd::live() > self.cap {
            // Evict a batch at once (down to 7/8 of the cap) so the ring lock is taken
            // once per many admissions, not once per admission.
            self.run_clock(self.cap - self.cap / 8, true, get);
        }
    }

    /// Makes room for `n` more held descriptors (an open file about to get one).
    pub fn reserve(&self, n: usize, get: impl Fn(u64) -> Option<Arc<Node>>) {
        if HeldFd::live() + n > self.cap {
            let target = (self.cap - self.cap / 8).saturating_sub(n);
            self.run_clock(target, true, get);
        }
    }

    /// Evicts what it can after a request ran out of descriptors (EMFILE): down to half
    /// the cap, ignoring referenced bits.
    pub fn shed(&self, get: impl Fn(u64) -> Option<Arc<Node>>) {
        let dropped = self.run_clock(self.cap / 2, false, get);
        tracing::debug!("out of descriptors: dropped {dropped} cached resolutions");
    }

    /// Runs the clock hand until at most `target` descriptors are held or every queued
    /// node has been looked at twice (the rest are in use by requests right now). With
    /// `second_chance`, recently used resolutions are passed over once.
    fn run_clock(
        &self,
        target: usize,
        second_chance: bool,
        get: impl Fn(u64) -> Option<Arc<Node>>,
    ) -> usize {
        let mut evicted = 0;
        let mut steps = 2 * self.ring.lock().len();
        while HeldFd::live() > target && steps > 0 {
            let batch: Vec<u64> = {
                let mut ring = self.ring.lock();
                let n = BATCH.min(ring.len()).min(steps);
                ring.drain(..n).collect()
            };
            if batch.is_empty() {
                break;
            }
            steps -= batch.len();
            let mut again = Vec::new();
            for id in batch {
                if HeldFd::live() <= target {
                    // Done: the rest keep their place (at the back, as if passed over).
                    again.push(id);
                    continue;
                }
                let Some(n) = get(id) else { continue };
                match evict(&n, second_chance) {
                    Verdict::Keep => again.push(id),
                    Verdict::Evicted => evicted += 1,
                    Verdict::Gone => {}
                }
            }
            self.ring.lock().extend(again);
        }
        evicted
    }
}

enum Verdict {
    /// Still caching a resolution: stays in the ring.
    Keep,
    /// Its resolution was dropped.
    Evicted,
    /// Nothing to evict (no resolution, or one that must stay): leaves the ring.
    Gone,
}

/// Drops `node`'s cached resolution, unless `second_chance` and it was used since the
/// hand last passed. Unlinked nodes keep theirs (they cannot be resolved again by name;
/// the kernel forgets them once nothing has them open).
fn evict(node: &Node, second_chance: bool) -> Verdict {
    if !node.slot.queued.load(Ordering::Acquire) {
        // A stale ring entry (the node was forgotten and its id reused).
        return Verdict::Gone;
    }
    let referenced = node.slot.referenced.swap(false, Ordering::Relaxed);
    if second_chance && referenced {
        return Verdict::Keep;
    }
    let taken = {
        let mut s = node.state.lock();
        node.slot.queued.store(false, Ordering::Release);
        if s.unlinked {
            return Verdict::Gone;
        }
        match s.res.take() {
            Some(r) => r,
            None => return Verdict::Gone,
        }
    };
    // Closed outside the lock (unless a request still holds the resolution).
    drop(taken);
    Verdict::Evicted
}

/// Descriptors open in this process (None without /proc).
fn open_fds() -> Option<usize> {
    // The directory handle itself is one of the entries.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::overlay::inode::NodeTable;
    use crate::overlay::lookup::{LayerEntry, Resolved};

    /// A resolution holding one fresh descriptor (of `/`).
    fn resolution() -> Arc<Resolved> {
        let fd = crate::sys::open_root(std::path::Path::new("/")).unwrap();
        let st = crate::sys::stat_fd(fd.as_fd()).unwrap();
        Arc::new(Resolved {
            generation: 1,
            entries: vec![LayerEntry::new(1, Arc::new(HeldFd::new(fd)), st)],
            opaque: false,
            upper_layer: false,
        })
    }

    // The only test in this binary that creates held descriptors, so the process-wide
    // count is this test's.
    #[test]
    fn cached_resolutions_stay_under_the_cap_and_hot_ones_survive() {
        const CAP: usize = 40;
        let table = NodeTable::new(FdBudget::with_cap(CAP));
        let name = |i: u64| OsString::from(format!("n{i}"));
        let hot = table.lookup((7, 2), ROOT_ID, &name(2), resolution(), true);
        let pinned = table.lookup((7, 3), ROOT_ID, &name(3), resolution(), true);
        pinned.state.lock().unlinked = true;
        let mut peak = 0;
        for i in 10..2_000u64 {
            let n = table.lookup((7, i), ROOT_ID, &name(i), resolution(), true);
            assert!(
                n.state.lock().res.is_some(),
                "a fresh node keeps its resolution"
            );
            hot.slot.touch();
            peak = peak.max(HeldFd::live());
        }
        assert!(
            peak <= CAP + 1,
            "{peak} descriptors held with a cap of {CAP}"
        );
        assert!(
            hot.state.lock().res.is_some(),
            "the node in use was evicted"
        );
        assert!(
            pinned.state.lock().res.is_some(),
            "an unlinked node lost its resolution"
        );
        // After running out of descriptors, the cache drops to half the cap.
        table.shed();
        assert!(
            HeldFd::live() <= CAP / 2,
            "{} held after shed",
            HeldFd::live()
        );
        drop((hot, pinned, table));
        assert_eq!(HeldFd::live(), 0, "descriptors leaked");
    }
}
