//! Layer identity: the ids containers-storage itself gives layers.
//!
//! c/image `layerID`: the bottom layer's id is its DiffID hex; every other layer's id is
//! `sha256(parentID + "+" + diffIDhex)`. So the same layer on the same new base always
//! gets the same id, which is what makes rebased layers reusable by id.

use sha2::{Digest, Sha256};

/// Strips an optional `sha256:` prefix.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The id containers-storage gives a layer with DiffID `diff_id` on top of `parent`.
pub fn layer_id(parent: Option<&str>, diff_id: &str) -> String {
    let diff_hex = hex_of(diff_id);
    match parent {
        None | Some("") => diff_hex.to_string(),
        Some(parent) => sha256_hex(format!("{parent}+{diff_hex}").as_bytes()),
    }
}

/// Ids of `diff_ids` (bottom first) stacked on `parent`, bottom first.
pub fn chain_ids<'a>(
    parent: Option<&str>,
    diff_ids: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for diff_id in diff_ids {
        let id = layer_id(ids.last().map(String::as_str).or(parent), diff_id);
        ids.push(id);
    }
    ids
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Observed in a real Podman 4.3 store: an image built FROM an imported single-layer base.
    const BASE: &str = "7043cda7a3fa8f4c528502b121877413bc0be40a7f44acf5f63db526eb8e21c6";
    const APP1_DIFF: &str =
        "sha256:7f424fe3acf552bb3e7448aeb0c4a1e0b5da7df6995fbaead8959f7dec117cfb";
    const APP1_ID: &str = "9bcf4d93cd5ca48ec6bf87501ee3e2c9ab033df9ad45f2abe2cadfb2791a9d1c";
    const APP2_DIFF: &str =
        "sha256:8683870b5c0be3bd679ccafbe4085a5b6dcd8a393cba3bb6bf338d6f73c2b74e";
    const APP2_ID: &str = "78536e20b0f586fef5b0f2d429ce2559c4223dae0ea70c8704df4c1da834ebac";

    #[test]
    fn matches_containers_storage_ids() {
        assert_eq!(layer_id(None, &format!("sha256:{BASE}")), BASE);
        assert_eq!(layer_id(Some(BASE), APP1_DIFF), APP1_ID);
        assert_eq!(
            chain_ids(Some(BASE), [APP1_DIFF, APP2_DIFF]),
            vec![APP1_ID, APP2_ID]
        );
    }

    #[test]
    fn same_layer_on_other_parent_gets_other_id() {
        let other = layer_id(Some(&"b".repeat(64)), APP1_DIFF);
        assert_ne!(other, APP1_ID);
        assert_eq!(other, layer_id(Some(&"b".repeat(64)), hex_of(APP1_DIFF)));
    }
}
