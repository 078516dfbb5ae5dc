//! The real-image fixtures of issue 10 as Podman images on a rebasefs store: the Debian
//! old/new base (debootstrap + the real bookworm-security upgrade) and the python3 app
//! built offline on each, the rpm bases and app; each image must hold what the cached
//! fixture root holds (the phase-2 rebase tests compare rebased containers with these).

use std::sync::Mutex;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use rebasefs_tests::pkg_fixtures::{
    build_deb_app, build_rpm_app, dpkg_versions, fixture, import_rootfs, rpm_query,
};
use rebasefs_tests::podman::Podman;

static SERIAL: Mutex<()> = Mutex::new(());

const QUERY: &str = "dpkg-query -W -f '${Package} ${Version} ${Status}\\n'";

#[test]
fn debian_fixture_images() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let fx = fixture("deb")?;
    eprintln!("deb fixture ready in {:?}", started.elapsed());
    let podman = Podman::new()?;
    let step = Instant::now();
    import_rootfs(
        &podman,
        &fx.join("old-base.tar"),
        "localhost/pkgdb/debian:1",
    )?;
    import_rootfs(
        &podman,
        &fx.join("new-base.tar"),
        "localhost/pkgdb/debian:2",
    )?;
    eprintln!("imports: {:?}", step.elapsed());
    let step = Instant::now();
    build_deb_app(
        &podman,
        &fx,
        "localhost/pkgdb/debian:1",
        "localhost/pkgdb/app:1",
    )?;
    eprintln!("app build: {:?}", step.elapsed());
    let step = Instant::now();
    build_deb_app(
        &podman,
        &fx,
        "localhost/pkgdb/debian:2",
        "localhost/pkgdb/app-rebuild:1",
    )?;
    eprintln!("rebuild build: {:?}", step.elapsed());
    for (image, root) in [
        ("localhost/pkgdb/app:1", "app"),
        ("localhost/pkgdb/app-rebuild:1", "rebuild"),
        ("localhost/pkgdb/debian:2", "new-base"),
    ] {
        let inside = podman.run(&["run", "--rm", image, "sh", "-c", QUERY])?;
        ensure!(
            inside == dpkg_versions(&fx.join(root))?,
            "{image} does not hold the packages of the fixture's {root}"
        );
    }
    let audit = podman.run(&["run", "--rm", "localhost/pkgdb/app:1", "sh", "-c",
        "dpkg --audit && apt-get check -q >/dev/null && python3 -c 'import zlib; print(zlib.ZLIB_RUNTIME_VERSION)'"])?;
    ensure!(audit.trim() == "1.2.13", "app image: {audit:?}");
    podman.finish()?;
    eprintln!("deb fixture images total: {:?}", started.elapsed());
    Ok(())
}

#[test]
fn rpm_fixture_images() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let fx = fixture("rpm")?;
    let podman = Podman::new()?;
    import_rootfs(
        &podman,
        &fx.join("old-base.tar"),
        "localhost/pkgdb/rpmbase:1",
    )?;
    import_rootfs(
        &podman,
        &fx.join("new-base.tar"),
        "localhost/pkgdb/rpmbase:2",
    )?;
    build_rpm_app(
        &podman,
        &fx,
        "app-layer.tar",
        "localhost/pkgdb/rpmbase:1",
        "localhost/pkgdb/rpmapp:1",
    )?;
    build_rpm_app(
        &podman,
        &fx,
        "rebuild-layer.tar",
        "localhost/pkgdb/rpmbase:2",
        "localhost/pkgdb/rpmapp-rebuild:1",
    )?;
    for (image, root) in [
        ("localhost/pkgdb/rpmapp:1", "app"),
        ("localhost/pkgdb/rpmapp-rebuild:1", "rebuild"),
    ] {
        let mnt = podman.run(&["image", "mount", image])?;
        let mnt = std::path::PathBuf::from(mnt.trim());
        let got = rpm_query(&mnt, &["-qa"]);
        podman.run(&["image", "umount", image])?;
        let got = got.with_context(|| format!("rpm -qa in {image}"))?;
        ensure!(
            got == rpm_query(&fx.join(root), &["-qa"])?,
            "{image}: {got}"
        );
    }
    podman.finish()
}
