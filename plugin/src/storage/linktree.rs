//! Cloning a layer's diff tree by hard links (`cp -al` semantics), never following a link.
//!
//! Directories are made anew with the source's mode, owner, extended attributes (the
//! overlay opaque markers among them) and times; everything else (files, symlinks, device
//! whiteouts, fifos) is hard-linked, so the content is shared, not copied. Every access goes
//! through directory descriptors opened with `O_NOFOLLOW`, relative to the tree's root.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;

use crate::error::{io_err, Result};

/// What a clone did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CloneCounts {
    pub directories: u64,
    pub links: u64,
}

/// Makes `dst` (which must not exist) a clone of `src`.
pub fn clone_tree(src: &Path, dst: &Path) -> Result<CloneCounts> {
    let ctx = |what: &str| format!("{what} (cloning {} to {})", src.display(), dst.display());
    let src_fd = open_dir(CWD, src).map_err(|e| io_err(ctx("opening the source"))(e.into()))?;
    rfs::mkdir(dst, Mode::from_raw_mode(0o700))
        .map_err(|e| io_err(ctx("creating the target"))(e.into()))?;
    let dst_fd = open_dir(CWD, dst).map_err(|e| io_err(ctx("opening the target"))(e.into()))?;
    let mut counts = CloneCounts {
        directories: 1,
        links: 0,
    };
    clone_dir(&src_fd, &dst_fd, &mut counts, Path::new(""))
        .map_err(|(rel, e)| io_err(ctx(&format!("at {:?}", rel)))(e.into()))?;
    Ok(counts)
}

fn open_dir<Fd: AsFd>(dir: Fd, path: impl rustix::path::Arg) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

type Failure = (std::path::PathBuf, Errno);

/// Clones the entries of `src` into the (new, empty) `dst`, then gives `dst` the metadata
/// of `src` (times last: creating entries changes them).
fn clone_dir(
    src: &OwnedFd,
    dst: &OwnedFd,
    counts: &mut CloneCounts,
    rel: &Path,
) -> std::result::Result<(), Failure> {
    let fail = |e: Errno| (rel.to_path_buf(), e);
    let mut names: Vec<(std::ffi::CString, rfs::FileType)> = Vec::new();
    for entry in rfs::Dir::read_from(src).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        names.push((name.to_owned(), entry.file_type()));
    }
    for (name, kind) in &names {
        let child_rel = rel.join(std::ffi::OsStr::new(
            std::str::from_utf8(name.to_bytes()).unwrap_or("?"),
        ));
        let is_dir = match kind {
            rfs::FileType::Directory => true,
            rfs::FileType::Unknown => rfs::statat(src, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory)
                .map_err(|e| (child_rel.clone(), e))?,
            _ => false,
        };
        if is_dir {
            clone_subdir(src, dst, name, counts, &child_rel)?;
        } else {
            rfs::linkat(src, name.as_c_str(), dst, name.as_c_str(), AtFlags::empty())
                .map_err(|e| (child_rel, e))?;
            counts.links += 1;
        }
    }
    copy_dir_metadata(src, dst).map_err(fail)
}

fn clone_subdir(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &CStr,
    counts: &mut CloneCounts,
    rel: &Path,
) -> std::result::Result<(), Failure> {
    let fail = |e: Errno| (rel.to_path_buf(), e);
    let child_src = open_dir(src, name).map_err(fail)?;
    rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700)).map_err(fail)?;
    let child_dst = open_dir(dst, name).map_err(fail)?;
    counts.directories += 1;
    clone_dir(&child_src, &child_dst, counts, rel)
}

/// Mode, owner, extended attributes and times of `src` onto `dst`.
fn copy_dir_metadata(src: &OwnedFd, dst: &OwnedFd) -> rustix::io::Result<()> {
    let st = rfs::fstat(src)?;
    rfs::fchown(
        dst,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    copy_xattrs(src, dst)?;
    // After chown, which clears set-id bits.
    rfs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    rfs::futimens(dst, &times)
}

fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) -> rustix::io::Result<()> {
    let size = match rfs::flistxattr_query(src) {
        Ok(0) => return Ok(()),
        Ok(size) => size,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut list = vec![0u8; size];
    let len = rfs::flistxattr(src, &mut list[..])?;
    list.truncate(len);
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let size = rfs::fgetxattr_query(src, name)?;
        let mut value = vec![0u8; size];
        let len = rfs::fgetxattr(src, name, &mut value[..])?;
        value.truncate(len);
        match rfs::fsetxattr(dst, name, &value, XattrFlags::empty()) {
            Ok(()) => {}
            // A security label the kernel will not let us set is the host's business.
            Err(e) if name.starts_with("security.") => {
                tracing::debug!(name, error = %e, "xattr not copied");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn clones_by_links_without_following() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("etc/sub")).unwrap();
        std::fs::write(src.join("etc/passwd"), "root\n").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("etc/link")).unwrap();
        std::fs::set_permissions(src.join("etc/sub"), std::fs::Permissions::from_mode(0o751))
            .unwrap();
        let dst = tmp.path().join("dst");
        let counts = clone_tree(&src, &dst).unwrap();
        assert_eq!(
            counts,
            CloneCounts {
                directories: 3,
                links: 2
            }
        );
        let a = std::fs::metadata(src.join("etc/passwd")).unwrap();
        let b = std::fs::metadata(dst.join("etc/passwd")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard-linked, not copied");
        assert_eq!(
            std::fs::read_link(dst.join("etc/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        let mode = std::fs::metadata(dst.join("etc/sub")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        let mtime = |p: &Path| std::fs::metadata(p).unwrap().mtime_nsec();
        assert_eq!(mtime(&src.join("etc")), mtime(&dst.join("etc")));
        assert!(clone_tree(&src, &dst).is_err(), "the target must be new");
    }
}
