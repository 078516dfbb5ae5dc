//! The lower-layer fixture: written once in a canonical form, materialised into layer
//! directories with either whiteout encoding, plus the merged "lower view" of the canonical
//! layers (kernel overlay lookup rules) that upper-dir normalisation needs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use super::sys;

/// What a canonical entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    /// `opaque`: hides everything below it in lower layers.
    Dir {
        opaque: bool,
    },
    Symlink(String),
    /// A hard link to an earlier entry of the same layer (by path).
    Hardlink(String),
    Fifo,
    CharDev(u32, u32),
    BlockDev(u32, u32),
    /// Deletes the name from the layers below.
    Whiteout,
}

/// One canonical entry of a layer.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Explicit (seconds, nanoseconds) modification time.
    pub mtime: (i64, i64),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// One layer: its entries in creation order (parents before children; missing parents are
/// created as root-owned 0755 directories).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

/// Layers, topmost first (the order of `lowerdir=`).
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    pub layers: Vec<Layer>,
}

/// How whiteouts and opaque directories are written into a layer directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Kernel overlay: char device 0/0 whiteouts, `trusted.overlay.opaque=y`.
    Kernel,
    /// Char device 0/0 whiteouts, `user.overlay.opaque=y` (rootless/userxattr form).
    KernelUserXattr,
    /// AUFS form that containers-storage extracts for a mount program: `.wh.<name>` regular
    /// files and a `.wh..wh..opq` file inside opaque directories.
    Aufs,
}

/// Fixed time of implicit directories and of the layer roots.
pub const IMPLICIT_MTIME: (i64, i64) = (1_500_000_000, 0);

