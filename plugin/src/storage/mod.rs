//! Reading a containers-storage tree without a daemon, under its read locks.
//!
//! [`Store::open`] takes shared locks on `layers.lock`, `images.lock` and
//! `containers.lock` (containers-storage's lock order), reads the three JSON files into a
//! snapshot and releases the locks. Everything else works on that snapshot.

pub mod bigdata;
pub mod config;
pub mod containers;
pub mod images;
pub mod layers;
pub mod linktree;
pub mod lock;
pub mod tarsplit;
pub mod whiteouts;
pub mod writer;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::de::DeserializeOwned;

pub use config::{Overrides, StorageConfig};
pub use containers::Container;
pub use images::Image;
pub use layers::Layer;

use crate::error::{io_err, Error, Result};

/// A consistent snapshot of a store's metadata.
#[derive(Debug)]
pub struct Store {
    pub config: StorageConfig,
    pub layers: HashMap<String, Layer>,
    pub images: Vec<Image>,
    pub containers: Vec<Container>,
}

impl Store {
    /// Reads the metadata under containers-storage's shared locks.
    pub fn open(config: StorageConfig) -> Result<Store> {
        let root = &config.graphroot;
        if !root.is_dir() {
            return Err(Error::Config {
                path: root.clone(),
                reason: "graphroot does not exist (is this the right --root?)".into(),
            });
        }
        let layers_dir = root.join("overlay-layers");
        let images_dir = root.join("overlay-images");
        let containers_dir = root.join("overlay-containers");
        let timeout = lock::default_timeout();
        let _layers_lock = lock::read_lock(&layers_dir.join("layers.lock"), timeout)?;
        let _images_lock = lock::read_lock(&images_dir.join("images.lock"), timeout)?;
        let _containers_lock = lock::read_lock(&containers_dir.join("containers.lock"), timeout)?;
        Ok(Store {
            layers: layers::load(&layers_dir)?,
            images: images::load(&images_dir)?,
            containers: containers::load(&containers_dir)?,
            config,
        })
    }

    pub fn images_dir(&self) -> PathBuf {
        self.config.graphroot.join("overlay-images")
    }

    /// The image a user named, by name or id.
    pub fn image(&self, reference: &str) -> Result<&Image> {
        images::find(&self.images, reference).ok_or_else(|| Error::UnknownImage(reference.into()))
    }

    pub fn image_by_id(&self, id: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.id == id)
    }

    /// The layers from the base up to `top` (bottom first).
    pub fn chain(&self, top: &str) -> Result<Vec<&Layer>> {
        let mut chain = Vec::new();
        let mut next = Some(top.to_string());
        while let Some(id) = next {
            let layer = self.layers.get(&id).ok_or_else(|| Error::BadMetadata {
                path: self.config.graphroot.join("overlay-layers/layers.json"),
                reason: format!("layer {id} is missing or incomplete"),
            })?;
            if chain.len() > 4096 {
                return Err(Error::BadMetadata {
                    path: self.config.graphroot.join("overlay-layers/layers.json"),
                    reason: format!("layer chain of {top} loops"),
                });
            }
            chain.push(layer);
            next = layer.parent.clone().filter(|p| !p.is_empty());
        }
        chain.reverse();
        Ok(chain)
    }

    /// An image's layers, bottom first (empty for an image without layers).
    pub fn image_chain(&self, image: &Image) -> Result<Vec<&Layer>> {
        match image.layer.as_deref() {
            Some(top) if !top.is_empty() => self.chain(top),
            _ => Ok(Vec::new()),
        }
    }

    /// `<graphroot>/overlay/<id>/diff`.
    pub fn diff_dir(&self, layer_id: &str) -> PathBuf {
        diff_dir(&self.config.graphroot, layer_id)
    }

    pub fn manifest(&self, image: &Image) -> Result<Option<ImageManifest>> {
        bigdata::manifest(&self.images_dir(), &image.id)
    }

    pub fn image_config(&self, image: &Image) -> Result<Option<ImageConfiguration>> {
        let manifest = self.manifest(image)?;
        bigdata::config(&self.images_dir(), &image.id, manifest.as_ref())
    }

    /// The container whose read-write layer is `layer_id`.
    pub fn container_by_layer(&self, layer_id: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.layer == layer_id)
    }

    pub fn container(&self, reference: &str) -> Option<&Container> {
        self.containers.iter().find(|c| {
            c.names.iter().any(|n| n == reference)
                || (reference.len() >= 3 && c.id.starts_with(reference))
        })
    }
}

/// `<graphroot>/overlay/<id>/diff`.
pub fn diff_dir(graphroot: &Path, layer_id: &str) -> PathBuf {
    graphroot.join("overlay").join(layer_id).join("diff")
}

/// The layer id and graphroot behind a mount lower/upper path, in either form c/storage uses:
/// `<graphroot>/overlay/l/<short>` (a symlink to `../<id>/diff`) or `<graphroot>/overlay/<id>/diff`.
pub fn layer_of_path(path: &Path) -> Option<(String, PathBuf)> {
    let parent = path.parent()?;
    if parent.file_name()? == "l" {
        let home = parent.parent()?;
        let target = std::fs::read_link(path).ok()?;
        let mut parts = target.components();
        // Expected target: ../<id>/diff
        if parts.next()? != Component::ParentDir {
            return None;
        }
        let id = parts.next()?.as_os_str().to_str()?.to_string();
        if parts.next()?.as_os_str() != "diff" || parts.next().is_some() || !is_layer_id(&id) {
            return None;
        }
        return Some((id, home.parent()?.to_path_buf()));
    }
    if path.file_name()? != "diff" {
        return None;
    }
    let id = parent.file_name()?.to_str()?.to_string();
    let home = parent.parent()?;
    if home.file_name()? != "overlay" || !is_layer_id(&id) {
        return None;
    }
    Some((id, home.parent()?.to_path_buf()))
}

fn is_layer_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a JSON array file; a missing file is an empty array.
pub(crate) fn read_json_array<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::BadMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_path_forms_map_to_layer_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        let home = tmp.path().join("overlay");
        std::fs::create_dir_all(home.join(&id).join("diff")).unwrap();
        std::fs::create_dir_all(home.join("l")).unwrap();
        std::os::unix::fs::symlink(format!("../{id}/diff"), home.join("l/ABCDEF")).unwrap();
        let want = Some((id.clone(), tmp.path().to_path_buf()));
        assert_eq!(layer_of_path(&home.join(&id).join("diff")), want);
        assert_eq!(layer_of_path(&home.join("l/ABCDEF")), want);
        assert_eq!(layer_of_path(Path::new("/tmp/x/diff")), None);
    }
}
