//! What a mount is asked to serve: the layer stack and the knobs that shape it.
//!
//! This is the contract between whoever builds a mount (the `rebasefs` mount-program
//! front end, the plugin's inspection mounts, tests) and the filesystem. It holds plain
//! data only; parsing the fuse-overlayfs `-o` grammar lives in [`crate::mount_program`].

use std::path::PathBuf;
use std::time::Duration;

/// An ordered stack of layer directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    /// Read-only lower layers, **top first** (kernel overlay `lowerdir=` order).
    pub lowers: Vec<PathBuf>,
    /// Writable upper layer; `None` makes the mount read-only.
    pub upper: Option<PathBuf>,
    /// Work directory for atomic copy-up; on the same filesystem as `upper`.
    pub work: Option<PathBuf>,
}

/// One contiguous id range: container ids `container..container+size` are host ids
/// `host..host+size` (the `C:H:S` triple of `uidmapping=`/`gidmapping=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// How overlay-private and `security.*` xattrs are exposed (`xattr_permissions=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrPermissions {
    /// 0: xattrs pass through unchanged.
    #[default]
    Passthrough,
    /// 1: stat overrides stored in `security.fuseoverlayfs.override_stat`.
    Security,
    /// 2: stat overrides stored in `user.containers.override_stat` (containers-storage `force_mask`).
    ContainersUser,
}

/// Everything the filesystem needs to serve one mount.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    pub stack: StackSpec,
    /// Container-to-host uid ranges; empty means identity.
    pub uid_map: Vec<IdRange>,
    /// Container-to-host gid ranges; empty means identity.
    pub gid_map: Vec<IdRange>,
    /// Every file appears owned by this uid (`squash_to_uid=`, `squash_to_root`).
    pub squash_uid: Option<u32>,
    /// Every file appears owned by this gid (`squash_to_gid=`, `squash_to_root`).
    pub squash_gid: Option<u32>,
    pub xattr_permissions: XattrPermissions,
    /// Honour fsync (false with `fsync=0` or `volatile`).
    pub fsync: bool,
    /// Rename directories that have lower layers by storing a redirect in the upper
    /// (kernel `redirect_dir=on`, the default). Off: such renames fail with EXDEV, as
    /// with kernel `redirect_dir=off` and fuse-overlayfs, and callers copy instead.
    pub redirect_dir: bool,
    /// SELinux `context=` label, passed to the kernel mount when SELinux is enabled.
    pub context: Option<String>,
    /// Kernel dentry/attr cache lifetime. Long: every change goes through this mount
    /// (the kernel updates or drops what it cached), and a stack swap invalidates explicitly.
    pub entry_timeout: Duration,
    pub attr_timeout: Duration,
    /// Use FUSE passthrough for regular-file I/O when the kernel offers it.
    pub passthrough: bool,
    /// Worker threads for request dispatch (0 = available parallelism).
    pub threads: usize,
    /// `allow_other` (root default) and `default_permissions` (kernel permission checks).
    pub allow_other: bool,
    pub default_permissions: bool,
    /// Generic mount flags forwarded to the kernel.
    pub noatime: bool,
    pub nodev: bool,
    pub nosuid: bool,
    pub noexec: bool,
    /// `fsname=` shown in /proc/self/mountinfo.
    pub fs_name: String,
}

impl OverlayConfig {
    /// A config with the defaults a mount program uses as root.
    pub fn new(stack: StackSpec) -> Self {
        Self {
            stack,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            squash_uid: None,
            squash_gid: None,
            xattr_permissions: XattrPermissions::default(),
            fsync: true,
            redirect_dir: true,
            context: None,
            entry_timeout: Duration::from_secs(86400),
            attr_timeout: Duration::from_secs(86400),
            passthrough: true,
            threads: 0,
            allow_other: true,
            default_permissions: true,
            noatime: true,
            nodev: false,
            nosuid: false,
            noexec: false,
            fs_name: "rebasefs".to_string(),
        }
    }

    /// True when there is no upper layer to write to.
    pub fn read_only(&self) -> bool {
        self.stack.upper.is_none()
    }
}
