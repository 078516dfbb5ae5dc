//! `rebasefs commit`: a rebase written into containers-storage as a real image.
//!
//! The rebase engine ([`crate::rebase::rebase`], not assigning) decides the stack; then,
//! under containers-storage's locks ([`StoreWriter`]), each app layer gets the id
//! containers-storage gives it on the new parent chain, its diff tree hard-linked and its
//! tar-split linked (content and DiffID unchanged), the resolution becomes one more small
//! layer (tar built once for its DiffID and tar-split), and the image gets a config whose
//! `rootfs.diff_ids` and `history` describe the new chain, an OCI manifest with uncompressed
//! layer descriptors and base annotations naming the new base, and the requested name.
//! Podman then runs, saves and pushes it like any image it built itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageManifestBuilder, MediaType};
use serde::Serialize;
use serde_json::{json, Value};

use crate::base::{ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME};
use crate::chain;
use crate::error::{io_err, Error, Result};
use crate::rebase::{self, Options, Progress, RebaseReport};
use crate::storage::writer::{NewImage, NewLayer, StoreWriter};
use crate::storage::{images, linktree, tarsplit, Store};

/// What to commit.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// The rebase (its `assign` and `dry_run` are ignored: a commit assigns nothing).
    pub rebase: Options,
    /// The name the new image gets (`localhost/` is added to a name without a registry).
    pub tag: String,
}

/// One layer of the committed image.
#[derive(Debug, Clone, Serialize)]
pub struct CommittedLayer {
    pub id: String,
    pub diff_id: String,
    /// `base`, `app` or `resolution`.
    pub kind: &'static str,
    /// The layer whose content it shares (app layers).
    pub source: Option<String>,
    /// False when the store had it already.
    pub created: bool,
}

/// The outcome of a commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitReport {
    pub name: String,
    pub image_id: String,
    pub manifest_digest: String,
    pub layers: Vec<CommittedLayer>,
    pub files_linked: u64,
    pub rebase: RebaseReport,
    pub elapsed_ms: u128,
}

/// The name Podman would store `tag` under.
pub fn storage_name(tag: &str) -> String {
    let mut names = images::candidate_names(tag);
    if names.len() > 1 {
        names.swap_remove(1)
    } else {
        names.swap_remove(0)
    }
}

