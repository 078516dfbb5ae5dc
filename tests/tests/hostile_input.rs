//! Hostile and odd input to the built binary (`REBASEFS_BIN`), seeded by `REBASEFS_FAULT_SEED`
//! (default time-based; printed): generated `-o` option strings, garbage on the hook's stdin,
//! and layers full of odd entries (symlinks used as path components, devices, fifos, sockets,
//! set-id files, 255-byte names, PATH_MAX paths, newlines and invalid UTF-8 in names, big
//! xattrs, a layer that is a symlink, a lower directory swapped for a symlink while mounted).
//! Never a panic; bad input is one line and the documented exit status (2 for the mount
//! program; the hook exits 0 and echoes a config unchanged, garbage included); nothing outside the layers is read
//! into the merged tree or written.
//! (`mount_program_cli.rs` has the hand-written bad invocations.)

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::diff::rng::Rng;
use rebasefs_tests::diff::sys;
use rebasefs_tests::faults::seed;
use rebasefs_tests::podman::host;
use rebasefs_tests::podman::mount_program;

fn scratch(name: &str) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("rebasefs-hostile-{name}-"))
        .tempdir()?)
}

fn panicked(stderr: &str) -> bool {
    stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE")
}

/// Unmounts whatever is mounted under `dir` and kills its daemons (cleanup).
fn clean(dir: &Path, bin: &Path) {
    host::unmount_all_under(dir);
    let daemons: Vec<_> = host::processes_mentioning(&dir.to_string_lossy())
        .into_iter()
        .filter(|p| p.exe.as_deref() == Some(bin))
        .collect();
    host::kill_all(&daemons);
}

/// One generated `-o` string: pieces valid and invalid, joined by commas.
fn option_string(rng: &mut Rng, lower: &str, upper: &str, work: &str) -> String {
    let pieces: Vec<String> = vec![
        format!("lowerdir={lower}"),
        format!("lowerdir={lower}::{lower}"),
        "lowerdir=".into(),
        "lowerdir".into(),
        format!("upperdir={upper}"),
        format!("workdir={work}"),
        "upperdir=".into(),
        "workdir=,".into(),
        "=".into(),
        ",,".into(),
        "::".into(),
        "no_such_option=1".into(),
        "context=\"unbalanced".into(),
        "context='x".into(),
        "\"".into(),
        "uidmapping=0:1000".into(),
        "uidmapping=0:1000:99999999999".into(),
        "gidmapping=:::".into(),
        "xattr_permissions=9".into(),
        "timeout=-1".into(),
        "timeout=nan".into(),
        "fsync=maybe".into(),
        "redirect_dir=sideways".into(),
        "ro".into(),
        "rw".into(),
        "nodev".into(),
        format!("lowerdir={lower}\\:x"),
        format!("lowerdir={lower}/\u{0}nul"),
        "squash_to_uid=abc".into(),
        "%n%s%x".into(),
        "lowerdir=/proc/self/root".into(),
        format!("lowerdir=../../../../{lower}"),
    ];
    let n = 1 + rng.below(6);
    let mut out: Vec<String> = (0..n)
        .map(|_| pieces[rng.below(pieces.len())].clone())
        .collect();
    if rng.chance(5) {
        // A 100 KB piece.
        let filler = ["a", "=", ",", ":", "\"", "\\"][rng.below(6)];
        out.push(format!("lowerdir={lower}{}", filler.repeat(100 * 1024)));
    }
    out.join(",")
}

