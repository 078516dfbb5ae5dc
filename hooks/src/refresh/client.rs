//! The hook's end: ask the daemon serving a rootfs to serve its assigned stack.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use crate::paths;
use crate::trusted::{self, PrivateDir};

/// Asks the daemon serving `root` to serve its assigned stack; `Ok(None)` without a socket.
///
/// The socket must sit in a directory only root or this user can write, and its peer must
/// run as root or this user (and be the recorded daemon, when there is a record): a socket
/// someone else bound could otherwise tell the hook that a move happened when it did not.
pub fn ask_daemon(
    graphroot: &Path,
    root: &Path,
    daemon: Option<u32>,
) -> anyhow::Result<Option<String>> {
    let Some(dir) = PrivateDir::open(&paths::sockets_dir(graphroot))? else {
        return Ok(None);
    };
    let name = paths::socket_name(root);
    if dir.stat(&name)?.is_none() {
        return Ok(None);
    }
    let mut stream = UnixStream::connect(dir.fd_path(&name))?;
    let peer = rustix::net::sockopt::socket_peercred(&stream)?;
    let peer_pid = u32::try_from(peer.pid.as_raw_nonzero().get()).unwrap_or(0);
    if !trusted::trusted_uid(peer.uid.as_raw()) || daemon.is_some_and(|pid| pid != peer_pid) {
        bail!(
            "the control socket is served by pid {peer_pid} (uid {}), not by the daemon of this mount",
            peer.uid.as_raw()
        );
    }
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(super::REQUEST.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim().to_string();
    if answer.starts_with("error") || answer.is_empty() {
        bail!("daemon answered {answer:?}");
    }
    Ok(Some(answer))
}
