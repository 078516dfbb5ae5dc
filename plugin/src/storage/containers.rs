//! `overlay-containers/containers.json`: container records (image and read-write layer).

use std::path::Path;

use serde::Deserialize;

use super::read_json_array;
use crate::error::Result;

/// One container record, the fields rebasefs uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    /// Image id the container was created from.
    #[serde(default)]
    pub image: String,
    /// The container's read-write layer; its diff dir is the mount's upperdir.
    #[serde(default)]
    pub layer: String,
    #[serde(default)]
    pub created: Option<String>,
}

impl Container {
    pub fn display_name(&self) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| super::images::short_id(&self.id).to_string())
    }
}

/// Reads the container records (`containers.json` + `volatile-containers.json`).
pub fn load(dir: &Path) -> Result<Vec<Container>> {
    let mut all = read_json_array(&dir.join("containers.json"))?;
    all.extend(read_json_array(&dir.join("volatile-containers.json"))?);
    Ok(all)
}
