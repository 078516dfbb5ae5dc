//! A containers-storage tree written by hand in a temp dir (layers.json, images.json,
//! diff dirs, short links, manifests and configs) for the engine's integration tests.

use std::fs;
use std::path::{Path, PathBuf};

use rebasefs_plugin::chain;
use rebasefs_plugin::storage::bigdata::file_name;
use rebasefs_plugin::storage::{StorageConfig, Store};
use serde_json::json;

pub struct Fake {
    pub root: PathBuf,
    layers: Vec<serde_json::Value>,
    pub images: Vec<serde_json::Value>,
    shorts: usize,
}

impl Fake {
    pub fn new(root: &Path) -> Self {
        for d in [
            "overlay/l",
            "overlay-layers",
            "overlay-images",
            "overlay-containers",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Self {
            root: root.to_path_buf(),
            layers: vec![],
            images: vec![],
            shorts: 0,
        }
    }

    /// Adds a layer with `files` (`.wh.` names literal) on `parent`; returns its id.
    pub fn layer(&mut self, parent: Option<&str>, files: &[(&str, &str)]) -> String {
        let diff_id = chain::sha256_hex(format!("{parent:?}{files:?}").as_bytes());
        let bytes: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
        self.add_layer(parent, diff_id, &bytes)
    }

    /// [`Fake::layer`] with binary contents.
    #[allow(dead_code)] // not every test binary writes binary files
    pub fn layer_bytes(&mut self, parent: Option<&str>, files: &[(&str, &[u8])]) -> String {
        let diff_id = chain::sha256_hex(format!("{parent:?}{files:?}").as_bytes());
        self.add_layer(parent, diff_id, files)
    }

    fn add_layer(
        &mut self,
        parent: Option<&str>,
        diff_id: String,
        files: &[(&str, &[u8])],
    ) -> String {
        let id = chain::layer_id(parent, &diff_id);
        let diff = self.root.join("overlay").join(&id).join("diff");
        fs::create_dir_all(&diff).unwrap();
        for (path, bytes) in files {
            let p = diff.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
        self.shorts += 1;
        let short = format!("SHORT{:021}", self.shorts);
        std::os::unix::fs::symlink(
            format!("../{id}/diff"),
            self.root.join("overlay/l").join(short),
        )
        .unwrap();
        let mut layer = json!({"id": id, "diff-digest": format!("sha256:{diff_id}")});
        if let Some(p) = parent {
            layer["parent"] = json!(p);
        }
        self.layers.push(layer);
        id
    }

    pub fn image(&mut self, name: &str, top: &str, base_name: Option<&str>) -> String {
        let id = chain::sha256_hex(format!("image {name} {top}").as_bytes());
        let dir = self.root.join("overlay-images").join(&id);
        fs::create_dir_all(&dir).unwrap();
        let config_digest = format!("sha256:{}", chain::sha256_hex(id.as_bytes()));
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": 0
            },
            "layers": []
        });
        if let Some(b) = base_name {
            manifest["annotations"] = json!({"org.opencontainers.image.base.name": b});
        }
        fs::write(dir.join("manifest"), manifest.to_string()).unwrap();
        fs::write(
            dir.join(file_name(&config_digest)),
            json!({
                "os": "linux",
                "architecture": "amd64",
                "rootfs": {"type": "layers", "diff_ids": []}
            })
            .to_string(),
        )
        .unwrap();
        self.images
            .push(json!({"id": id, "names": [name], "layer": top}));
        id
    }

    /// Gives image `id` one more name (as `podman tag` does).
    #[allow(dead_code)] // each test crate compiles this module; not all of them tag
    pub fn tag(&mut self, id: &str, name: &str) {
        for image in &mut self.images {
            if image["id"] == id {
                if let Some(names) = image["names"].as_array_mut() {
                    names.push(json!(name));
                }
            }
        }
    }

    pub fn save(&self) {
        fs::write(
            self.root.join("overlay-layers/layers.json"),
            json!(self.layers).to_string(),
        )
        .unwrap();
        fs::write(
            self.root.join("overlay-images/images.json"),
            json!(self.images).to_string(),
        )
        .unwrap();
    }

    pub fn store(&self) -> Store {
        Store::open(StorageConfig {
            graphroot: self.root.clone(),
            runroot: self.root.join("run"),
            driver: "overlay".into(),
        })
        .unwrap()
    }

    #[allow(dead_code)] // not every test binary looks at short links
    pub fn short_link_of(&self, id: &str) -> PathBuf {
        for entry in fs::read_dir(self.root.join("overlay/l")).unwrap() {
            let p = entry.unwrap().path();
            if fs::read_link(&p).unwrap() == Path::new(&format!("../{id}/diff")) {
                return p;
            }
        }
        panic!("no short link for {id}");
    }
}
