//! The `fuser::Filesystem` implementation: decodes requests, delegates to [`Overlay`],
//! encodes replies. Every error becomes an errno reply; nothing here panics.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::debug;

use crate::fdbudget::HeldFd;
use crate::overlay::inode::{BackingFile, Node};
use crate::overlay::lookup;
use crate::overlay::namespace::{Caller, NewKind};
use crate::overlay::{errno, Handle, Overlay, Res};
use crate::sys::{self, TimeSpec};

#[derive(Debug)]
pub struct Fs {
    pub ov: Arc<Overlay>,
}

fn gen0() -> Generation {
    Generation(0)
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::Omit,
        Some(TimeOrNow::Now) => TimeSpec::Now,
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::At(d.as_secs() as i64, d.subsec_nanos() as i64),
            Err(e) => {
                let d = e.duration();
                let mut s = -(d.as_secs() as i64);
                let mut ns = d.subsec_nanos() as i64;
                if ns > 0 {
                    s -= 1;
                    ns = 1_000_000_000 - ns;
                }
                TimeSpec::At(s, ns)
            }
        },
    }
}

/// What an open needs to reply: our handle, and a passthrough backing if any.
struct Opened {
    fh: u64,
    backing: Option<Arc<BackingFile>>,
    keep_cache: bool,
}

impl Fs {
    fn ttl_attr(&self) -> Duration {
        self.ov.config.attr_timeout
    }
    fn ttl_entry(&self) -> Duration {
        self.ov.config.entry_timeout
    }

    /// Replies to an entry-creating request with the configured TTLs.
    fn reply_entry(&self, reply: ReplyEntry, r: Res<FileAttr>) {
        match r {
            Ok(attr) => reply.entry_with_ttls(&self.ttl_attr(), &self.ttl_entry(), &attr, gen0()),
            Err(e) => reply.error(e),
        }
    }

