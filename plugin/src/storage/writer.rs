//! Writing layers and an image into containers-storage as containers-storage does.
//!
//! [`StoreWriter::lock`] takes the locks a creating containers-storage process holds, in its
//! order: `storage.lock`, then exclusive `layers.lock` and `images.lock` (fcntl record
//! locks). Layers get `overlay/<id>/{diff,link,lower,work,merged}` and an `overlay/l/<short>`
//! link, their tar-split in `overlay-layers/<id>.tar-split.gz` and a record in
//! `layers.json`; the image gets its big data under `overlay-images/<id>/` and a record in
//! `images.json`. JSON files are replaced by atomic rename and each lock then gets a new
//! last-writer token, which makes every Podman process reload them. Records are kept as raw
//! JSON so fields this crate does not know survive.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{io_err, Error, Result};
use crate::storage::{bigdata, lock};

/// A new layer record (what containers-storage's `Layer` JSON holds).
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub id: String,
    pub parent: Option<String>,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub diff_size: u64,
    /// Fields copied from another layer record with the same content (compression,
    /// uid/gid sets); `id`, `parent`, `names`, `created`, flags and big data are replaced.
    pub template: Option<Map<String, Value>>,
}

/// A new image record and its big data.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: String,
    pub top_layer: String,
    pub names: Vec<String>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
}

/// The store's write locks, held until drop.
pub struct StoreWriter {
    graphroot: PathBuf,
    native_overlay: bool,
    _storage: Option<lock::WriteLock>,
    layers_lock: lock::WriteLock,
    images_lock: lock::WriteLock,
}

impl StoreWriter {
    /// Takes the locks (waiting up to the lock timeout for other writers).
    pub fn lock(graphroot: &Path) -> Result<StoreWriter> {
        let timeout = lock::default_timeout();
        let missing = |path: PathBuf| Error::Config {
            path,
            reason: "no such lock file: not a containers-storage overlay store".into(),
        };
        let storage = lock::write_lock(&graphroot.join("storage.lock"), timeout)?;
        let layers = graphroot.join("overlay-layers/layers.lock");
        let layers_lock = lock::write_lock(&layers, timeout)?.ok_or_else(|| missing(layers))?;
        let images = graphroot.join("overlay-images/images.lock");
        let images_lock = lock::write_lock(&images, timeout)?.ok_or_else(|| missing(images))?;
        Ok(StoreWriter {
            graphroot: graphroot.to_path_buf(),
            native_overlay: !graphroot.join("overlay/.has-mount-program").exists(),
            _storage: storage,
            layers_lock,
            images_lock,
        })
    }

    /// True when the store's layers are extracted for kernel overlayfs (whiteouts are
    /// character devices), false for a mount-program store (`.wh.` files).
    pub fn native_overlay(&self) -> bool {
        self.native_overlay
    }

    fn layers_json(&self) -> PathBuf {
        self.graphroot.join("overlay-layers/layers.json")
    }

    fn images_json(&self) -> PathBuf {
        self.graphroot.join("overlay-images/images.json")
    }

