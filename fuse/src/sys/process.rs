//! Process-wide calls: the descriptor limit and the daemonizing fork.

use std::io;

use nix::unistd::ForkResult;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain struct out-parameter.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    if rl.rlim_cur < rl.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    rl.rlim_cur
}

/// Which side of [`fork_single_threaded`] this process is on.
pub enum Forked {
    Parent,
    Child,
}

/// Forks a copy of this process; refused unless the process has a single thread (only
/// then may the child run arbitrary code, as the mount-program daemon does).
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|dir| dir.count())
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("counting threads in /proc/self/task: {e}"),
            )
        })?;
    if threads > 1 {
        return Err(io::Error::other(format!(
            "internal error: {threads} threads exist before fork"
        )));
    }
    // SAFETY: the process is single-threaded (checked just above), so the child gets a
    // consistent copy of every lock and allocator state and may run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => Ok(Forked::Parent),
        Ok(ForkResult::Child) => Ok(Forked::Child),
        Err(errno) => Err(io::Error::new(
            io::Error::from(errno).kind(),
            format!("fork: {errno}"),
        )),
    }
}