impl Layer {
    fn push(&mut self, path: &str, kind: Kind, mode: u32, uid: u32, gid: u32) -> &mut Entry {
        let n = self.entries.len() as i64 + 1;
        let seed = path
            .bytes()
            .fold(0i64, |a, b| (a * 31 + b as i64) % 1_000_000);
        self.entries.push(Entry {
            path: path.to_string(),
            kind,
            mode,
            uid,
            gid,
            mtime: (
                1_600_000_000 + seed * 10 + n,
                (seed * 7919 + n * 104_729) % 1_000_000_000,
            ),
            xattrs: Vec::new(),
        });
        let last = self.entries.len() - 1;
        &mut self.entries[last]
    }
    pub fn file(&mut self, path: &str, content: &str, mode: u32) -> &mut Entry {
        self.push(path, Kind::File(content.as_bytes().to_vec()), mode, 0, 0)
    }
    pub fn file_owned(
        &mut self,
        path: &str,
        content: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> &mut Entry {
        self.push(
            path,
            Kind::File(content.as_bytes().to_vec()),
            mode,
            uid,
            gid,
        )
    }
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Entry {
        self.push(path, Kind::Dir { opaque: false }, mode, 0, 0)
    }
    pub fn dir_owned(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> &mut Entry {
        self.push(path, Kind::Dir { opaque: false }, mode, uid, gid)
    }
    pub fn opaque_dir(&mut self, path: &str, mode: u32) -> &mut Entry {
        self.push(path, Kind::Dir { opaque: true }, mode, 0, 0)
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Entry {
        self.push(path, Kind::Symlink(target.to_string()), 0o777, 0, 0)
    }
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Entry {
        self.push(path, Kind::Hardlink(target.to_string()), 0, 0, 0)
    }
    pub fn fifo(&mut self, path: &str, mode: u32) -> &mut Entry {
        self.push(path, Kind::Fifo, mode, 0, 0)
    }
    pub fn chardev(&mut self, path: &str, major: u32, minor: u32) -> &mut Entry {
        self.push(path, Kind::CharDev(major, minor), 0o666, 0, 0)
    }
    pub fn blockdev(&mut self, path: &str, major: u32, minor: u32) -> &mut Entry {
        self.push(path, Kind::BlockDev(major, minor), 0o660, 0, 6)
    }
    pub fn whiteout(&mut self, path: &str) -> &mut Entry {
        self.push(path, Kind::Whiteout, 0, 0, 0)
    }
}

impl Entry {
    pub fn xattr(&mut self, name: &str, value: &str) -> &mut Self {
        self.xattrs
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

fn name_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[i + 1..]).unwrap_or(path)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn io<T>(r: sys::SysResult<T>, what: &str, path: &Path) -> Result<T> {
    r.map_err(|e| {
        anyhow!(
            "{what} {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(e)
        )
    })
}

fn set_times(path: &Path, t: (i64, i64)) -> Result<()> {
    let root = sys::open_abs(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY);
    let root = io(root, "open", Path::new("/"))?;
    let rel = path.to_string_lossy();
    let rel = rel.trim_start_matches('/');
    io(
        sys::utimensat(
            std::os::fd::AsFd::as_fd(&root),
            rel,
            t,
            t,
            libc::AT_SYMLINK_NOFOLLOW,
        ),
        "utimensat",
        path,
    )
}

fn lchown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("lchown {}", path.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn mknod(path: &Path, mode: u32, dev: u64) -> Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let root = io(
        sys::open_abs(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY),
        "open",
        Path::new("/"),
    )?;
    let rel = p.to_string_lossy().trim_start_matches('/').to_string();
    io(
        sys::mknodat(std::os::fd::AsFd::as_fd(&root), &rel, mode, dev),
        "mknod",
        path,
    )
}

impl Layer {
    /// Writes the layer into the empty directory `dir` with the given encoding.
    pub fn materialise(&self, dir: &Path, enc: Encoding) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        chmod(dir, 0o755)?;
        // (path, mtime) of everything whose time must be set last, children before parents.
        let mut timed: Vec<(String, (i64, i64))> = Vec::new();
        let mut made: BTreeSet<String> = BTreeSet::new();
        for e in &self.entries {
            // Implicit parents.
            let mut missing = Vec::new();
            let mut p = parent_of(&e.path);
            while !p.is_empty() && !made.contains(p) {
                missing.push(p.to_string());
                p = parent_of(p);
            }
            for m in missing.into_iter().rev() {
                let full = dir.join(&m);
                std::fs::create_dir(&full).with_context(|| format!("mkdir {}", full.display()))?;
                chmod(&full, 0o755)?;
                timed.push((m.clone(), IMPLICIT_MTIME));
                made.insert(m);
            }
            let full = dir.join(&e.path);
            match &e.kind {
                Kind::File(data) => {
                    std::fs::write(&full, data)
                        .with_context(|| format!("write {}", full.display()))?;
                }
                Kind::Dir { opaque } => {
                    std::fs::create_dir(&full)
                        .with_context(|| format!("mkdir {}", full.display()))?;
                    if *opaque {
                        match enc {
                            Encoding::Kernel => io(
                                sys::lsetxattr_abs(&full, "trusted.overlay.opaque", b"y"),
                                "setxattr",
                                &full,
                            )?,
                            Encoding::KernelUserXattr => io(
                                sys::lsetxattr_abs(&full, "user.overlay.opaque", b"y"),
                                "setxattr",
                                &full,
                            )?,
                            Encoding::Aufs => {
                                let s = full.join(".wh..wh..opq");
                                std::fs::write(&s, b"")?;
                                chmod(&s, 0o444)?;
                                timed.push((join(&e.path, ".wh..wh..opq"), IMPLICIT_MTIME));
                            }
                        }
                    }
                }
                Kind::Symlink(t) => {
                    std::os::unix::fs::symlink(t, &full)
                        .with_context(|| format!("symlink {}", full.display()))?;
                }
                Kind::Hardlink(t) => {
                    std::fs::hard_link(dir.join(t), &full)
                        .with_context(|| format!("link {}", full.display()))?;
                }
                Kind::Fifo => mknod(&full, libc::S_IFIFO | 0o600, 0)?,
                Kind::CharDev(ma, mi) => {
                    mknod(&full, libc::S_IFCHR | 0o600, sys::makedev(*ma, *mi))?
                }
                Kind::BlockDev(ma, mi) => {
                    mknod(&full, libc::S_IFBLK | 0o600, sys::makedev(*ma, *mi))?
                }
                Kind::Whiteout => match enc {
                    Encoding::Kernel | Encoding::KernelUserXattr => {
                        mknod(&full, libc::S_IFCHR, sys::makedev(0, 0))?;
                        timed.push((e.path.clone(), IMPLICIT_MTIME));
                    }
                    Encoding::Aufs => {
                        let wh = join(parent_of(&e.path), &format!(".wh.{}", name_of(&e.path)));
                        let p = dir.join(&wh);
                        std::fs::write(&p, b"")?;
                        chmod(&p, 0o444)?;
                        timed.push((wh, IMPLICIT_MTIME));
                    }
                },
            }
            made.insert(e.path.clone());
            if matches!(e.kind, Kind::Whiteout | Kind::Hardlink(_)) {
                continue;
            }
            lchown(&full, e.uid, e.gid)?;
            if !matches!(e.kind, Kind::Symlink(_)) {
                // After chown, which clears setuid/setgid.
                chmod(&full, e.mode)?;
            }
            for (n, v) in &e.xattrs {
                io(sys::lsetxattr_abs(&full, n, v), "setxattr", &full)?;
            }
            timed.push((e.path.clone(), e.mtime));
        }
        for (p, t) in timed.iter().rev() {
            set_times(&dir.join(p), *t)?;
        }
        set_times(dir, IMPLICIT_MTIME)?;
        Ok(())
    }
}

impl Fixture {
    /// Materialises every layer under `base` as `base/l0`, `base/l1`, ... (topmost first),
    /// layer i with `encodings[i % encodings.len()]`. Returns the layer dirs in lowerdir order.
    pub fn materialise(
        &self,
        base: &Path,
        encodings: &[Encoding],
    ) -> Result<Vec<std::path::PathBuf>> {
        let mut dirs = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let d = base.join(format!("l{i}"));
            let enc = encodings
                .get(i % encodings.len().max(1))
                .copied()
                .unwrap_or(Encoding::Kernel);
            layer
                .materialise(&d, enc)
                .with_context(|| format!("layer {i}"))?;
            dirs.push(d);
        }
        Ok(dirs)
    }

    /// The merged view of the lower layers, as kernel overlay resolves it.
    pub fn lower_view(&self) -> LowerView {
        let mut layers = Vec::new();
        for (li, layer) in self.layers.iter().enumerate() {
            let mut m: BTreeMap<String, LowerKind> = BTreeMap::new();
            for e in &layer.entries {
                let mut p = parent_of(&e.path);
                while !p.is_empty() {
                    m.entry(p.to_string())
                        .or_insert(LowerKind::Dir { opaque: false });
                    p = parent_of(p);
                }
                let k = match &e.kind {
                    Kind::Dir { opaque } => LowerKind::Dir { opaque: *opaque },
                    Kind::Whiteout => LowerKind::Whiteout,
                    Kind::Hardlink(t) => LowerKind::NonDir {
                        link_group: Some((li, t.clone())),
                    },
                    _ => LowerKind::NonDir { link_group: None },
                };
                m.insert(e.path.clone(), k);
            }
            // The target of a hard link is itself a member of the group.
            let targets: Vec<String> = layer
                .entries
                .iter()
                .filter_map(|e| {
                    if let Kind::Hardlink(t) = &e.kind {
                        Some(t.clone())
                    } else {
                        None
                    }
                })
                .collect();
            for t in targets {
                m.insert(
                    t.clone(),
                    LowerKind::NonDir {
                        link_group: Some((li, t)),
                    },
                );
            }
            layers.push(m);
        }
        LowerView { layers }
    }
}

/// A canonical entry as the lower view needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerKind {
    Dir {
        opaque: bool,
    },
    /// `link_group`: (layer, path of the first name) for hard-linked files.
    NonDir {
        link_group: Option<(usize, String)>,
    },
    Whiteout,
}

/// Result of a lookup in the merged lowers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LowerHit {
    Dir,
    NonDir {
        layer: usize,
        link_group: Option<(usize, String)>,
    },
}

