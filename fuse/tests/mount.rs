//! Real-mount tests for what the differential suite cannot see: stack replacement at
//! runtime, clean exit on unmount, and layers that try to point outside themselves.
//! Needs root and /dev/fuse (skips with a message otherwise).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rebasefs_fuse::{Error, Mount, OverlayConfig, StackSpec};

fn can_mount() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root || !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: needs root and /dev/fuse");
        return false;
    }
    true
}

fn is_mounted(mp: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mp = mp.to_string_lossy().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(mp.as_str()))
}

/// Serves a mount on a thread; unmounts (lazily if needed) and joins on drop.
struct Served {
    mountpoint: PathBuf,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Served {
    fn start(mount: Mount, mountpoint: &Path) -> Served {
        let thread = std::thread::spawn(move || mount.serve());
        Served {
            mountpoint: mountpoint.to_path_buf(),
            thread: Some(thread),
        }
    }

    /// Unmounts with `how` and waits for `serve` to return.
    fn unmount_with(mut self, how: &[&str]) -> Result<(), Error> {
        // A non-lazy unmount fails with EBUSY while any process holds a file of the mount:
        // tests of this binary run in parallel, and a fork by another test's `Command`
        // copies this thread's open fds until its exec. So retry for a short while.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let status = Command::new(how[0])
                .args(&how[1..])
                .arg(&self.mountpoint)
                .status()
                .expect("run unmount command");
            if status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "{how:?} failed for 3 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let t = self.thread.take().expect("thread present");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !t.is_finished() {
            assert!(
                Instant::now() < deadline,
                "serve did not return after unmount"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t.join().expect("serve thread panicked")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
            let _ = t.join();
        }
    }
}

fn write(p: &Path, s: &str) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, s).unwrap();
}

#[test]
fn replace_stack_shows_new_layers_immediately() {
    if !can_mount() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b, mp) = (t.path().join("a"), t.path().join("b"), t.path().join("mnt"));
    write(&a.join("f"), "A");
    write(&a.join("only-a"), "a");
    write(&a.join("d/x"), "ax");
    write(&b.join("f"), "B");
    write(&b.join("only-b"), "b");
    write(&b.join("d/x"), "bx");
    // The kernel caches symlink targets (FUSE_CACHE_SYMLINKS): a swap must drop them.
    std::os::unix::fs::symlink("target-a", a.join("l")).unwrap();
    std::os::unix::fs::symlink("target-b", b.join("l")).unwrap();
    fs::create_dir(&mp).unwrap();
    let stack_a = StackSpec {
        lowers: vec![a.clone()],
        upper: None,
        work: None,
    };
    let mut config = OverlayConfig::new(stack_a);
    // Long TTLs: the new stack must show because of invalidation, not expiry.
    config.entry_timeout = Duration::from_secs(60);
    config.attr_timeout = Duration::from_secs(60);
    let mount = Mount::new(config, &mp).unwrap();
    let handle = mount.stack_handle();
    let served = Served::start(mount, &mp);

    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "A");
    assert_eq!(fs::read_to_string(mp.join("d/x")).unwrap(), "ax");
    assert!(mp.join("only-a").exists());
    assert!(!mp.join("only-b").exists());
    for _ in 0..2 {
        assert_eq!(fs::read_link(mp.join("l")).unwrap(), Path::new("target-a"));
    }

    handle
        .replace(StackSpec {
            lowers: vec![b.clone()],
            upper: None,
            work: None,
        })
        .unwrap();

    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "B");
    assert_eq!(fs::read_to_string(mp.join("d/x")).unwrap(), "bx");
    assert!(!mp.join("only-a").exists());
    assert!(mp.join("only-b").exists());
    assert_eq!(fs::read_link(mp.join("l")).unwrap(), Path::new("target-b"));
    let mut names: Vec<String> = fs::read_dir(&mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "f", "l", "only-b"]);

    served.unmount_with(&["fusermount3", "-u"]).unwrap();
    assert!(!is_mounted(&mp));
}

