//! Merged directory listing: the union of a directory's layers, top layer winning,
//! whiteouts (both encodings) hiding names below them, AUFS meta names never shown.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;

use super::layer::Stack;
use super::lookup::Resolved;
use super::whiteout;
use crate::sys;

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
            for e in &idx.entries {
                if seen.contains(&e.name) {
                    continue;
                }
                seen.insert(e.name.clone());
                if e.whiteout {
                    continue;
                }
                out.push(MergedEntry {
                    name: e.name.clone(),
                    layer: pe.layer,
                    dev: pe.st.st_dev,
                    ino: e.ino,
                    dtype: e.dtype,
                });
            }
            seen.extend(idx.aufs_hidden.iter().cloned());
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
