//! Merged directory listing: the union of a directory's layers, top layer winning,
//! whiteouts (both encodings) hiding names below them, AUFS meta names never shown; and
//! the listing a directory handle serves (with the node ids lookups will give), read once
//! per open directory and rewind.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::Arc;

use fuser::Errno;

use super::handles::Handle;
use super::inode::{Node, ROOT_ID};
use super::layer::Stack;
use super::lookup::{self, Resolved};
use super::{errno, whiteout, Overlay, Res};
use crate::sys;

/// One readdir item with the node id it will have when looked up.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub name: OsString,
    pub ino: u64,
    pub kind: fuser::FileType,
}

/// One visible name of a merged directory and the layer its top copy comes from.
#[derive(Debug, Clone)]
pub struct MergedEntry {
    pub name: OsString,
    pub layer: usize,
    pub dev: u64,
    pub ino: u64,
    pub dtype: u8,
}

/// Lists the visible names of the merged directory `dir`.
pub fn merged_entries(stack: &Stack, dir: &Resolved) -> io::Result<Vec<MergedEntry>> {
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut out = Vec::new();
    for pe in &dir.entries {
        if !pe.is_dir() {
            break;
        }
        if let Some(idx) = pe.index(stack) {
            for e in idx.entries() {
                if seen.contains(e.name) {
                    continue;
                }
                seen.insert(e.name.to_os_string());
                if e.whiteout {
                    continue;
                }
                out.push(MergedEntry {
                    name: e.name.to_os_string(),
                    layer: pe.layer,
                    dev: pe.st.st_dev,
                    ino: e.ino,
                    dtype: e.dtype,
                });
            }
            seen.extend(idx.aufs_hidden().map(OsStr::to_os_string));
            continue;
        }
        let raw = sys::read_dir(pe.fd())?;
        let mut hidden_below = Vec::new();
        for e in raw {
            if whiteout::is_aufs_name(&e.name) {
                if let Some(h) = whiteout::aufs_hidden_name(&e.name) {
                    hidden_below.push(h.to_os_string());
                }
                continue;
            }
            if seen.contains(&e.name) {
                continue;
            }
            let mut dtype = e.dtype;
            if dtype == libc::DT_CHR || dtype == libc::DT_UNKNOWN {
                match sys::stat_at(pe.fd(), &e.name) {
                    Ok(st) => {
                        if whiteout::is_whiteout(&st) {
                            seen.insert(e.name);
                            continue;
                        }
                        dtype = dtype_of(st.st_mode);
                    }
                    Err(_) => continue,
                }
            }
            seen.insert(e.name.clone());
            out.push(MergedEntry {
                name: e.name,
                layer: pe.layer,
                dev: pe.st.st_dev,
                ino: e.ino,
                dtype,
            });
        }
        seen.extend(hidden_below);
    }
    Ok(out)
}

pub fn dtype_of(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_REG,
    }
}

pub fn file_type_of_dtype(d: u8) -> fuser::FileType {
    match d {
        libc::DT_DIR => fuser::FileType::Directory,
        libc::DT_LNK => fuser::FileType::Symlink,
        libc::DT_CHR => fuser::FileType::CharDevice,
        libc::DT_BLK => fuser::FileType::BlockDevice,
        libc::DT_FIFO => fuser::FileType::NamedPipe,
        libc::DT_SOCK => fuser::FileType::Socket,
        _ => fuser::FileType::RegularFile,
    }
}

impl Overlay {
    /// opendir: a handle whose listing is read at the first readdir.
    pub fn open_dir(&self, ino: u64) -> Res<u64> {
        let node = self.node(ino)?;
        let res = self.resolve(&node)?;
        if !res.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(self.add_handle(Handle::Dir {
            node: node.id,
            entries: parking_lot::Mutex::new(None),
        }))
    }

    /// The listing of directory handle `fh`, read again when a readdir starts at 0.
    pub fn dir_items(&self, fh: u64, offset: u64) -> Res<Arc<Vec<DirItem>>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Dir { node, entries } => {
                let mut e = entries.lock();
                if offset == 0 || e.is_none() {
                    let n = self.node(*node)?;
                    *e = Some(Arc::new(self.list_dir(&n)?));
                }
                e.clone().ok_or(Errno::EIO)
            }
            Handle::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    /// The readdir listing of a directory node with the ids lookups will give.
    pub fn list_dir(&self, node: &Node) -> Res<Vec<DirItem>> {
        let stack = self.stack();
        let res = self.resolve_in(&stack, node, 0)?;
        let entries = merged_entries(&stack, &res).map_err(errno)?;
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
                kind: file_type_of_dtype(e.dtype),
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
}
