# Shared by scripts/demo.sh and scripts/rebase-story.sh: a throwaway Podman store whose
# overlay driver uses rebasefs as its mount_program, and the printing helpers.
# Source it after `cd` to the repository root with `repo` and `bin` set.

# new_store PREFIX: creates $store with root/runroot/tmp and a storage.conf, and points
# Podman (and rebasefs, which finds the store the way Podman does) at it.
new_store() {
  store=$(mktemp -d "/var/tmp/$1.XXXXXX")
  mkdir -p "$store"/{root,runroot,tmp}
  cat >"$store/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$store/root"
runroot = "$store/runroot"
CONF
  # runc + ulimits: host quirks, see README "Podman quirks".
  export CONTAINERS_CONF="$repo/tests/containers.conf"
  export CONTAINERS_STORAGE_CONF="$store/storage.conf"
  pod_extra=()
}

# pod ARGS: podman on the throwaway store ($pod_extra holds per-script global flags).
pod() {
  podman --root "$store/root" --runroot "$store/runroot" --tmpdir "$store/tmp" \
    --storage-driver overlay --storage-opt "overlay.mount_program=$bin" \
    "${pod_extra[@]}" "$@"
}

# remove_store: removes every container and image mount, waits for conmon's exit commands
# (podman container cleanup may set the store up again), unmounts what is left, deletes it.
remove_store() {
  [ -n "${store:-}" ] && [ -d "$store" ] || return 0
  pod rm --all --force --time 0 >/dev/null 2>&1 || true
  pod image umount --all --force >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    pgrep -f -- "$store/" >/dev/null || break
    sleep 0.2
  done
  { grep -F " $store/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r |
    while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -rf "$store" || true
}

# store_leftovers: sets left_mounts and left_daemons (rebasefs processes) for $store,
# waiting up to 10 s for daemons to exit once the kernel tears their mounts down.
store_leftovers() {
  for _ in $(seq 50); do
    left_mounts=$(grep -cF " $store/" /proc/self/mountinfo || true)
    left_daemons=0
    for pid in $(pgrep -f -- "$store/" || true); do
      if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$bin" ]; then
        left_daemons=$((left_daemons + 1))
      fi
    done
    [ "$left_mounts" = 0 ] && [ "$left_daemons" = 0 ] && return 0
    sleep 0.2
  done
}

step() { printf '\n== %s\n' "$*"; }
# show CMD...: prints the command, quoting arguments that need it, then runs it.
show() {
  local line='$' arg
  for arg in "$@"; do
    case $arg in
      *[[:space:]\;\&\>\|\"]*) line+=" '$arg'" ;;
      *) line+=" $arg" ;;
    esac
  done
  echo "$line"
  "$@"
}
