//! The filesystem workloads, each timed with `Instant` around plain std syscalls.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files at most this big count as "small" for the read-all-small-files workload.
pub const SMALL_FILE_MAX: u64 = 1 << 20;

/// What a full-tree walk saw.
#[derive(Debug, Default, Clone)]
pub struct WalkResult {
    pub entries: u64,
    pub small_files: Vec<PathBuf>,
    pub small_bytes: u64,
}

/// readdir + lstat of every entry below `root`, depth first.
pub fn stat_walk(root: &Path) -> Result<(Duration, WalkResult)> {
    let start = Instant::now();
    let mut res = WalkResult::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir).with_context(|| format!("readdir {}", dir.display()))? {
            let ent = ent.with_context(|| format!("readdir entry in {}", dir.display()))?;
            let path = ent.path();
            let md =
                fs::symlink_metadata(&path).with_context(|| format!("lstat {}", path.display()))?;
            res.entries += 1;
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() && md.len() <= SMALL_FILE_MAX {
                res.small_bytes += md.len();
                res.small_files.push(path);
            }
        }
    }
    Ok((start.elapsed(), res))
}

/// Reads every file in `files` completely; returns the time and the bytes read.
pub fn read_files(files: &[PathBuf]) -> Result<(Duration, u64)> {
    let mut buf = vec![0u8; 128 * 1024];
    let start = Instant::now();
    let mut total = 0u64;
    for f in files {
        let mut file = File::open(f).with_context(|| format!("open {}", f.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("read {}", f.display()))?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok((start.elapsed(), total))
}

/// Sequential read of one file with 1 MiB reads.
pub fn seq_read(path: &Path, expect: u64) -> Result<Duration> {
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let took = start.elapsed();
    if total != expect {
        bail!(
            "read {total} bytes of {}, expected {expect}",
            path.display()
        );
    }
    Ok(took)
}

/// Copy-up by data change: open the lower file for append and write one byte.
pub fn copy_up_append(path: &Path) -> Result<Duration> {
    let before = fs::metadata(path)?.len();
    let start = Instant::now();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.write_all(b"x")?;
    drop(f);
    let took = start.elapsed();
    let after = fs::metadata(path)?.len();
    if after != before + 1 {
        bail!("append: size {before} -> {after}");
    }
    Ok(took)
}

/// Copy-up by metadata change: chmod of the lower file.
pub fn copy_up_chmod(path: &Path) -> Result<Duration> {
    let start = Instant::now();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    let took = start.elapsed();
    let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode != 0o600 {
        bail!("chmod: mode is {mode:o}");
    }
    Ok(took)
}

/// create + write 1 KiB + fsync + close of `count` new files in a new directory.
pub fn create_fsync(dir: &Path, count: usize) -> Result<Duration> {
    fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let payload = [b'b'; 1024];
    let start = Instant::now();
    for i in 0..count {
        let p = dir.join(format!("f{i:05}"));
        let mut f = File::create(&p).with_context(|| format!("create {}", p.display()))?;
        f.write_all(&payload)?;
        f.sync_all()
            .with_context(|| format!("fsync {}", p.display()))?;
    }
    Ok(start.elapsed())
}

/// Rename- and unlink-heavy run: 2000 upper files renamed then unlinked, plus 500 lower files
/// renamed (copy-up + whiteout) and 500 lower files unlinked (whiteouts) under /app.
pub fn rename_unlink(mnt: &Path) -> Result<Duration> {
    let dir = mnt.join("bench-rename");
    fs::create_dir(&dir)?;
    for i in 0..2000 {
        File::create(dir.join(format!("a{i:04}")))?.write_all(b"r")?;
    }
    let start = Instant::now();
    for i in 0..2000 {
        fs::rename(dir.join(format!("a{i:04}")), dir.join(format!("b{i:04}")))?;
    }
    for i in 0..2000 {
        fs::remove_file(dir.join(format!("b{i:04}")))?;
    }
    for d in 0..5 {
        for f in 0..100 {
            let from = mnt.join(format!("app/mod{d:02}/file{f:02}.py"));
            let to = mnt.join(format!("app/mod{d:02}/file{f:02}.renamed"));
            fs::rename(&from, &to).with_context(|| format!("rename {}", from.display()))?;
        }
    }
    for d in 5..10 {
        for f in 0..100 {
            let p = mnt.join(format!("app/mod{d:02}/file{f:02}.py"));
            fs::remove_file(&p).with_context(|| format!("unlink {}", p.display()))?;
        }
    }
    let took = start.elapsed();
    if mnt.join("app/mod07/file42.py").exists() || !mnt.join("app/mod03/file42.renamed").exists() {
        bail!("rename/unlink results not visible");
    }
    Ok(took)
}

/// Names used by the lookup workload: 200 present only in the bottom layer (dirs d00-d09), or
/// 200 present nowhere (dirs d10-d19), so each set also pays its own first directory lookups.
pub fn lookup_names(positive: bool) -> Vec<String> {
    let mut v = Vec::with_capacity(200);
    let dirs = if positive { 0..10 } else { 10..20 };
    for d in dirs {
        for f in 0..20 {
            if positive {
                v.push(format!("d{d:02}/bottom_{:03}", f * 5));
            } else {
                v.push(format!("d{d:02}/missing_{:03}", f * 5));
            }
        }
    }
    v
}

/// lstat of each name under `mnt`, each looked up once; all must exist (positive) or all must
/// be ENOENT (negative). Returns the mean time per lookup.
pub fn lookups(mnt: &Path, names: &[String], positive: bool) -> Result<Duration> {
    let start = Instant::now();
    for n in names {
        let p = mnt.join(n);
        match fs::symlink_metadata(&p) {
            Ok(_) if positive => {}
            Err(e) if !positive && e.kind() == ErrorKind::NotFound => {}
            Ok(_) => bail!("{} exists but should not", p.display()),
            Err(e) => bail!("lstat {}: {e}", p.display()),
        }
    }
    let n = names.len().max(1) as u32;
    Ok(start.elapsed() / n)
}

/// Untimed: touches the names in every layer directly so the lower filesystem's dentry cache is
/// warm for every contender alike.
pub fn warm_lower(layers: &[PathBuf], names: &[String]) {
    for l in layers {
        for n in names {
            let _ = fs::symlink_metadata(l.join(n));
        }
    }
}
