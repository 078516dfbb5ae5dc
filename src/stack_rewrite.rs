//! Where the mount program asks the rebase repository whether to serve a rebased stack.
//!
//! Infallible on purpose: any repository problem is logged and the stack containers-storage
//! asked for is served unchanged, so a broken repository never stops a container.

use rebasefs_fuse::StackSpec;
use rebasefs_plugin::serve;

/// Returns the stack to serve for the stack containers-storage asked for.
pub fn rewrite(stack: StackSpec) -> StackSpec {
    let asked = serve::StackSpec {
        lowers: stack.lowers.clone(),
        upper: stack.upper.clone(),
        work: stack.work.clone(),
    };
    match serve::rewrite_stack(&asked) {
        Ok(Some(rebased)) => {
            tracing::info!(lowers = ?rebased.lowers, "serving the rebased stack from the repository");
            StackSpec {
                lowers: rebased.lowers,
                upper: rebased.upper,
                work: rebased.work,
            }
        }
        Ok(None) => stack,
        Err(error) => {
            tracing::warn!(%error, "rebase repository unusable; serving the original stack");
            stack
        }
    }
}