/// Rebases and writes the result as image `opts.tag`.
pub fn commit(
    store: &Store,
    opts: &CommitOptions,
    progress: &dyn Progress,
) -> Result<CommitReport> {
    let started = Instant::now();
    let rebase_opts = Options {
        assign: false,
        dry_run: false,
        ..opts.rebase.clone()
    };
    let report = rebase::rebase(store, &rebase_opts, progress)?;
    let app_image = store.image(&report.image_id)?;
    let new_base = store
        .image_by_id(&report.new_base_id)
        .ok_or_else(|| Error::UnknownImage(report.new_base_id.clone()))?;
    let base_chain = store.image_chain(new_base)?;
    // The engine serves the resolution (when there is one) above the app layers: the first
    // lower of the report is then its directory.
    let resolution_dir = (report.lowers.len() > report.layers.len() + base_chain.len())
        .then(|| report.lowers[0].clone());

    let graphroot = &store.config.graphroot;
    let writer = StoreWriter::lock(graphroot)?;
    let mut layers: Vec<CommittedLayer> = base_chain
        .iter()
        .map(|l| {
            Ok(CommittedLayer {
                id: l.id.clone(),
                diff_id: format!("sha256:{}", diff_id_hex(graphroot, l)?),
                kind: "base",
                source: None,
                created: false,
            })
        })
        .collect::<Result<_>>()?;
    let mut sizes: Vec<u64> = base_chain
        .iter()
        .map(|l| l.diff_size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
        .collect();
    let mut records = Vec::new();
    let mut files_linked = 0;
    let mut parent = base_chain.last().map(|l| l.id.clone());
    progress.phase("writing layers", report.layers.len() as u64);
    for app in &report.layers {
        let source = store
            .layers
            .get(&app.source)
            .ok_or_else(|| Error::BadMetadata {
                path: graphroot.join("overlay-layers/layers.json"),
                reason: format!("app layer {} is gone", app.source),
            })?;
        let diff_id = format!("sha256:{}", diff_id_hex(graphroot, source)?);
        let size = source
            .diff_size
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0);
        let exists = writer.layer_record(&app.rebased_id)?.is_some();
        if !exists {
            let src_diff = store.diff_dir(&app.source);
            writer.create_layer_dir(&app.rebased_id, parent.as_deref(), |diff| {
                files_linked += linktree::clone_tree(&src_diff, diff)?.links;
                Ok(())
            })?;
            link_tar_split(
                &writer.tar_split_path(&app.source),
                &writer.tar_split_path(&app.rebased_id),
            )?;
            records.push(NewLayer {
                id: app.rebased_id.clone(),
                parent: parent.clone(),
                diff_id: diff_id.clone(),
                diff_size: size,
                template: writer.layer_record(&app.source)?,
            });
        }
        layers.push(CommittedLayer {
            id: app.rebased_id.clone(),
            diff_id,
            kind: "app",
            source: Some(app.source.clone()),
            created: !exists,
        });
        sizes.push(size);
        parent = Some(app.rebased_id.clone());
        progress.inc();
    }
    progress.done();
    if let Some(dir) = &resolution_dir {
        progress.phase("writing the resolution layer", 0);
        let tar = tarsplit::tar_directory(dir)?;
        let id = chain::layer_id(parent.as_deref(), &tar.diff_id);
        let exists = writer.layer_record(&id)?.is_some();
        if !exists {
            let native = writer.native_overlay();
            writer.create_layer_dir(&id, parent.as_deref(), |diff| {
                files_linked += linktree::clone_tree(dir, diff)?.links;
                if native {
                    crate::storage::whiteouts::aufs_to_native(diff)?;
                }
                Ok(())
            })?;
            let split = tarsplit::tar_split(&tar.bytes)?;
            crate::storage::writer::write_atomically(&writer.tar_split_path(&id), &split)?;
            records.push(NewLayer {
                id: id.clone(),
                parent: parent.clone(),
                diff_id: tar.diff_id.clone(),
                diff_size: tar.bytes.len() as u64,
                template: None,
            });
        }
        layers.push(CommittedLayer {
            id: id.clone(),
            diff_id: tar.diff_id.clone(),
            kind: "resolution",
            source: None,
            created: !exists,
        });
        sizes.push(tar.bytes.len() as u64);
        progress.done();
    }
    writer.add_layers(&records)?;

    let config = image_config(store, &report, &layers)?;
    let config_bytes = serde_json::to_vec(&config).map_err(|e| bad_json(graphroot, e))?;
    let config_digest = format!("sha256:{}", chain::sha256_hex(&config_bytes));
    let base_digest = new_base.digest.clone().unwrap_or_default();
    let manifest = manifest_bytes(
        &config_digest,
        config_bytes.len(),
        &layers,
        &sizes,
        &report.new_base,
        &base_digest,
    )?;
    let manifest_digest = format!("sha256:{}", chain::sha256_hex(&manifest));
    let name = storage_name(&opts.tag);
    let top = layers.last().map(|l| l.id.clone()).unwrap_or_default();
    writer.add_image(&NewImage {
        id: chain::hex_of(&config_digest).to_string(),
        top_layer: top,
        names: vec![name.clone()],
        manifest,
        manifest_digest: manifest_digest.clone(),
        config: config_bytes,
        config_digest: config_digest.clone(),
    })?;
    tracing::info!(image = %app_image.display_name(), name, "committed");
    Ok(CommitReport {
        name,
        image_id: chain::hex_of(&config_digest).to_string(),
        manifest_digest,
        layers,
        files_linked,
        rebase: report,
        elapsed_ms: started.elapsed().as_millis(),
    })
}

fn bad_json(graphroot: &Path, e: serde_json::Error) -> Error {
    Error::BadMetadata {
        path: graphroot.join("overlay-images"),
        reason: e.to_string(),
    }
}

/// `overlay-layers/<id>.tar-split.gz` of the rebased layer: the source's, linked.
fn link_tar_split(source: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        std::fs::remove_file(target).map_err(io_err(format!("removing {}", target.display())))?;
    }
    std::fs::hard_link(source, target).map_err(io_err(format!(
        "linking {} to {}",
        source.display(),
        target.display()
    )))
}

