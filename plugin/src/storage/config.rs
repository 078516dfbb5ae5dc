//! Where containers-storage lives: found the way Podman finds it, overridable by flags.
//!
//! Order: `CONTAINERS_STORAGE_CONF`, then `/etc/containers/storage.conf`, then
//! `/usr/share/containers/storage.conf`, then the built-in root defaults. The file is TOML;
//! only the keys rebasefs needs are read (`[storage]` `driver`, `graphroot`, `runroot`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{io_err, Error, Result};

/// The storage locations rebasefs works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    pub graphroot: PathBuf,
    pub runroot: PathBuf,
    pub driver: String,
}

/// Flags that override the configuration files (`--root`, `--runroot`, `--storage-driver`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub runroot: Option<PathBuf>,
    pub driver: Option<String>,
}

const SYSTEM_CONFS: &[&str] = &[
    "/etc/containers/storage.conf",
    "/usr/share/containers/storage.conf",
];

impl StorageConfig {
    /// Root defaults of containers-storage.
    pub fn defaults() -> Self {
        Self {
            graphroot: PathBuf::from("/var/lib/containers/storage"),
            runroot: PathBuf::from("/run/containers/storage"),
            driver: "overlay".to_string(),
        }
    }

    /// Finds the configuration like Podman does and applies `overrides` last.
    pub fn discover(overrides: &Overrides) -> Result<Self> {
        let mut config = Self::defaults();
        if let Some(path) = config_file()? {
            let text = std::fs::read_to_string(&path)
                .map_err(io_err(format!("reading {}", path.display())))?;
            config.apply_toml(&path, &text)?;
        }
        if let Some(root) = &overrides.root {
            config.graphroot = root.clone();
        }
        if let Some(runroot) = &overrides.runroot {
            config.runroot = runroot.clone();
        }
        if let Some(driver) = &overrides.driver {
            config.driver = driver.clone();
        }
        if config.driver.is_empty() {
            config.driver = "overlay".into();
        }
        if config.driver != "overlay" {
            return Err(Error::Config {
                path: config.graphroot.clone(),
                reason: format!(
                    "storage driver {:?} is not supported: rebasefs works with the overlay driver",
                    config.driver
                ),
            });
        }
        Ok(config)
    }

    /// Applies the `[storage]` table of a storage.conf text.
    pub fn apply_toml(&mut self, path: &Path, text: &str) -> Result<()> {
        let file: ConfFile = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: match e.span() {
                Some(span) => format!(
                    "line {}: {}",
                    text.get(..span.start).unwrap_or(text).matches('\n').count() + 1,
                    e.message()
                ),
                None => e.message().to_string(),
            },
        })?;
        let storage = file.storage;
        if let Some(driver) = storage.driver {
            self.driver = driver;
        }
        if let Some(graphroot) = storage.graphroot {
            self.graphroot = graphroot;
        }
        if let Some(runroot) = storage.runroot {
            self.runroot = runroot;
        }
        Ok(())
    }

    /// `<graphroot>/overlay`: the driver's home, where layer directories live.
    pub fn driver_home(&self) -> PathBuf {
        self.graphroot.join("overlay")
    }
}

fn config_file() -> Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os("CONTAINERS_STORAGE_CONF") {
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(Error::Config {
                path,
                reason: "CONTAINERS_STORAGE_CONF names a file that does not exist".into(),
            });
        }
        return Ok(Some(path));
    }
    Ok(SYSTEM_CONFS
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists()))
}

/// The part of storage.conf rebasefs reads.
#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    storage: StorageTable,
}

#[derive(Debug, Default, Deserialize)]
struct StorageTable {
    driver: Option<String>,
    graphroot: Option<PathBuf>,
    runroot: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_storage_table_only() {
        let mut config = StorageConfig::defaults();
        let text = r#"
# comment
[storage]
driver = "overlay"
graphroot = "/srv/graph" # trailing
runroot = '/run/x'
[storage.options]
graphroot = "/not/this"
"#;
        config.apply_toml(Path::new("t"), text).unwrap();
        assert_eq!(config.graphroot, PathBuf::from("/srv/graph"));
        assert_eq!(config.runroot, PathBuf::from("/run/x"));
    }

    #[test]
    fn rejects_garbage() {
        let mut config = StorageConfig::defaults();
        assert!(config
            .apply_toml(Path::new("t"), "[storage]\ngraphroot /x\n")
            .is_err());
        assert!(config
            .apply_toml(Path::new("t"), "[storage]\ngraphroot = /x\n")
            .is_err());
    }
}
