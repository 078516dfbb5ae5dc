//! End-to-end: a real Podman, runc and containers-storage using the mount program
//! (`REBASEFS_BIN`, default the workspace's rebasefs build) on throwaway stores.
//!
//! Every test builds its own store and ends with [`Podman::finish`], which fails if a mount
//! of the store or a mount-program process is left behind. Tests run one at a time (a
//! mutex): they share the kernel's FUSE and Podman's runtime state.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, ensure, Context, Result};
use rebasefs_tests::podman::images::{APP_IMAGE, APP_VIEW_EXPECTED, APP_VIEW_SCRIPT};
use rebasefs_tests::podman::Podman;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A store with the sample images built.
fn store_with_images() -> Result<Podman> {
    let podman = Podman::new()?;
    podman.build_sample_images()?;
    Ok(podman)
}

/// `podman exec CONTAINER sh -c SCRIPT`, stdout.
fn exec(podman: &Podman, container: &str, script: &str) -> Result<String> {
    podman.run(&["exec", container, "sh", "-c", script])
}

/// Starts a detached container sleeping forever; returns its name.
fn start_sleeper(podman: &Podman, name: &str) -> Result<String> {
    podman.run(&[
        "run", "--detach", "--name", name, APP_IMAGE, "sleep", "100000",
    ])?;
    Ok(name.to_string())
}

#[test]
fn run_reads_the_merged_view_of_all_layers() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let view = podman.run(&["run", "--rm", APP_IMAGE, "sh", "-c", APP_VIEW_SCRIPT])?;
    assert_eq!(view, APP_VIEW_EXPECTED);
    // The stack really holds both whiteout forms the mount program must interpret.
    ensure!(
        !podman.layer_files_named(".wh..wh..opq")?.is_empty(),
        "no opaque marker in any layer"
    );
    ensure!(
        !podman.layer_files_named(".wh.remove-me.txt")?.is_empty(),
        "no whiteout of remove-me.txt in any layer"
    );
    ensure!(
        !podman.layer_files_named(".wh.data.txt")?.is_empty(),
        "the RUN layer has no whiteout of data.txt"
    );
    ensure!(
        podman.root().join("overlay/.has-mount-program").exists(),
        "containers-storage did not record the mount program"
    );
    podman.finish()
}

#[test]
fn run_writes_deletes_and_creates() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let script = "set -e
        echo hello > /tmp/new.txt
        mkdir -p /data/sub && echo deep > /data/sub/f
        rm /usr/share/base/keep/kept.txt
        test ! -e /usr/share/base/keep/kept.txt
        echo appended >> /etc/base-release
        mv /app/app.txt /app/moved.txt
        rm -r /opt/replaced
        ln -s /etc/motd /link
        cat /tmp/new.txt /data/sub/f /etc/base-release /app/moved.txt /link
        ls /usr/share/base/keep; ls /app; test ! -e /opt/replaced && echo replaced-gone";
    let out = podman.run(&["run", "--name", "writer", APP_IMAGE, "sh", "-c", script])?;
    assert_eq!(
        out,
        "hello\ndeep\nbase 1\nappended\napp layer file\nmotd from the app\nmore\nartifact.txt\nconfig\nmoved.txt\nreplaced-gone\n"
    );
    // The writes landed in the container's upper layer, deletions as whiteouts.
    let upper = podman.container_dir("writer", "UpperDir")?;
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/new.txt"))?,
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/base-release"))?,
        "base 1\nappended\n"
    );
    ensure!(
        is_whiteout(&upper, "usr/share/base/keep/kept.txt"),
        "no whiteout for kept.txt in the upper layer"
    );
    ensure!(
        is_whiteout(&upper, "app/app.txt"),
        "no whiteout for the renamed app.txt"
    );
    // The image itself is untouched.
    let fresh = podman.run(&["run", "--rm", APP_IMAGE, "sh", "-c", APP_VIEW_SCRIPT])?;
    assert_eq!(fresh, APP_VIEW_EXPECTED);
    podman.finish()
}

/// True when `relative` is deleted in the upper dir `upper` in either whiteout encoding.
fn is_whiteout(upper: &Path, relative: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let path = upper.join(relative);
    let char_00 = std::fs::symlink_metadata(&path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false);
    let aufs = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(format!(".wh.{}", name.to_string_lossy())).exists(),
        _ => false,
    };
    char_00 || aufs
}

#[test]
fn container_rootfs_is_served_by_the_mount_program() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let name = start_sleeper(&podman, "served")?;
    let merged = podman.container_dir(&name, "MergedDir")?;
    let entry = podman.assert_served_by_mount_program(&merged)?;
    // As seen from the host the merged dir shows the image.
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/motd"))?,
        "motd from the app\n"
    );
    ensure!(!merged.join("etc/remove-me.txt").exists());
    ensure!(
        !merged.join("etc/.wh.remove-me.txt").exists(),
        "whiteout file visible: {}",
        entry.line
    );
    podman.run(&["stop", "--time", "0", &name])?;
    podman.wait_fuse_mounts_gone().context("stop")?;
    podman.finish()
}

