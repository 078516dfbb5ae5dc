//! What the fault, concurrency and hostile-input suites share: their seed, which whole stack
//! a story container runs on, and the repository check they require after every fault.

use anyhow::{bail, ensure, Result};

use crate::podman::Podman;
use crate::rebase_story::Cli;

/// `REBASEFS_FAULT_SEED`, else time-based; printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("REBASEFS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("REBASEFS_FAULT_SEED={seed}");
    seed
}

/// What a story app container reports about its stack: base release, base-2-only and
/// base-1-only files, base 2's system user, the app's file and user.
pub const STACK_PROBE: &str = "cat /etc/base-release; test -e /etc/new-in-base-2 && echo new; \
test -e /etc/removed-in-base-2 && echo removed; grep -c syslog /etc/passwd; cat /app/app.txt; \
grep -c appuser /etc/passwd";
const ON_BASE_1: &str = "base 1\nremoved\n0\napp payload\n1\n";
const ON_BASE_2: &str = "base 2\nnew\n1\napp payload\n1\n";

/// The base (1 or 2) that [`STACK_PROBE`]'s output `out` of container `name` shows,
/// failing on anything but a whole stack (the merged passwd included).
pub fn base_shown(name: &str, out: &str) -> Result<u32> {
    match out {
        ON_BASE_1 => Ok(1),
        ON_BASE_2 => Ok(2),
        other => bail!("{name} serves half a stack: {other:?}"),
    }
}

/// Which base running container `name` is on.
pub fn base_of(podman: &Podman, name: &str) -> Result<u32> {
    let out = podman.run(&["exec", name, "sh", "-c", STACK_PROBE])?;
    base_shown(name, &out)
}

/// `rebasefs check` must accept the repository.
pub fn check_ok(cli: &Cli<'_>, when: &str) -> Result<()> {
    let check = cli.json(&["check"])?;
    ensure!(check["ok"] == true, "{when}: rebasefs check: {check}");
    Ok(())
}
