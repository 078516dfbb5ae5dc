//! rebasefs-hooks: what moves a running container onto the stack its image's rebase assigns.
//!
//! [`hook`] is `rebasefs hook`, the OCI precreate hook (config and state parsed with
//! oci-spec); [`refresh`] is the protocol between it and the daemon serving a rootfs, both
//! ends; [`mount_record`] is what a daemon leaves for a remount, believed only as
//! [`trusted`] and [`mountinfo`] allow; [`paths`] says where those files live. The hooks.d
//! file that installs the hook is `hooks/rebasefs.json` (the only copy: tests, bench,
//! scripts and packaging read it).
//!
//! Repository questions reach this crate through [`hook::Repository`] and the callback
//! [`refresh::server::watch`] takes: the binary answers them with rebasefs-plugin.

pub mod error;
pub mod hook;
pub mod mount_record;
pub mod mountinfo;
pub mod paths;
pub mod refresh;
pub mod trusted;

pub use error::{Error, Result};
