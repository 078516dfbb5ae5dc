//! A differential session: one fixture materialised twice, mounted by kernel overlayfs and
//! by the candidate, operations run on both with every outcome compared, tree checkpoints,
//! and at the end the normalised upper dirs and a remount of both sides compared.

use std::cell::Cell;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::fixture::{Encoding, Fixture, LowerView, IMPLICIT_MTIME};
use super::mount::{
    candidate_bin, CandidateMount, Dirs, KernelMount, ScratchFs, KERNEL_SELF_CHECK,
};
use super::op::{execute, Op};
use super::outcome::{outcome_diff, show, Outcome};
use super::sys;
use super::tree::{ino_kept, snapshot, tree_diff, Tree};
use super::upper::{normalised_upper, upper_diff};

/// One observed difference between kernel overlayfs and the candidate.
#[derive(Debug, Clone)]
pub struct Divergence {
    /// Where: "op 12", "checkpoint after op 500", "upper", "remount", ...
    pub at: String,
    /// The operation, when one is involved.
    pub op: Option<Op>,
    pub kernel: Option<String>,
    pub candidate: Option<String>,
    pub details: Vec<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.at)?;
        if let Some(op) = &self.op {
            write!(f, ": {}", compact(&format!("{op:?}")))?;
        }
        if let (Some(k), Some(c)) = (&self.kernel, &self.candidate) {
            write!(
                f,
                "\n    kernel:    {}\n    candidate: {}",
                compact(k),
                compact(c)
            )?;
        }
        const MAX: usize = 25;
        for d in self.details.iter().take(MAX) {
            write!(f, "\n    - {}", compact(d))?;
        }
        if self.details.len() > MAX {
            write!(f, "\n    ... {} more", self.details.len() - MAX)?;
        }
        Ok(())
    }
}

/// Shortens runs of one repeated character (long names in NAME_MAX/PATH_MAX cases) to
/// `c{N}` so reports stay readable.
pub fn compact(s: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut j = i;
        while j < chars.len() && chars[j] == c {
            j += 1;
        }
        if j - i > 8 {
            out.push_str(&format!("{c}{{{}}}", j - i));
        } else {
            out.extend(&chars[i..j]);
        }
        i = j;
    }
    out
}

/// Which filesystems hold a session's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backing {
    /// Everything on /var/tmp: a disk filesystem with trusted.* and user.* xattrs.
    #[default]
    VarTmp,
    /// Lower layers on a tmpfs, upper and work dirs on a fresh 64 MiB ext4 (loop mount):
    /// the lowers can hold what the upper cannot (a 64 KiB xattr value).
    TmpfsLowersExt4Upper,
}

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub fixture: Fixture,
    /// Whiteout encoding of each candidate layer (cycled); the kernel side always gets
    /// [`Encoding::Kernel`].
    pub candidate_encodings: Vec<Encoding>,
    /// No upperdir/workdir: a read-only mount.
    pub read_only: bool,
    /// Mount program to test.
    pub bin: PathBuf,
    /// RLIMIT_NOFILE (soft = hard) for the mount program, to prove it does not need a
    /// descriptor per node.
    pub candidate_nofile: Option<u64>,
    pub backing: Backing,
    /// Mount options for both sides besides the directories (see [`Dirs::options`]).
    pub options: Vec<String>,
}

impl Setup {
    pub fn new(fixture: Fixture) -> Self {
        let bin = candidate_bin();
        // Both encodings across the candidate's layers, as containers-storage produces for a
        // mount program (AUFS) and as native extraction does (char 0/0 + opaque xattr);
        // kernel overlayfs reads only its own encoding, so the self-check uses that.
        let candidate_encodings = if bin == Path::new(KERNEL_SELF_CHECK) {
            vec![Encoding::Kernel]
        } else {
            vec![
                Encoding::Aufs,
                Encoding::KernelUserXattr,
                Encoding::Kernel,
                Encoding::Aufs,
            ]
        };
        Setup {
            fixture,
            candidate_encodings,
            read_only: false,
            bin,
            candidate_nofile: None,
            backing: Backing::default(),
            options: Vec::new(),
        }
    }
}

