//! Base identification and base-update indication.
//!
//! An image's base is, in order: the `--base` the user gave; the local image the manifest
//! annotation `org.opencontainers.image.base.name` names, if its layers are a prefix of
//! the image's; the image with manifest digest `org.opencontainers.image.base.digest`;
//! the longest tagged local image whose layer chain is a prefix of the image's; the
//! shortest untagged one (an old base that lost its tag). Untagged prefixes are last
//! because build caches leave untagged intermediate images that include app layers.
//!
//! A base update is available when the name the base was built from now resolves to
//! another local image (after `podman pull`, `load` or `tag`).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::storage::images::find;
use crate::storage::{Image, Store};

pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// How a base was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Found {
    Explicit,
    AnnotationName,
    AnnotationDigest,
    LongestPrefix,
    UntaggedPrefix,
}

/// An image's base.
#[derive(Debug, Clone, Serialize)]
pub struct BaseInfo {
    pub image_id: String,
    /// The base's name for people (its first name, else short id).
    pub display: String,
    /// The name the app was built from, per annotation (may now point elsewhere).
    pub built_from: Option<String>,
    /// Layer ids of the base, bottom first.
    pub layers: Vec<String>,
    pub found: Found,
}

/// DiffIDs of an image's chain, bottom first.
pub fn diff_ids(store: &Store, image: &Image) -> Result<Vec<String>> {
    store
        .image_chain(image)?
        .iter()
        .map(|l| {
            l.diff_id_hex()
                .map(str::to_string)
                .ok_or_else(|| Error::BadMetadata {
                    path: store.config.graphroot.join("overlay-layers/layers.json"),
                    reason: format!("layer {} has no diff-digest", l.id),
                })
        })
        .collect()
}

/// True when `base`'s layers are a strict prefix of `image`'s, compared by DiffID.
pub fn is_strict_prefix(store: &Store, base: &Image, image: &Image) -> Result<bool> {
    let b = diff_ids(store, base)?;
    let i = diff_ids(store, image)?;
    Ok(!b.is_empty() && b.len() < i.len() && i.starts_with(&b))
}

/// Finds `image`'s base (see the module doc for the order).
pub fn identify(store: &Store, image: &Image, explicit: Option<&str>) -> Result<BaseInfo> {
    let manifest = store.manifest(image)?;
    let annotations = manifest
        .and_then(|m| m.annotations().clone())
        .unwrap_or_default();
    let built_from = annotations.get(ANNOTATION_BASE_NAME).cloned();
    let info = |base: &Image, found| -> Result<BaseInfo> {
        Ok(BaseInfo {
            image_id: base.id.clone(),
            display: base.display_name(),
            built_from: built_from.clone(),
            layers: store
                .image_chain(base)?
                .iter()
                .map(|l| l.id.clone())
                .collect(),
            found,
        })
    };
    if let Some(reference) = explicit {
        let base = store.image(reference)?;
        if !is_strict_prefix(store, base, image)? {
            return Err(Error::NotAPrefix {
                image: image.display_name(),
                base: reference.to_string(),
            });
        }
        return info(base, Found::Explicit);
    }
    if let Some(name) = &built_from {
        if let Some(base) = find(&store.images, name) {
            if base.id != image.id && is_strict_prefix(store, base, image)? {
                return info(base, Found::AnnotationName);
            }
        }
    }
    if let Some(digest) = annotations.get(ANNOTATION_BASE_DIGEST) {
        for base in store.images.iter().filter(|i| !i.is_untagged()) {
            if base.has_manifest_digest(digest) && is_strict_prefix(store, base, image)? {
                return info(base, Found::AnnotationDigest);
            }
        }
    }
    let mut tagged: Option<(usize, &Image)> = None;
    let mut untagged: Option<(usize, &Image)> = None;
    for candidate in store.images.iter().filter(|c| c.id != image.id) {
        if !is_strict_prefix(store, candidate, image)? {
            continue;
        }
        let len = store.image_chain(candidate)?.len();
        if candidate.is_untagged() {
            if untagged.is_none_or(|(best, _)| len < best) {
                untagged = Some((len, candidate));
            }
        } else if tagged.is_none_or(|(best, _)| len > best) {
            tagged = Some((len, candidate));
        }
    }
    if let Some((_, base)) = tagged {
        return info(base, Found::LongestPrefix);
    }
    if let Some((_, base)) = untagged {
        return info(base, Found::UntaggedPrefix);
    }
    Err(Error::NoBase(image.display_name()))
}

/// The image the base's name now resolves to, when that is not the base any more.
pub fn update_for<'a>(store: &'a Store, base: &BaseInfo) -> Option<&'a Image> {
    let name = base.built_from.as_deref().or_else(|| {
        store
            .image_by_id(&base.image_id)
            .and_then(|b| b.own_names().next().map(String::as_str))
    })?;
    find(&store.images, name).filter(|now| now.id != base.image_id)
}
