//! The `fuser::Filesystem` implementation: decodes each request into a call on
//! [`Overlay`] and sends its outcome back through [`reply`]. It does no layer I/O itself
//! (that is all in `crate::overlay`); every error becomes an errno reply; nothing here
//! panics.

mod reply;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::debug;

use crate::overlay::killpriv::Writer;
use crate::overlay::namespace::{Caller, NewKind};
use crate::overlay::setattr::SetAttr;
use crate::overlay::Overlay;
use reply::{Ttls, GENERATION};

#[derive(Debug)]
pub struct Fs {
    pub ov: Arc<Overlay>,
}

impl Fs {
    fn ttls(&self) -> Ttls {
        Ttls {
            attr: self.ov.config.attr_timeout,
            entry: self.ov.config.entry_timeout,
        }
    }

    fn caller(req: &Request, umask: u32) -> Caller {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            umask,
        }
    }

    fn writer(req: &Request) -> Writer {
        Writer {
            gid: req.gid(),
            pid: req.pid(),
        }
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let caps = config.capabilities();
        // FUSE_CACHE_SYMLINKS: the kernel keeps link targets in the page cache (a container
        // start reads the same few dozen, ld.so and /proc links, 38 READLINKs of 115 round
        // trips measured). Safe because a symlink's target never changes in place (a new
        // target is a new node) and a stack swap invalidates every known inode's pages.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_DONT_MASK
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS;
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
        reply::entry(reply, self.ttls(), self.ov.lookup_entry(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ov.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        reply::attr(reply, self.ttls(), self.ov.getattr(ino.0, fh.map(|f| f.0)));
    }

    fn setattr(
        &self,
        req: &Request,
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
        let mut change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh: fh.map(|f| f.0),
        };
        self.ov
            .setgid_on_truncate(ino.0, &mut change, Self::writer(req));
        reply::attr(reply, self.ttls(), self.ov.setattr(ino.0, change));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        reply::data(reply, self.ov.readlink(ino.0));
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
        reply::entry(reply, self.ttls(), r.map(|(_, a, _)| a));
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
        reply::entry(reply, self.ttls(), r.map(|(_, a, _)| a));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .ov
            .node(parent.0)
            .and_then(|p| self.ov.remove(&p, name, false));
        reply::empty(reply, r);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .ov
            .node(parent.0)
            .and_then(|p| self.ov.remove(&p, name, true));
        reply::empty(reply, r);
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
        reply::entry(reply, self.ttls(), r.map(|(_, a, _)| a));
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
        reply::empty(reply, r);
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
        reply::entry(reply, self.ttls(), r.map(|(_, a)| a));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.ov.setgid_watch_wanted(ino.0, flags.0) {
            // Served by the daemon, so its writes reach setgid_before_write.
            let r = self.ov.open(ino.0, flags.0, |_| {
                Err(std::io::Error::other("setgid file opened for writing"))
            });
            if let Ok(o) = &r {
                let passthrough = o.backing.is_some();
                self.ov
                    .setgid_watch_opened(ino.0, o.fh, passthrough, Self::writer(req));
            }
            return reply::opened(reply, r);
        }
        let r = self.ov.open(ino.0, flags.0, |fd| reply.open_backing(fd));
        reply::opened(reply, r);
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
        reply::data(reply, self.ov.read(fh.0, offset, size));
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.ov.setgid_before_write(ino.0, fh.0, Self::writer(req));
        reply::written(reply, self.ov.write(fh.0, offset, data));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do on close (data goes to the layer fd at each write, locks are the
        // kernel's): ENOSYS makes the kernel stop sending FLUSH, so close() no longer
        // waits for a round trip to the daemon.
        reply.error(Errno::ENOSYS);
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
        self.ov.setgid_watch_released(fh.0);
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
        reply::empty(reply, self.ov.fsync(fh.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply::opened_dir(reply, self.ov.open_dir(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        reply::directory(reply, self.ov.dir_items(fh.0, offset), offset);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let items = match self.ov.dir_items(fh.0, offset) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let dir = match self.ov.node(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let ttl = self.ttls().entry;
        for (i, it) in items.iter().enumerate().skip(offset as usize) {
            let off = i as u64 + 1;
            let dots = it.name == OsStr::new(".") || it.name == OsStr::new("..");
            if dots {
                let Ok(a) = self.ov.getattr(it.ino, None) else {
                    continue;
                };
                if reply.add(INodeNo(it.ino), off, &it.name, &ttl, &a, GENERATION) {
                    break;
                }
                continue;
            }
            let Ok((node, a)) = self.ov.lookup(&dir, &it.name) else {
                continue;
            };
            if reply.add(INodeNo(node.id), off, &it.name, &ttl, &a, GENERATION) {
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
        reply::empty(reply, self.ov.fsyncdir(ino.0, datasync));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply::statfs(reply, self.ov.statfs());
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
        reply::empty(reply, self.ov.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply::xattr(reply, size, self.ov.getxattr(ino.0, name));
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply::xattr(reply, size, self.ov.listxattr(ino.0, req.uid() == 0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply::empty(reply, self.ov.removexattr(ino.0, name));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let r = self.ov.node(ino.0).and_then(|n| self.ov.resolve(&n));
        reply::empty(reply, r.map(|_| ()));
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
        let caller = Self::caller(req, umask);
        let r = self.ov.create(parent.0, name, mode, flags, caller, |fd| {
            reply.open_backing(fd)
        });
        reply::created(reply, self.ttls(), r);
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.ov.setgid_before_write(ino.0, fh.0, Self::writer(req));
        reply::empty(reply, self.ov.fallocate(fh.0, offset, length, mode));
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
        reply::offset(reply, self.ov.lseek(fh.0, offset, whence));
    }
}
