//! `overlay-images/images.json`: the image records and name lookup.

use std::path::Path;

use serde::Deserialize;

use super::read_json_array;
use crate::error::Result;

/// One image record, the fields rebasefs uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub id: String,
    /// Digest of the image's manifest.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub digests: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    /// Top layer id.
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(rename = "big-data-names", default)]
    pub big_data_names: Vec<String>,
    #[serde(rename = "big-data-digests", default)]
    pub big_data_digests: std::collections::HashMap<String, String>,
}

impl Image {
    /// The image's names except those rebasefs gave it to hold it ([`crate::holds`]).
    pub fn own_names(&self) -> impl Iterator<Item = &String> {
        self.names.iter().filter(|n| !crate::holds::is_hold_name(n))
    }

    /// True when the image has no name of its own (rebasefs's holds do not count).
    pub fn is_untagged(&self) -> bool {
        self.own_names().next().is_none()
    }

    /// True when rebasefs holds the image ([`crate::holds`]).
    pub fn is_held(&self) -> bool {
        self.names.iter().any(|n| crate::holds::is_hold_name(n))
    }

    /// A name for people: the first name of its own, else the short id.
    pub fn display_name(&self) -> String {
        self.own_names()
            .next()
            .cloned()
            .unwrap_or_else(|| short_id(&self.id).to_string())
    }

    /// True when `digest` (`sha256:...`) is one of this image's manifest digests.
    pub fn has_manifest_digest(&self, digest: &str) -> bool {
        self.digest.as_deref() == Some(digest)
            || self.digests.iter().any(|d| d == digest)
            || self
                .big_data_digests
                .get("manifest")
                .is_some_and(|d| d == digest)
            || self
                .big_data_names
                .iter()
                .any(|n| n.strip_prefix("manifest-") == Some(digest))
    }
}

/// The first 12 hex digits of an id, as Podman shows them.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Reads the image records.
pub fn load(dir: &Path) -> Result<Vec<Image>> {
    read_json_array(&dir.join("images.json"))
}

/// The spellings of a user-given reference that containers-storage may have stored.
///
/// `base:1` may be stored as `localhost/base:1` (built or imported locally) or
/// `docker.io/library/base:1` (pulled); a missing tag means `:latest`.
pub fn candidate_names(reference: &str) -> Vec<String> {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let tagged = if last.contains(':') || last.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    };
    let mut names = vec![tagged.clone()];
    let first = tagged.split('/').next().unwrap_or("");
    let has_domain = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_domain {
        names.push(format!("localhost/{tagged}"));
        if tagged.contains('/') {
            names.push(format!("docker.io/{tagged}"));
        } else {
            names.push(format!("docker.io/library/{tagged}"));
        }
    }
    names
}

/// Finds an image by name (any stored spelling) or by id / unique id prefix.
pub fn find<'a>(images: &'a [Image], reference: &str) -> Option<&'a Image> {
    let reference = reference.strip_prefix("sha256:").unwrap_or(reference);
    let names = candidate_names(reference);
    for name in &names {
        if let Some(image) = images.iter().find(|i| i.names.iter().any(|n| n == name)) {
            return Some(image);
        }
    }
    if reference.len() >= 3 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        let mut matches = images.iter().filter(|i| i.id.starts_with(reference));
        let first = matches.next()?;
        if matches.next().is_none() {
            return Some(first);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, names: &[&str]) -> Image {
        Image {
            id: id.into(),
            digest: None,
            digests: vec![],
            names: names.iter().map(|s| s.to_string()).collect(),
            layer: None,
            created: None,
            big_data_names: vec![],
            big_data_digests: Default::default(),
        }
    }

    #[test]
    fn finds_by_short_name_and_id_prefix() {
        let images = vec![
            image("aaaa1111", &["localhost/base:1"]),
            image("aaaa2222", &["docker.io/library/alpine:latest"]),
        ];
        assert_eq!(find(&images, "base:1").unwrap().id, "aaaa1111");
        assert_eq!(find(&images, "alpine").unwrap().id, "aaaa2222");
        assert_eq!(find(&images, "aaaa2").unwrap().id, "aaaa2222");
        assert!(find(&images, "aaaa").is_none(), "ambiguous prefix");
        assert!(find(&images, "nope").is_none());
    }
}
