//! A per-directory name index for lower layers, built once from one readdir.
//!
//! Lower layers never change while mounted, so after the first visit a lookup in a lower
//! directory is a binary search instead of `fstatat` calls: a miss in a 100-layer stack
//! costs 100 probes, not 200 syscalls. Whiteouts (char 0/0, `.wh.<name>`) and the
//! `.wh..wh..opq` marker are recorded when the index is built.
//!
//! The index is compact because a mount keeps one per lower directory it has visited:
//! every name is stored once, in one byte arena, with a 16-byte slot per entry and a
//! 4-byte position in a name-sorted order (about 20 bytes plus the name per entry,
//! against ~150 for a map of owned strings).

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;

use super::whiteout;
use crate::sys;

/// One entry of a lower directory, as the index hands it out.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry<'a> {
    pub name: &'a OsStr,
    pub ino: u64,
    pub dtype: u8,
    /// A char 0/0 whiteout.
    pub whiteout: bool,
}

/// Where one entry's name sits in the arena, and what it is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ino: u64,
    start: u32,
    len: u16,
    dtype: u8,
    whiteout: bool,
}

/// Names stored back to back, addressed by [`Slot`]s.
#[derive(Debug, Default)]
struct Arena {
    bytes: Vec<u8>,
}

impl Arena {
    /// Appends `name`; `None` when the arena would pass 4 GiB (names are ≤ 255 bytes).
    fn push(&mut self, name: &[u8]) -> Option<(u32, u16)> {
        let start = u32::try_from(self.bytes.len()).ok()?;
        let len = u16::try_from(name.len()).ok()?;
        self.bytes.extend_from_slice(name);
        Some((start, len))
    }

    fn get(&self, start: u32, len: u16) -> &[u8] {
        let start = start as usize;
        self.bytes
            .get(start..start + usize::from(len))
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub struct DirIndex {
    arena: Arena,
    /// Entries in readdir order (AUFS meta names excluded).
    slots: Vec<Slot>,
    /// Positions in `slots`, ordered by name.
    by_name: Vec<u32>,
    /// Names hidden below this layer by `.wh.<name>` files, as (start, len), by name.
    hidden: Vec<(u32, u16)>,
    pub opaque_marker: bool,
}

/// What a lower directory says about one name.
pub enum Probe {
    /// Not here; look further down.
    Absent,
    /// Whited out here: stop.
    Hidden,
    /// Present (not a whiteout).
    Present,
}

impl DirIndex {
    pub fn build(dir: BorrowedFd<'_>) -> io::Result<DirIndex> {
        let too_big = || io::Error::new(io::ErrorKind::OutOfMemory, "directory too big to index");
        let mut idx = DirIndex::default();
        for e in sys::read_dir(dir)? {
            if whiteout::is_aufs_name(&e.name) {
                if e.name.as_os_str() == OsStr::new(whiteout::OPAQUE_MARKER) {
                    idx.opaque_marker = true;
                } else if let Some(h) = whiteout::aufs_hidden_name(&e.name) {
                    let at = idx.arena.push(h.as_bytes()).ok_or_else(too_big)?;
                    idx.hidden.push(at);
                }
                continue;
            }
            let mut dtype = e.dtype;
            let mut is_wh = false;
            if dtype == libc::DT_CHR || dtype == libc::DT_UNKNOWN {
                match sys::stat_at(dir, &e.name) {
                    Ok(st) => {
                        is_wh = whiteout::is_whiteout(&st);
                        dtype = super::readdir::dtype_of(st.st_mode);
                    }
                    Err(_) => continue,
                }
            }
            let (start, len) = idx.arena.push(e.name.as_bytes()).ok_or_else(too_big)?;
            idx.slots.push(Slot {
                ino: e.ino,
                start,
                len,
                dtype,
                whiteout: is_wh,
            });
        }
        let count = u32::try_from(idx.slots.len()).map_err(|_| too_big())?;
        let mut by_name: Vec<u32> = (0..count).collect();
        by_name.sort_unstable_by(|a, b| idx.slot_name(*a).cmp(idx.slot_name(*b)));
        idx.by_name = by_name;
        let arena = &idx.arena;
        idx.hidden
            .sort_unstable_by(|a, b| arena.get(a.0, a.1).cmp(arena.get(b.0, b.1)));
        idx.arena.bytes.shrink_to_fit();
        idx.slots.shrink_to_fit();
        idx.hidden.shrink_to_fit();
        Ok(idx)
    }

    fn slot_name(&self, pos: u32) -> &[u8] {
        self.slots
            .get(pos as usize)
            .map_or(&[][..], |s| self.arena.get(s.start, s.len))
    }

    fn entry(&self, s: &Slot) -> IndexEntry<'_> {
        IndexEntry {
            name: OsStr::from_bytes(self.arena.get(s.start, s.len)),
            ino: s.ino,
            dtype: s.dtype,
            whiteout: s.whiteout,
        }
    }

    /// The entries in readdir order.
    pub fn entries(&self) -> impl Iterator<Item = IndexEntry<'_>> + '_ {
        self.slots.iter().map(|s| self.entry(s))
    }

    /// The names `.wh.<name>` files in this directory hide in the layers below.
    pub fn aufs_hidden(&self) -> impl Iterator<Item = &OsStr> + '_ {
        self.hidden
            .iter()
            .map(|(start, len)| OsStr::from_bytes(self.arena.get(*start, *len)))
    }

