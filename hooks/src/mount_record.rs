//! The mount record a serving daemon leaves for `rebasefs hook`, and when the hook may
//! believe it.
//!
//! Right after mounting a container's rootfs the daemon writes
//! `<graphroot>/rebasefs/mounts/<key>.<pid>.json` ([`MountRecord`]): its pid, the mount's
//! device number, its working directory, the `-o` options containers-storage gave it and
//! the stack they name. To move a container whose daemon has no usable control socket the
//! hook remounts it by running *its own* binary with the recorded options; it never takes
//! a program or arguments from another process's argv or executable. It believes a record
//! only when the directory and the file are owned by root or by itself and writable by
//! nobody else ([`crate::trusted`]), the record is for exactly that mountpoint, and
//! /proc/self/mountinfo shows a `fuse.rebasefs` mount there with the recorded device,
//! mounted (FUSE `user_id=`) by the record's owner.

use std::path::{Path, PathBuf};

use rebasefs_fuse::StackSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mountinfo::Mount;
use crate::paths::{self, mounts_dir};
use crate::trusted::PrivateDir;

/// Records are small; anything bigger is not one of ours.
const RECORD_LIMIT: u64 = 1 << 20;

/// What the daemon serving a container mount was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mountpoint: PathBuf,
    /// `major:minor` of the mount, as in mountinfo.
    pub device: String,
    /// The daemon's working directory when started (relative `lowerdir=` paths).
    pub cwd: PathBuf,
    /// Every `-o` argument, in order.
    pub options: Vec<String>,
    /// The stack those options name, resolved.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

impl MountRecord {
    pub fn stack(&self) -> StackSpec {
        StackSpec {
            lowers: self.lowers.clone(),
            upper: self.upper.clone(),
            work: self.work.clone(),
        }
    }
}

fn file_name(mountpoint: &Path, pid: u32) -> String {
    format!("{}.{pid}.json", paths::mountpoint_key(mountpoint))
}

/// A record on disk; [`RecordFile::remove`] takes it away when the daemon exits.
#[derive(Debug)]
pub struct RecordFile {
    dir: PrivateDir,
    name: String,
}

impl RecordFile {
    pub fn remove(&self) {
        self.dir.remove(&self.name);
    }
}

/// Writes `record` (replacing records other, gone daemons left for the same mountpoint).
pub fn write(graphroot: &Path, record: &MountRecord) -> Result<RecordFile> {
    let dir = PrivateDir::create(&mounts_dir(graphroot))?;
    let name = file_name(&record.mountpoint, record.pid);
    let bytes = serde_json::to_vec(record).map_err(|e| Error::Io {
        context: format!(
            "encoding the mount record of {}",
            record.mountpoint.display()
        ),
        source: std::io::Error::other(e),
    })?;
    dir.write_atomic(&name, &bytes)?;
    let prefix = format!("{}.", paths::mountpoint_key(&record.mountpoint));
    for stale in dir.names()? {
        if stale.starts_with(&prefix) && stale != name {
            dir.remove(&stale);
        }
    }
    Ok(RecordFile { dir, name })
}

/// Removes the records of daemons that are gone (killed before they could remove their
/// own: `kill -9`, the OOM killer); returns how many. A record's pid is in its name. Liveness
/// is asked of /proc, not of mountinfo: a rootless store's mounts live in Podman's mount
/// namespace, where this process may not be, but its daemons share our pid namespace. A pid
/// reused since only keeps a stale record, which is harmless: the hook matches the device.
pub fn remove_dead(graphroot: &Path) -> Result<usize> {
    let Some(dir) = PrivateDir::open(&mounts_dir(graphroot))? else {
        return Ok(0);
    };
    let mut removed = 0;
    for name in dir.names()? {
        let Some(pid) = record_pid(&name) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            dir.remove(&name);
            removed += 1;
        }
    }
    Ok(removed)
}