/// The canonical layers' merged view.
#[derive(Debug, Clone, Default)]
pub struct LowerView {
    layers: Vec<BTreeMap<String, LowerKind>>,
}

impl LowerView {
    /// Looks `path` ("" = root, components separated by '/') up through the lower layers
    /// the way kernel overlayfs does.
    pub fn lookup(&self, path: &str) -> Option<LowerHit> {
        let mut active: Vec<usize> = (0..self.layers.len()).collect();
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return Some(LowerHit::Dir);
        }
        for (i, comp) in comps.iter().enumerate() {
            cur = join(&cur, comp);
            let mut hit: Option<LowerHit> = None;
            let mut next = Vec::new();
            for &l in &active {
                match self.layers.get(l).and_then(|m| m.get(&cur)) {
                    None => continue,
                    Some(LowerKind::Whiteout) => break,
                    Some(LowerKind::Dir { opaque }) => match hit {
                        None | Some(LowerHit::Dir) => {
                            hit = Some(LowerHit::Dir);
                            next.push(l);
                            if *opaque {
                                break;
                            }
                        }
                        Some(LowerHit::NonDir { .. }) => break,
                    },
                    Some(LowerKind::NonDir { link_group }) => {
                        if hit.is_none() {
                            hit = Some(LowerHit::NonDir {
                                layer: l,
                                link_group: link_group.clone(),
                            });
                        }
                        break;
                    }
                }
            }
            match hit {
                Some(LowerHit::Dir) => active = next,
                Some(h @ LowerHit::NonDir { .. }) => {
                    return if i + 1 == comps.len() { Some(h) } else { None }
                }
                None => return None,
            }
        }
        Some(LowerHit::Dir)
    }

    /// All visible lower paths that belong to hard-link group `group`.
    pub fn link_group_members(&self, group: &(usize, String)) -> Vec<String> {
        let Some(layer) = self.layers.get(group.0) else {
            return Vec::new();
        };
        layer
            .iter()
            .filter(|(p, k)| {
                matches!(k, LowerKind::NonDir { link_group: Some(g) } if g == group)
                    && matches!(self.lookup(p), Some(LowerHit::NonDir { link_group: Some(ref g), .. }) if g == group)
            })
            .map(|(p, _)| p.clone())
            .collect()
    }
}
