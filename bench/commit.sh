#!/usr/bin/env bash
# bench/commit.sh: time and bytes of `rebasefs commit` (a rebased image written into
# containers-storage as a real image) against `podman build --no-cache` of the same app on
# the new base. Not part of the tests; needs root, podman, runc, busybox-static and a
# release build (`cargo build --release`, or REBASEFS_BIN).
#
# The app is bench-like (bench/README.md's app, without the debootstrap data set): 3,000
# small files, a 64 MiB file, a RUN that deletes a base file and one that adds a user (so the
# rebase has a passwd conflict and a resolution layer). Bytes written = write_bytes of
# /proc/PID/io of a shell that ran the command (children it reaped included); store growth
# = `du -sx` of the graph root before and after (hard links count once).
#
# Usage: sudo bench/commit.sh [--reps N]    (prints a Markdown table; from rep 2 on the commit
# finds its layers in the store already and only writes the image)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${REBASEFS_BIN:-$ROOT/target/release/rebasefs}
REPS=1
if [ "${1:-}" = "--reps" ]; then REPS=${2:?--reps N}; fi
[ -x "$BIN" ] || { echo "commit.sh: no $BIN: run cargo build --release" >&2; exit 1; }
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || { echo "commit.sh: needs busybox-static ($BUSYBOX)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/rfs-bench-commit.XXXXXX)
RUNROOT=$(mktemp -d /tmp/rfsbc-run.XXXXXX)
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf CONTAINERS_CONF=$WORK/containers.conf
# No OCI hooks: a host-wide hooks.d with a precreate hook makes buildah's RUN fail
# ("unknown stage precreate"), and nothing here restarts containers.
mkdir -p "$WORK/hooks.d"
{ cat "$ROOT/tests/containers.conf"; echo "hooks_dir = [\"$WORK/hooks.d\"]"; } >"$WORK/containers.conf"
cleanup() {
  podman rm -af -t 0 >/dev/null 2>&1 || true
  grep -F "$WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK" "$RUNROOT"
}
trap cleanup EXIT
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/root"
runroot = "$RUNROOT"
[storage.options.overlay]
mount_program = "$BIN"
EOF

podman_q() { podman "$@" 2> >(grep -v 'CNI config' >&2); }

# Base v1 and v2: busybox with passwd; v2 changes a file and adds a system user.
make_base() {
  local version=$1 dir=$WORK/base$1
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root"
  cp "$BUSYBOX" "$dir/bin/busybox"
  for applet in $("$BUSYBOX" --list); do [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/etc/passwd"
  [ "$version" = 2 ] && printf 'syslog:x:101:101::/:/bin/false\n' >>"$dir/etc/passwd"
  echo "base $version" >"$dir/etc/base-release"
  echo "removed by the app" >"$dir/etc/app-deletes-me"
  tar -C "$dir" --numeric-owner -cf "$WORK/base$version.tar" .
  podman_q import -q "$WORK/base$version.tar" "localhost/bench/base:$version" >/dev/null
}
make_base 1
make_base 2

mkdir -p "$WORK/ctx"
containerfile() {
  cat <<EOF
FROM localhost/bench/base:$1
RUN mkdir -p /app/small && i=0; while [ \$i -lt 3000 ]; do echo "small file \$i" > /app/small/f\$i; i=\$((i+1)); done
RUN dd if=/dev/urandom of=/app/blob bs=1M count=64 2>/dev/null && rm /etc/app-deletes-me
RUN echo 'app:x:1000:1000::/app:/bin/sh' >> /etc/passwd
CMD ["sleep", "1000000"]
EOF
}
containerfile 1 >"$WORK/ctx/Containerfile.1"
containerfile 2 >"$WORK/ctx/Containerfile.2"
podman_q build -q --network none -f "$WORK/ctx/Containerfile.1" -t localhost/bench/app:1 "$WORK/ctx" >/dev/null

export ERR=$WORK/stderr
du_kib() { du -sxk "$WORK/root" | cut -f1; }
# measure NAME CMD...: prints "seconds write_bytes growth_kib".
measure() {
  local before after out
  before=$(du_kib)
  sync
  out=$(bash -c 'start=$(date +%s.%N); "$@" >/dev/null 2>"$ERR" || exit 1; end=$(date +%s.%N);
                  echo "$(awk -v s="$start" -v e="$end" "BEGIN {printf \"%.3f\", e - s}") $(awk "/^write_bytes/ {print \$2}" /proc/$$/io)"' _ "$@") \
    || { echo "commit.sh: $* failed: $(cat "$ERR")" >&2; exit 1; }
  sync
  after=$(du_kib)
  echo "$out $((after - before))"
}

printf '| Path | Time | Bytes written by the processes | Store growth (du -x) |\n|---|---|---|---|\n'
for rep in $(seq 1 "$REPS"); do
  read -r c_time c_bytes c_kib < <(measure "$BIN" commit localhost/bench/app:1 --onto localhost/bench/base:2 \
    --policy merge --tag "localhost/bench/app:committed-$rep")
  read -r b_time b_bytes b_kib < <(measure podman build -q --no-cache --network none \
    -f "$WORK/ctx/Containerfile.2" -t "localhost/bench/app:rebuilt-$rep" "$WORK/ctx")
  podman_q run --rm "localhost/bench/app:committed-$rep" cat /etc/passwd | grep -q syslog \
    || { echo "commit.sh: the committed image does not run on base 2" >&2; exit 1; }
  mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
  printf '| `rebasefs commit` (rep %s) | %.2f s | %s MiB | %s KiB |\n' "$rep" "$c_time" "$(mib "$c_bytes")" "$c_kib"
  printf '| `podman build --no-cache` (rep %s) | %.2f s | %s MiB | %s KiB |\n' "$rep" "$b_time" "$(mib "$b_bytes")" "$b_kib"
done
