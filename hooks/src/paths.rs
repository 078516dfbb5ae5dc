//! Where a serving daemon leaves its files for the hook, and which store a rootfs is of.
//!
//! Beside the rebase repository, in `<graphroot>/rebasefs/`: `sockets/<key>.sock` (the
//! control socket) and `mounts/<key>.<pid>.json` (the mount record), both directories mode
//! 0700 ([`crate::trusted`]); `<key>` is `sha256(mountpoint)[..16]`, so the names are short
//! whatever the mountpoint's length.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// `<graphroot>/rebasefs`: the rebasefs home beside containers-storage's own directories.
fn home(graphroot: &Path) -> PathBuf {
    graphroot.join("rebasefs")
}

/// The name a mountpoint's daemon files carry: `sha256(mountpoint)[..16]`.
pub fn mountpoint_key(mountpoint: &Path) -> String {
    let digest = hex::encode(Sha256::digest(mountpoint.as_os_str().as_encoded_bytes()));
    digest.get(..16).unwrap_or(&digest).to_string()
}

/// `<graphroot>/rebasefs/sockets`: the daemons' control sockets.
pub fn sockets_dir(graphroot: &Path) -> PathBuf {
    home(graphroot).join("sockets")
}

/// `<graphroot>/rebasefs/mounts`: the daemons' mount records.
pub fn mounts_dir(graphroot: &Path) -> PathBuf {
    home(graphroot).join("mounts")
}

/// The control socket's name in [`sockets_dir`] for the daemon serving `mountpoint`.
pub fn socket_name(mountpoint: &Path) -> String {
    format!("{}.sock", mountpoint_key(mountpoint))
}

/// The control socket of the daemon serving `mountpoint` for a store at `graphroot`:
/// `<graphroot>/rebasefs/sockets/<sha256(mountpoint)[..16]>.sock`.
pub fn refresh_socket(graphroot: &Path, mountpoint: &Path) -> PathBuf {
    sockets_dir(graphroot).join(socket_name(mountpoint))
}

/// The graphroot a container-storage mountpoint (`<graphroot>/overlay/<id>/merged`) belongs to.
pub fn graphroot_of_mountpoint(mountpoint: &Path) -> Option<PathBuf> {
    if mountpoint.file_name()? != "merged" {
        return None;
    }
    let home = mountpoint.parent()?.parent()?;
    if home.file_name()? != "overlay" {
        return None;
    }
    Some(home.parent()?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountpoints_map_to_their_graphroot_and_socket() {
        let mp = Path::new("/var/lib/containers/storage/overlay/abc/merged");
        let graphroot = graphroot_of_mountpoint(mp).unwrap();
        assert_eq!(graphroot, Path::new("/var/lib/containers/storage"));
        let socket = refresh_socket(&graphroot, mp);
        assert!(socket.starts_with("/var/lib/containers/storage/rebasefs/sockets"));
        assert_ne!(
            socket,
            refresh_socket(
                &graphroot,
                Path::new("/var/lib/containers/storage/overlay/abd/merged")
            )
        );
        assert_eq!(graphroot_of_mountpoint(Path::new("/mnt/x/merged")), None);
        assert_eq!(
            graphroot_of_mountpoint(Path::new("/var/lib/containers/storage/overlay/abc/diff")),
            None
        );
    }
}
