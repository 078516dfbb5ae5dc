//! Resolving a name through the layers: which layer entries make up one merged file.
//!
//! A child lookup is one `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)` per layer directory
//! of the parent, top down, stopping at the first whiteout, non-directory or opaque
//! directory. Directories with a redirect continue in lower layers at the redirect path.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock};

use super::dirindex::{DirIndex, Probe};
use super::layer::Stack;
use super::whiteout;
use crate::fdbudget::HeldFd;
use crate::sys::{self, Stat};

/// One layer's copy of a merged entry.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub layer: usize,
    /// `O_PATH|O_NOFOLLOW` fd of the entry in that layer.
    pub fd: Arc<HeldFd>,
    pub st: Stat,
    /// This directory's name index (lower layers), fetched once.
    pub index: OnceLock<Option<Arc<DirIndex>>>,
    /// The copy-up of a lower hard link, found in the link index rather than at this
    /// name in the upper directory (layer is 0).
    pub indexed: bool,
    /// The lower file's link count, for a lower hard link.
    pub lower_nlink: u32,
}

impl LayerEntry {
    pub fn is_dir(&self) -> bool {
        is_dir(&self.st)
    }
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    pub fn new(layer: usize, fd: Arc<HeldFd>, st: Stat) -> Self {
        LayerEntry {
            layer,
            fd,
            st,
            index: OnceLock::new(),
            indexed: false,
            lower_nlink: 0,
        }
    }
    /// The name index of this lower-layer directory, if it has one.
    pub fn index(&self, stack: &Stack) -> Option<Arc<DirIndex>> {
        self.index
            .get_or_init(|| stack.index(self.layer, self.fd(), &self.st))
            .clone()
    }
}

pub fn is_dir(st: &Stat) -> bool {
    (st.st_mode & libc::S_IFMT) == libc::S_IFDIR
}

/// The layer entries one merged name stands for, top first. For a directory, every
/// layer directory that is merged into it; otherwise just the topmost entry.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub generation: u64,
    pub entries: Vec<LayerEntry>,
    /// The top (upper) directory is opaque.
    #[allow(dead_code)]
    pub opaque: bool,
    /// The stack this was resolved in has an upper layer.
    pub upper_layer: bool,
}

impl Resolved {
    pub fn top(&self) -> Option<&LayerEntry> {
        self.entries.first()
    }
    pub fn is_dir(&self) -> bool {
        self.top().is_some_and(|e| e.is_dir())
    }
    /// The upper layer's entry, if the name exists there.
    pub fn upper(&self, stack: &Stack) -> Option<&LayerEntry> {
        self.top().filter(|e| stack.is_upper(e.layer))
    }
    /// Whether the top entry comes from the upper layer (layer 0 of a writable stack).
    pub fn has_upper_top(&self) -> bool {
        self.upper_layer && self.top().is_some_and(|e| e.layer == 0)
    }
    /// True when some lower layer contributes to this entry.
    pub fn has_lower(&self, stack: &Stack) -> bool {
        self.entries.iter().any(|e| !stack.is_upper(e.layer))
    }
    /// The (dev, ino) naming this merged file: a merged directory is named by its
    /// topmost lower directory (as the kernel reports it), anything else by its top.
    pub fn identity(&self, stack: &Stack) -> (u64, u64) {
        let pick = if self.is_dir() {
            self.entries
                .iter()
                .find(|e| !stack.is_upper(e.layer))
                .or(self.top())
        } else {
            self.top()
        };
        pick.map(|e| (e.st.st_dev, e.st.st_ino)).unwrap_or((0, 0))
    }
}

fn not_found(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
    )
}

/// The root: every layer root merged (opaque markers on layer roots are ignored).
pub fn resolve_root(stack: &Stack) -> io::Result<Resolved> {
    let mut entries = Vec::with_capacity(stack.layers.len());
    for (i, l) in stack.layers.iter().enumerate() {
        let st = sys::stat_fd(l.root.as_fd())?;
        entries.push(LayerEntry::new(i, l.root.clone(), st));
    }
    Ok(Resolved {
        generation: stack.generation,
        entries,
        opaque: false,
        upper_layer: stack.has_upper,
    })
}

/// Where to look for the name in the layers below a redirecting directory.
enum Redirect {
    Absolute(Vec<Vec<u8>>),
    Relative(Vec<u8>),
}

