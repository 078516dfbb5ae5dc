//! Real-image fixtures of the package-database rebase tests (issue 10), as Podman images.
//!
//! The expensive part (debootstrap, the real bookworm-security upgrade, the app's .debs,
//! tiny RPMs) is built once and cached by `scripts/pkg-fixtures.sh` under
//! `/var/cache/rebasefs-tests` (`REBASEFS_FIXTURE_CACHE`); this module turns a cached
//! fixture into images on a test's store: the old and new base by `podman import` of the
//! rootfs tars, the Debian app and its rebuild by `podman build --network none` installing
//! the cached .debs from a bind mount (no registry, no network), the rpm app and its
//! rebuild by `ADD`ing the layer tar the fixture recorded (what `rpm -i` changed).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::podman::{workspace_root, Podman};

/// Builds (or reuses) fixture `kind` (`deb` or `rpm`) and returns its directory.
pub fn fixture(kind: &str) -> Result<PathBuf> {
    let script = workspace_root().join("scripts/pkg-fixtures.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(kind)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "pkg-fixtures.sh {kind} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(str::trim)
        .context("pkg-fixtures.sh printed no directory")?;
    Ok(PathBuf::from(dir))
}

/// `podman import` of a fixture rootfs tar as `tag`.
pub fn import_rootfs(podman: &Podman, tar: &Path, tag: &str) -> Result<()> {
    let tar = tar.to_string_lossy().into_owned();
    podman.run(&["import", "--change", "CMD=[\"/bin/sh\"]", &tar, tag])?;
    Ok(())
}

/// The app's .debs that are dependencies (marked automatically installed afterwards, as
/// `apt-get install python3` leaves them).
fn auto_packages(debs: &Path, app_packages: &[&str]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(debs).with_context(|| format!("reading {}", debs.display()))? {
        let path = entry?.path();
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(&path)
            .arg("Package")
            .output()
            .context("running dpkg-deb")?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !app_packages.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The Containerfile of the Debian app: the cached .debs installed offline from a bind
/// mount of the build context (nothing of them stays in the image).
pub fn deb_app_containerfile(from: &str, auto: &[String]) -> String {
    format!(
        "FROM {from}\nRUN --mount=type=bind,source=debs,target=/debs \
         apt-get install -y -q --no-install-recommends /debs/*.deb && apt-mark auto {}\n",
        auto.join(" ")
    )
}

/// A fresh build context for `tag` under the store's work dir.
fn build_context(podman: &Podman, tag: &str) -> Result<PathBuf> {
    let context = podman
        .work()
        .join(format!("pkg-{}", tag.replace(['/', ':'], "_")));
    std::fs::create_dir_all(&context)?;
    Ok(context)
}

/// `podman build --network none` of `context` with `containerfile` as `tag`.
fn build_offline(podman: &Podman, context: &Path, containerfile: &str, tag: &str) -> Result<()> {
    std::fs::write(context.join("Containerfile"), containerfile)?;
    let context = context.to_string_lossy().into_owned();
    podman.run(&[
        "build",
        "--network",
        "none",
        "--quiet",
        "--tag",
        tag,
        &context,
    ])?;
    Ok(())
}

/// Builds the Debian app (python3 and its dependencies) FROM `from` as `tag`, offline.
pub fn build_deb_app(podman: &Podman, fixture: &Path, from: &str, tag: &str) -> Result<()> {
    let context = build_context(podman, tag)?;
    std::fs::create_dir_all(context.join("debs"))?;
    for entry in std::fs::read_dir(fixture.join("debs"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, context.join("debs").join(name))?;
        }
    }
    let auto = auto_packages(&fixture.join("debs"), &["python3"])?;
    build_offline(podman, &context, &deb_app_containerfile(from, &auto), tag)
}

/// Builds the rpm app FROM `from` as `tag`: the fixture's `layer` tar (`app-layer.tar`
/// for the app on the old base, `rebuild-layer.tar` for the rebuild) ADDed at `/`.
pub fn build_rpm_app(
    podman: &Podman,
    fixture: &Path,
    layer: &str,
    from: &str,
    tag: &str,
) -> Result<()> {
    let context = build_context(podman, tag)?;
    std::fs::copy(fixture.join(layer), context.join("layer.tar"))
        .with_context(|| format!("copying {layer}"))?;
    build_offline(
        podman,
        &context,
        &format!("FROM {from}\nADD layer.tar /\n"),
        tag,
    )
}

/// `dpkg-query -W` of an admin directory (a fixture root or a mounted image), one line
/// per package: name, version, status.
pub fn dpkg_versions(root: &Path) -> Result<String> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version} ${Status}\\n"])
        .output()
        .context("running dpkg-query")?;
    if !out.status.success() {
        bail!(
            "dpkg-query failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `rpm --root ROOT --dbpath /var/lib/rpm ARGS` (the fixtures' database location).
pub fn rpm_query(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm"])
        .args(args)
        .output()
        .context("running rpm")?;
    if !out.status.success() {
        bail!(
            "rpm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