#[test]
fn generated_option_strings_never_panic_and_fail_in_one_line() -> Result<()> {
    let bin = mount_program()?;
    let dir = scratch("opts")?;
    for sub in ["lower", "upper", "work", "mnt", "out"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    let p = |s: &str| dir.path().join(s).display().to_string();
    let (lower, upper, work, mnt) = (p("lower"), p("upper"), p("work"), p("mnt"));
    let mut rng = Rng::new(seed());
    const STRINGS: usize = 240;
    let (mut refused, mut mounted) = (0, 0);
    let result = (|| -> Result<()> {
        for i in 0..STRINGS {
            let options = option_string(&mut rng, &lower, &upper, &work);
            // A NUL cannot be in an argument: such strings test the parser only as text.
            let options = options.replace('\0', "");
            let mut command = Command::new(&bin);
            command.args(["-o", &options, &mnt]);
            let out =
                host::run_with_timeout(command, Duration::from_secs(30), &dir.path().join("out"))?;
            let what = format!("string {i} ({} bytes): {:.200}", options.len(), options);
            ensure!(!panicked(&out.stderr), "{what}: panicked: {}", out.stderr);
            if out.success() {
                // Accepted (unknown keys are warnings): it must be mounted; take it down.
                mounted += 1;
                ensure!(
                    host::mounts_under(dir.path())?.len() == 1,
                    "{what}: exit 0 but not mounted once"
                );
                let um = Command::new("umount").arg(&mnt).status()?;
                ensure!(um.success(), "{what}: umount failed");
                let left = host::wait_until_empty(Duration::from_secs(10), || {
                    host::processes_mentioning(&mnt)
                        .into_iter()
                        .filter(|p| p.exe.as_deref() == Some(bin.as_path()))
                        .collect()
                });
                ensure!(left.is_empty(), "{what}: daemon left after umount");
            } else {
                refused += 1;
                // One error line; warnings about ignored options are log lines before it.
                let lines: Vec<&str> = out
                    .stderr
                    .lines()
                    .filter(|l| !l.contains(" WARN "))
                    .collect();
                ensure!(
                    out.status.code() == Some(2),
                    "{what}: exit {:?}, {}",
                    out.status.code(),
                    out.stderr
                );
                ensure!(
                    lines.len() == 1 && lines[0].starts_with("rebasefs: "),
                    "{what}: not one rebasefs line: {:.500}",
                    out.stderr
                );
                ensure!(
                    host::mounts_under(dir.path())?.is_empty(),
                    "{what}: refused but mounted"
                );
            }
        }
        Ok(())
    })();
    clean(dir.path(), &bin);
    result?;
    eprintln!("hostile input: {STRINGS} option strings: {refused} refused in one line (exit 2), {mounted} mounted and unmounted, 0 panics");
    Ok(())
}

/// Runs `rebasefs hook` with `stdin`; returns (exit code, stdout, stderr).
fn run_hook(bin: &Path, stdin: &[u8]) -> Result<(Option<i32>, Vec<u8>, String)> {
    let mut child = Command::new(bin)
        .arg("hook")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting rebasefs hook")?;
    let mut pipe = child.stdin.take().context("no stdin")?;
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output()?;
    let _ = writer.join();
    Ok((
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn bad_hook_input_is_echoed_unchanged_in_one_line() -> Result<()> {
    let bin = mount_program()?;
    let mut rng = Rng::new(seed());
    let outside = scratch("hook-root")?;
    let config_outside = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"{}"}},"process":{{"cwd":"/","args":["sh"]}}}}"#,
        outside.path().display()
    );
    let mut garbage = vec![0u8; 4096];
    for b in garbage.iter_mut() {
        *b = rng.below(256) as u8;
    }
    let big = vec![b'{'; 10 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random bytes", garbage),
        ("10 MB of braces", big),
        ("not an object", b"[1,2,3]".to_vec()),
        ("truncated JSON", br#"{"ociVersion":"1.0.2","root":{"pa"#.to_vec()),
        ("root outside any store", config_outside.into_bytes()),
        (
            "root is a relative path",
            br#"{"ociVersion":"1.0.2","root":{"path":"../../etc"}}"#.to_vec(),
        ),
        (
            "a state, not a config",
            br#"{"ociVersion":"1.0.2","id":"x","status":"created","pid":1,"bundle":"/nonexistent"}"#.to_vec(),
        ),
    ];
    let before = std::fs::read_dir(outside.path())?.count();
    for (what, input) in &cases {
        let (code, stdout, stderr) = run_hook(&bin, input)?;
        ensure!(!panicked(&stderr), "{what}: panicked: {stderr}");
        ensure!(code == Some(0), "{what}: exit {code:?}: {stderr}");
        // A state is a later stage's input: nothing to echo there.
        let echoed = stdout == *input || (what.starts_with("a state") && stdout.is_empty());
        ensure!(echoed, "{what}: the config was not echoed unchanged");
        ensure!(
            stderr.lines().count() <= 1,
            "{what}: more than one line: {stderr:.500}"
        );
    }
    ensure!(
        std::fs::read_dir(outside.path())?.count() == before,
        "the hook wrote into a root outside any store"
    );
    eprintln!("hostile input: {} hook inputs, 0 panics", cases.len());
    Ok(())
}