fn parse_redirect(v: &[u8]) -> Option<Redirect> {
    if let Some(rest) = v.strip_prefix(b"/") {
        let comps: Vec<Vec<u8>> = rest
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .map(|c| c.to_vec())
            .collect();
        if comps.is_empty() || comps.iter().any(|c| c == b".." || c == b".") {
            return None;
        }
        Some(Redirect::Absolute(comps))
    } else {
        if v.contains(&b'/') || v == b".." || v == b"." || v.is_empty() {
            return None;
        }
        Some(Redirect::Relative(v.to_vec()))
    }
}

/// Walks `comps` (all but the last) from a layer root without following symlinks;
/// returns the containing directory fd, or None when the path is not there.
fn walk_dirs(root: &Arc<HeldFd>, comps: &[Vec<u8>]) -> io::Result<Option<Arc<HeldFd>>> {
    let mut cur = root.clone();
    for c in comps {
        let name = OsStr::from_bytes(c);
        let st = match sys::stat_at(cur.as_fd(), name) {
            Ok(st) => st,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !is_dir(&st) {
            return Ok(None);
        }
        cur = Arc::new(HeldFd::new(sys::open_path_at(cur.as_fd(), name)?));
    }
    Ok(Some(cur))
}

/// Outcome of looking at one candidate position.
enum Step {
    Continue,
    Stop,
}

struct Builder<'a> {
    stack: &'a Stack,
    entries: Vec<LayerEntry>,
    opaque: bool,
    redirect: Option<(usize, Redirect)>,
}

impl Builder<'_> {
    fn visit(
        &mut self,
        layer: usize,
        dir: BorrowedFd<'_>,
        index: Option<Arc<DirIndex>>,
        name: &OsStr,
    ) -> io::Result<Step> {
        if let Some(idx) = &index {
            match idx.probe(name) {
                Probe::Absent => return Ok(Step::Continue),
                Probe::Hidden => return Ok(Step::Stop),
                Probe::Present => {}
            }
        }
        let indexed = index.is_some();
        let fd = match sys::open_path_at(dir, name) {
            Ok(fd) => fd,
            Err(e) if not_found(&e) => {
                if !indexed && whiteout::has_aufs_whiteout(dir, name)? {
                    return Ok(Step::Stop);
                }
                return Ok(Step::Continue);
            }
            Err(e) => return Err(e),
        };
        let st = sys::stat_fd(fd.as_fd())?;
        if whiteout::is_whiteout(&st) {
            return Ok(Step::Stop);
        }
        if is_dir(&st) && self.stack.is_trap(&st) {
            // A layer directory inside a layer (kernel overlayfs: "overlapping layers").
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        if !self.entries.is_empty() && !is_dir(&st) {
            // A non-directory below a directory ends the merge.
            return Ok(Step::Stop);
        }
        if !is_dir(&st) && st.st_nlink > 1 && self.entries.is_empty() && !self.stack.is_upper(layer)
        {
            if let Some(ix) = &self.stack.link_index {
                let key = self.stack.link_key(layer, st.st_ino);
                if let Ok(ifd) = sys::open_path_at(ix.as_fd(), &key) {
                    let ist = sys::stat_fd(ifd.as_fd())?;
                    let mut e = LayerEntry::new(0, Arc::new(HeldFd::new(ifd)), ist);
                    e.indexed = true;
                    e.lower_nlink = st.st_nlink as u32;
                    self.entries.push(e);
                    return Ok(Step::Stop);
                }
            }
        }
        let dir_entry = is_dir(&st);
        let mut stop = !dir_entry;
        if dir_entry {
            let marks = whiteout::dir_marks(fd.as_fd())?;
            if marks.opaque {
                if self.entries.is_empty() {
                    self.opaque = true;
                }
                stop = true;
            } else if let Some(r) = marks.redirect.as_deref().and_then(parse_redirect) {
                self.redirect = Some((layer, r));
            }
        }
        let mut e = LayerEntry::new(layer, Arc::new(HeldFd::new(fd)), st);
        if !dir_entry && st.st_nlink > 1 && !self.stack.is_upper(layer) {
            e.lower_nlink = st.st_nlink as u32;
        }
        self.entries.push(e);
        Ok(if stop { Step::Stop } else { Step::Continue })
    }
}

