#!/usr/bin/env bash
# The rebase story, end to end, on a throwaway Podman store whose overlay driver uses
# rebasefs as its mount_program:
#   base:1 -> app built FROM base:1 (adds files, deletes a base file, adduser) -> container
#   c1 running and writing -> base:2 arrives (changed, added, removed files, a new system
#   user) -> `rebasefs rebase app --onto base:2` -> `podman restart c1`: c1 runs on base:2
#   with its app files and its own writes; a second container and a second image reuse
#   the stored rebased layers; `rebasefs mount` shows the same tree; rollback goes back.
# Finally it times rebase+restart against `podman build --no-cache` + recreating c1.
# Uses REBASEFS_BIN, else target/release/rebasefs (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bin=${REBASEFS_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/rebasefs}
if [ ! -x "$bin" ]; then
  echo "== building rebasefs (release)"
  cargo build --release --quiet
fi
bin=$(readlink -f "$bin")

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
new_store rebasefs-story
mkdir -p "$store"/{ctx,ctx2,inspect}

# `rebasefs hook` as a Podman precreate hook: at every (re)start, before the container
# process exists, it moves the container's rootfs onto the stack the repository now assigns
# (podman restart keeps the rootfs mounted, so the mount program alone would not see it):
# the project's hooks.d file, hooks/rebasefs.json, pointed at this binary.
mkdir -p "$store/hooks.d"
hook_json=$(<hooks/rebasefs.json)
printf '%s\n' "${hook_json//\/usr\/libexec\/oci\/hooks.d\/rebasefs/"$bin"}" >"$store/hooks.d/rebasefs.json"

pod_extra=(--hooks-dir "$store/hooks.d")

# podman restart keeps the rootfs mounted; the precreate hook moves it onto the new stack.
restart() { show pod restart --time 0 "$1"; }
rebasefs() { "$bin" "$@"; }

cleanup() {
  "$bin" umount "$store/inspect" >/dev/null 2>&1 || true
  remove_store
}
trap cleanup EXIT

fail() { echo "rebase-story: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# A busybox-static root filesystem with users, and an `adduser` (Debian's busybox-static
# has no adduser applet, so the base ships a small one, as distributions ship theirs).
make_base_rootfs() { # DIR VERSION
  local r=$1 v=$2
  mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,run,var,home,usr/sbin,usr/share/base}
  cp /bin/busybox "$r/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
  done
  cat >"$r/usr/sbin/adduser" <<'SH'
#!/bin/sh
# adduser [-D] [-u UID] NAME: a minimal adduser for this busybox base.
uid=""
while [ $# -gt 1 ]; do
  case "$1" in -u) uid=$2; shift 2 ;; *) shift ;; esac
done
name=$1
[ -n "$uid" ] || uid=$(awk -F: 'BEGIN{m=999} $3>m && $3<60000 {m=$3} END{print m+1}' /etc/passwd)
echo "$name:x:$uid:$uid::/home/$name:/bin/sh" >> /etc/passwd
echo "$name:x:$uid:" >> /etc/group
echo "$name:!:19000:0:99999:7:::" >> /etc/shadow
mkdir -p "/home/$name" && chown "$uid:$uid" "/home/$name"
SH
  chmod 755 "$r/usr/sbin/adduser"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
  printf 'root:*:19000:0:99999:7:::\n' >"$r/etc/shadow"
  chmod 640 "$r/etc/shadow"
  if [ "$v" = 2 ]; then
    printf 'syslog:x:101:101:syslog:/:/bin/false\n' >>"$r/etc/passwd"
    printf 'syslog:x:101:\n' >>"$r/etc/group"
    printf 'syslog:*:19000:0:99999:7:::\n' >>"$r/etc/shadow"
    echo "added in base 2" >"$r/etc/new-in-base-2"
  else
    echo "removed in base 2" >"$r/etc/removed-in-base-2"
  fi
  printf 'nobody:x:65534:65534:nobody:/:/bin/false\n' >>"$r/etc/passwd"
  printf 'nogroup:x:65534:\n' >>"$r/etc/group"
  echo "base $v" >"$r/etc/base-release"
  echo "the app deletes this (version $v)" >"$r/etc/app-deletes-me"
  echo "shared base data $v" >"$r/usr/share/base/data.txt"
}

import_base() { # VERSION
  local r="$store/rootfs$1"
  make_base_rootfs "$r" "$1"
  tar -C "$r" --numeric-owner --owner=0 --group=0 -c . |
    pod import --quiet --change 'CMD=["/bin/sh"]' - "localhost/story/base:$1" >/dev/null
}

step "1. base:1, a busybox-static image (podman import: no registry needed)"
import_base 1
pod images --format '{{.Repository}}:{{.Tag}}  {{.ID}}'

step "2. app built FROM base:1: adds files, deletes a base file, adduser in a RUN step"
cat >"$store/ctx/Containerfile" <<'CF'
FROM localhost/story/base:1
RUN mkdir -p /app && echo "app payload" > /app/app.txt && rm /etc/app-deletes-me
RUN adduser -D -u 1000 appuser
CMD ["sleep", "1000000"]
CF
show pod build --quiet --network none --tag localhost/story/app:1 "$store/ctx" >/dev/null
show pod image inspect --format '{{index .Annotations "org.opencontainers.image.base.name"}}' localhost/story/app:1

