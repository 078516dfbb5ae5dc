//! Sending replies: every request's outcome, a value or an errno, becomes its fuser reply
//! here, with the mount's cache lifetimes where the reply carries them.

use std::sync::Arc;
use std::time::Duration;

use fuser::{
    FileAttr, FileHandle, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr,
};

use crate::overlay::open::Opened;
use crate::overlay::readdir::DirItem;
use crate::overlay::Res;

/// Node generations are never reused while mounted: always 0.
pub const GENERATION: Generation = Generation(0);

/// How long the kernel may cache what a reply tells it.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub attr: Duration,
    pub entry: Duration,
}

/// An entry (lookup, or a new name) with its attributes.
pub fn entry(reply: ReplyEntry, ttls: Ttls, r: Res<FileAttr>) {
    match r {
        Ok(attr) => reply.entry_with_ttls(&ttls.attr, &ttls.entry, &attr, GENERATION),
        Err(e) => reply.error(e),
    }
}

pub fn empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

pub fn attr(reply: ReplyAttr, ttls: Ttls, r: Res<FileAttr>) {
    match r {
        Ok(a) => reply.attr(&ttls.attr, &a),
        Err(e) => reply.error(e),
    }
}

pub fn data(reply: ReplyData, r: Res<Vec<u8>>) {
    match r {
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(e),
    }
}

/// An xattr value or name list: its size when the caller asked with `size` 0.
pub fn xattr(reply: ReplyXattr, size: u32, data: Res<Vec<u8>>) {
    match data {
        Ok(d) if size == 0 => reply.size(d.len() as u32),
        Ok(d) if d.len() > size as usize => reply.error(fuser::Errno::ERANGE),
        Ok(d) => reply.data(&d),
        Err(e) => reply.error(e),
    }
}

/// An opened file: passthrough to its backing file, or served by the daemon (lower files
/// with `FOPEN_KEEP_CACHE`).
pub fn opened(reply: ReplyOpen, r: Res<Opened>) {
    match r {
        Ok(o) => match &o.backing {
            Some(b) => reply.opened_passthrough(FileHandle(o.fh), FopenFlags::empty(), &b.id),
            None if o.keep_cache => reply.opened(FileHandle(o.fh), FopenFlags::FOPEN_KEEP_CACHE),
            None => reply.opened(FileHandle(o.fh), FopenFlags::empty()),
        },
        Err(e) => reply.error(e),
    }
}

/// An opened directory.
pub fn opened_dir(reply: ReplyOpen, r: Res<u64>) {
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

/// A created and opened file.
pub fn created(reply: ReplyCreate, ttls: Ttls, r: Res<(FileAttr, Opened)>) {
    let ttl = ttls.entry;
    match r {
        Ok((a, o)) => match &o.backing {
            Some(b) => reply.created_passthrough(
                &ttl,
                &a,
                GENERATION,
                FileHandle(o.fh),
                FopenFlags::empty(),
                &b.id,
            ),
            None => reply.created(&ttl, &a, GENERATION, FileHandle(o.fh), FopenFlags::empty()),
        },
        Err(e) => reply.error(e),
    }
}

pub fn written(reply: ReplyWrite, r: Res<usize>) {
    match r {
        Ok(n) => reply.written(n as u32),
        Err(e) => reply.error(e),
    }
}

pub fn offset(reply: ReplyLseek, r: Res<i64>) {
    match r {
        Ok(o) => reply.offset(o),
        Err(e) => reply.error(e),
    }
}

pub fn statfs(reply: ReplyStatfs, r: Res<libc::statvfs>) {
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

/// The items of a directory listing from `offset` on, as many as the reply buffer takes.
pub fn directory(mut reply: ReplyDirectory, items: Res<Arc<Vec<DirItem>>>, offset: u64) {
    let items = match items {
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