/// Looks `name` up under the merged directory `parent`. `Ok(None)`: no such entry.
pub fn lookup_child(
    stack: &Stack,
    parent: &Resolved,
    name: &OsStr,
) -> io::Result<Option<Resolved>> {
    // Room for one entry: a file stops at its first layer (most names), so it never
    // reallocates; a merged directory grows and is shrunk to fit below.
    let mut b = Builder {
        stack,
        entries: Vec::with_capacity(1),
        opaque: false,
        redirect: None,
    };
    let mut idx = 0;
    while let Some(pe) = parent.entries.get(idx) {
        idx += 1;
        if !pe.is_dir() {
            break;
        }
        match b.visit(pe.layer, pe.fd(), pe.index(stack), name)? {
            Step::Continue => {}
            Step::Stop => break,
        }
        if b.redirect.is_some() {
            follow_redirect(&mut b, parent)?;
            break;
        }
    }
    let _ = b.stack;
    if b.entries.is_empty() {
        return Ok(None);
    }
    // A resolution is cached per node for as long as the kernel knows it: growth slack
    // (184 bytes an entry) would stay allocated (mtrace of an 11,590-entry walk: 8.5 of
    // 12.2 MiB live heap before). A no-op for files, which never grew.
    b.entries.shrink_to_fit();
    Ok(Some(Resolved {
        generation: stack.generation,
        entries: b.entries,
        opaque: b.opaque,
        upper_layer: stack.has_upper,
    }))
}

/// Continues a lookup below a redirecting directory.
fn follow_redirect(b: &mut Builder<'_>, parent: &Resolved) -> io::Result<()> {
    let Some((from, redirect)) = b.redirect.take() else {
        return Ok(());
    };
    let nlayers = b.stack.layers.len();
    for layer in from + 1..nlayers {
        let step = match &redirect {
            Redirect::Absolute(comps) => {
                let Some((last, dirs)) = comps.split_last() else {
                    return Ok(());
                };
                let Some(l) = b.stack.layers.get(layer) else {
                    return Ok(());
                };
                match walk_dirs(&l.root, dirs)? {
                    Some(dir) => {
                        let dst = sys::stat_fd(dir.as_fd())?;
                        let idx = b.stack.index(layer, dir.as_fd(), &dst);
                        b.visit(layer, dir.as_fd(), idx, OsStr::from_bytes(last))?
                    }
                    None => Step::Continue,
                }
            }
            Redirect::Relative(n) => match parent.entries.iter().find(|e| e.layer == layer) {
                Some(pe) if pe.is_dir() => {
                    b.visit(layer, pe.fd(), pe.index(b.stack), OsStr::from_bytes(n))?
                }
                _ => Step::Continue,
            },
        };
        if matches!(step, Step::Stop) {
            break;
        }
        // A redirect found in a lower layer applies from there on.
        if let Some((_, r)) = b.redirect.take() {
            return follow_redirect_again(b, parent, layer, r);
        }
    }
    Ok(())
}

fn follow_redirect_again(
    b: &mut Builder<'_>,
    parent: &Resolved,
    from: usize,
    r: Redirect,
) -> io::Result<()> {
    b.redirect = Some((from, r));
    follow_redirect(b, parent)
}

/// Whether some lower layer under `parent` still shows `name` (so removing or renaming
/// the upper entry must leave a whiteout).
pub fn lower_has(stack: &Stack, parent: &Resolved, name: &OsStr) -> io::Result<bool> {
    for pe in &parent.entries {
        if stack.is_upper(pe.layer) || !pe.is_dir() {
            continue;
        }
        if let Some(idx) = pe.index(stack) {
            match idx.probe(name) {
                Probe::Absent => continue,
                Probe::Hidden => return Ok(false),
                Probe::Present => return Ok(true),
            }
        }
        match sys::stat_at(pe.fd(), name) {
            Ok(st) => return Ok(!whiteout::is_whiteout(&st)),
            Err(e) if not_found(&e) => {
                if whiteout::has_aufs_whiteout(pe.fd(), name)? {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_climb_out() {
        assert!(parse_redirect(b"/../etc").is_none());
        assert!(parse_redirect(b"/a/../b").is_none());
        assert!(parse_redirect(b"..").is_none());
        assert!(parse_redirect(b"a/b").is_none());
        assert!(parse_redirect(b"").is_none());
        assert!(parse_redirect(b"/").is_none());
        match parse_redirect(b"/a//b/") {
            Some(Redirect::Absolute(c)) => assert_eq!(c, vec![b"a".to_vec(), b"b".to_vec()]),
            _ => panic!("absolute redirect expected"),
        }
        match parse_redirect(b"name") {
            Some(Redirect::Relative(n)) => assert_eq!(n, b"name".to_vec()),
            _ => panic!("relative redirect expected"),
        }
    }
}
