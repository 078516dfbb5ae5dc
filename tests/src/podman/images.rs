//! Sample images built without a registry: a busybox-static base and layered app images.
//!
//! The app image is built FROM the base with several layers, one of which deletes and
//! overwrites base files and replaces a base directory, so its layers carry whiteouts
//! and an opaque directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where Debian's busybox-static installs its static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Tag of the base image.
pub const BASE_IMAGE: &str = "localhost/rebasefs-e2e/base:1";
/// Tag of the base plus a hand-made layer with an opaque directory and a whiteout.
pub const PATCHED_IMAGE: &str = "localhost/rebasefs-e2e/patched:1";
/// Tag of the multi-stage, multi-layer app image (FROM [`PATCHED_IMAGE`]).
pub const APP_IMAGE: &str = "localhost/rebasefs-e2e/app:1";

/// Files of the base image, relative to `/`.
pub const BASE_FILES: &[(&str, &str)] = &[
    ("etc/base-release", "base 1\n"),
    ("etc/motd", "welcome to the base image\n"),
    ("etc/remove-me.txt", "the patch layer deletes this\n"),
    ("usr/share/base/data.txt", "base data\n"),
    ("usr/share/base/keep/kept.txt", "kept by the app\n"),
    ("opt/replaced/old-1.txt", "old one\n"),
    ("opt/replaced/old-2.txt", "old two\n"),
];

/// The hand-made layer of [`PATCHED_IMAGE`], in the AUFS whiteout form that registry
/// images carry (`podman build` with a mount program writes per-file whiteouts only, so
/// an opaque directory has to be made by hand): `/opt/replaced` becomes opaque and
/// `/etc/remove-me.txt` is whited out.
pub const PATCH_LAYER_FILES: &[(&str, &str)] = &[
    ("opt/replaced/.wh..wh..opq", ""),
    ("opt/replaced/new.txt", "new\n"),
    ("etc/.wh.remove-me.txt", ""),
];

/// The app image's Containerfile: two stages, COPY layers, a RUN that deletes and
/// overwrites base files (per-file whiteouts, copy-up) and extends a base directory.
pub const APP_CONTAINERFILE: &str = r#"FROM localhost/rebasefs-e2e/patched:1 AS builder
RUN mkdir -p /out && echo "built in stage one" > /out/artifact.txt && cat /etc/base-release >> /out/artifact.txt

FROM localhost/rebasefs-e2e/patched:1
COPY app.txt /app/app.txt
COPY config/ /app/config/
RUN rm /usr/share/base/data.txt && echo "motd from the app" > /etc/motd && mkdir -p /usr/share/base/keep/more && echo more > /usr/share/base/keep/more/m.txt
COPY --from=builder /out/artifact.txt /app/artifact.txt
CMD ["/bin/sh"]
"#;

/// Build-context files of the app image.
pub const APP_CONTEXT: &[(&str, &str)] = &[
    ("app.txt", "app layer file\n"),
    ("config/app.conf", "key=value\n"),
    ("config/nested/deep.conf", "deep=1\n"),
];

/// A shell script printing the app image's merged view, and what it must print.
pub const APP_VIEW_SCRIPT: &str = "cat /etc/base-release /etc/motd /app/app.txt /app/config/app.conf \
/app/config/nested/deep.conf /app/artifact.txt /usr/share/base/keep/kept.txt /usr/share/base/keep/more/m.txt; \
ls /opt/replaced; ls /usr/share/base; test -e /etc/remove-me.txt || echo remove-me-gone; \
test -e /usr/share/base/data.txt || echo data-gone; find / -xdev -name '.wh.*' | wc -l";
pub const APP_VIEW_EXPECTED: &str = "base 1
motd from the app
app layer file
key=value
deep=1
built in stage one
base 1
kept by the app
more
new.txt
keep
remove-me-gone
data-gone
0
";