#[test]
fn stop_and_start_keep_the_container_writes() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let name = start_sleeper(&podman, "persist")?;
    exec(
        &podman,
        &name,
        "echo kept > /root/state.txt && rm /etc/motd && echo changed > /app/config/app.conf",
    )?;
    podman.run(&["stop", "--time", "0", &name])?;
    podman.run(&["start", &name])?;
    let out = exec(
        &podman,
        &name,
        "cat /root/state.txt /app/config/app.conf; test -e /etc/motd || echo motd-gone",
    )?;
    assert_eq!(out, "kept\nchanged\nmotd-gone\n");
    podman.run(&["restart", "--time", "0", &name])?;
    let out = exec(&podman, &name, "cat /root/state.txt")?;
    assert_eq!(out, "kept\n");
    podman.finish()
}

#[test]
fn exec_and_cp_in_and_out() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let name = start_sleeper(&podman, "copier")?;
    let host_in = podman.work().join("to-container.txt");
    std::fs::write(&host_in, "from the host\n")?;
    let host_in = host_in.to_string_lossy().into_owned();
    podman.run(&["cp", &host_in, &format!("{name}:/app/from-host.txt")])?;
    // Over an existing lower file too (copy-up through cp).
    podman.run(&["cp", &host_in, &format!("{name}:/etc/base-release")])?;
    let out = exec(&podman, &name, "cat /app/from-host.txt /etc/base-release")?;
    assert_eq!(out, "from the host\nfrom the host\n");

    exec(
        &podman,
        &name,
        "mkdir /out && echo made inside > /out/made.txt",
    )?;
    let host_out = podman.work().join("out");
    let host_out_arg = host_out.to_string_lossy().into_owned();
    podman.run(&["cp", &format!("{name}:/out"), &host_out_arg])?;
    assert_eq!(
        std::fs::read_to_string(host_out.join("made.txt"))?,
        "made inside\n"
    );
    // A lower-layer file copied out of a running container.
    let conf_out = podman.work().join("deep.conf");
    let conf_out_arg = conf_out.to_string_lossy().into_owned();
    podman.run(&[
        "cp",
        &format!("{name}:/app/config/nested/deep.conf"),
        &conf_out_arg,
    ])?;
    assert_eq!(std::fs::read_to_string(&conf_out)?, "deep=1\n");
    // cp also works on a stopped container (podman mounts it itself).
    podman.run(&["stop", "--time", "0", &name])?;
    let stopped_out = podman.work().join("stopped-motd");
    let stopped_out_arg = stopped_out.to_string_lossy().into_owned();
    podman.run(&["cp", &format!("{name}:/etc/motd"), &stopped_out_arg])?;
    assert_eq!(
        std::fs::read_to_string(&stopped_out)?,
        "motd from the app\n"
    );
    podman.finish()
}

#[test]
fn commit_captures_the_container_diff() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    podman.run(&[
        "run",
        "--name",
        "tocommit",
        APP_IMAGE,
        "sh",
        "-c",
        "echo committed > /app/committed.txt && rm /usr/share/base/keep/kept.txt && echo v2 > /etc/base-release",
    ])?;
    podman.run(&[
        "commit",
        "--quiet",
        "tocommit",
        "localhost/rebasefs-e2e/committed:1",
    ])?;
    let out = podman.run(&[
        "run",
        "--rm",
        "localhost/rebasefs-e2e/committed:1",
        "sh",
        "-c",
        "cat /app/committed.txt /etc/base-release /etc/motd; test -e /usr/share/base/keep/kept.txt || echo kept-gone; ls /opt/replaced",
    ])?;
    assert_eq!(
        out,
        "committed\nv2\nmotd from the app\nkept-gone\nnew.txt\n"
    );
    ensure!(
        !podman.layer_files_named(".wh.kept.txt")?.is_empty(),
        "the committed layer has no whiteout for kept.txt"
    );
    podman.finish()
}

#[test]
fn image_mount_is_read_only_without_upperdir() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let out = podman.run(&["image", "mount", APP_IMAGE])?;
    let merged = Path::new(out.trim()).to_path_buf();
    podman.assert_served_by_mount_program(&merged)?;
    let program = podman
        .mount_program_processes()
        .into_iter()
        .find(|p| p.cmdline.contains(merged.to_string_lossy().as_ref()))
        .context("no mount program for the image mount")?;
    ensure!(
        !program.cmdline.contains("upperdir="),
        "image mount was given an upperdir: {}",
        program.cmdline
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("app/artifact.txt"))?,
        "built in stage one\nbase 1\n"
    );
    ensure!(!merged.join("etc/remove-me.txt").exists());
    let listing: Vec<String> = std::fs::read_dir(merged.join("opt/replaced"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(listing, ["new.txt"]);
    match std::fs::write(merged.join("etc/motd"), "nope") {
        Ok(()) => bail!("writing into a read-only image mount succeeded"),
        Err(error) => ensure!(
            matches!(
                error.raw_os_error(),
                Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::EACCES)
            ),
            "unexpected error writing a read-only mount: {error}"
        ),
    }
    ensure!(std::fs::create_dir(merged.join("newdir")).is_err());
    podman.run(&["image", "umount", APP_IMAGE])?;
    podman.wait_fuse_mounts_gone().context("image umount")?;
    podman.finish()
}