#[test]
fn replace_rejects_missing_layer_and_keeps_serving() {
    if !can_mount() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, mp) = (t.path().join("a"), t.path().join("mnt"));
    write(&a.join("f"), "A");
    fs::create_dir(&mp).unwrap();
    let spec = StackSpec {
        lowers: vec![a.clone()],
        upper: None,
        work: None,
    };
    let mount = Mount::new(OverlayConfig::new(spec), &mp).unwrap();
    let handle = mount.stack_handle();
    let served = Served::start(mount, &mp);
    let err = handle.replace(StackSpec {
        lowers: vec![t.path().join("missing")],
        upper: None,
        work: None,
    });
    assert!(err.is_err());
    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "A");
    served.unmount_with(&["umount"]).unwrap();
}

#[test]
fn serve_returns_ok_on_each_unmount_style() {
    if !can_mount() {
        return;
    }
    for how in [
        &["fusermount3", "-u"][..],
        &["umount"][..],
        &["umount", "-l"][..],
    ] {
        let t = tempfile::tempdir().unwrap();
        let (l, u, w, mp) = (
            t.path().join("l"),
            t.path().join("u"),
            t.path().join("w"),
            t.path().join("mnt"),
        );
        write(&l.join("f"), "x");
        for d in [&u, &w, &mp] {
            fs::create_dir(d).unwrap();
        }
        let spec = StackSpec {
            lowers: vec![l],
            upper: Some(u.clone()),
            work: Some(w),
        };
        let mount = Mount::new(OverlayConfig::new(spec), &mp).unwrap();
        assert!(is_mounted(&mp), "mount is live when Mount::new returns");
        let served = Served::start(mount, &mp);
        fs::write(mp.join("g"), "y").unwrap();
        assert_eq!(fs::read_to_string(u.join("g")).unwrap(), "y");
        served.unmount_with(how).unwrap();
        assert!(!is_mounted(&mp), "{how:?}");
    }
}

#[test]
fn layers_cannot_point_outside_themselves() {
    if !can_mount() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (l1, l2, u, w, mp, outside) = (
        t.path().join("l1"),
        t.path().join("l2"),
        t.path().join("u"),
        t.path().join("w"),
        t.path().join("mnt"),
        t.path().join("outside"),
    );
    write(&outside.join("secret"), "s");
    write(&l1.join("d/a"), "a");
    fs::create_dir_all(&l2).unwrap();
    // A lower layer whose `d` is a symlink out of the layer: must not merge into `d`.
    std::os::unix::fs::symlink(&outside, l2.join("d")).unwrap();
    // An upper dir whose redirect tries to climb out of the lower layers.
    fs::create_dir_all(u.join("r")).unwrap();
    xattr_set(&u.join("r"), "trusted.overlay.redirect", b"/../outside");
    write(&l1.join("r/keep"), "k");
    for d in [&w, &mp] {
        fs::create_dir_all(d).unwrap();
    }
    let spec = StackSpec {
        lowers: vec![l1, l2],
        upper: Some(u.clone()),
        work: Some(w),
    };
    let mount = Mount::new(OverlayConfig::new(spec), &mp).unwrap();
    let served = Served::start(mount, &mp);
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mp.join("d")), ["a"]);
    assert!(!mp.join("d/secret").exists());
    assert!(!mp.join("r/secret").exists());
    // Copy-up under `d` lands in the upper layer, not outside.
    fs::write(mp.join("d/a"), "changed").unwrap();
    assert_eq!(fs::read_to_string(u.join("d/a")).unwrap(), "changed");
    assert_eq!(fs::read_to_string(outside.join("secret")).unwrap(), "s");
    assert_eq!(names(&outside), ["secret"]);
    served.unmount_with(&["fusermount3", "-u"]).unwrap();
}

fn xattr_set(p: &Path, name: &str, value: &[u8]) {
    let status = Command::new("setfattr")
        .arg("-n")
        .arg(name)
        .arg("-v")
        .arg(String::from_utf8_lossy(value).as_ref())
        .arg(p)
        .status()
        .expect("setfattr");
    assert!(status.success());
}
