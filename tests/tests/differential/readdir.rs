//! Directory listings: after deletes, and a directory too large for one reply.

use crate::support::*;

pub fn cases() -> Vec<Case> {
    vec![
        Case::standard("readdir_after_deletes", readdir_after_deletes),
        Case {
            name: "readdir_large_dir",
            setup: large_dir_setup,
            script: readdir_large_dir,
        },
    ]
}

fn readdir_after_deletes(t: &mut Session) {
    for p in ["etc/hosts", "etc/passwd", "etc/shadow", "etc/motd"] {
        expect(t, unlink(p), Ok(()));
        expect(t, readdir("etc"), Ok(()));
    }
    expect(t, unlink("etc/group/inner"), Ok(()));
    expect(t, rmdir("etc/group"), Ok(()));
    expect(t, readdir("etc"), Ok(()));
    expect(t, rmdir("etc"), Ok(()));
    expect(t, readdir(""), Ok(()));
    expect(t, mkdir("etc", 0o755), Ok(()));
    expect(t, readdir("etc"), Ok(()));
}

/// Name of the `i`th entry of the large directory: long, so one readdir needs many
/// getdents calls (and FUSE readdir replies) and offsets are exercised.
fn big_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:04}-{}", "x".repeat(90))
}

/// The standard fixture plus a 1500-entry directory spread over all layers with whiteouts
/// in both encodings.
fn large_dir_fixture() -> Fixture {
    let mut f = standard();
    let n = f.layers.len();
    if let Some(base) = f.layers.get_mut(n - 1) {
        for i in 0..1500 {
            base.file(&format!("many/{}", big_name("e", i)), "e", 0o644);
        }
    }
    if let Some(l2) = f.layers.get_mut(2) {
        for i in (0..1500).step_by(7) {
            l2.whiteout(&format!("many/{}", big_name("e", i)));
        }
    }
    if let Some(l1) = f.layers.get_mut(1) {
        for i in 0..300 {
            l1.file(&format!("many/{}", big_name("n", i)), "n", 0o600);
        }
    }
    if let Some(l0) = f.layers.get_mut(0) {
        for i in (0..1500).step_by(11) {
            l0.whiteout(&format!("many/{}", big_name("e", i)));
        }
        for i in (0..300).step_by(13) {
            l0.whiteout(&format!("many/{}", big_name("n", i)));
        }
    }
    f
}

fn readdir_large_dir(t: &mut Session) {
    expect(t, readdir("many"), Ok(()));
    for i in (0..1500).step_by(5) {
        t.op(unlink(&format!("many/{}", big_name("e", i))));
    }
    expect(t, readdir("many"), Ok(()));
    for i in 0..200 {
        t.op(create(&format!("many/{}", big_name("u", i)), 0o644));
    }
    for i in (1..300).step_by(3) {
        t.op(rename(
            &format!("many/{}", big_name("n", i)),
            &format!("many/{}", big_name("r", i)),
            0,
        ));
    }
    expect(t, readdir("many"), Ok(()));
    t.checkpoint("large dir");
}

fn large_dir_setup() -> Setup {
    Setup::new(large_dir_fixture())
}