    fn find(&self, name: &OsStr) -> Option<IndexEntry<'_>> {
        let name = name.as_bytes();
        let pos = self
            .by_name
            .binary_search_by(|p| self.slot_name(*p).cmp(name))
            .ok()?;
        let slot = self.by_name.get(pos)?;
        self.slots.get(*slot as usize).map(|s| self.entry(s))
    }

    fn is_hidden(&self, name: &OsStr) -> bool {
        let name = name.as_bytes();
        self.hidden
            .binary_search_by(|(start, len)| self.arena.get(*start, *len).cmp(name))
            .is_ok()
    }

    pub fn probe(&self, name: &OsStr) -> Probe {
        match self.find(name) {
            Some(e) if e.whiteout => Probe::Hidden,
            Some(_) => Probe::Present,
            None if self.is_hidden(name) => Probe::Hidden,
            None => Probe::Absent,
        }
    }

    /// Rough memory weight, for the cache cap.
    pub fn weight(&self) -> usize {
        self.slots.len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn probes_names_whiteouts_and_hidden_names() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        for name in ["b", "a", "c", ".wh.gone", ".wh..wh..opq"] {
            std::fs::write(dir.path().join(name), b"")?;
        }
        std::fs::create_dir(dir.path().join("sub"))?;
        let fd = std::fs::File::open(dir.path())?;
        let idx = DirIndex::build(fd.as_fd())?;
        assert!(idx.opaque_marker);
        for name in ["a", "b", "c", "sub"] {
            assert!(
                matches!(idx.probe(OsStr::new(name)), Probe::Present),
                "{name}"
            );
        }
        assert!(matches!(idx.probe(OsStr::new("gone")), Probe::Hidden));
        assert!(matches!(idx.probe(OsStr::new("d")), Probe::Absent));
        assert!(matches!(idx.probe(OsStr::new("")), Probe::Absent));
        let mut names: Vec<_> = idx.entries().map(|e| e.name.to_os_string()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", "sub"]);
        assert_eq!(
            idx.entries()
                .find(|e| e.name == OsStr::new("sub"))
                .map(|e| e.dtype),
            Some(libc::DT_DIR)
        );
        assert_eq!(idx.aufs_hidden().collect::<Vec<_>>(), [OsStr::new("gone")]);
        Ok(())
    }
}
