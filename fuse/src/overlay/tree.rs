//! The tree lock: one mutex serialising every change to the merged namespace and every
//! copy-up. An operation that changes the tree takes it once, where it starts, and hands
//! the guard down; what needs the lock held (copy-up) takes a `&TreeGuard`, so holding it
//! is a precondition the compiler checks rather than a comment.

use parking_lot::{Mutex, MutexGuard};

#[derive(Debug, Default)]
pub struct TreeLock(Mutex<()>);

/// Proof that the tree lock is held; released when dropped.
pub struct TreeGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

impl TreeLock {
    /// Waits for the lock.
    pub fn lock(&self) -> TreeGuard<'_> {
        TreeGuard {
            _held: self.0.lock(),
        }
    }
}