/// The app's config with the new chain: new base history + the app's own history + the
/// resolution's entry; `rootfs.diff_ids` of every layer.
fn image_config(store: &Store, report: &RebaseReport, layers: &[CommittedLayer]) -> Result<Value> {
    let raw = |id: &str| -> Result<Value> {
        let image = store
            .image_by_id(id)
            .ok_or_else(|| Error::UnknownImage(id.to_string()))?;
        let config = store
            .image_config(image)?
            .ok_or_else(|| Error::BadMetadata {
                path: store.images_dir().join(id),
                reason: "the image has no config".into(),
            })?;
        serde_json::to_value(config).map_err(|e| bad_json(&store.config.graphroot, e))
    };
    let mut config = raw(&report.image_id)?;
    let history_of = |v: &Value| -> Vec<Value> {
        v.get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let count = |kind: &str| layers.iter().filter(|l| l.kind == kind).count();
    let base_history = fit_history(
        history_of(&raw(&report.new_base_id)?),
        count("base"),
        &report.new_base,
    );
    let app_history = history_of(&config);
    let old_base_history = history_of(&raw(&report.old_base_id)?);
    let skip = if !old_base_history.is_empty() && app_history.starts_with(&old_base_history) {
        old_base_history.len()
    } else {
        skip_layers(
            &app_history,
            layers.len() - count("app") - count("resolution"),
        )
    };
    let mut history = base_history;
    history.extend(fit_history(
        app_history.get(skip..).unwrap_or_default().to_vec(),
        count("app"),
        &report.image,
    ));
    let now = crate::storage::writer::now_rfc3339();
    if count("resolution") > 0 {
        history.push(json!({
            "created": now,
            "created_by": format!("rebasefs commit: conflict resolution (policy {})", report.policy),
            "comment": format!("rebased from {} onto {}", report.old_base, report.new_base),
        }));
    }
    let diff_ids: Vec<Value> = layers.iter().map(|l| l.diff_id.clone().into()).collect();
    let fields = config.as_object_mut().ok_or_else(|| Error::BadMetadata {
        path: store.images_dir().join(&report.image_id),
        reason: "the config is not an object".into(),
    })?;
    fields.insert("created".into(), now.into());
    fields.insert("history".into(), Value::Array(history));
    fields.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    Ok(config)
}

fn is_empty_layer(entry: &Value) -> bool {
    entry
        .get("empty_layer")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// How many history entries cover the first `layers` layers (for a base whose history is
/// not a prefix of the image's; entries without a layer after its last one count as the app's).
fn skip_layers(history: &[Value], layers: usize) -> usize {
    let mut seen = 0;
    for (index, entry) in history.iter().enumerate() {
        if seen == layers {
            return index;
        }
        if !is_empty_layer(entry) {
            seen += 1;
        }
    }
    history.len()
}

/// `history` when it describes exactly `layers` layers, else one entry per layer (tools
/// such as buildah refuse an image whose history and layers disagree).
fn fit_history(history: Vec<Value>, layers: usize, from: &str) -> Vec<Value> {
    if history.iter().filter(|e| !is_empty_layer(e)).count() == layers {
        return history;
    }
    (0..layers)
        .map(|i| json!({"created_by": format!("rebasefs commit: layer {} of {from}", i + 1)}))
        .collect()
}

fn descriptor(media_type: MediaType, digest: &str, size: u64) -> Result<Descriptor> {
    let digest: oci_spec::image::Digest = digest.parse().map_err(|e| Error::BadMetadata {
        path: PathBuf::from(digest),
        reason: format!("bad digest: {e}"),
    })?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(|e| Error::BadMetadata {
            path: PathBuf::from("manifest"),
            reason: e.to_string(),
        })
}

fn manifest_bytes(
    config_digest: &str,
    config_size: usize,
    layers: &[CommittedLayer],
    sizes: &[u64],
    base_name: &str,
    base_digest: &str,
) -> Result<Vec<u8>> {
    let layer_descriptors = layers
        .iter()
        .zip(sizes)
        .map(|(l, size)| descriptor(MediaType::ImageLayer, &l.diff_id, *size))
        .collect::<Result<Vec<_>>>()?;
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(ANNOTATION_BASE_NAME.to_string(), base_name.to_string());
    if !base_digest.is_empty() {
        annotations.insert(ANNOTATION_BASE_DIGEST.to_string(), base_digest.to_string());
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            config_digest,
            config_size as u64,
        )?)
        .layers(layer_descriptors)
        .annotations(annotations)
        .build()
        .map_err(|e| Error::BadMetadata {
            path: PathBuf::from("manifest"),
            reason: e.to_string(),
        })?;
    serde_json::to_vec(&manifest).map_err(|e| Error::BadMetadata {
        path: PathBuf::from("manifest"),
        reason: e.to_string(),
    })
}

/// A layer's uncompressed digest (hex): a committed image names each layer by it, so a
/// layer containers-storage recorded without one cannot go into an image.
fn diff_id_hex<'a>(graphroot: &Path, layer: &'a crate::storage::Layer) -> Result<&'a str> {
    layer.diff_id_hex().ok_or_else(|| Error::BadMetadata {
        path: graphroot.join("overlay-layers/layers.json"),
        reason: format!("layer {} has no diff-digest", layer.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_as_podman_stores_them() {
        assert_eq!(storage_name("app:rebased"), "localhost/app:rebased");
        assert_eq!(storage_name("app"), "localhost/app:latest");
        assert_eq!(
            storage_name("127.0.0.1:5000/story/app:2"),
            "127.0.0.1:5000/story/app:2"
        );
    }

    #[test]
    fn history_split_and_fit_follow_layers() {
        let layer = |by: &str| json!({"created_by": by});
        let empty = |by: &str| json!({"created_by": by, "empty_layer": true});
        let history = vec![
            layer("base 1"),
            empty("base cmd"),
            layer("app 1"),
            empty("app cmd"),
            layer("app 2"),
        ];
        // Entries without a layer after the base's last one cannot be told apart: the app's.
        assert_eq!(skip_layers(&history, 1), 1);
        assert_eq!(skip_layers(&history, 0), 0);
        let tail = history[2..].to_vec();
        assert_eq!(fit_history(tail.clone(), 2, "app"), tail);
        let made = fit_history(tail, 3, "app");
        assert_eq!(
            made.len(),
            3,
            "one made-up entry per layer when they disagree"
        );
        assert!(made.iter().all(|e| !is_empty_layer(e)));
    }
}
