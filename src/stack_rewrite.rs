//! Where the mount program asks the rebase repository whether to serve a rebased stack.

use rebasefs_fuse::StackSpec;

/// Returns the stack to serve for the stack containers-storage asked for.
///
/// Identity until the rebase repository is wired in.
pub fn rewrite(stack: StackSpec) -> StackSpec {
    stack
}
