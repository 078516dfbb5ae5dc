//! `overlay-layers/layers.json` (+ `volatile-layers.json`): the layer records.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::read_json_array;
use crate::error::Result;

/// One layer record, the fields rebasefs uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Layer {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    /// The DiffID: digest of the uncompressed layer tar.
    #[serde(rename = "diff-digest", default)]
    pub diff_digest: Option<String>,
    #[serde(rename = "diff-size", default)]
    pub diff_size: Option<i64>,
    #[serde(default)]
    pub flags: HashMap<String, serde_json::Value>,
}

impl Layer {
    /// Being created or deleted: containers-storage marks these and readers skip them.
    pub fn incomplete(&self) -> bool {
        self.flags
            .get("incomplete")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// The DiffID hex (no `sha256:` prefix), the component of chain ids.
    pub fn diff_id_hex(&self) -> Option<&str> {
        self.diff_digest
            .as_deref()
            .map(|d| d.strip_prefix("sha256:").unwrap_or(d))
    }
}

/// Reads the complete layers of a store, keyed by id.
pub fn load(dir: &Path) -> Result<HashMap<String, Layer>> {
    let mut layers = HashMap::new();
    for file in ["layers.json", "volatile-layers.json"] {
        for layer in read_json_array::<Layer>(&dir.join(file))? {
            if layer.incomplete() {
                tracing::debug!(layer = %layer.id, "skipping incomplete layer");
                continue;
            }
            layers.insert(layer.id.clone(), layer);
        }
    }
    Ok(layers)
}
