#!/usr/bin/env bash
# The one command that reproduces the benchmark table:
#
#   bench/run.sh [--quick] [driver options...]
#
# Builds the data set once (bench/data, stamp files), installs fuse-overlayfs 2.0 into a cache dir
# when missing, builds rebasefs and the driver in release mode, runs every contender alternating,
# and writes bench/results/{results.md,results.json,chart.svg} plus the table in bench/README.md.
# Every mount and daemon under bench/work is cleaned up on exit, even on failure.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
DATA=${BENCH_DATA:-$BENCH/data}
WORK=${BENCH_WORK:-$BENCH/work}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
FO2_ROOT=${BENCH_FO2_ROOT:-$DATA/tools}

[[ $(id -u) == 0 ]] || { echo "run.sh needs root (mounts, drop_caches, podman)" >&2; exit 1; }
for tool in debootstrap podman runc fusermount3 setfattr cargo dpkg-deb apt-get; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool (see bench/README.md)" >&2; exit 1; }
done

RUNROOTS=/run/rebasefs-bench # podman runroots (podman wants them shorter than 50 characters)
cleanup() {
    local dir m p pid
    for dir in "$WORK" "$RUNROOTS"; do
        [[ -d "$dir" ]] || continue
        # Deepest mounts first; FUSE ones through fusermount3, then lazily.
        { grep -F " $dir/" /proc/self/mountinfo || true; } | awk '{print $5}' | awk '{print length, $0}' | sort -rn |
            cut -d' ' -f2- | while read -r m; do
            fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
        # Daemons and containers whose command line names a path under these dirs.
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [[ $pid == "$$" ]] && continue
            if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -q "^$dir/"; then kill -9 "$pid" 2>/dev/null || true; fi
        done
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BENCH/build-data.sh" "$DATA"

FO2=${BENCH_FO2:-}
if [[ -z "$FO2" ]]; then
    if [[ -x "$FO2_ROOT/bin/fuse-overlayfs" ]]; then
        FO2=$FO2_ROOT/bin/fuse-overlayfs
    else
        echo "[run] installing fuse-overlayfs 2.0.0 into $FO2_ROOT" >&2
        CARGO_TARGET_DIR="$DATA/fo2-target" cargo install --locked fuse-overlayfs --version 2.0.0 --root "$FO2_ROOT" >&2 ||
            CARGO_TARGET_DIR="$DATA/fo2-target" cargo install fuse-overlayfs --version 2.0.0 --root "$FO2_ROOT" >&2
        rm -rf "$DATA/fo2-target"
        FO2=$FO2_ROOT/bin/fuse-overlayfs
    fi
fi

(cd "$REPO" && cargo build --release -p rebasefs-bench >&2)
if ! (cd "$REPO" && cargo build --release --bin rebasefs >&2); then
    echo "[run] rebasefs failed to build; it will be reported as failed" >&2
fi

mkdir -p "$WORK"
"$TARGET/release/rebasefs-bench" \
    --data "$DATA" --work "$WORK" --results "$BENCH/results" --readme "$BENCH/README.md" --repo "$REPO" \
    --fuse-overlayfs-1 /usr/bin/fuse-overlayfs --fuse-overlayfs-2 "$FO2" \
    --rebasefs "$TARGET/release/rebasefs" "$@"