/// The pid in a record's name `<key>.<pid>.json`.
fn record_pid(name: &str) -> Option<u32> {
    let (_key, pid) = name.strip_suffix(".json")?.rsplit_once('.')?;
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// The record of the daemon serving `mount` at `mountpoint`, if a trustworthy one exists.
///
/// An error means something untrustworthy was found (said in the message); `Ok(None)`
/// that there is simply no record of this mount.
pub fn find_trusted(
    graphroot: &Path,
    mountpoint: &Path,
    mount: &Mount,
) -> Result<Option<MountRecord>> {
    let Some(dir) = PrivateDir::open(&mounts_dir(graphroot))? else {
        return Ok(None);
    };
    if !mount.is_rebasefs() {
        return Ok(None);
    }
    let prefix = format!("{}.", paths::mountpoint_key(mountpoint));
    let mut refused = None;
    for name in dir.names()? {
        if !name.starts_with(&prefix) || !name.ends_with(".json") {
            continue;
        }
        let (bytes, owner) = match dir.read_trusted(&name, RECORD_LIMIT) {
            Ok(found) => found,
            Err(e) => {
                refused = Some(e);
                continue;
            }
        };
        let Ok(record) = serde_json::from_slice::<MountRecord>(&bytes) else {
            continue;
        };
        if record.mountpoint == mountpoint
            && record.device == mount.device
            && mount.fuse_owner == Some(owner)
        {
            return Ok(Some(record));
        }
    }
    refused.map_or(Ok(None), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mountpoint: &Path, device: &str) -> MountRecord {
        MountRecord {
            pid: 42,
            mountpoint: mountpoint.to_path_buf(),
            device: device.into(),
            cwd: PathBuf::from("/g/overlay"),
            options: vec!["lowerdir=l/A,upperdir=x/diff,workdir=x/work".into()],
            lowers: vec![PathBuf::from("/g/overlay/a/diff")],
            upper: Some(PathBuf::from("/g/overlay/x/diff")),
            work: Some(PathBuf::from("/g/overlay/x/work")),
        }
    }

    fn fuse_mount(device: &str, owner: u32) -> Mount {
        Mount {
            id: 7,
            device: device.into(),
            fs_type: crate::mountinfo::REBASEFS_FS_TYPE.into(),
            source: Some("rebasefs".into()),
            fuse_owner: Some(owner),
            read_only: false,
        }
    }

    #[test]
    fn records_of_dead_daemons_are_removed_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let graphroot = tmp.path();
        let mut live = record(&graphroot.join("overlay/a/merged"), "0:90");
        live.pid = std::process::id();
        write(graphroot, &live).unwrap();
        // A pid that has exited and been reaped: nothing runs under it now.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let mut dead = record(&graphroot.join("overlay/b/merged"), "0:91");
        dead.pid = dead_pid;
        write(graphroot, &dead).unwrap();
        let dir = PrivateDir::open(&mounts_dir(graphroot)).unwrap().unwrap();
        std::fs::write(dir.path().join("not-a-record"), b"x").unwrap();

        assert_eq!(remove_dead(graphroot).unwrap(), 1);
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(
            names,
            vec![
                file_name(&live.mountpoint, live.pid),
                "not-a-record".to_string()
            ]
        );
        assert_eq!(remove_dead(graphroot).unwrap(), 0);
        assert_eq!(remove_dead(&graphroot.join("no-store")).unwrap(), 0);
    }

    #[test]
    fn a_record_is_believed_only_for_its_own_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let mp = tmp.path().join("overlay/x/merged");
        let me = rustix::process::geteuid().as_raw();
        let file = write(tmp.path(), &record(&mp, "0:51")).unwrap();
        let found = find_trusted(tmp.path(), &mp, &fuse_mount("0:51", me)).unwrap();
        assert_eq!(found, Some(record(&mp, "0:51")));
        // Another mount now at that path (another device), another mounter, another path,
        // another filesystem type: not this record.
        assert_eq!(
            find_trusted(tmp.path(), &mp, &fuse_mount("0:52", me)).unwrap(),
            None
        );
        assert_eq!(
            find_trusted(tmp.path(), &mp, &fuse_mount("0:51", me + 1)).unwrap(),
            None
        );
        let other = tmp.path().join("overlay/y/merged");
        assert_eq!(
            find_trusted(tmp.path(), &other, &fuse_mount("0:51", me)).unwrap(),
            None
        );
        let mut tmpfs = fuse_mount("0:51", me);
        tmpfs.fs_type = "tmpfs".into();
        assert_eq!(find_trusted(tmp.path(), &mp, &tmpfs).unwrap(), None);
        file.remove();
        assert_eq!(
            find_trusted(tmp.path(), &mp, &fuse_mount("0:51", me)).unwrap(),
            None
        );
    }

    #[test]
    fn a_record_another_user_could_have_written_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return; // needs chown
        }
        let tmp = tempfile::tempdir().unwrap();
        let mp = tmp.path().join("overlay/x/merged");
        write(tmp.path(), &record(&mp, "0:51")).unwrap();
        let path = mounts_dir(tmp.path()).join(file_name(&mp, 42));
        std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        let found = find_trusted(tmp.path(), &mp, &fuse_mount("0:51", 65534));
        assert!(matches!(found, Err(Error::Untrusted { .. })), "{found:?}");
        // The directory itself handed to another user.
        std::os::unix::fs::lchown(&path, Some(0), Some(0)).unwrap();
        std::os::unix::fs::lchown(mounts_dir(tmp.path()), Some(65534), Some(65534)).unwrap();
        let found = find_trusted(tmp.path(), &mp, &fuse_mount("0:51", 0));
        assert!(matches!(found, Err(Error::Untrusted { .. })), "{found:?}");
    }
}
