//! A watchdog that unsticks the run when a FUSE daemon hangs: past the deadline it kills the
//! daemon and aborts the FUSE connection, so blocked syscalls return ENOTCONN and the session is
//! reported as failed instead of hanging the whole benchmark.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Armed {
    deadline: Instant,
    connection: Option<u64>,
    daemon: Option<i32>,
    label: String,
}

static ARMED: Mutex<Option<Armed>> = Mutex::new(None);
static STARTED: OnceLock<()> = OnceLock::new();

/// Arms the watchdog for one workload on one mount.
pub fn arm(label: &str, limit: Duration, connection: Option<u64>, daemon: Option<i32>) {
    STARTED.get_or_init(|| {
        std::thread::spawn(watch);
    });
    if let Ok(mut a) = ARMED.lock() {
        *a = Some(Armed {
            deadline: Instant::now() + limit,
            connection,
            daemon,
            label: label.to_string(),
        });
    }
}

/// Disarms the watchdog.
pub fn disarm() {
    if let Ok(mut a) = ARMED.lock() {
        *a = None;
    }
}

fn watch() {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let fired = match ARMED.lock() {
            Ok(mut a) => match a.as_ref() {
                Some(armed) if Instant::now() > armed.deadline => a.take(),
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(armed) = fired {
            eprintln!(
                "[bench] watchdog: '{}' exceeded its time limit; aborting the mount",
                armed.label
            );
            if let Some(pid) = armed.daemon {
                crate::sys::kill9(pid);
            }
            if let Some(conn) = armed.connection {
                let _ = std::fs::write(format!("/sys/fs/fuse/connections/{conn}/abort"), "1");
            }
        }
    }
}
