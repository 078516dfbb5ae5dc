//! Turning a layer tree's AUFS whiteouts (`.wh.<name>` files, `.wh..wh..opq`) into the
//! form kernel overlayfs reads (character device 0/0, `trusted.overlay.opaque=y`), as
//! containers-storage extracts layers for a store without a mount program.

use std::path::Path;

use rebasefs_fuse::{aufs_hidden_name, OPAQUE_MARKER};
use rustix::fs::{self as rfs, FileType, Mode, XattrFlags};

use crate::error::{io_err, Result};

/// Converts every whiteout below `root` in place.
pub fn aufs_to_native(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(io_err(format!("reading {}", root.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("reading {}", root.display())))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(io_err(format!("stat of {}", path.display())))?;
        let name = entry.file_name();
        if kind.is_dir() {
            aufs_to_native(&path)?;
        } else if name == OPAQUE_MARKER {
            std::fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            rfs::lsetxattr(root, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| io_err(format!("marking {} opaque", root.display()))(e.into()))?;
        } else if let Some(hidden) = aufs_hidden_name(&name) {
            std::fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            let device = root.join(hidden);
            rfs::mknodat(
                rfs::CWD,
                &device,
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            )
            .map_err(|e| io_err(format!("making whiteout {}", device.display()))(e.into()))?;
        }
    }
    Ok(())
}
