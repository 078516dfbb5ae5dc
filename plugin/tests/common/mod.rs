//! Shared by the real-package-manager tests: the cached fixtures of scripts/pkg-fixtures.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds (or reuses) a fixture and returns its directory.
pub fn fixture(kind: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pkg-fixtures.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(kind)
        .output()
        .expect("running scripts/pkg-fixtures.sh");
    assert!(
        out.status.success(),
        "pkg-fixtures.sh {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the fixture directory").trim())
}

/// Runs a command, requires success, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}
