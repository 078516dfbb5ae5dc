//! Opening files, and the open policy: a write open (or `O_TRUNC`) copies up first; the
//! handle of an upper file uses FUSE passthrough when the kernel offers it, and so does a
//! lower file's on a stack without an upper layer (nothing can copy up there); on a
//! writable stack a lower file's is served by the daemon (see [`Overlay::register_open`]
//! for why); create makes the new file and opens it in one step.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use fuser::{BackingId, Errno, FileAttr};
use tracing::{debug, warn};

use super::handles::Handle;
use super::inode::{BackingFile, Node};
use super::namespace::{Caller, NewKind};
use super::{errno, Overlay, Res};
use crate::fdbudget::HeldFd;
use crate::sys;

/// What an open needs to reply: our handle, and a passthrough backing if any.
pub struct Opened {
    pub fh: u64,
    pub backing: Option<Arc<BackingFile>>,
    pub keep_cache: bool,
}

impl Overlay {
    /// Opens node `ino` with `flags`. `make_backing` registers an fd as a passthrough
    /// backing file with the kernel (fuser's `ReplyOpen::open_backing`).
    pub fn open(
        &self,
        ino: u64,
        flags: i32,
        make_backing: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> Res<Opened> {
        let (node, fd, origin) = self.open_inner(ino, flags)?;
        self.register_open(&node, fd, origin, make_backing)
    }

    /// Creates the file `name` under `parent` and opens it (`flags`), as [`Self::open`].
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        caller: Caller,
        make_backing: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> Res<(FileAttr, Opened)> {
        let p = self.node(parent)?;
        self.nodes.reserve_fds(1);
        let (node, attr, fd) =
            self.create_entry(&p, name, mode, NewKind::File { flags }, caller)?;
        let fd = fd.ok_or(Errno::EIO)?;
        let opened = self.register_open(&node, fd, Origin::Upper, make_backing)?;
        Ok((attr, opened))
    }

    /// Registers an open fd as a handle. Upper files, and lower files of a stack without
    /// an upper layer, use FUSE passthrough when the kernel offers it. Lower files of a
    /// writable stack are served by the daemon: a copy-up while they are open must
    /// redirect their readers to the upper copy (as kernel overlayfs does), which a
    /// passthrough backing file cannot do, and the kernel refuses mixing passthrough and
    /// daemon-served opens of one inode.
    fn register_open(
        &self,
        node: &Node,
        fd: OwnedFd,
        origin: Origin,
        make_backing: impl FnOnce(&OwnedFd) -> std::io::Result<BackingId>,
    ) -> Res<Opened> {
        let upper = origin == Origin::Upper;
        let st = sys::stat_fd(fd.as_fd()).map_err(errno)?;
        let is_reg = st.st_mode & libc::S_IFMT == libc::S_IFREG;
        let mut io = node.io.lock();
        let mut backing = None;
        let live = io.backing.as_ref().and_then(|w| w.upgrade());
        let file = (st.st_dev, st.st_ino);
        if let Some(b) = live {
            if b.file != file {
                return Err(Errno::EBUSY);
            }
            backing = Some(b);
        } else if is_reg
            && origin != Origin::WritableLower
            && io.cached_opens == 0
            && self.passthrough.load(Ordering::Relaxed)
        {
            match make_backing(&fd) {
                Ok(id) => {
                    let b = Arc::new(BackingFile { id, file });
                    io.backing = Some(Arc::downgrade(&b));
                    backing = Some(b);
                }
                // The kernel offers passthrough to every FUSE server but registers backing
                // files only for CAP_SYS_ADMIN in the initial user namespace: a rootless
                // daemon gets EPERM on every open. Stop asking, and say so once.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    if self.passthrough.swap(false, Ordering::Relaxed) {
                        warn!(
                            "FUSE passthrough refused ({e}: it needs CAP_SYS_ADMIN in the initial \
                             user namespace, which rootless Podman lacks); this mount serves every \
                             read and write through the daemon"
                        );
                    }
                }
                Err(e) => debug!("passthrough backing refused: {e}"),
            }
        }
        let cached = backing.is_none();
        let fh = self.add_handle(Handle::File {
            fd: parking_lot::RwLock::new(Arc::new(HeldFd::new(fd))),
            node: node.id,
            cached,
            backing: backing.clone(),
        });
        if cached {
            io.cached_opens += 1;
            if !upper {
                io.lower_fhs.push(fh);
            }
        }
        Ok(Opened {
            fh,
            backing,
            keep_cache: cached && !upper,
        })
    }

    fn open_inner(&self, ino: u64, flags: i32) -> Res<(Arc<Node>, OwnedFd, Origin)> {
        let node = self.node(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let writes = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let res = if writes {
            let tree = self.tree.lock();
            self.copy_up(&tree, &node)?
        } else {
            self.resolve(&node)?
        };
        let top = res.top().ok_or(Errno::ENOENT)?;
        if top.is_dir() {
            return Err(Errno::EISDIR);
        }
        let keep = !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_APPEND);
        // An open file holds its fd for as long as it is open: cached resolutions give way.
        self.nodes.reserve_fds(1);
        let fd = self.retry_on_emfile(|| sys::reopen(top.fd(), flags & keep).map_err(errno))?;
        let stack = self.stack();
        let origin = if res.upper(&stack).is_some() {
            Origin::Upper
        } else if stack.has_upper {
            Origin::WritableLower
        } else {
            Origin::ReadOnlyLower
        };
        Ok((node, fd, origin))
    }
}

/// Where an opened file lives, which decides whether it may be passed through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Upper,
    /// A lower file of a stack with an upper layer: it can be copied up while open.
    WritableLower,
    /// A lower file of a stack without an upper layer: it never changes.
    ReadOnlyLower,
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::config::{OverlayConfig, StackSpec};
    use crate::overlay::layer::Stack;

    #[test]
    fn passthrough_refused_with_eperm_is_asked_once_then_off() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper, work) = (
            tmp.path().join("l"),
            tmp.path().join("u"),
            tmp.path().join("w"),
        );
        for d in [&lower, &upper, &work] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(upper.join("a"), "a").unwrap();
        std::fs::write(upper.join("b"), "b").unwrap();
        let spec = StackSpec {
            lowers: vec![lower],
            upper: Some(upper),
            work: Some(work),
        };
        let ov = Overlay::new(
            OverlayConfig::new(spec.clone()),
            Stack::open(&spec, 1).unwrap(),
        )
        .unwrap();
        ov.passthrough.store(true, Ordering::Relaxed);
        let asked = Cell::new(0);
        let refuse = |_: &OwnedFd| -> std::io::Result<BackingId> {
            asked.set(asked.get() + 1);
            Err(std::io::Error::from_raw_os_error(libc::EPERM))
        };
        for name in ["a", "b", "a"] {
            let attr = ov
                .lookup_entry(crate::overlay::inode::ROOT_ID, OsStr::new(name))
                .unwrap();
            let opened = ov.open(attr.ino.0, libc::O_RDONLY, refuse).unwrap();
            assert!(opened.backing.is_none(), "{name}: served by the daemon");
        }
        assert_eq!(asked.get(), 1, "the kernel is asked once");
        assert!(!ov.passthrough.load(Ordering::Relaxed));
    }
}
