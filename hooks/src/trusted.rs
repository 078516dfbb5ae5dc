//! Directories and files only a trusted user can have written, checked without following
//! symlinks.
//!
//! `rebasefs hook` runs as root on what a serving daemon left under `<graphroot>/rebasefs/`,
//! so it must know who wrote it. A directory is opened with `O_NOFOLLOW`, each file in it
//! relative to that descriptor (`openat`, `O_NOFOLLOW`), and `fstat` on the open descriptor
//! tells the owner and the mode: trusted means owned by root or by the caller's effective
//! uid, and writable by nobody else. Paths never get resolved a second time.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags};

use crate::error::{io_err, Error, Result};

/// True for root and for the caller's effective uid.
pub fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Why a `stat` does not belong to a trusted, privately writable entry (`None` = trusted).
fn distrust(stat: &rfs::Stat) -> Option<String> {
    if !trusted_uid(stat.st_uid) {
        return Some(format!("owned by uid {}", stat.st_uid));
    }
    if stat.st_mode & 0o022 != 0 {
        return Some(format!(
            "writable by group or others (mode {:o})",
            stat.st_mode & 0o7777
        ));
    }
    None
}

/// An open directory that only trusted users can change.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Opens `path` (not a symlink) and checks it; `Ok(None)` when it does not exist.
    pub fn open(path: &Path) -> Result<Option<PrivateDir>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return Err(Error::Untrusted {
                    path: path.to_path_buf(),
                    reason: "not a directory (a symlink?)".into(),
                })
            }
            Err(e) => return Err(io_err(format!("opening {}", path.display()))(e.into())),
        };
        let stat =
            rfs::fstat(&fd).map_err(|e| io_err(format!("fstat {}", path.display()))(e.into()))?;
        if let Some(reason) = distrust(&stat) {
            return Err(Error::Untrusted {
                path: path.to_path_buf(),
                reason,
            });
        }
        Ok(Some(PrivateDir {
            fd,
            path: path.to_path_buf(),
        }))
    }

    /// Opens `path`, creating it (mode 0700, parents as needed) when missing.
    pub fn create(path: &Path) -> Result<PrivateDir> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        match rfs::mkdir(path, Mode::RWXU) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io_err(format!("creating {}", path.display()))(e.into())),
        }
        Self::open(path)?.ok_or_else(|| Error::Untrusted {
            path: path.to_path_buf(),
            reason: "vanished right after it was created".into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/N/name`: `name` inside this very directory, for calls that take a
    /// path (bind, connect); it is also short whatever the graphroot's length.
    pub fn fd_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// The names of the entries (`.` and `..` left out).
    pub fn names(&self) -> Result<Vec<String>> {
        let context = || format!("listing {}", self.path.display());
        let dir = rfs::Dir::read_from(&self.fd).map_err(|e| io_err(context())(e.into()))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| io_err(context())(e.into()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Reads the regular file `name` (at most `limit` bytes) if a trusted user owns it and
    /// nobody else may write it; returns its contents and owner.
    pub fn read_trusted(&self, name: &str, limit: u64) -> Result<(Vec<u8>, u32)> {
        let path = self.path.join(name);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| io_err(format!("opening {}", path.display()))(e.into()))?;
        let stat =
            rfs::fstat(&fd).map_err(|e| io_err(format!("fstat {}", path.display()))(e.into()))?;
        let reason = if rfs::FileType::from_raw_mode(stat.st_mode) != rfs::FileType::RegularFile {
            Some("not a regular file".to_string())
        } else if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > limit {
            Some(format!("larger than {limit} bytes"))
        } else {
            distrust(&stat)
        };
        if let Some(reason) = reason {
            return Err(Error::Untrusted { path, reason });
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(io_err(format!("reading {}", path.display())))?;
        Ok((bytes, stat.st_uid))
    }

    /// The owner and type of entry `name`, not following a symlink.
    pub fn stat(&self, name: &str) -> Result<Option<rfs::Stat>> {
        match rfs::statat(&self.fd, name, rfs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err(format!("stat {}", self.path.join(name).display()))(
                e.into(),
            )),
        }
    }

    /// Writes `name` atomically (a temporary file renamed over it), mode 0600.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path.join(name);
        let tmp = format!(".{name}.tmp");
        let _ = rfs::unlinkat(&self.fd, tmp.as_str(), rfs::AtFlags::empty());
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let written = rfs::openat(&self.fd, tmp.as_str(), flags, Mode::RUSR | Mode::WUSR)
            .map_err(std::io::Error::from)
            .and_then(|fd| {
                let mut file = std::fs::File::from(fd);
                file.write_all(bytes)?;
                file.sync_all()
            })
            .and_then(|()| {
                rfs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(Into::into)
            });
        if let Err(e) = written {
            let _ = rfs::unlinkat(&self.fd, tmp.as_str(), rfs::AtFlags::empty());
            return Err(io_err(format!("writing {}", path.display()))(e));
        }
        Ok(())
    }

    /// Removes entry `name` (a missing one is fine).
    pub fn remove(&self, name: &str) {
        let _ = rfs::unlinkat(&self.fd, name, rfs::AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn chown(path: &Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    }

    #[test]
    fn creates_a_private_directory_and_round_trips_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(&tmp.path().join("a/b")).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        dir.write_atomic("r.json", b"{}").unwrap();
        let (bytes, owner) = dir.read_trusted("r.json", 100).unwrap();
        assert_eq!(bytes, b"{}");
        assert!(trusted_uid(owner));
        assert_eq!(dir.names().unwrap(), ["r.json"]);
        assert!(matches!(
            dir.read_trusted("r.json", 1),
            Err(Error::Untrusted { .. })
        ));
        assert!(PrivateDir::open(&tmp.path().join("missing"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn refuses_what_others_could_have_written() {
        if !rustix::process::geteuid().is_root() {
            return; // needs chown
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // A directory of another user, a world-writable one, a symlink to a good one.
        let theirs = root.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        chown(&theirs, 65534);
        let open = root.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let good = PrivateDir::create(&root.join("good")).unwrap();
        symlink(good.path(), root.join("link")).unwrap();
        for bad in [&theirs, &open, &root.join("link")] {
            assert!(
                matches!(PrivateDir::open(bad), Err(Error::Untrusted { .. })),
                "{} was trusted",
                bad.display()
            );
        }
        // Inside a good directory: a file of another user, a group-writable file, a symlink
        // to a trusted file, a FIFO.
        std::fs::write(good.path().join("ok"), b"x").unwrap();
        std::fs::set_permissions(
            good.path().join("ok"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(good.path().join("nobody"), b"x").unwrap();
        chown(&good.path().join("nobody"), 65534);
        std::fs::write(good.path().join("gw"), b"x").unwrap();
        std::fs::set_permissions(
            good.path().join("gw"),
            std::fs::Permissions::from_mode(0o620),
        )
        .unwrap();
        symlink(good.path().join("ok"), good.path().join("sym")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            good.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::RUSR | Mode::WUSR,
            0,
        )
        .unwrap();
        assert!(good.read_trusted("ok", 10).is_ok());
        for bad in ["nobody", "gw", "fifo"] {
            assert!(
                matches!(good.read_trusted(bad, 10), Err(Error::Untrusted { .. })),
                "{bad} was trusted"
            );
        }
        assert!(
            good.read_trusted("sym", 10).is_err(),
            "a symlink was followed"
        );
    }
}