    fn reply_empty(reply: ReplyEmpty, r: Res<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn caller(req: &Request, umask: u32) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            umask,
        }
    }

    fn getattr_inner(&self, ino: u64, fh: Option<FileHandle>) -> Res<FileAttr> {
        let node = self.ov.node(ino)?;
        let res = self.ov.resolve(&node)?;
        if let Some(fh) = fh {
            if let Ok(h) = self.ov.handle(fh.0) {
                if let Handle::File { fd, .. } = &*h {
                    let fd = fd.read().clone();
                    let st = sys::stat_fd(fd.as_fd()).map_err(errno)?;
                    return Ok(self.ov.attr_from_stat(&node, &res, &st));
                }
            }
        }
        self.ov.attr(&node, &res)
    }

    /// Registers an open fd as a handle, with a passthrough backing when possible.
    /// Registers an open fd as a handle. Upper files use FUSE passthrough when the
    /// kernel offers it. Lower files are served by the daemon: a copy-up while they are
    /// open must redirect their readers to the upper copy (as kernel overlayfs does),
    /// which a passthrough backing file cannot do, and the kernel refuses mixing
    /// passthrough and daemon-served opens of one inode.
    fn register_open(
        &self,
        node: &Node,
        fd: OwnedFd,
        upper: bool,
        make_backing: impl FnOnce(&OwnedFd) -> std::io::Result<fuser::BackingId>,
    ) -> Res<Opened> {
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
            && upper
            && io.cached_opens == 0
            && self.ov.passthrough.load(Ordering::Relaxed)
        {
            match make_backing(&fd) {
                Ok(id) => {
                    let b = Arc::new(BackingFile { id, file });
                    io.backing = Some(Arc::downgrade(&b));
                    backing = Some(b);
                }
                Err(e) => debug!("passthrough backing refused: {e}"),
            }
        }
        let cached = backing.is_none();
        let fh = self.ov.add_handle(Handle::File {
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

    fn open_inner(&self, ino: u64, flags: i32) -> Res<(Arc<Node>, OwnedFd, bool)> {
        let node = self.ov.node(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let writes = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let res = if writes {
            let _t = self.ov.tree.lock();
            self.ov.copy_up(&node)?
        } else {
            self.ov.resolve(&node)?
        };
        let top = res.top().ok_or(Errno::ENOENT)?;
        if top.is_dir() {
            return Err(Errno::EISDIR);
        }
        let keep = !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_APPEND);
        // An open file holds its fd for as long as it is open: cached resolutions give way.
        self.ov.nodes.reserve_fds(1);
        let fd = self
            .ov
            .retry_on_emfile(|| sys::reopen(top.fd(), flags & keep).map_err(errno))?;
        let upper = res.upper(&self.ov.stack()).is_some();
        Ok((node, fd, upper))
    }

    fn file_fd<T>(&self, fh: FileHandle, f: impl FnOnce(&HeldFd) -> Res<T>) -> Res<T> {
        let h = self.ov.handle(fh.0)?;
        match &*h {
            Handle::File { fd, .. } => {
                let fd = fd.read().clone();
                f(&fd)
            }
            Handle::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr_inner(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Res<FileAttr> {
        let node = self.ov.node(ino)?;
        let stack = self.ov.stack();
        {
            let _t = self.ov.tree.lock();
            let res = self.ov.copy_up(&node)?;
            let up = res.upper(&stack).ok_or(Errno::EIO)?;
            let is_link = up.st.st_mode & libc::S_IFMT == libc::S_IFLNK;
            let overridden = (uid.is_some() || gid.is_some() || mode.is_some())
                && self.ov.update_override(
                    up.fd(),
                    uid.map(|u| self.ov.ids.uid_disk(u)),
                    gid.map(|g| self.ov.ids.gid_disk(g)),
                    mode,
                )?;
            if overridden {
                // Owner and mode live in the override xattr; the file keeps its own.
            } else if uid.is_some() || gid.is_some() {
                sys::chown_fd(
                    up.fd(),
                    uid.map(|u| self.ov.ids.uid_disk(u)),
                    gid.map(|g| self.ov.ids.gid_disk(g)),
                )
                .map_err(errno)?;
            }
            if let (Some(m), false) = (mode, overridden) {
                if is_link {
                    return Err(Errno::EOPNOTSUPP);
                }
                sys::chmod_fd(up.fd(), m).map_err(errno)?;
            }
            if let Some(sz) = size {
                if up.is_dir() {
                    return Err(Errno::EISDIR);
                }
                let via_fh = fh
                    .and_then(|fh| self.ov.handle(fh.0).ok())
                    .and_then(|h| match &*h {
                        Handle::File { fd, .. } => Some(sys::ftruncate(fd.read().as_fd(), sz)),
                        Handle::Dir { .. } => None,
                    });
                match via_fh {
                    Some(Ok(())) => {}
                    _ => {
                        let f = sys::reopen(up.fd(), libc::O_WRONLY).map_err(errno)?;
                        sys::ftruncate(f.as_fd(), sz).map_err(errno)?;
                    }
                }
            }
            if atime.is_some() || mtime.is_some() {
                let (a, m) = (timespec(atime), timespec(mtime));
                if is_link {
                    let (parent, name) = node.parent_and_name();
                    let p = self.ov.node(parent)?;
                    let pres = self.ov.resolve(&p)?;
                    let pup = pres.upper(&stack).ok_or(Errno::EIO)?;
                    sys::set_times_at(pup.fd(), &name, a, m).map_err(errno)?;
                } else {
                    sys::set_times_fd(up.fd(), a, m).map_err(errno)?;
                }
            }
        }
        let res = self.ov.resolve(&node)?;
        self.ov.attr(&node, &res)
    }

    fn fill_dir(&self, fh: FileHandle, offset: u64) -> Res<Arc<Vec<crate::overlay::DirItem>>> {
        let h = self.ov.handle(fh.0)?;
        match &*h {
            Handle::Dir { node, entries } => {
                let mut e = entries.lock();
                if offset == 0 || e.is_none() {
                    let n = self.ov.node(*node)?;
                    *e = Some(Arc::new(self.ov.list_dir(&n)?));
                }
                e.clone().ok_or(Errno::EIO)
            }
            Handle::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn xattr_reply(data: Res<Vec<u8>>, size: u32, reply: ReplyXattr) {
        match data {
            Ok(d) if size == 0 => reply.size(d.len() as u32),
            Ok(d) if d.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    /// The upper copy to change an xattr on. Like the kernel's xattr ops, an inode
    /// already copied up (a lower name of a copied-up hard link, reaching the copy
    /// through the link index) is changed in place: this name is not linked up.
    fn upper_of(&self, ino: u64) -> Res<(Arc<Node>, Arc<lookup::Resolved>)> {
        let node = self.ov.node(ino)?;
        let stack = self.ov.stack();
        let res = self.ov.resolve(&node)?;
        if res.upper(&stack).is_some() {
            return Ok((node, res));
        }
        let res = self.ov.copy_up(&node)?;
        Ok((node, res))
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let caps = config.capabilities();
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_PARALLEL_DIROPS;
        let _ = config.add_capabilities(wanted & caps);
        // Bigger requests for daemon-served (lower layer) reads and writes.
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_write(1 << 20);
        if self.ov.config.passthrough
            && caps.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.ov.passthrough.store(true, Ordering::Relaxed);
        }
        debug!(
            "init: passthrough={}",
            self.ov.passthrough.load(Ordering::Relaxed)
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self
            .ov
            .node(parent.0)
            .and_then(|p| self.ov.lookup(&p, name));
        match r {
            Ok((_, attr)) => {
                reply.entry_with_ttls(&self.ttl_attr(), &self.ttl_entry(), &attr, gen0())
            }
            Err(e)
                if e == Errno::ENOENT
                    && !self.ttl_entry().is_zero()
                    && self.ov.note_negative(parent.0, name) =>
            {
                // Node id 0: a negative entry the kernel may cache for the entry TTL.
                let mut attr =
                    crate::overlay::idmap::file_attr(0, &sys::zero_stat(), false, &self.ov.ids);
                attr.ino = INodeNo(0);
                reply.entry_with_ttls(&self.ttl_attr(), &self.ttl_entry(), &attr, gen0())
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ov.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr_inner(ino.0, fh) {
            Ok(a) => reply.attr(&self.ttl_attr(), &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.setattr_inner(ino.0, mode, uid, gid, size, atime, mtime, fh) {
            Ok(a) => reply.attr(&self.ttl_attr(), &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let r = (|| {
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            let top = res.top().ok_or(Errno::ENOENT)?;
            sys::readlink_fd(top.fd()).map_err(errno)
        })();
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
            NewKind::File {
                flags: libc::O_WRONLY,
            }
        } else {
            NewKind::Node {
                fmt: mode,
                rdev: u64::from(rdev),
            }
        };
        let r = self.ov.node(parent.0).and_then(|p| {
            self.ov
                .create_entry(&p, name, mode, kind, Self::caller(req, umask))
        });
        self.reply_entry(reply, r.map(|(_, a, _)| a))
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.ov.node(parent.0).and_then(|p| {
            self.ov
                .create_entry(&p, name, mode, NewKind::Dir, Self::caller(req, umask))
        });
        self.reply_entry(reply, r.map(|(_, a, _)| a))
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(
            reply,
            self.ov
                .node(parent.0)
                .and_then(|p| self.ov.remove(&p, name, false)),
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::reply_empty(
            reply,
            self.ov
                .node(parent.0)
                .and_then(|p| self.ov.remove(&p, name, true)),
        )
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.ov.node(parent.0).and_then(|p| {
            self.ov.create_entry(
                &p,
                link_name,
                0o777,
                NewKind::Symlink {
                    target: target.as_os_str(),
                },
                Self::caller(req, 0),
            )
        });
        self.reply_entry(reply, r.map(|(_, a, _)| a))
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            if flags.contains(RenameFlags::RENAME_WHITEOUT) {
                return Err(Errno::EINVAL);
            }
            let p = self.ov.node(parent.0)?;
            let np = self.ov.node(newparent.0)?;
            self.ov.rename(&p, name, &np, newname, flags.bits())
        })();
        Self::reply_empty(reply, r)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = (|| {
            let n = self.ov.node(ino.0)?;
            let np = self.ov.node(newparent.0)?;
            self.ov.link(&n, &np, newname)
        })();
        self.reply_entry(reply, r.map(|(_, a)| a))
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let r = self
            .open_inner(ino.0, flags.0)
            .and_then(|(node, fd, upper)| {
                self.register_open(&node, fd, upper, |fd| reply.open_backing(fd))
            });
        match r {
            Ok(o) => match &o.backing {
                Some(b) => reply.opened_passthrough(FileHandle(o.fh), FopenFlags::empty(), &b.id),
                None if o.keep_cache => {
                    reply.opened(FileHandle(o.fh), FopenFlags::FOPEN_KEEP_CACHE)
                }
                None => reply.opened(FileHandle(o.fh), FopenFlags::empty()),
            },
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let r = self.file_fd(fh, |fd| {
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let slice = buf.get_mut(got..).unwrap_or(&mut []);
                let n = sys::pread(fd.as_fd(), slice, offset + got as u64).map_err(errno)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        });
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let r = self.file_fd(fh, |fd| {
            let mut done = 0;
            while done < data.len() {
                let slice = data.get(done..).unwrap_or(&[]);
                let n = sys::pwrite(fd.as_fd(), slice, offset + done as u64).map_err(errno)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            Ok(done)
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.ov.remove_handle(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if !self.ov.config.fsync {
            return reply.ok();
        }
        Self::reply_empty(
            reply,
            self.file_fd(fh, |fd| sys::fsync(fd.as_fd(), datasync).map_err(errno)),
        )
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let r = (|| {
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            if !res.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            Ok(self.ov.add_handle(Handle::Dir {
                node: node.id,
                entries: parking_lot::Mutex::new(None),
            }))
        })();
        match r {
            // Merged listings stay in the kernel's readdir cache: every change to a
            // directory goes through this mount (the kernel then drops the cache), and a
            // stack swap invalidates every inode the kernel knows.
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let items = match self.fill_dir(fh, offset) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        for (i, it) in items.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(it.ino), i as u64 + 1, it.kind, &it.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let items = match self.fill_dir(fh, offset) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let dir = match self.ov.node(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let ttl = self.ttl_entry();
        for (i, it) in items.iter().enumerate().skip(offset as usize) {
            let off = i as u64 + 1;
            let dots = it.name.as_bytes() == b"." || it.name.as_bytes() == b"..";
            if dots {
                let Ok(a) = self.getattr_inner(it.ino, None) else {
                    continue;
                };
                if reply.add(INodeNo(it.ino), off, &it.name, &ttl, &a, gen0()) {
                    break;
                }
                continue;
            }
            let Ok((node, a)) = self.ov.lookup(&dir, &it.name) else {
                continue;
            };
            if reply.add(INodeNo(node.id), off, &it.name, &ttl, &a, gen0()) {
                // Not sent: the kernel will not count this lookup.
                self.ov.nodes.forget(node.id, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.ov.remove_handle(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if !self.ov.config.fsync {
            return reply.ok();
        }
        let r = (|| {
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            let stack = self.ov.stack();
            if let Some(up) = res.upper(&stack) {
                let d = sys::open_dir_for_read(up.fd()).map_err(errno)?;
                sys::fsync(d.as_fd(), datasync).map_err(errno)?;
            }
            Ok(())
        })();
        Self::reply_empty(reply, r)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let r = self
            .ov
            .root_fd_for_statfs()
            .ok_or(Errno::EIO)
            .and_then(|fd| sys::statfs_fd(fd.as_fd()).map_err(errno));
        match r {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let r = (|| {
            if self.ov.xattr_hidden(name) {
                return Err(Errno::EPERM);
            }
            let stored = crate::overlay::whiteout::xattr_to_stored(name).ok_or(Errno::EPERM)?;
            let _t = self.ov.tree.lock();
            let stack = self.ov.stack();
            let (_, res) = self.upper_of(ino.0)?;
            let up = res.upper(&stack).ok_or(Errno::EIO)?;
            sys::set_xattr(up.fd(), &stored, value, flags).map_err(errno)
        })();
        Self::reply_empty(reply, r)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let r = (|| {
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            let top = res.top().ok_or(Errno::ENOENT)?;
            self.ov.get_xattr(top.fd(), name, top.is_dir())
        })();
        Self::xattr_reply(r, size, reply);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let r = (|| {
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            let top = res.top().ok_or(Errno::ENOENT)?;
            self.ov.list_xattr(top.fd(), req.uid() == 0, top.is_dir())
        })();
        Self::xattr_reply(r, size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = (|| {
            if self.ov.xattr_hidden(name) {
                return Err(Errno::ENODATA);
            }
            let name = &crate::overlay::whiteout::xattr_to_stored(name).ok_or(Errno::ENODATA)?;
            let _t = self.ov.tree.lock();
            let stack = self.ov.stack();
            let node = self.ov.node(ino.0)?;
            let res = self.ov.resolve(&node)?;
            // Removing an absent xattr must not copy up.
            let top = res.top().ok_or(Errno::ENOENT)?;
            if sys::get_xattr(top.fd(), name).map_err(errno)?.is_none() {
                return Err(Errno::ENODATA);
            }
            let (_, res) = self.upper_of(ino.0)?;
            let up = res.upper(&stack).ok_or(Errno::EIO)?;
            sys::remove_xattr(up.fd(), name).map_err(errno)
        })();
        Self::reply_empty(reply, r)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        match self.ov.node(ino.0).and_then(|n| self.ov.resolve(&n)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = (|| {
            let p = self.ov.node(parent.0)?;
            self.ov.nodes.reserve_fds(1);
            let (node, attr, fd) = self.ov.create_entry(
                &p,
                name,
                mode,
                NewKind::File { flags },
                Self::caller(req, umask),
            )?;
            let fd = fd.ok_or(Errno::EIO)?;
            let opened = self.register_open(&node, fd, true, |fd| reply.open_backing(fd))?;
            Ok((attr, opened))
        })();
        let ttl = self.ttl_entry();
        match r {
            Ok((a, o)) => match &o.backing {
                Some(b) => reply.created_passthrough(
                    &ttl,
                    &a,
                    gen0(),
                    FileHandle(o.fh),
                    FopenFlags::empty(),
                    &b.id,
                ),
                None => reply.created(&ttl, &a, gen0(), FileHandle(o.fh), FopenFlags::empty()),
            },
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        Self::reply_empty(
            reply,
            self.file_fd(fh, |fd| {
                sys::fallocate(fd.as_fd(), mode, offset, length).map_err(errno)
            }),
        )
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.file_fd(fh, |fd| {
            sys::lseek(fd.as_fd(), offset, whence).map_err(errno)
        }) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}