/// Writes `files` (relative path, content) below `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (relative, content) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Builds the base rootfs (busybox-static, every applet linked, [`BASE_FILES`]) as a tar.
pub fn base_rootfs_tar(work: &Path) -> Result<PathBuf> {
    let rootfs = work.join("base-rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).context("creating the base rootfs")?;
    for dir in ["tmp", "proc", "sys", "dev", "root", "var", "run"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("copying {BUSYBOX} (apt-get install busybox-static)"))?;
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("running busybox --list")?;
    if !list.status.success() {
        bail!("busybox --list failed");
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .with_context(|| format!("linking applet {applet}"))?;
    }
    write_files(&rootfs, BASE_FILES)?;
    let tar = work.join("base-rootfs.tar");
    tar_directory(&rootfs, &tar)?;
    Ok(tar)
}

/// Writes a tar of `dir`'s contents, owned by root, to `tar`.
fn tar_directory(dir: &Path, tar: &Path) -> Result<()> {
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(tar)
        .arg(".")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar of {} failed", dir.display());
    }
    Ok(())
}

/// Writes a tar of `files` (names taken literally, `.wh.` files included) to `tar`.
pub fn layer_tar(work: &Path, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let staging = work.join(format!("layer-{name}"));
    write_files(&staging, files)?;
    let tar = work.join(format!("layer-{name}.tar"));
    tar_directory(&staging, &tar)?;
    Ok(tar)
}

/// Appends the uncompressed layer `tar` to the single image of the OCI layout `layout`
/// (as written by `podman save --format oci-dir`), fixing config, manifest and index.
pub fn append_layer_to_oci_layout(layout: &Path, tar: &Path, created_by: &str) -> Result<()> {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path)?;
    let manifest_digest = json_str(&index, &["manifests", "0", "digest"])?;
    let mut manifest = read_json(&blob_path(layout, &manifest_digest)?)?;
    let config_digest = json_str(&manifest, &["config", "digest"])?;
    let mut config = read_json(&blob_path(layout, &config_digest)?)?;

    let (layer_digest, layer_size) = store_blob(layout, &std::fs::read(tar)?)?;
    json_array(&mut manifest, "layers")?.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer_digest,
        "size": layer_size,
    }));
    let created = config
        .get("created")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    json_array(
        config.get_mut("rootfs").context("config has no rootfs")?,
        "diff_ids",
    )?
    .push(serde_json::Value::String(layer_digest.clone()));
    json_array(&mut config, "history")?.push(serde_json::json!({
        "created": created,
        "created_by": created_by,
    }));

    let (config_digest, config_size) = store_blob(layout, &serde_json::to_vec(&config)?)?;
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    let (manifest_digest, manifest_size) = store_blob(layout, &serde_json::to_vec(&manifest)?)?;
    index["manifests"][0]["digest"] = manifest_digest.into();
    index["manifests"][0]["size"] = manifest_size.into();
    std::fs::write(&index_path, serde_json::to_vec(&index)?)?;
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

fn json_str(value: &serde_json::Value, keys: &[&str]) -> Result<String> {
    let mut current = value;
    for key in keys {
        current = match key.parse::<usize>() {
            Ok(i) => current.get(i),
            Err(_) => current.get(*key),
        }
        .with_context(|| format!("missing JSON field {keys:?}"))?;
    }
    current
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("JSON field {keys:?} is not a string"))
}

fn json_array<'a>(
    value: &'a mut serde_json::Value,
    key: &str,
) -> Result<&'a mut Vec<serde_json::Value>> {
    let object = value
        .as_object_mut()
        .context("JSON value is not an object")?;
    object
        .entry(key)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()
        .with_context(|| format!("JSON field {key} is not an array"))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    Ok(layout.join("blobs").join("sha256").join(hex))
}

/// Writes `bytes` as a blob; returns its digest and size. Hashes with `sha256sum`.
fn store_blob(layout: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let staging = layout.join("blob.tmp");
    std::fs::write(&staging, bytes)?;
    let output = std::process::Command::new("sha256sum")
        .arg(&staging)
        .output()
        .context("running sha256sum")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .filter(|hex| hex.len() == 64)
        .with_context(|| format!("sha256sum printed {text:?}"))?;
    let digest = format!("sha256:{hex}");
    std::fs::rename(&staging, blob_path(layout, &digest)?)?;
    Ok((digest, bytes.len() as u64))
}
