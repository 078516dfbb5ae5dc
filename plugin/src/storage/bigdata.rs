//! Image big data: the manifest and the config blob, stored under `overlay-images/<id>/`,
//! read as oci-spec's image types.
//!
//! A key is its own file name when it matches `[0-9a-z.]+`, otherwise the file is `=` +
//! standard base64 of the key (containers-storage `makeBigDataBaseName`).

use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::Deserialize;

use crate::error::{io_err, Error, Result};

/// `os/arch[/variant]` of an image config.
pub fn platform(config: &ImageConfiguration) -> String {
    match config.variant() {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", config.os(), config.architecture()),
        _ => format!("{}/{}", config.os(), config.architecture()),
    }
}

/// File name of big-data `key`.
pub fn file_name(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.')
    {
        key.to_string()
    } else {
        format!("={}", base64_std(key.as_bytes()))
    }
}

/// Path of big-data `key` of image `image_id`.
pub fn path(images_dir: &Path, image_id: &str, key: &str) -> PathBuf {
    images_dir.join(image_id).join(file_name(key))
}

fn read(images_dir: &Path, image_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
    let path = path(images_dir, image_id, key);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// The image's manifest (OCI, or Docker schema 2: the same fields), `None` when the image
/// has none stored or only a Docker schema 1 manifest (no config blob, no annotations).
pub fn manifest(images_dir: &Path, image_id: &str) -> Result<Option<ImageManifest>> {
    let Some(bytes) = read(images_dir, image_id, "manifest")? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(manifest) => Ok(Some(manifest)),
        Err(_) if is_schema1(&bytes) => Ok(None),
        Err(e) => Err(Error::BadMetadata {
            path: path(images_dir, image_id, "manifest"),
            reason: e.to_string(),
        }),
    }
}

/// True for a Docker schema 1 manifest (`"schemaVersion": 1`).
fn is_schema1(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Version {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
    }
    serde_json::from_slice::<Version>(bytes).is_ok_and(|v| v.schema_version == 1)
}

/// The image's config: the manifest's `config.digest` blob, else the key `sha256:<image id>`.
pub fn config(
    images_dir: &Path,
    image_id: &str,
    manifest: Option<&ImageManifest>,
) -> Result<Option<ImageConfiguration>> {
    let key = manifest
        .map(|m| m.config().digest().to_string())
        .unwrap_or_else(|| format!("sha256:{image_id}"));
    let Some(bytes) = read(images_dir, image_id, &key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::BadMetadata {
            path: path(images_dir, image_id, &key),
            reason: e.to_string(),
        })
}

/// Standard base64 with padding (RFC 4648 §4), as Go's `base64.StdEncoding`.
pub fn base64_std(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_std(input.as_bytes()), want);
        }
    }

    #[test]
    fn big_data_names_like_containers_storage() {
        assert_eq!(file_name("manifest"), "manifest");
        // Seen in a real store: key "sha256:eafe...f415".
        assert_eq!(
            file_name("sha256:eafe4db5a2e58a1ba8a07cd7382e1745947ac2b552e58327c86cb6b866d1f415"),
            "=c2hhMjU2OmVhZmU0ZGI1YTJlNThhMWJhOGEwN2NkNzM4MmUxNzQ1OTQ3YWMyYjU1MmU1ODMyN2M4NmNiNmI4NjZkMWY0MTU="
        );
    }
}