    /// The raw record of layer `id`, if the store has it (complete or not).
    pub fn layer_record(&self, id: &str) -> Result<Option<Map<String, Value>>> {
        Ok(read_records(&self.layers_json())?
            .into_iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(id)))
    }

    /// `overlay/<id>`.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.graphroot.join("overlay").join(id)
    }

    /// `overlay-layers/<id>.tar-split.gz`.
    pub fn tar_split_path(&self, id: &str) -> PathBuf {
        self.graphroot
            .join("overlay-layers")
            .join(format!("{id}.tar-split.gz"))
    }

    /// Makes `overlay/<id>/` around a `diff` that `fill` creates (it gets the path, which
    /// does not exist yet), with the short link and the parent's lower list.
    pub fn create_layer_dir(
        &self,
        id: &str,
        parent: Option<&str>,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let dir = self.layer_dir(id);
        let ctx = |what: &str| format!("{what} {}", dir.display());
        if dir.exists() {
            // Left by an earlier attempt that never got its record: start over.
            std::fs::remove_dir_all(&dir).map_err(io_err(ctx("removing stale")))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(ctx("creating")))?;
        fill(&dir.join("diff"))?;
        for sub in ["work", "merged"] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join(sub))
                .map_err(io_err(ctx("creating work dirs in")))?;
        }
        if let Some(parent) = parent {
            let parent_dir = self.layer_dir(parent);
            let read = |name: &str| std::fs::read_to_string(parent_dir.join(name));
            let link = read("link")
                .map_err(io_err(format!("reading the link of parent layer {parent}")))?;
            let lower = match read("lower") {
                Ok(lower) => format!("l/{}:{}", link.trim(), lower.trim()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("l/{}", link.trim())
                }
                Err(e) => return Err(io_err(format!("reading the lowers of {parent}"))(e)),
            };
            std::fs::write(dir.join("lower"), lower).map_err(io_err(ctx("writing lower of")))?;
        } else {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join("empty"))
                .map_err(io_err(ctx("creating empty in")))?;
        }
        let short = short_link_name()?;
        std::fs::write(dir.join("link"), &short).map_err(io_err(ctx("writing link of")))?;
        let links = self.graphroot.join("overlay/l");
        std::fs::create_dir_all(&links).map_err(io_err(format!("creating {}", links.display())))?;
        std::os::unix::fs::symlink(format!("../{id}/diff"), links.join(&short))
            .map_err(io_err(format!("linking {}", links.join(&short).display())))
    }

    /// Adds layer records (bottom first; parents must exist or come earlier). Ids already
    /// recorded are left as they are.
    pub fn add_layers(&self, layers: &[NewLayer]) -> Result<usize> {
        let path = self.layers_json();
        let mut records = read_records(&path)?;
        let mut added = 0;
        for layer in layers {
            if records
                .iter()
                .any(|r| r.get("id").and_then(Value::as_str) == Some(&layer.id))
            {
                continue;
            }
            let mut record = layer.template.clone().unwrap_or_default();
            for stale in [
                "names",
                "flags",
                "big-data-names",
                "big-data-sizes",
                "big-data-digests",
                "toc-digest",
            ] {
                record.remove(stale);
            }
            record.insert("id".into(), layer.id.clone().into());
            match &layer.parent {
                Some(p) => record.insert("parent".into(), p.clone().into()),
                None => record.remove("parent"),
            };
            record.insert("created".into(), now_rfc3339().into());
            if !record.contains_key("compressed-diff-digest") {
                record.insert(
                    "compressed-diff-digest".into(),
                    layer.diff_id.clone().into(),
                );
                record.insert("compressed-size".into(), layer.diff_size.into());
            }
            record.insert("diff-digest".into(), layer.diff_id.clone().into());
            record.insert("diff-size".into(), layer.diff_size.into());
            records.push(record);
            added += 1;
        }
        if added > 0 {
            write_records(&path, &records)?;
            self.layers_lock.record_write()?;
        }
        Ok(added)
    }

    /// Writes the image's big data and record; `names` move to it from any image that had
    /// them (as `podman tag` does). An existing record with the same id gets the names.
    pub fn add_image(&self, image: &NewImage) -> Result<()> {
        let images_dir = self.graphroot.join("overlay-images");
        let dir = images_dir.join(&image.id);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let manifest_key = format!("manifest-{}", image.manifest_digest);
        let blobs: [(&str, &[u8], &str); 3] = [
            (&image.config_digest, &image.config, &image.config_digest),
            (&manifest_key, &image.manifest, &image.manifest_digest),
            ("manifest", &image.manifest, &image.manifest_digest),
        ];
        let mut names = Vec::new();
        let mut sizes = Map::new();
        let mut digests = Map::new();
        for (key, bytes, digest) in blobs {
            write_atomically(&bigdata::path(&images_dir, &image.id, key), bytes)?;
            names.push(Value::from(key));
            sizes.insert(key.into(), bytes.len().into());
            digests.insert(key.into(), digest.into());
        }
        let path = self.images_json();
        let mut records = read_records(&path)?;
        for record in records.iter_mut() {
            if let Some(Value::Array(old)) = record.get_mut("names") {
                old.retain(|n| {
                    !n.as_str()
                        .is_some_and(|n| image.names.iter().any(|w| w == n))
                });
                if old.is_empty() {
                    record.remove("names");
                }
            }
        }
        records.retain(|r| r.get("id").and_then(Value::as_str) != Some(&image.id));
        let mut record = Map::new();
        record.insert("id".into(), image.id.clone().into());
        record.insert("digest".into(), image.manifest_digest.clone().into());
        if !image.names.is_empty() {
            record.insert("names".into(), image.names.clone().into());
            record.insert("names-history".into(), image.names.clone().into());
        }
        record.insert("layer".into(), image.top_layer.clone().into());
        record.insert("metadata".into(), "{}".into());
        record.insert("big-data-names".into(), Value::Array(names));
        record.insert("big-data-sizes".into(), Value::Object(sizes));
        record.insert("big-data-digests".into(), Value::Object(digests));
        record.insert("created".into(), now_rfc3339().into());
        records.push(record);
        write_records(&path, &records)?;
        self.images_lock.record_write()
    }
}

