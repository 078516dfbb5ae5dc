//! Open files and directories: the handle table (sharded by handle number), the fd a
//! file handle reads and writes through, and moving a file's open readers to its upper
//! copy after a copy-up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::Errno;
use parking_lot::{Mutex, RwLock};

use super::inode::{BackingFile, Node};
use super::readdir::DirItem;
use super::{Overlay, Res};
use crate::fdbudget::HeldFd;
use crate::sys;

pub(super) const HANDLE_SHARDS: usize = 16;

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

impl Overlay {
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

    /// Runs `f` with the fd behind file handle `fh`.
    pub fn file_fd<T>(&self, fh: u64, f: impl FnOnce(&HeldFd) -> Res<T>) -> Res<T> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::File { fd, .. } => {
                let fd = fd.read().clone();
                f(&fd)
            }
            Handle::Dir { .. } => Err(Errno::EISDIR),
        }
    }
}