thread_local! {
    static FS_UNSHARED: Cell<bool> = const { Cell::new(false) };
}

/// Gives the current thread a private umask once.
fn ensure_private_fs() {
    FS_UNSHARED.with(|u| {
        if !u.get() && sys::unshare_fs().is_ok() {
            u.set(true);
        }
    });
}

/// With `DIFF_VERBOSE` set, prints how long each session phase took.
fn timing(what: &str) {
    thread_local! {
        static LAST: Cell<Option<std::time::Instant>> = const { Cell::new(None) };
    }
    if std::env::var_os("DIFF_VERBOSE").is_none() {
        return;
    }
    let now = std::time::Instant::now();
    let prev = LAST.with(|l| l.replace(Some(now)));
    let ms = prev
        .map(|p| (now - p).as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    eprintln!("  [timing] {what}: +{ms:.1} ms");
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn side_dirs(base: &Path, lowers: Vec<PathBuf>, setup: &Setup) -> Result<Dirs> {
    let read_only = setup.read_only;
    let mountpoint = base.join("merged");
    std::fs::create_dir_all(&mountpoint)?;
    let (upper, work) = if read_only {
        (None, None)
    } else {
        let (u, w) = (base.join("upper"), base.join("work"));
        std::fs::create_dir_all(&u)?;
        std::fs::create_dir_all(&w)?;
        // The merged root shows the upper root: give both sides the same explicit metadata.
        std::fs::set_permissions(&u, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let root = sys::open_abs(&u, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(std::io::Error::from_raw_os_error)?;
        sys::utimensat(
            root.as_fd(),
            "",
            IMPLICIT_MTIME,
            IMPLICIT_MTIME,
            libc::AT_EMPTY_PATH,
        )
        .map_err(std::io::Error::from_raw_os_error)?;
        (Some(u), Some(w))
    };
    Ok(Dirs {
        lowers,
        upper,
        work,
        mountpoint,
        options: setup.options.clone(),
    })
}

/// Aborts the candidate's FUSE connection when one operation hangs, so a deadlocked
/// filesystem fails the run (the op then returns ENOTCONN) instead of hanging CI.
struct Watchdog {
    current: Arc<Mutex<Option<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(fuse_dev: Option<u64>, daemons: Vec<i32>) -> Watchdog {
        let current: Arc<Mutex<Option<(Instant, String)>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let limit = Duration::from_secs(
            std::env::var("DIFF_OP_TIMEOUT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60),
        );
        let (c, st, f) = (current.clone(), stop.clone(), fired.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let hung = c.lock().ok().and_then(|g| {
                    g.as_ref()
                        .filter(|(t, _)| t.elapsed() > limit)
                        .map(|(_, op)| op.clone())
                });
                if let (Some(op), Some(dev)) = (hung, fuse_dev) {
                    if !f.swap(true, Ordering::Relaxed) {
                        eprintln!("difftest: candidate hung for {}s on {op}; aborting its FUSE connection", limit.as_secs());
                        let abort = format!("/sys/fs/fuse/connections/{dev}/abort");
                        // fusectl may not be mounted; killing the daemon aborts the
                        // connection as well (the kernel sees /dev/fuse closed).
                        if std::fs::write(&abort, "1").is_err() {
                            for pid in &daemons {
                                let _ = sys::kill(*pid, libc::SIGKILL);
                            }
                        }
                    }
                }
            }
        });
        Watchdog {
            current,
            stop,
            fired,
            thread: Some(thread),
        }
    }

    fn begin(&self, op: &Op) {
        if let Ok(mut g) = self.current.lock() {
            *g = Some((Instant::now(), compact(&format!("{op:?}"))));
        }
    }

    fn end(&self) {
        if let Ok(mut g) = self.current.lock() {
            *g = None;
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kernel's FUSE connection number of the filesystem mounted at `root` (the name of
/// its /sys/fs/fuse/connections entry: the superblock's kernel dev_t).
fn fuse_connection(root: &OwnedFd) -> Option<u64> {
    let st = sys::fstat(root.as_fd()).ok()?;
    let (ma, mi) = (sys::major(st.st_dev) as u64, sys::minor(st.st_dev) as u64);
    Some((ma << 20) | mi)
}

/// A pair of live mounts of identical layers.
pub struct Session {
    watchdog: Watchdog,
    // Field order is drop order: fds before mounts before the directories.
    kroot: Option<OwnedFd>,
    croot: Option<OwnedFd>,
    kernel: Option<KernelMount>,
    cand: Option<CandidateMount>,
    kdirs: Dirs,
    cdirs: Dirs,
    setup: Setup,
    lower: LowerView,
    /// Times at or after this were set by the filesystems, not by us.
    recent: i64,
    last_trees: Option<(Tree, Tree)>,
    /// False once an intended difference made the two trees legitimately differ (see
    /// [`Session::stop_tree_comparison`]).
    compare_trees: bool,
    /// Paths created/deleted/renamed since the last checkpoint (see [`Op::replaced_paths`]).
    replaced: std::collections::BTreeSet<String>,
    pub divergences: Vec<Divergence>,
    /// Number of operations run.
    pub ops: usize,
    _scratch: ScratchFs,
    _tmp: tempfile::TempDir,
}

fn open_root(mp: &Path) -> Result<OwnedFd> {
    sys::open_abs(mp, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(std::io::Error::from_raw_os_error)
        .with_context(|| format!("opening {}", mp.display()))
}

impl Session {
    pub fn start(setup: Setup) -> Result<Session> {
        ensure_private_fs();
        timing("start");
        // /var/tmp: a disk filesystem with trusted.* and user.* xattrs (not tmpfs).
        let tmp = tempfile::Builder::new()
            .prefix("difftest.")
            .tempdir_in("/var/tmp")
            .context("tempdir")?;
        let mut scratch = ScratchFs::default();
        let (lower_fs, upper_fs) = match setup.backing {
            Backing::VarTmp => (tmp.path().to_path_buf(), tmp.path().to_path_buf()),
            Backing::TmpfsLowersExt4Upper => {
                let (l, u) = (tmp.path().join("tmpfs"), tmp.path().join("ext4"));
                scratch.tmpfs(&l)?;
                scratch.ext4_image(&tmp.path().join("ext4.img"), &u, 64)?;
                (l, u)
            }
        };
        let klowers = setup
            .fixture
            .materialise(&lower_fs.join("k/layers"), &[Encoding::Kernel])
            .context("kernel layers")?;
        let clowers = setup
            .fixture
            .materialise(&lower_fs.join("c/layers"), &setup.candidate_encodings)
            .context("candidate layers")?;
        let kdirs = side_dirs(&upper_fs.join("k"), klowers, &setup)?;
        let cdirs = side_dirs(&upper_fs.join("c"), clowers, &setup)?;
        let recent = now_s() - 1;
        timing("layers materialised");
        let kernel = KernelMount::mount(&kdirs)?;
        let cand = CandidateMount::mount_with(&setup.bin, &cdirs, setup.candidate_nofile)?;
        timing("mounted");
        let kroot = open_root(&kdirs.mountpoint)?;
        let croot = open_root(&cdirs.mountpoint)?;
        let watchdog = Watchdog::start(fuse_connection(&croot), cand.daemons.clone());
        Ok(Session {
            watchdog,
            kroot: Some(kroot),
            croot: Some(croot),
            kernel: Some(kernel),
            cand: Some(cand),
            lower: setup.fixture.lower_view(),
            kdirs,
            cdirs,
            setup,
            recent,
            last_trees: None,
            replaced: Default::default(),
            compare_trees: true,
            divergences: Vec::new(),
            ops: 0,
            _scratch: scratch,
            _tmp: tmp,
        })
    }

    /// Executes `op` on the kernel side, then on the candidate under the hang watchdog.
    /// `Err(EBADF)` when a side is not mounted.
    fn execute_both(&mut self, op: &Op) -> Result<(Outcome, Outcome), sys::Errno> {
        ensure_private_fs();
        self.ops += 1;
        let (Some(k), Some(c)) = (&self.kroot, &self.croot) else {
            return Err(libc::EBADF);
        };
        let ko = execute(op, k.as_fd());
        self.replaced
            .extend(op.replaced_paths().into_iter().map(str::to_string));
        self.watchdog.begin(op);
        let co = execute(op, c.as_fd());
        self.watchdog.end();
        Ok((ko, co))
    }

    /// Runs `op` on both sides; records a divergence if the outcomes differ. Returns the
    /// kernel's outcome (for cases that check the oracle did what the case intends).
    pub fn run(&mut self, op: Op) -> Outcome {
        let (ko, co) = self.execute_both(&op)?;
        let d = outcome_diff(&ko, &co, self.recent);
        if !d.is_empty() {
            self.divergences.push(Divergence {
                at: format!("op {}", self.ops),
                op: Some(op),
                kernel: Some(show(&ko)),
                candidate: Some(show(&co)),
                details: if d.len() == 1 && d[0].contains(" vs ") && !d[0].contains(':') {
                    Vec::new()
                } else {
                    d
                },
            });
        }
        ko
    }

    /// Runs `op` on both sides, comparing outcomes (see [`Session::run`]).
    pub fn op(&mut self, op: Op) {
        let _ = self.run(op);
    }

    /// After intended differences whose kernel-side undo cannot erase every trace (parent
    /// mtimes, copy-ups), whole-tree, upper and remount comparisons with the kernel stop
    /// for this session; the case then checks the candidate against itself.
    pub fn stop_tree_comparison(&mut self) {
        self.compare_trees = false;
    }

    /// Whether the "candidate" is kernel overlayfs itself (`REBASEFS_BIN=kernel`).
    pub fn is_self_check(&self) -> bool {
        self.setup.bin == Path::new(KERNEL_SELF_CHECK)
    }

    /// A snapshot of the candidate's merged tree.
    pub fn candidate_tree(&self) -> Option<Tree> {
        self.croot.as_ref().map(|c| snapshot(c.as_fd()))
    }

    /// Records a divergence found by a case itself.
    pub fn record(&mut self, at: &str, details: Vec<String>) {
        self.push(at, details);
    }

    /// Time at or after which timestamps were set by the filesystems (see
    /// [`StatInfo::diff`](super::outcome::StatInfo::diff)).
    pub fn recent(&self) -> i64 {
        self.recent
    }

    /// An intended difference (listed in the README): `op` runs on both sides; the candidate
    /// must give `candidate_expect` (`Ok(())` = any success, `Err(e)` = that errno) whatever
    /// the kernel does, and when the kernel succeeded `kernel_undo` runs on the kernel side
    /// only, so the trees stay comparable. Returns the kernel's outcome.
    pub fn run_intended(
        &mut self,
        op: Op,
        candidate_expect: Result<(), sys::Errno>,
        kernel_undo: Option<Op>,
        reason: &str,
    ) -> Outcome {
        if self.setup.bin == Path::new(KERNEL_SELF_CHECK) {
            // Kernel-vs-kernel: no intended difference applies; compare as usual and undo
            // on both sides.
            let ko = self.run(op);
            if ko.is_ok() {
                if let Some(undo) = kernel_undo {
                    self.op(undo);
                }
            }
            return ko;
        }
        let (ko, co) = self.execute_both(&op)?;
        let as_expected = match (&co, candidate_expect) {
            (Ok(_), Ok(())) => true,
            (Err(e), Err(want)) => *e == want,
            _ => false,
        };
        if ko.is_ok() {
            if let (Some(undo), Some(k)) = (&kernel_undo, &self.kroot) {
                let _ = execute(undo, k.as_fd());
            }
        }
        if !as_expected {
            self.divergences.push(Divergence {
                at: format!("op {} (intended difference: {reason})", self.ops),
                op: Some(op),
                kernel: Some(show(&ko)),
                candidate: Some(show(&co)),
                details: vec![format!("candidate should give {candidate_expect:?}")],
            });
        }
        ko
    }

    /// Records that the oracle did not behave as the scripted case assumes (a broken case,
    /// not a candidate divergence, but it must fail the run so no case passes vacuously).
    pub fn require(&mut self, cond: bool, what: &str) {
        if !cond {
            self.divergences.push(Divergence {
                at: "case precondition".into(),
                op: None,
                kernel: None,
                candidate: None,
                details: vec![format!(
                    "kernel overlay did not behave as the case assumes: {what}"
                )],
            });
        }
    }

    /// Compares both whole trees, the candidate's inode consistency, and inode stability
    /// since the previous checkpoint (kernel as oracle).
    pub fn checkpoint(&mut self, label: &str) {
        if !self.compare_trees {
            return;
        }
        let (Some(k), Some(c)) = (&self.kroot, &self.croot) else {
            return;
        };
        let kt = snapshot(k.as_fd());
        self.watchdog
            .begin(&Op::ReadDir(format!("<whole-tree snapshot {label}>")));
        let ct = snapshot(c.as_fd());
        self.watchdog.end();
        let mut details = tree_diff(&kt, &ct, self.recent);
        // The issue requires the candidate's st_ino to equal readdir's d_ino and to stay
        // stable. Kernel overlayfs itself does not always manage that (d_ino of a copied-up
        // hard link can differ), so the kernel-vs-kernel self-check skips it.
        if self.setup.bin != Path::new(KERNEL_SELF_CHECK) {
            details.extend(
                ct.inode_problems
                    .iter()
                    .map(|p| format!("candidate inode consistency: {p}")),
            );
        }
        if let Some((pk, pc)) = &self.last_trees {
            let kk = ino_kept(pk, &kt);
            let ck = ino_kept(pc, &ct);
            let replaced = |p: &str| {
                self.replaced.iter().any(|r| {
                    p == r
                        || p.strip_prefix(r.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                })
            };
            for (p, kept) in kk.iter().filter(|(p, _)| !replaced(p)) {
                if let Some(ckept) = ck.get(p) {
                    if *kept && !ckept {
                        details.push(format!(
                            "/{p}: st_ino changed since the previous checkpoint (kernel kept it)"
                        ));
                    }
                }
            }
        }
        if !details.is_empty() {
            self.divergences.push(Divergence {
                at: format!("tree checkpoint {label} (after op {})", self.ops),
                op: None,
                kernel: None,
                candidate: None,
                details,
            });
        }
        self.last_trees = Some((kt, ct));
        self.replaced.clear();
    }

    fn push(&mut self, at: &str, details: Vec<String>) {
        if !details.is_empty() {
            self.divergences.push(Divergence {
                at: at.into(),
                op: None,
                kernel: None,
                candidate: None,
                details,
            });
        }
    }

    /// Final checkpoint, unmount (the candidate daemon must exit), compare the normalised
    /// upper dirs, then remount both sides and compare the trees again. Returns all
    /// divergences of the session.
    pub fn finish(self) -> Vec<Divergence> {
        self.finish_with(true)
    }

    /// [`Session::finish`], optionally without the upper-dir and remount comparisons (the
    /// minimiser's trials skip them when the divergence it preserves is not there).
    pub fn finish_with(mut self, after_unmount_checks: bool) -> Vec<Divergence> {
        timing("finish");
        self.checkpoint("final");
        timing("final checkpoint");
        self.kroot = None;
        self.croot = None;
        let mut problems = Vec::new();
        if let Some(mut k) = self.kernel.take() {
            if let Err(e) = k.unmount() {
                problems.push(format!("kernel unmount: {e:#}"));
            }
        }
        if let Some(mut c) = self.cand.take() {
            if let Err(e) = c.unmount() {
                problems.push(format!("candidate unmount: {e:#}"));
            }
        }
        self.push("unmount", problems);
        timing("unmounted");
        if after_unmount_checks && self.compare_trees {
            if let (Some(ku), Some(cu)) = (self.kdirs.upper.clone(), self.cdirs.upper.clone()) {
                let (kn, kerr) = normalised_upper(&ku, &self.lower);
                let (cn, cerr) = normalised_upper(&cu, &self.lower);
                let mut d = upper_diff(&kn, &cn, self.recent);
                d.extend(kerr.into_iter().map(|e| format!("kernel upper: {e}")));
                d.extend(cerr.into_iter().map(|e| format!("candidate upper: {e}")));
                self.push("upper dirs after unmount", d);
            }
            timing("uppers compared");
            // Remount: what a restarted container would see.
            match (
                KernelMount::mount(&self.kdirs),
                CandidateMount::mount_with(
                    &self.setup.bin,
                    &self.cdirs,
                    self.setup.candidate_nofile,
                ),
            ) {
                (Ok(mut k), Ok(mut c)) => {
                    let d = match (
                        open_root(&self.kdirs.mountpoint),
                        open_root(&self.cdirs.mountpoint),
                    ) {
                        (Ok(kr), Ok(cr)) => {
                            let kt = snapshot(kr.as_fd());
                            let ct = snapshot(cr.as_fd());
                            tree_diff(&kt, &ct, self.recent)
                        }
                        (Err(e), _) | (_, Err(e)) => vec![format!("open remounted root: {e:#}")],
                    };
                    self.push("tree after remount", d);
                    let mut problems = Vec::new();
                    if let Err(e) = k.unmount() {
                        problems.push(format!("kernel unmount: {e:#}"));
                    }
                    if let Err(e) = c.unmount() {
                        problems.push(format!("candidate unmount after remount: {e:#}"));
                    }
                    self.push("unmount after remount", problems);
                }
                (k, c) => {
                    let mut d = Vec::new();
                    if let Err(e) = k {
                        d.push(format!("kernel remount failed: {e:#}"));
                    }
                    if let Err(e) = c {
                        d.push(format!("candidate remount failed: {e:#}"));
                    }
                    self.push("remount", d);
                }
            }
        }
        timing("remount compared");
        if self.watchdog.fired.load(Ordering::Relaxed) {
            self.push(
                "watchdog",
                vec![
                    "the candidate hung on an operation and its FUSE connection was aborted".into(),
                ],
            );
        }
        let divergences = std::mem::take(&mut self.divergences);
        drop(self);
        timing("session dropped");
        divergences
    }

    /// Non-directory entries left in the (kernel, candidate) work dirs, as paths relative
    /// to them: a failed copy-up must leave nothing half-built behind.
    pub fn work_leftovers(&self) -> (Vec<String>, Vec<String>) {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let name = format!("{rel}{}", e.file_name().to_string_lossy());
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), &format!("{name}/"), out),
                    _ => out.push(name),
                }
            }
        }
        let side = |d: &Dirs| {
            let mut out = Vec::new();
            if let Some(w) = &d.work {
                walk(w, "", &mut out);
            }
            out
        };
        (side(&self.kdirs), side(&self.cdirs))
    }

    /// The candidate's mount directories (for reports).
    pub fn candidate_dirs(&self) -> &Dirs {
        &self.cdirs
    }
}
