//! The rebase plan: image I = old base B + app layers A becomes new base N + A.
//!
//! Validated like the careful tools (crane, regctl): B's layers are a prefix of I's by
//! DiffID, and I and N are for the same OS/architecture. Each app layer gets the id
//! containers-storage would give it on N: `sha256(parentID + "+" + diffID)`.

use serde::Serialize;

use crate::base::{self, BaseInfo};
use crate::chain;
use crate::error::{Error, Result};
use crate::storage::{bigdata, Store};

/// One app layer and its id once stacked on the new base.
#[derive(Debug, Clone, Serialize)]
pub struct AppLayer {
    /// The layer as stored now (on the old base).
    pub source: String,
    /// DiffID hex.
    pub diff_id: String,
    /// Its parent in the original chain.
    pub old_parent: String,
    /// Its id on the new base.
    pub rebased_id: String,
    /// Parent on the new base (the new base's top, or the rebased layer below).
    pub rebased_parent: String,
}

/// A validated rebase of one image onto one new base.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub image_id: String,
    pub image: String,
    pub old_base: BaseInfo,
    pub new_base_id: String,
    pub new_base: String,
    /// New base layer ids, bottom first.
    pub new_base_layers: Vec<String>,
    /// App layers, bottom first.
    pub app_layers: Vec<AppLayer>,
    /// The image's original chain, bottom first (what the mount program is asked for).
    pub orig_layers: Vec<String>,
    pub platform: String,
}

impl Plan {
    /// The rebased top layer id: the identity of the whole rebased chain.
    pub fn rebased_top(&self) -> &str {
        self.app_layers
            .last()
            .map(|l| l.rebased_id.as_str())
            .or(self.new_base_layers.last().map(String::as_str))
            .unwrap_or("")
    }

    pub fn old_base_top(&self) -> &str {
        self.old_base
            .layers
            .last()
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn new_base_top(&self) -> &str {
        self.new_base_layers
            .last()
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Builds and validates the plan for `image_ref` onto `onto` (default: the base update).
pub fn make(
    store: &Store,
    image_ref: &str,
    onto: Option<&str>,
    explicit_base: Option<&str>,
) -> Result<Plan> {
    let image = store.image(image_ref)?;
    let old_base = base::identify(store, image, explicit_base)?;
    let new_base = match onto {
        Some(reference) => store.image(reference)?,
        None => base::update_for(store, &old_base).ok_or_else(|| Error::NoUpdate {
            image: image.display_name(),
            base: old_base.display.clone(),
        })?,
    };
    if new_base.id == old_base.image_id {
        return Err(Error::AlreadyOnBase {
            image: image.display_name(),
            base: new_base.display_name(),
        });
    }
    let chain = store.image_chain(image)?;
    let new_chain = store.image_chain(new_base)?;
    let bad_onto = |reason: &str| Error::BadOnto {
        image: image.display_name(),
        base: new_base.display_name(),
        reason: reason.into(),
    };
    if new_base.id == image.id {
        return Err(bad_onto("that is the image itself"));
    }
    let holds = |chain: &[&crate::storage::Layer], id: Option<&String>| {
        id.is_some_and(|id| chain.iter().any(|l| &l.id == id))
    };
    if holds(&chain, new_chain.last().map(|l| &l.id)) {
        return Err(bad_onto(
            "it is part of the image (the image is built on it); pass a newer base",
        ));
    }
    if holds(&new_chain, chain.last().map(|l| &l.id)) {
        return Err(bad_onto("it is built on the image itself"));
    }
    if new_chain.is_empty() {
        return Err(Error::NotAPrefix {
            image: image.display_name(),
            base: format!("{} (it has no layers)", new_base.display_name()),
        });
    }
    let image_platform = store.image_config(image)?.map(|c| bigdata::platform(&c));
    let base_platform = store.image_config(new_base)?.map(|c| bigdata::platform(&c));
    if let (Some(i), Some(n)) = (&image_platform, &base_platform) {
        if i != n {
            return Err(Error::PlatformMismatch {
                image: image.display_name(),
                image_platform: i.clone(),
                base: new_base.display_name(),
                base_platform: n.clone(),
            });
        }
    }
    let diff_ids = base::diff_ids(store, image)?;
    let split = old_base.layers.len();
    let mut app_layers = Vec::new();
    let mut rebased_parent = new_chain.last().map(|l| l.id.clone()).unwrap_or_default();
    for (index, layer) in chain.iter().enumerate().skip(split) {
        let diff_id = diff_ids.get(index).cloned().unwrap_or_default();
        let old_parent = layer.parent.clone().unwrap_or_default();
        let rebased_id = chain::layer_id(Some(&rebased_parent), &diff_id);
        app_layers.push(AppLayer {
            source: layer.id.clone(),
            diff_id,
            old_parent,
            rebased_id: rebased_id.clone(),
            rebased_parent: std::mem::replace(&mut rebased_parent, rebased_id),
        });
    }
    Ok(Plan {
        image_id: image.id.clone(),
        image: image.display_name(),
        old_base,
        new_base_id: new_base.id.clone(),
        new_base: new_base.display_name(),
        new_base_layers: new_chain.iter().map(|l| l.id.clone()).collect(),
        app_layers,
        orig_layers: chain.iter().map(|l| l.id.clone()).collect(),
        platform: image_platform.unwrap_or_default(),
    })
}
