//! Resource limits: many nodes under a small descriptor limit.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "many_nodes_few_fds",
        setup: many_nodes_setup,
        script: many_nodes_few_fds,
    }]
}

/// RLIMIT_NOFILE of the mount program in `many_nodes_few_fds`: far below the number of
/// nodes the case makes the kernel look up.
const MANY_NODES_NOFILE: u64 = 64;

/// The standard fixture plus 3,600 files in 400 directories over two layers.
fn many_nodes_fixture() -> Fixture {
    let mut f = standard();
    let n = f.layers.len();
    if let Some(base) = f.layers.get_mut(n - 1) {
        for d in 0..400 {
            for i in 0..8 {
                base.file(&format!("wide/d{d:03}/f{i}"), "w", 0o644);
            }
        }
    }
    if let Some(l0) = f.layers.get_mut(0) {
        for d in (0..400).step_by(2) {
            for i in 0..2 {
                l0.file(&format!("wide/d{d:03}/t{i}"), "t", 0o644);
            }
        }
    }
    f
}

/// A daemon that keeps a descriptor per node runs out (EMFILE) on real images; here the
/// mount program gets 64 descriptors and the tree has about 4,000 nodes, all looked up,
/// read and stat'ed by the whole-tree checks (twice, plus after remount), with copy-ups:
/// almost every resolution is evicted and redone from its parent.
fn many_nodes_few_fds(t: &mut Session) {
    t.checkpoint("all nodes once");
    for d in (0..400).step_by(37) {
        expect(t, chmod(&format!("wide/d{d:03}/f1"), 0o600), Ok(()));
        expect(
            t,
            write(&format!("wide/d{d:03}/f2"), WriteAt::Append, 3, b'm'),
            Ok(()),
        );
    }
    for d in (0..400).step_by(3) {
        expect(t, read(&format!("wide/d{d:03}/f0")), Ok(()));
    }
}

/// The mount program limited to [`MANY_NODES_NOFILE`] descriptors.
fn many_nodes_setup() -> Setup {
    Setup {
        candidate_nofile: Some(MANY_NODES_NOFILE),
        ..Setup::new(many_nodes_fixture())
    }
}