#[test]
fn build_on_top_of_the_app_image() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    // Another multi-stage build whose layers sit on the mount-program stack.
    let containerfile = "FROM localhost/rebasefs-e2e/app:1 AS stage
RUN cat /app/artifact.txt /etc/motd > /combined.txt && rm /app/config/app.conf
FROM localhost/rebasefs-e2e/app:1
COPY --from=stage /combined.txt /app/combined.txt
RUN rm -r /app/config && mkdir /app/config && echo fresh > /app/config/fresh.conf
";
    podman.build("localhost/rebasefs-e2e/second:1", containerfile, &[])?;
    let out = podman.run(&[
        "run",
        "--rm",
        "localhost/rebasefs-e2e/second:1",
        "sh",
        "-c",
        "cat /app/combined.txt; ls /app/config; cat /app/config/fresh.conf",
    ])?;
    assert_eq!(
        out,
        "built in stage one\nbase 1\nmotd from the app\nfresh.conf\nfresh\n"
    );
    podman.finish()
}

#[test]
fn several_containers_of_one_image_at_once() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let names = ["many-1", "many-2", "many-3"];
    for name in names {
        start_sleeper(&podman, name)?;
        exec(
            &podman,
            name,
            &format!("echo {name} > /root/who && rm /etc/motd"),
        )?;
    }
    let merged: Vec<_> = names
        .iter()
        .map(|name| podman.container_dir(name, "MergedDir"))
        .collect::<Result<_>>()?;
    for path in &merged {
        podman.assert_served_by_mount_program(path)?;
    }
    ensure!(
        podman.mount_program_processes().len() >= names.len(),
        "expected one mount program per container: {:?}",
        podman.mount_program_processes()
    );
    for name in names {
        let out = exec(
            &podman,
            name,
            "cat /root/who; test -e /etc/motd || echo motd-gone",
        )?;
        assert_eq!(out, format!("{name}\nmotd-gone\n"));
    }
    // A fresh container still sees the image's motd: the others' deletes are private.
    let out = podman.run(&["run", "--rm", APP_IMAGE, "cat", "/etc/motd"])?;
    assert_eq!(out, "motd from the app\n");
    podman.finish()
}

#[test]
fn rm_force_while_running_cleans_up() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    let name = start_sleeper(&podman, "doomed")?;
    exec(&podman, &name, "echo busy > /root/busy")?;
    let merged = podman.container_dir(&name, "MergedDir")?;
    podman.assert_served_by_mount_program(&merged)?;
    podman.run(&["rm", "--force", "--time", "0", &name])?;
    podman.wait_fuse_mounts_gone().context("rm -f")?;
    let leftover =
        rebasefs_tests::podman::host::wait_until_empty(std::time::Duration::from_secs(10), || {
            podman.mount_program_processes()
        });
    ensure!(
        leftover.is_empty(),
        "rm -f left mount programs: {leftover:?}"
    );
    let containers = podman.run(&["ps", "--all", "--quiet"])?;
    ensure!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
    podman.finish()
}

#[test]
fn container_mount_and_export_read_through_the_mount_program() -> Result<()> {
    let _serial = serial();
    let podman = store_with_images()?;
    podman.run(&["create", "--name", "created", APP_IMAGE, "true"])?;
    let out = podman.run(&["mount", "created"])?;
    let merged = Path::new(out.trim()).to_path_buf();
    podman.assert_served_by_mount_program(&merged)?;
    assert_eq!(
        std::fs::read_to_string(merged.join("app/config/app.conf"))?,
        "key=value\n"
    );
    // A host-side write through `podman mount` lands in the container.
    std::fs::write(
        merged.join("root/from-host-mount.txt"),
        "via podman mount\n",
    )?;
    podman.run(&["umount", "created"])?;
    podman.wait_fuse_mounts_gone().context("podman umount")?;
    let tar = podman.work().join("export.tar");
    let tar_arg = tar.to_string_lossy().into_owned();
    podman.run(&["export", "--output", &tar_arg, "created"])?;
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .context("listing the export")?;
    let listing = String::from_utf8_lossy(&listing.stdout);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .collect();
    for present in [
        "app/app.txt",
        "app/artifact.txt",
        "opt/replaced/new.txt",
        "root/from-host-mount.txt",
        "bin/busybox",
    ] {
        ensure!(names.contains(&present), "export lacks {present}");
    }
    for absent in [
        "etc/remove-me.txt",
        "usr/share/base/data.txt",
        "opt/replaced/old-1.txt",
    ] {
        ensure!(!names.contains(&absent), "export has deleted {absent}");
    }
    ensure!(
        !names.iter().any(|n| n.contains(".wh.")),
        "export shows whiteout files"
    );
    podman.finish()
}
