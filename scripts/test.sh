#!/usr/bin/env bash
# Runs every rebasefs test on this machine: set-up, release build, then all test targets
# of the workspace (unit tests, the fuse crate's tests, the differential suite against
# kernel overlayfs and the end-to-end Podman suite). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# Every command the suites call comes from a package setup.sh installs (a fresh machine has it).
scripts/check-commands.sh

# CI runs one fixed random-operation stream so a red run always reproduces; run the
# suite locally without DIFF_SEED (time-based seed) to explore new streams.
if [ -n "${CI:-}" ]; then
  export DIFF_SEED=${DIFF_SEED:-20261123}
  # Likewise the fault and hostile-input suites' kill points, names and option strings.
  export REBASEFS_FAULT_SEED=${REBASEFS_FAULT_SEED:-20261202}
fi

started=$(date +%s)
cargo build --release
# --no-fail-fast: a failing suite must not hide the results of the others.
# The tests find the binary at target/release/rebasefs (or $CARGO_TARGET_DIR, REBASEFS_BIN).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# CI: build both packages, install the .deb and run every suite against the installed
# /usr/bin/rebasefs (the same build, so the run does not double); purge it at the end.
if [ -n "${CI:-}" ] && [ -z "${REBASEFS_BIN:-}" ]; then
  REBASEFS_BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release/rebasefs packaging/build.sh
  packaging/check.sh install
  trap 'rm -f "$log"; packaging/check.sh remove' EXIT
  export REBASEFS_BIN=/usr/bin/rebasefs
fi
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
echo "test.sh: finished in $(( $(date +%s) - started ))s"
# One closing line over every test target (cargo's own last line is the doc-tests').
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
