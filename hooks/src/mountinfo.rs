//! The mount at a path, as `/proc/self/mountinfo` lists it (parsed by procfs-core).
//!
//! The kernel writes space, tab, newline and backslash in mount points as `\ooo`; a path
//! is compared in that escaped form. Several mounts may be stacked on one path: the last
//! line is the one a lookup there reaches.

use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use procfs_core::process::MountInfos;
use procfs_core::FromBufRead;

use crate::error::{io_err, Error, Result};

/// The filesystem type rebasefs mounts carry.
pub const REBASEFS_FS_TYPE: &str = "fuse.rebasefs";

/// One mount, the fields rebasefs checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: i32,
    /// `st_dev` of the mounted filesystem, `major:minor`.
    pub device: String,
    pub fs_type: String,
    pub source: Option<String>,
    /// FUSE `user_id=` super option: who mounted it (the kernel takes it from the mounter).
    pub fuse_owner: Option<u32>,
    pub read_only: bool,
}

impl Mount {
    pub fn is_rebasefs(&self) -> bool {
        self.fs_type == REBASEFS_FS_TYPE
    }
}

/// The topmost mount at exactly `path`, if any.
pub fn mount_at(path: &Path) -> Result<Option<Mount>> {
    let context = "reading /proc/self/mountinfo";
    let file = std::fs::File::open("/proc/self/mountinfo").map_err(io_err(context))?;
    let mounts = MountInfos::from_buf_read(BufReader::new(file)).map_err(|e| Error::Io {
        context: context.into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let wanted = escape(path);
    Ok(mounts
        .into_iter()
        .rfind(|m| m.mount_point.as_os_str().as_bytes() == wanted.as_slice())
        .map(|m| Mount {
            id: m.mnt_id,
            fuse_owner: m
                .super_options
                .get("user_id")
                .and_then(|v| v.as_deref()?.parse().ok()),
            read_only: m.mount_options.contains_key("ro"),
            device: m.majmin,
            fs_type: m.fs_type,
            source: m.mount_source,
        }))
}

/// `path` made absolute and free of symlinks without looking at its last component, which
/// may be a mount whose daemon is dead (a lookup there fails) or slow.
pub fn canonical_mountpoint(path: &Path) -> Result<std::path::PathBuf> {
    let context = || format!("mount point {}", path.display());
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return std::fs::canonicalize(path).map_err(io_err(context()));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    Ok(std::fs::canonicalize(parent)
        .map_err(io_err(context()))?
        .join(name))
}

/// `path` as mountinfo writes it.
fn escape(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend(format!("\\{b:03o}").bytes());
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_kernel() {
        assert_eq!(escape(Path::new("/a b\\c")), b"/a\\040b\\134c");
    }

    #[test]
    fn finds_the_root_mount_and_nothing_at_a_plain_directory() {
        let root = mount_at(Path::new("/")).unwrap().unwrap();
        assert!(root.device.contains(':'));
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(mount_at(tmp.path()).unwrap(), None);
    }
}
