//! rebasefs-fuse: an overlay filesystem served through FUSE.
//!
//! It merges an ordered stack of read-only lower directories, an optional upper
//! directory and a work directory with Linux overlayfs semantics, lazily on lookup.
//! It knows nothing of containers-storage: callers hand it a [`StackSpec`], and the
//! stack it serves can be replaced while mounted ([`StackHandle`]). [`mount_program`] is
//! the fuse-overlayfs-compatible command-line front end (`PROG -o OPTS MOUNTPOINT`).
//!
//! Reference behaviour is kernel overlayfs mounted with `redirect_dir=on,index=on`:
//! - whiteouts and opaque dirs are read in both encodings (char 0/0 +
//!   `trusted.`/`user.overlay.opaque`, AUFS `.wh.<name>`/`.wh..wh..opq`) and written
//!   in the kernel one; renamed lower directories get `trusted.overlay.redirect`;
//! - copied-up lower hard links stay one inode: the copy is linked into
//!   `<workdir>/rebasefs-index/` and every lower name of the file resolves to it;
//! - `st_ino` is the FUSE node id: the underlying inode number (origin's after
//!   copy-up), with a device index in the top bits for files on other devices.
//!
//! Intended differences from the kernel:
//! - AUFS whiteout names are interpreted (the kernel shows them as plain files), and
//!   creating a name starting with `.wh.` is refused with EPERM;
//! - `user.overlay.opaque`/`redirect` on directories are markers here (hidden), as the
//!   layers containers-storage extracts for mount programs may use them;
//! - FUSE passthrough is used for files in the upper layer only: lower files are
//!   served by the daemon so a copy-up while they are open can move their readers to
//!   the copy (the kernel refuses mixing passthrough and daemon-served opens).
//! - which names of a copied-up hard link appear in the upper directory may differ
//!   (FUSE does not say through which name a file was changed); the merged view and
//!   link counts match.

mod adapter;
pub mod config;
mod fdbudget;
mod mount;
pub mod mount_program;
mod overlap;
mod overlay;
mod sys;

pub use config::{IdRange, OverlayConfig, StackSpec, XattrPermissions};
pub use mount::{validate, Error, Mount, StackHandle};
/// The whiteout vocabulary, for other readers of layer directories (rebasefs-plugin).
pub use overlay::whiteout::{
    aufs_hidden_name, aufs_whiteout_name, is_aufs_name, OPAQUE_MARKER, OPAQUE_XATTRS,
    REDIRECT_XATTRS, WH_PREFIX,
};
