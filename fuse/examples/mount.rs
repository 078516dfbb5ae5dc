//! Foreground test mount: `mount LOWER1:LOWER2 UPPER|- WORK|- MOUNTPOINT`.
//!
//! For manual checks of the filesystem without the `rebasefs` front end.
//! `RUST_LOG=debug` for request logs. Exits when the mount is unmounted.

use std::path::PathBuf;

use rebasefs_fuse::{Mount, OverlayConfig, StackSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, lowers, upper, work, mountpoint] = args.as_slice() else {
        return Err("usage: mount LOWER[:LOWER...] UPPER|- WORK|- MOUNTPOINT".into());
    };
    let opt = |s: &String| (s != "-").then(|| PathBuf::from(s));
    let stack = StackSpec {
        lowers: lowers
            .split(':')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
        upper: opt(upper),
        work: opt(work),
    };
    let mut config = OverlayConfig::new(stack);
    if std::env::var_os("REBASEFS_NO_PASSTHROUGH").is_some() {
        config.passthrough = false;
    }
    if let Some(t) = std::env::var("REBASEFS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        config.threads = t;
    }
    let mount = Mount::new(config, &PathBuf::from(mountpoint))?;
    mount.serve()?;
    Ok(())
}
