//! A dead mount of ours left on the mountpoint: when the daemon that served a mount was
//! killed (SIGKILL, the OOM killer), its mount stays in the table and every access to it
//! fails with ENOTCONN (or ECONNABORTED), so a new mount there could not even resolve its mountpoint. Such a
//! mount (`fuse.rebasefs`, answering so) is detached lazily before mounting again;
//! any other mount, dead or alive, is left alone.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The filesystem type our mounts carry in the mount table.
const OUR_FSTYPE: &str = "fuse.rebasefs";

/// If `mountpoint` (absolute or relative to `cwd`) holds a dead mount of ours, detaches it
/// and returns true. Nothing happens unless the mountpoint answers ENOTCONN or ECONNABORTED.
pub fn detach_dead_mount(mountpoint: &Path, cwd: &Path) -> Result<bool> {
    let path = if mountpoint.is_absolute() {
        mountpoint.to_path_buf()
    } else {
        cwd.join(mountpoint)
    };
    match std::fs::metadata(&path) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {}
        _ => return Ok(false),
    }
    let lexical = lexically_normal(&path);
    let mountinfo =
        std::fs::read("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    // The last mount at that path is the one on top, the one that answered.
    let top = mountinfo
        .split(|b| *b == b'\n')
        .filter_map(parse_line)
        .rfind(|(point, _)| *point == lexical);
    let Some((_, fstype)) = top else {
        return Ok(false);
    };
    if fstype != OUR_FSTYPE {
        return Ok(false);
    }
    match nix::mount::umount2(&lexical, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => {
            tracing::warn!(
                "{}: detached a dead rebasefs mount (its daemon is gone) before mounting again",
                lexical.display()
            );
            Ok(true)
        }
        Err(e) if e as i32 == libc::EINVAL || e as i32 == libc::ENOENT => Ok(false),
        Err(e) => Err(std::io::Error::from(e))
            .with_context(|| format!("detaching the dead rebasefs mount on {}", lexical.display())),
    }
}

/// `/a/./b/../c` as `/a/c`, without touching the filesystem (the path is dead).
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Mount point and filesystem type of one `/proc/self/mountinfo` line.
fn parse_line(line: &[u8]) -> Option<(PathBuf, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split(' ');
    let point = fields.nth(4)?;
    let after_separator = text.split(" - ").nth(1)?;
    let fstype = after_separator.split(' ').next()?;
    Some((unescape(point), fstype.to_owned()))
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...) in a mountinfo path.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mountinfo_lines_with_escapes() {
        let line =
            b"36 35 0:40 / /var/lib/a\\040b rw,relatime shared:1 - fuse.rebasefs rebasefs rw";
        assert_eq!(
            parse_line(line),
            Some((PathBuf::from("/var/lib/a b"), "fuse.rebasefs".into()))
        );
        assert_eq!(parse_line(b"garbage"), None);
    }

    #[test]
    fn normalises_without_the_filesystem() {
        assert_eq!(
            lexically_normal(Path::new("/a/./b/../c")),
            PathBuf::from("/a/c")
        );
    }
}