/// A name of `len` bytes from the seed (no '/' or NUL).
fn odd_name(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| loop {
            let b = rng.below(256) as u8;
            if b != b'/' && b != 0 {
                break b;
            }
        })
        .collect()
}

/// Every path below `root` (no symlink followed) with its type, mode, size and content hash.
fn snapshot(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let content = if meta.is_file() {
                std::fs::read(&path)?
                    .iter()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
            } else {
                0
            };
            out.push(format!(
                "{} {:o} {} {} {}",
                path.display(),
                meta.mode(),
                meta.len(),
                meta.mtime(),
                content
            ));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every name reachable in the merged tree without following symlinks.
fn merged_names(root: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd {
            let entry = entry?;
            out.push(entry.file_name().as_bytes().to_vec());
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(out)
}

#[test]
fn odd_and_hostile_layers_are_served_without_escaping() -> Result<()> {
    let bin = mount_program()?;
    let dir = scratch("layers")?;
    let mut rng = Rng::new(seed());
    let d = |s: &str| dir.path().join(s);
    for sub in [
        "outside/secret-dir",
        "l1",
        "l2/sub",
        "upper",
        "work",
        "mnt",
        "out",
    ] {
        std::fs::create_dir_all(d(sub))?;
    }
    std::fs::write(d("outside/secret-dir/SECRET-OUTSIDE"), "outside\n")?;
    std::fs::write(d("outside/SECRET-TOP"), "outside\n")?;
    let outside = d("outside");
    // Symlinks meant to be followed as path components, in the lower and in the top layer
    // (the top has a real directory of the same name, so the merged name is that directory).
    std::os::unix::fs::symlink(&outside, d("l2/abs"))?;
    std::os::unix::fs::symlink("../../outside", d("l2/rel"))?;
    std::os::unix::fs::symlink("../../../../../../../../..", d("l2/up"))?;
    for name in ["abs", "rel", "up"] {
        std::fs::create_dir_all(d(&format!("l1/{name}")))?;
        std::fs::write(d(&format!("l1/{name}/in-layer")), "layer\n")?;
    }
    std::fs::write(d("l2/sub/lower-file"), "lower\n")?;
    // Special files and set-id bits.
    nix::unistd::mkfifo(
        &d("l2/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )?;
    nix::sys::stat::mknod(
        &d("l2/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )?;
    let _socket = std::os::unix::net::UnixListener::bind(d("l2/socket"))?;
    std::fs::write(d("l2/setuid"), "#!/bin/sh\n")?;
    std::fs::set_permissions(d("l2/setuid"), std::fs::Permissions::from_mode(0o6755))?;
    // Names: 255 bytes, newlines, invalid UTF-8; and a path near PATH_MAX.
    let mut names: Vec<Vec<u8>> = vec![
        vec![b'n'; 255],
        b"new\nline".to_vec(),
        vec![0xff, 0xfe, b'x', 0x80],
    ];
    let len = 1 + rng.below(255);
    names.push(odd_name(&mut rng, len));
    for name in &names {
        std::fs::write(d("l2").join(OsStr::from_bytes(name)), name)?;
    }
    let mut deep = PathBuf::from("deep");
    while deep.as_os_str().len() < 4000 - 250 {
        deep.push("d".repeat(200));
    }
    std::fs::create_dir_all(d("l2").join(&deep))?;
    std::fs::write(d("l2").join(&deep).join("bottom"), "deep\n")?;
    // A big xattr value (64 KiB where the filesystem allows it).
    let big_value = odd_name(&mut rng, 60 * 1024);
    let xattr_set = sys::lsetxattr_abs(&d("l2/sub/lower-file"), "user.big", &big_value).is_ok();
    // The lower layer is given as a symlink to it.
    std::os::unix::fs::symlink(d("l2"), d("l2-link"))?;
    let before = snapshot(&outside)?;

    let options = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        d("l1").display(),
        d("l2-link").display(),
        d("upper").display(),
        d("work").display()
    );
    let mnt = d("mnt");
    let mut command = Command::new(&bin);
    command.args(["-o", &options]).arg(&mnt);
    let out = host::run_with_timeout(command, Duration::from_secs(30), &d("out"))?;
    let result = (|| -> Result<usize> {
        ensure!(out.success(), "mount failed: {out:?}");
        let mut checked = 0;
        for name in ["abs", "rel", "up"] {
            let listing: Vec<_> = std::fs::read_dir(mnt.join(name))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            ensure!(listing == ["in-layer"], "{name}/ lists {listing:?}");
            ensure!(!mnt.join(name).join("SECRET-TOP").exists());
            std::fs::write(mnt.join(name).join("written"), "x")?;
            checked += 1;
        }
        let meta = std::fs::symlink_metadata(mnt.join("fifo"))?;
        ensure!(meta.file_type().is_fifo_like(), "fifo is {meta:?}");
        let meta = std::fs::symlink_metadata(mnt.join("null"))?;
        ensure!(meta.rdev() == nix::sys::stat::makedev(1, 3), "null rdev");
        let meta = std::fs::symlink_metadata(mnt.join("socket"))?;
        ensure!(
            meta.mode() & libc::S_IFMT == libc::S_IFSOCK,
            "socket is {meta:?}"
        );
        let meta = std::fs::symlink_metadata(mnt.join("setuid"))?;
        ensure!(
            meta.mode() & 0o7777 == 0o6755,
            "setuid mode {:o}",
            meta.mode()
        );
        checked += 4;
        for name in &names {
            let got = std::fs::read(mnt.join(OsStr::from_bytes(name)))?;
            ensure!(got == *name, "odd name {name:?} read back wrong");
            checked += 1;
        }
        let too_long = std::fs::metadata(mnt.join("n".repeat(256)));
        ensure!(
            too_long.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENAMETOOLONG),
            "256-byte name: {too_long:?}"
        );
        ensure!(std::fs::read(mnt.join(&deep).join("bottom"))? == b"deep\n");
        checked += 2;
        if xattr_set {
            let path = std::ffi::CString::new(mnt.join("sub/lower-file").as_os_str().as_bytes())?;
            let got = sys::getxattr(&path, "user.big");
            ensure!(
                got.as_deref() == Ok(big_value.as_slice()),
                "big xattr read back wrong"
            );
            checked += 1;
        }
        // The lower directory swapped for a symlink to the outside while mounted.
        std::fs::rename(d("l2/sub"), d("l2/sub-moved"))?;
        std::os::unix::fs::symlink(&outside, d("l2/sub"))?;
        // Served as what the layer now holds, a symlink (which the caller may follow, as
        // any symlink), or as the directory it had open; never as the outside's contents.
        let meta = std::fs::symlink_metadata(mnt.join("sub"))?;
        if meta.file_type().is_symlink() {
            ensure!(
                std::fs::read_link(mnt.join("sub"))? == outside,
                "swapped link target"
            );
        } else {
            let listing: Vec<_> = std::fs::read_dir(mnt.join("sub"))
                .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default();
            ensure!(
                !listing.iter().any(|n| n.as_bytes().starts_with(b"SECRET")),
                "the swapped lower dir shows the outside: {listing:?}"
            );
        }
        checked += 1;
        let all = merged_names(&mnt)?;
        ensure!(
            !all.iter().any(|n| n.starts_with(b"SECRET")),
            "an outside name appears in the merged tree"
        );
        Ok(checked)
    })();
    clean(dir.path(), &bin);
    let checked = result?;
    ensure!(snapshot(&outside)? == before, "the outside tree changed");
    eprintln!("hostile input: {checked} odd-layer cases, outside tree untouched, 0 panics");
    Ok(())
}

/// `FileType::is_fifo` lives in an extension trait; this names it once.
trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}
