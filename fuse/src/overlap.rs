//! Layer directories that overlap: what is refused before mounting, as kernel overlayfs
//! refuses it (fs/overlayfs/super.c `ovl_setup_trap`, `ovl_check_layer`,
//! `ovl_get_workdir`; checked by mounting on Linux 6.18):
//! - one directory in two roles: twice in lowerdir, or upperdir/workdir also a lowerdir
//!   (the kernel's "conflicting lowerdir path");
//! - upperdir and workdir nested either way ("must be separate subtrees");
//! - a lowerdir inside another layer directory: another lowerdir, the upperdir or the
//!   workdir ("overlapping lowerdir path").
//!
//! An upperdir or workdir *inside a lowerdir* the kernel mounts, answering ELOOP when it is
//! looked up in the merged tree; [`crate::overlay::layer::Stack`] keeps the same traps.
//!
//! "The same directory" is the same (dev, ino), so a symlink (containers-storage's
//! `l/<short>` lowers) or a bind mount naming a layer twice is caught; nesting is decided
//! on canonical paths.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::StackSpec;

/// One layer directory of a stack, in its role.
struct LayerDir<'a> {
    role: &'static str,
    path: &'a Path,
    canonical: PathBuf,
    identity: (u64, u64),
}

impl std::fmt::Display for LayerDir<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.role, self.path.display())
    }
}

fn layer_dir<'a>(role: &'static str, path: &'a Path) -> Result<LayerDir<'a>, String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{role} {}: {e}", path.display()))?;
    Ok(LayerDir {
        role,
        path,
        canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        identity: (md.dev(), md.ino()),
    })
}

/// Refuses a stack whose directories overlap in a way kernel overlayfs refuses; the
/// error is one line naming both directories.
pub fn check(stack: &StackSpec) -> Result<(), String> {
    let mut dirs = Vec::with_capacity(stack.lowers.len() + 2);
    for l in &stack.lowers {
        dirs.push(layer_dir("lowerdir", l)?);
    }
    if let Some(u) = &stack.upper {
        dirs.push(layer_dir("upperdir", u)?);
    }
    if let Some(w) = &stack.work {
        dirs.push(layer_dir("workdir", w)?);
    }
    let mut by_identity: HashMap<(u64, u64), &LayerDir<'_>> = HashMap::new();
    for d in &dirs {
        if let Some(first) = by_identity.insert(d.identity, d) {
            return Err(if first.path == d.path {
                format!("{d} is given twice")
            } else {
                format!("{d} is the same directory as {first}")
            });
        }
    }
    let by_path: HashMap<&Path, &LayerDir<'_>> =
        dirs.iter().map(|d| (d.canonical.as_path(), d)).collect();
    for inner in &dirs {
        for outer in inner
            .canonical
            .ancestors()
            .skip(1)
            .filter_map(|a| by_path.get(a))
        {
            match (inner.role, outer.role) {
                ("lowerdir", _) => return Err(format!("{inner} is inside {outer}")),
                ("upperdir", "workdir") | ("workdir", "upperdir") => {
                    return Err(format!(
                        "{inner} is inside {outer}: upperdir and workdir must be separate trees"
                    ))
                }
                // upperdir/workdir inside a lowerdir: mounted, trapped on lookup.
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(lowers: &[&Path], upper: Option<&Path>, work: Option<&Path>) -> StackSpec {
        StackSpec {
            lowers: lowers.iter().map(|p| p.to_path_buf()).collect(),
            upper: upper.map(Path::to_path_buf),
            work: work.map(Path::to_path_buf),
        }
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        let t = std::env::temp_dir().join(format!("rebasefs-overlap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        for d in [
            "l1/sub/up",
            "l1/wk",
            "l2",
            "u/low",
            "w/low",
            "u2/w",
            "w2/u",
            "home/id/diff",
            "home/l",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("../id/diff", t.join("home/l/SHORT")).unwrap();
        let p = |s: &str| t.join(s);
        let refused = |s: StackSpec| check(&s).expect_err("must be refused");
        let (l1, l2, u, w) = (p("l1"), p("l2"), p("u2"), p("w"));
        // Fine: separate directories; upper and work inside a lower (the kernel mounts it).
        check(&stack(&[&l1, &l2], Some(&u), Some(&w))).unwrap();
        check(&stack(&[&l1], Some(&p("l1/sub/up")), Some(&p("l1/wk")))).unwrap();
        assert!(refused(stack(&[&l1, &l2, &l1], None, None)).contains("given twice"));
        let short = p("home/l/SHORT");
        let alias = refused(stack(&[&p("home/id/diff"), &short], None, None));
        assert!(alias.contains("same directory"), "{alias}");
        assert!(refused(stack(&[&l1], Some(&l1), Some(&w))).starts_with("upperdir"));
        assert!(refused(stack(&[&l1], Some(&u), Some(&l1))).starts_with("workdir"));
        assert!(refused(stack(&[&l1], Some(&p("w2/u")), Some(&p("w2")))).contains("separate"));
        assert!(refused(stack(&[&l1], Some(&u), Some(&p("u2/w")))).contains("separate"));
        assert!(refused(stack(&[&p("u/low")], Some(&p("u")), Some(&w))).contains("inside upperdir"));
        assert!(refused(stack(&[&p("w/low")], Some(&u), Some(&w))).contains("inside workdir"));
        assert!(refused(stack(&[&l1, &p("l1/sub")], None, None)).contains("inside lowerdir"));
        assert!(refused(stack(&[&p("l1/sub"), &l1], None, None)).contains("inside lowerdir"));
        let _ = std::fs::remove_dir_all(&t);
    }
}
