//! The refresh protocol between `rebasefs hook` and the daemon serving a container's rootfs.
//!
//! The daemon listens on its control socket ([`crate::paths::sockets_dir`], mode 0600) and
//! answers root and its own user only; the hook talks only to a socket whose peer
//! (`SO_PEERCRED`) runs as root or the hook's user and is the recorded daemon. One request
//! line, one answer line: [`REQUEST`] asks the daemon to serve the stack the repository
//! assigns now; it answers [`SWAPPED`], [`UNCHANGED`] or `error: ...`.
//! [`server`] is the daemon's end, [`client`] the hook's.

pub mod client;
pub mod server;

/// The request a hook sends.
pub const REQUEST: &str = "refresh\n";
/// The daemon now serves another stack.
pub const SWAPPED: &str = "swapped";
/// The daemon already served the assigned stack.
pub const UNCHANGED: &str = "unchanged";
