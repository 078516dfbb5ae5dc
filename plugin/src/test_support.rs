//! Helpers shared by the plugin's unit tests.

use std::fs;
use std::path::Path;

/// Writes `text` to `root/rel`, creating parent directories.
pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}