step "3. container c1 runs and writes"
show pod run --detach --name c1 localhost/story/app:1 >/dev/null
show pod exec c1 sh -c 'echo "written by c1" > /root/c1-note.txt; cat /etc/base-release; tail -n1 /etc/passwd'

step "4. base:2 arrives: changed, added and removed files, a new system user"
import_base 2
show rebasefs status

step "5. rebase app onto base:2 (merge policy for passwd/group/shadow)"
t0=$(now_ms)
show rebasefs rebase localhost/story/app:1 --onto localhost/story/base:2 --policy merge
restart c1
t1=$(now_ms)
rebase_restart_ms=$((t1 - t0))

step "6. c1 after the restart: base:2's changes, its app files, its own writes"
show pod exec c1 sh -c 'cat /etc/base-release /etc/new-in-base-2 /app/app.txt /root/c1-note.txt; \
  test -e /etc/removed-in-base-2 || echo "removed-in-base-2: gone"; \
  test -e /etc/app-deletes-me || echo "app-deletes-me: still deleted by the app"; \
  echo "--- /etc/passwd (app user and base:2 user together):"; cat /etc/passwd'
out=$(pod exec c1 sh -c 'cat /etc/base-release /root/c1-note.txt /etc/passwd')
case "$out" in *"base 2"*) ;; *) fail "c1 does not run on base 2" ;; esac
case "$out" in *"written by c1"*) ;; *) fail "c1 lost its writes" ;; esac
case "$out" in *appuser*syslog*|*syslog*appuser*) ;; *) fail "passwd is not merged" ;; esac

step "7. a second container and a second image reuse the stored rebased layers"
show pod run --detach --name c2 localhost/story/app:1 >/dev/null
show pod exec c2 cat /etc/base-release
cat >"$store/ctx2/Containerfile" <<'CF'
FROM localhost/story/base:1
RUN mkdir -p /app && echo "app payload" > /app/app.txt && rm /etc/app-deletes-me
RUN echo "a different second layer" > /app/other.txt
CF
show pod build --quiet --network none --tag localhost/story/app-variant:1 "$store/ctx2" >/dev/null
show rebasefs rebase localhost/story/app-variant:1 --onto localhost/story/base:2 --policy merge
show rebasefs status

step "8. inspect the rebased root filesystem without running anything"
show rebasefs mount localhost/story/app:1 --onto localhost/story/base:2 --policy merge "$store/inspect"
show cat "$store/inspect/etc/base-release"
# Every file and symlink of the image's directories (c1's own /root writes excluded), with content hashes.
mounted=$(cd "$store/inspect" && find etc app usr bin home \( -type f -o -type l \) | sort | xargs sha256sum)
inside=$(pod exec c1 sh -c 'cd / && find etc app usr bin home -xdev \( -type f -o -type l \) | sort | xargs sha256sum' |
  grep -vE ' etc/(hostname|hosts|resolv.conf|mtab)$')
mounted=$(echo "$mounted" | grep -vE ' etc/(hostname|hosts|resolv.conf|mtab)$')
if [ "$mounted" = "$inside" ]; then
  echo "the mounted tree and c1's tree match ($(echo "$mounted" | wc -l) files compared)"
else
  diff <(echo "$mounted") <(echo "$inside") || true
  fail "rebasefs mount differs from what c1 sees"
fi
show rebasefs umount "$store/inspect"

step "9. roll back: c1 returns to base:1 at its next restart, its writes kept"
show rebasefs rollback localhost/story/app:1
restart c1
show pod exec c1 sh -c 'cat /etc/base-release /root/c1-note.txt; grep -c syslog /etc/passwd || true'
case "$(pod exec c1 cat /etc/base-release)" in "base 1") ;; *) fail "rollback did not bring c1 back to base 1" ;; esac
show rebasefs check

step "10. the same move the classic way: rebuild app on base:2 without cache, recreate c1"
sed -i 's|localhost/story/base:1|localhost/story/base:2|' "$store/ctx/Containerfile"
t0=$(now_ms)
pod build --quiet --network none --no-cache --tag localhost/story/app:2 "$store/ctx" >/dev/null
pod rm --force --time 0 c1 >/dev/null
pod run --detach --name c1 localhost/story/app:2 >/dev/null
t1=$(now_ms)
rebuild_ms=$((t1 - t0))
echo "rebasefs rebase + restart of c1:              ${rebase_restart_ms} ms (container writes kept)"
echo "podman build --no-cache + recreate container: ${rebuild_ms} ms (container writes lost)"

step "11. clean up"
pod rm --all --force --time 0 >/dev/null
# Daemons exit once their mount is gone; give them a moment.
for _ in $(seq 50); do
  left=$(grep -cF " $store/" /proc/self/mountinfo || true)
  [ "$left" = 0 ] && break
  sleep 0.2
done
grep -F " $store/" /proc/self/mountinfo || true
echo "mounts of the story store left: $left"
[ "$left" = 0 ] || fail "mounts left behind"
echo "rebase-story: done"
