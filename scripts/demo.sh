#!/usr/bin/env bash
# The README's main command. On a throwaway Podman store whose overlay driver uses
# rebasefs as its mount_program: builds sample images (busybox-static base, a layered app
# image FROM it), runs a container, shows its FUSE mount and merged files, cleans up.
# Then, when present, runs scripts/rebase-story.sh (the rebase part of the story).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building rebasefs (release)"
cargo build --release --quiet
bin=${REBASEFS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/rebasefs}
bin=$(readlink -f "$bin")

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
new_store rebasefs-demo
mkdir -p "$store/ctx"
trap remove_store EXIT

step "1. base image from busybox-static (podman import, no registry needed)"
rootfs="$store/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root,usr/share/demo,opt/old}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
echo "demo base 1" >"$rootfs/etc/base-release"
echo "hello from the base image" >"$rootfs/etc/motd"
echo "the app deletes this" >"$rootfs/etc/obsolete.conf"
echo "shared data" >"$rootfs/usr/share/demo/data.txt"
echo "old" >"$rootfs/opt/old/file.txt"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . |
  pod import --quiet --change 'CMD=["/bin/sh"]' - localhost/rebasefs-demo/base:1 >/dev/null
pod images --format '{{.Repository}}:{{.Tag}} {{.Size}}'

step "2. app image FROM the base: COPY layers and a RUN that deletes and overwrites base files"
echo "app payload" >"$store/ctx/app.txt"
cat >"$store/ctx/Containerfile" <<'CF'
FROM localhost/rebasefs-demo/base:1 AS build
RUN echo "built in a build stage" > /artifact.txt
FROM localhost/rebasefs-demo/base:1
COPY app.txt /app/app.txt
COPY --from=build /artifact.txt /app/artifact.txt
RUN rm /etc/obsolete.conf && echo "motd from the app layer" > /etc/motd && rm -r /opt/old
CMD ["/bin/sh"]
CF
show pod build --quiet --network none --tag localhost/rebasefs-demo/app:1 "$store/ctx"
pod images --format '{{.Repository}}:{{.Tag}} {{.Size}}'

step "3. run a container: containers-storage mounts its rootfs with rebasefs"
pod run --detach --name demo localhost/rebasefs-demo/app:1 sleep 100000 >/dev/null
merged=$(pod inspect --format '{{.GraphDriver.Data.MergedDir}}' demo)
upper=$(pod inspect --format '{{.GraphDriver.Data.UpperDir}}' demo)
echo "mountinfo line of the container's rootfs:"
line=$(grep -F " $merged " /proc/self/mountinfo || true)
if [ -z "$line" ]; then
  echo "demo: $merged is not mounted" >&2
  exit 1
fi
echo "  $line"
case "$line" in
  *" - fuse"*) ;;
  *) echo "demo: the rootfs is not a FUSE mount" >&2; exit 1 ;;
esac
echo "the mount program serving it:"
for pid in $(pgrep -f -- "$merged" || true); do
  if [ "$(readlink -f "/proc/$pid/exe")" = "$bin" ]; then
    echo "  pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-300)"
  fi
done

step "4. the merged view inside the container"
show pod exec demo sh -c 'cat /etc/base-release /etc/motd /app/app.txt /app/artifact.txt /usr/share/demo/data.txt; ls /etc /opt'

step "5. writes land in the container's upper layer, deletions as whiteouts"
show pod exec demo sh -c 'echo "written at runtime" > /root/note.txt && rm /usr/share/demo/data.txt && ls /usr/share/demo'
echo "upper layer on the host ($upper), type d/f/c (c = whiteout):"
(cd "$upper" && find . -mindepth 1 -printf '  %y %p\n' | sort -k2)

step "6. stop, start: the writes are kept"
pod stop --time 0 demo >/dev/null
pod start demo >/dev/null
show pod exec demo cat /root/note.txt

step "7. clean up: remove the container, nothing stays mounted"
pod rm --force --time 0 demo >/dev/null
store_leftovers
echo "mounts of the demo store left: $left_mounts; rebasefs daemons left: $left_daemons"
if [ "$left_mounts" != 0 ] || [ "$left_daemons" != 0 ]; then
  echo "demo: something was left behind" >&2
  exit 1
fi
remove_store
trap - EXIT

if [ -e scripts/rebase-story.sh ]; then
  step "8. the rebase story (scripts/rebase-story.sh)"
  REBASEFS_BIN="$bin" bash scripts/rebase-story.sh
fi
echo
echo "demo: done"
