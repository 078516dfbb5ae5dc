//! The public mount lifecycle: validate a config, mount it, serve until unmounted.
//!
//! Two phases on purpose: a daemonizing caller forks, mounts in the child with
//! [`Mount::new`], tells the parent the mount is live, then calls [`Mount::serve`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fuser::{Config, INodeNo, Session, SessionACL};
use tracing::{debug, info, warn};

use crate::adapter::Fs;
use crate::config::{OverlayConfig, StackSpec};
use crate::overlay::inode::ROOT_ID;
use crate::overlay::layer::Stack;
use crate::overlay::Overlay;

/// Why a mount could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer {path}: {reason}")]
    BadLayer { path: PathBuf, reason: String },
    #[error("mountpoint {path}: {reason}")]
    BadMountpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn check_dir(path: &Path) -> Result<std::fs::Metadata, Error> {
    let md = std::fs::metadata(path).map_err(|e| Error::BadLayer {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !md.is_dir() {
        return Err(Error::BadLayer {
            path: path.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    Ok(md)
}

fn validate_stack(stack: &StackSpec) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    if stack.lowers.is_empty() && stack.upper.is_none() {
        return Err(Error::Config("no lower layers given".into()));
    }
    for l in &stack.lowers {
        check_dir(l)?;
    }
    match (&stack.upper, &stack.work) {
        (Some(u), Some(w)) => {
            let um = check_dir(u)?;
            let wm = check_dir(w)?;
            if um.dev() != wm.dev() {
                return Err(Error::Config(format!(
                    "workdir {} and upperdir {} must be on the same filesystem",
                    w.display(),
                    u.display()
                )));
            }
            if um.ino() == wm.ino() {
                return Err(Error::Config(
                    "workdir and upperdir must be different directories".into(),
                ));
            }
        }
        (Some(_), None) => {
            return Err(Error::Config("upperdir given without workdir".into()));
        }
        (None, _) => {}
    }
    crate::overlap::check(stack).map_err(Error::Config)
}

/// Checks the config before anything is mounted: layers exist and are directories, and
/// do not overlap in a way kernel overlayfs refuses.
pub fn validate(config: &OverlayConfig) -> Result<(), Error> {
    validate_stack(&config.stack)
}

/// A live FUSE mount that is not serving requests yet.
#[derive(Debug)]
pub struct Mount {
    session: Session<Fs>,
    overlay: Arc<Overlay>,
    generation: Arc<AtomicU64>,
    mountpoint: PathBuf,
}

/// Replaces the stack a live mount serves (from any thread).
#[derive(Debug, Clone)]
pub struct StackHandle {
    overlay: Arc<Overlay>,
    generation: Arc<AtomicU64>,
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Mounts a FUSE filesystem of type `fuse.rebasefs` on `mountpoint` served through a
/// new `/dev/fuse` fd. (fuser's own mount always uses type `fuse`, so the subtype would
/// not show in /proc/self/mountinfo.)
fn mount_fuse(config: &OverlayConfig, mountpoint: &Path) -> Result<std::os::fd::OwnedFd, Error> {
    use nix::mount::MsFlags;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| Error::Io {
            context: "opening /dev/fuse".into(),
            source: e,
        })?;
    let fd: std::os::fd::OwnedFd = dev.into();
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if config.default_permissions {
        data.push_str(",default_permissions");
    }
    if config.allow_other {
        data.push_str(",allow_other");
    }
    if let Some(ctx) = &config.context {
        if selinux_enabled() {
            data.push_str(&format!(",context=\"{ctx}\""));
        }
    }
    let mut flags = MsFlags::empty();
    for (on, f) in [
        (config.read_only(), MsFlags::MS_RDONLY),
        (config.noatime, MsFlags::MS_NOATIME),
        (config.nodev, MsFlags::MS_NODEV),
        (config.nosuid, MsFlags::MS_NOSUID),
        (config.noexec, MsFlags::MS_NOEXEC),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::mount::mount(
        Some(config.fs_name.as_str()),
        mountpoint,
        Some("fuse.rebasefs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| Error::Io {
        context: format!("mount {} ({data})", mountpoint.display()),
        source: std::io::Error::from(e),
    })?;
    Ok(fd)
}

/// Readahead of daemon-served files, in KiB: one request of the largest size the
/// session negotiates (`max_write`, 1 MiB) instead of the kernel's 128 KiB default.
const READAHEAD_KIB: u32 = 1024;

/// Raises the readahead of the mount's backing device info (the kernel caps it at the
/// 128 KiB it offers in INIT; root may raise it through sysfs afterwards). Best effort:
/// cold sequential reads of daemon-served (lower) files then take 1 MiB requests.
fn raise_readahead(mountpoint: &Path) {
    let dev = match nix::sys::stat::stat(mountpoint) {
        Ok(st) => st.st_dev,
        Err(e) => return debug!("readahead: stat {}: {e}", mountpoint.display()),
    };
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    match std::fs::write(&path, READAHEAD_KIB.to_string()) {
        Ok(()) => debug!("readahead {READAHEAD_KIB} KiB ({path})"),
        Err(e) => debug!("readahead: {path}: {e}"),
    }
}

impl Mount {
    /// Validates `config` and mounts it at `mountpoint`; the mount is live on return.
    pub fn new(mut config: OverlayConfig, mountpoint: &Path) -> Result<Mount, Error> {
        validate(&config)?;
        let md = std::fs::metadata(mountpoint).map_err(|e| Error::BadMountpoint {
            path: mountpoint.to_path_buf(),
            reason: e.to_string(),
        })?;
        if !md.is_dir() {
            return Err(Error::BadMountpoint {
                path: mountpoint.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let stack = Stack::open(&config.stack, 1).map_err(|e| Error::Io {
            context: "opening layers".into(),
            source: e,
        })?;
        let threads = if config.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 16)
        } else {
            config.threads
        };
        // The descriptor budget reserves fds per request thread.
        config.threads = threads;
        let mut fuse_config = Config::default();
        fuse_config.acl = if config.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        fuse_config.n_threads = Some(threads);
        fuse_config.clone_fd = true;
        let overlay = Arc::new(Overlay::new(config, stack).map_err(|e| Error::Io {
            context: "reading layer roots".into(),
            source: e,
        })?);
        let fs = Fs {
            ov: overlay.clone(),
        };
        let acl = fuse_config.acl;
        let fd = mount_fuse(&overlay.config, mountpoint)?;
        let session = match Session::from_fd(fs, fd, acl, fuse_config) {
            Ok(s) => s,
            Err(e) => {
                let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
                return Err(Error::Io {
                    context: format!("FUSE handshake on {}", mountpoint.display()),
                    source: e,
                });
            }
        };
        let _ = overlay.notifier.set(session.notifier());
        info!("mounted {}", mountpoint.display());
        Ok(Mount {
            session,
            overlay,
            generation: Arc::new(AtomicU64::new(1)),
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// A handle that can swap the served stack while [`Mount::serve`] runs.
    pub fn stack_handle(&self) -> StackHandle {
        StackHandle {
            overlay: self.overlay.clone(),
            generation: self.generation.clone(),
        }
    }

    /// Serves requests until the filesystem is unmounted.
    pub fn serve(self) -> Result<(), Error> {
        let mp = self.mountpoint.clone();
        let ra_mp = mp.clone();
        // The stat it needs is answered by this session, so it waits in its own thread.
        let spawned = std::thread::Builder::new()
            .name("rebasefs-readahead".into())
            .spawn(move || raise_readahead(&ra_mp));
        if let Err(e) = spawned {
            debug!("readahead thread: {e}");
        }
        let r = self.session.run();
        info!("{} unmounted, exiting", mp.display());
        r.map_err(|e| Error::Io {
            context: format!("serving {}", mp.display()),
            source: e,
        })
    }
}

impl StackHandle {
    /// Serves `stack` from now on and drops the kernel's cached entries and attributes.
    pub fn replace(&self, stack: StackSpec) -> Result<(), Error> {
        validate_stack(&stack)?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let opened = Stack::open(&stack, generation).map_err(|e| Error::Io {
            context: "opening layers".into(),
            source: e,
        })?;
        self.overlay.set_stack(opened);
        let Some(notifier) = self.overlay.notifier.get() else {
            return Ok(());
        };
        let nodes = self.overlay.known_nodes();
        // Entries first (every known name, and names cached as absent), then every
        // inode's attributes and data.
        let negative = std::mem::take(&mut *self.overlay.negative.lock());
        for (parent, name) in &negative {
            if let Err(e) = notifier.inval_entry(INodeNo(*parent), OsStr::new(name)) {
                debug!("inval_entry (negative) {parent}/{name:?}: {e}");
            }
        }
        for n in &nodes {
            if n.id == ROOT_ID {
                continue;
            }
            let mut names = n.state.lock().names.clone();
            let (parent, name) = n.parent_and_name();
            if !names.iter().any(|(p, nm)| *p == parent && *nm == name) {
                names.push((parent, name));
            }
            for (parent, name) in names {
                if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                    debug!("inval_entry {parent}/{name:?}: {e}");
                }
            }
        }
        for n in &nodes {
            if let Err(e) = notifier.inval_inode(INodeNo(n.id), 0, 0) {
                warn!("inval_inode {}: {e}", n.id);
            }
        }
        info!(
            "stack replaced (generation {generation}, {} nodes invalidated)",
            nodes.len()
        );
        Ok(())
    }
}
