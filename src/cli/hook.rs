//! `rebasefs hook`: the Podman `precreate` hook that moves a container onto the stack the
//! repository assigns when it (re)starts.
//!
//! `podman restart` keeps the rootfs mounted, so the mount program is not run again; this
//! hook asks the daemon serving the rootfs to re-read the repository and swap its stack.
//! It must run at `precreate` (before the runtime mounts /proc, /dev, ... inside the
//! rootfs): swapping later would invalidate the dentries those mounts sit on. A precreate
//! hook gets the proposed config.json on stdin and prints the config to use: it is printed
//! back unchanged. It never fails the container start: problems go to stderr and the
//! container runs on the stack it has. (Given an OCI state instead, as at `createRuntime`,
//! it reads the config from the bundle and prints nothing.)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use rebasefs_plugin::serve;

/// Reads the config (precreate) or state (other stages) from stdin and asks the rootfs's
/// daemon to refresh; echoes a precreate config.
pub fn run() -> anyhow::Result<i32> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let parsed: Option<serde_json::Value> = serde_json::from_str(&input).ok();
    let is_config = parsed.as_ref().is_some_and(|v| v.get("bundle").is_none());
    match parsed.as_ref().map(refresh) {
        Some(Ok(Some(answer))) => tracing::info!(%answer, "refresh"),
        Some(Ok(None)) => {}
        Some(Err(error)) => eprintln!("rebasefs hook: {error:#}"),
        None => eprintln!("rebasefs hook: stdin is not JSON"),
    }
    if is_config || parsed.is_none() {
        std::io::stdout().write_all(input.as_bytes())?;
    }
    Ok(0)
}

fn refresh(input: &serde_json::Value) -> anyhow::Result<Option<String>> {
    let (config, base) = match input["bundle"].as_str().map(PathBuf::from) {
        Some(bundle) => {
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
            (config, bundle)
        }
        None => (input.clone(), PathBuf::from("/")),
    };
    let Some(root) = config["root"]["path"].as_str().map(PathBuf::from) else {
        anyhow::bail!("config without root.path");
    };
    let root = if root.is_absolute() {
        root
    } else {
        base.join(root)
    };
    let Some(graphroot) = serve::graphroot_of_mountpoint(&root) else {
        return Ok(None); // not a containers-storage rootfs
    };
    let socket = serve::refresh_socket(&graphroot, &root);
    if !socket.exists() {
        return Ok(None); // not served by rebasefs, or by one without a control socket
    }
    let mut stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(serve::refresh::REQUEST.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim().to_string();
    if answer.starts_with("error") {
        anyhow::bail!("daemon for {}: {answer}", root.display());
    }
    Ok(Some(answer))
}
