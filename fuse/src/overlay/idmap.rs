//! uid/gid mapping between what is stored in the layers and what users see, and the
//! conversion of a layer `stat` into the attributes the kernel is given.
//!
//! `uidmapping=C:H:S`: an id `C+i` stored on disk is shown as `H+i`; ids written by
//! users (`H+i`) are stored as `C+i`. Unmapped ids show as the overflow id 65534.
//! Squash options override the shown owner of every file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::config::{IdRange, OverlayConfig};
use crate::sys::Stat;

const OVERFLOW_ID: u32 = 65534;

#[derive(Debug, Clone, Default)]
pub struct IdMapper {
    uid_map: Vec<IdRange>,
    gid_map: Vec<IdRange>,
    squash_uid: Option<u32>,
    squash_gid: Option<u32>,
}

fn to_shown(map: &[IdRange], disk: u32) -> u32 {
    if map.is_empty() {
        return disk;
    }
    for r in map {
        if disk >= r.container && disk - r.container < r.size {
            return r.host + (disk - r.container);
        }
    }
    OVERFLOW_ID
}

fn to_disk(map: &[IdRange], shown: u32) -> u32 {
    if map.is_empty() {
        return shown;
    }
    for r in map {
        if shown >= r.host && shown - r.host < r.size {
            return r.container + (shown - r.host);
        }
    }
    OVERFLOW_ID
}

impl IdMapper {
    pub fn new(config: &OverlayConfig) -> Self {
        Self {
            uid_map: config.uid_map.clone(),
            gid_map: config.gid_map.clone(),
            squash_uid: config.squash_uid,
            squash_gid: config.squash_gid,
        }
    }
    pub fn uid_shown(&self, disk: u32) -> u32 {
        self.squash_uid
            .unwrap_or_else(|| to_shown(&self.uid_map, disk))
    }
    pub fn gid_shown(&self, disk: u32) -> u32 {
        self.squash_gid
            .unwrap_or_else(|| to_shown(&self.gid_map, disk))
    }
    pub fn uid_disk(&self, shown: u32) -> u32 {
        to_disk(&self.uid_map, shown)
    }
    pub fn gid_disk(&self, shown: u32) -> u32 {
        to_disk(&self.gid_map, shown)
    }
}

pub fn file_type(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::new(0, nsec)
    }
}

/// What a layer stat looks like to users.
pub fn file_attr(id: u64, st: &Stat, merged_dir: bool, map: &IdMapper) -> FileAttr {
    FileAttr {
        ino: INodeNo(id),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: file_type(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if merged_dir { 1 } else { st.st_nlink as u32 },
        uid: map.uid_shown(st.st_uid),
        gid: map.gid_shown(st.st_gid),
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StackSpec;

    fn mapper() -> IdMapper {
        let mut c = OverlayConfig::new(StackSpec {
            lowers: vec![],
            upper: None,
            work: None,
        });
        c.uid_map = vec![
            IdRange {
                container: 0,
                host: 1000,
                size: 1,
            },
            IdRange {
                container: 1,
                host: 110000,
                size: 65536,
            },
        ];
        IdMapper::new(&c)
    }

    #[test]
    fn maps_both_directions_and_overflows_outside_ranges() {
        let m = mapper();
        assert_eq!(m.uid_shown(0), 1000);
        assert_eq!(m.uid_shown(1), 110000);
        assert_eq!(m.uid_shown(65536), 175535);
        assert_eq!(m.uid_shown(65537), OVERFLOW_ID);
        assert_eq!(m.uid_disk(1000), 0);
        assert_eq!(m.uid_disk(110005), 6);
        assert_eq!(m.uid_disk(5), OVERFLOW_ID);
        // No gid map: identity.
        assert_eq!(m.gid_shown(42), 42);
        assert_eq!(m.gid_disk(42), 42);
    }

    #[test]
    fn squash_overrides_shown_owner_only() {
        let mut m = mapper();
        m.squash_uid = Some(0);
        assert_eq!(m.uid_shown(7), 0);
        assert_eq!(m.uid_disk(1000), 0);
    }
}