/// RFC 3339 with nanoseconds, UTC, as Go's `time.Time` marshals.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// containers-storage's short link names: 26 characters of base32 (`A-Z2-7`).
fn short_link_name() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; 26];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(io_err("opening /dev/urandom"))?,
        &mut random,
    )
    .map_err(io_err("reading /dev/urandom"))?;
    Ok(random
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect())
}

fn read_records(path: &Path) -> Result<Vec<Map<String, Value>>> {
    let values: Vec<Value> = super::read_json_array(path)?;
    values
        .into_iter()
        .map(|v| match v {
            Value::Object(map) => Ok(map),
            _ => Err(Error::BadMetadata {
                path: path.to_path_buf(),
                reason: "a record is not an object".into(),
            }),
        })
        .collect()
}

fn write_records(path: &Path, records: &[Map<String, Value>]) -> Result<()> {
    let bytes = serde_json::to_vec(records).map_err(|e| Error::BadMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomically(path, &bytes)
}

/// Replaces `path` by a temporary file renamed over it, as `ioutils.AtomicWriteFile` does.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}.rebasefs-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(format!("writing {}", path.display()))(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one base layer (`overlay/base/{diff,link}`), as containers-storage left it.
    fn store() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for dir in [
            "overlay-layers",
            "overlay-images",
            "overlay/base/diff",
            "overlay/l",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("storage.lock"), b"").unwrap();
        std::fs::write(root.join("overlay-layers/layers.lock"), b"").unwrap();
        std::fs::write(root.join("overlay-images/images.lock"), b"").unwrap();
        std::fs::write(root.join("overlay/base/link"), "BASELINK").unwrap();
        std::fs::write(
            root.join("overlay-layers/layers.json"),
            r#"[{"id":"base","diff-digest":"sha256:aa","diff-size":3,"uidset":[0],"future-field":1}]"#,
        )
        .unwrap();
        std::fs::write(
            root.join("overlay-images/images.json"),
            r#"[{"id":"old","names":["localhost/app:new","localhost/keep:1"],"layer":"base"}]"#,
        )
        .unwrap();
        tmp
    }

    #[test]
    fn layers_and_images_as_containers_storage_writes_them() {
        let tmp = store();
        let root = tmp.path();
        let writer = StoreWriter::lock(root).unwrap();
        assert!(writer.native_overlay());
        writer
            .create_layer_dir("top", Some("base"), |diff| {
                std::fs::create_dir(diff).map_err(io_err("mkdir"))
            })
            .unwrap();
        let dir = root.join("overlay/top");
        assert_eq!(
            std::fs::read_to_string(dir.join("lower")).unwrap(),
            "l/BASELINK"
        );
        let link = std::fs::read_to_string(dir.join("link")).unwrap();
        assert_eq!(link.len(), 26);
        assert_eq!(
            std::fs::read_link(root.join("overlay/l").join(&link)).unwrap(),
            Path::new("../top/diff")
        );
        let template = writer.layer_record("base").unwrap();
        let layer = NewLayer {
            id: "top".into(),
            parent: Some("base".into()),
            diff_id: "sha256:bb".into(),
            diff_size: 7,
            template,
        };
        assert_eq!(writer.add_layers(std::slice::from_ref(&layer)).unwrap(), 1);
        assert_eq!(
            writer.add_layers(&[layer]).unwrap(),
            0,
            "ids already recorded stay"
        );
        let top = writer.layer_record("top").unwrap().unwrap();
        assert_eq!(top["parent"], "base");
        assert_eq!(top["diff-digest"], "sha256:bb");
        assert_eq!(top["future-field"], 1, "unknown fields survive");
        writer
            .add_image(&NewImage {
                id: "new".into(),
                top_layer: "top".into(),
                names: vec!["localhost/app:new".into()],
                manifest: b"{}".to_vec(),
                manifest_digest: "sha256:cc".into(),
                config: b"{}".to_vec(),
                config_digest: "sha256:dd".into(),
            })
            .unwrap();
        let images = crate::storage::images::load(&root.join("overlay-images")).unwrap();
        assert_eq!(images[0].names, ["localhost/keep:1"], "the name moved");
        assert_eq!(images[1].names, ["localhost/app:new"]);
        assert_eq!(images[1].layer.as_deref(), Some("top"));
        assert!(bigdata::path(&root.join("overlay-images"), "new", "sha256:dd").is_file());
        for lock in ["overlay-layers/layers.lock", "overlay-images/images.lock"] {
            assert_eq!(
                std::fs::read(root.join(lock)).unwrap().len(),
                64,
                "{lock} token"
            );
        }
    }
}
