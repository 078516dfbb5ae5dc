//! A real OCI registry for the tests: Debian's `docker-registry` on 127.0.0.1, plain HTTP,
//! filesystem storage in a directory of its own; stopped (and its data removed) on drop,
//! also when the test fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`: the prefix of image names pushed to it.
    pub addr: String,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry with its data and log under `dir` (created) on a free port.
    pub fn start(dir: &Path) -> Result<Registry> {
        std::fs::create_dir_all(dir.join("data"))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context(
                "starting docker-registry (apt package docker-registry, see scripts/setup.sh)",
            )?;
        let mut registry = Registry {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        registry.wait_ready(Duration::from_secs(20))?;
        Ok(registry)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
                );
            }
            if self.get("/v2/").is_ok_and(|head| head.contains(" 200 ")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("docker-registry on {} did not answer in time", self.addr);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The status line and headers of a plain HTTP GET.
    fn get(&self, path: &str) -> Result<String> {
        let mut stream = TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// `ADDR/name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
