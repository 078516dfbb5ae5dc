#!/usr/bin/env bash
# Installs what rebasefs's build, tests and demo need on Debian bookworm (run as root).
# Idempotent: when everything is present it only checks and returns within a second.
set -euo pipefail

# fuse3: /dev/fuse userland and fusermount3 (containers-storage unmounts with it).
# podman, runc, conmon, netavark: the real container stack the e2e suite drives;
# iptables: netavark runs it for every container that gets a network (podman build RUN).
# busybox-static: the sample images' only binary. fuse-overlayfs: the incumbent the
# benches and suites compare against. attr: getfattr/setfattr. kmod: modprobe fuse/overlay.
# sqlite3: inspecting the rebase repository. build-essential, pkg-config: C parts of
# crates (bundled SQLite). tar, coreutils (sha256sum): building images without a registry.
# python3: the hostile-socket test serves a forged control socket as `nobody` with it.
# debootstrap, rpm (rpm, rpmbuild, rpmdb), diffutils (cmp):
# the package-database fixtures (scripts/pkg-fixtures.sh) and the real-rpm/-dpkg checks.
# docker-registry: the local OCI registry of e2e_registry (commit + push, auto-update);
# skopeo: `rebasefs auto-update` asks a registry for a name's digest with it.
# systemd (systemctl): auto-update restarts a container's unit with it.
# e2fsprogs (mkfs.ext4), mount (loop mounts): the differential suite's ext4 upper layer.
# procps (pgrep), mawk (awk): the scripts; git: the bench's version line; apt: setup.sh itself.
# binutils (strip), man-db (man): packaging/build.sh and packaging/check.sh.
# uidmap (newuidmap, newgidmap), passwd (useradd): rootless Podman (tests/tests/e2e_rootless.rs).
# scripts/commands.list maps every command the suites and scripts call to its package.
PACKAGES=(
  fuse3 podman runc conmon netavark iptables busybox-static fuse-overlayfs attr kmod sqlite3
  build-essential pkg-config tar coreutils ca-certificates curl python3
  debootstrap rpm diffutils e2fsprogs mount
  procps mawk git apt
  docker-registry skopeo systemd
  binutils man-db uidmap passwd
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (podman stores, FUSE mounts as root)" >&2
  exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Kernel pieces: /dev/fuse for rebasefs, overlay for the differential oracle.
if [ ! -c /dev/fuse ]; then
  modprobe fuse || true
fi
if ! grep -qw overlay /proc/filesystems; then
  modprobe overlay || true
fi
if [ ! -c /dev/fuse ]; then
  echo "setup.sh: /dev/fuse is missing and 'modprobe fuse' did not create it" >&2
  exit 1
fi

# The Rust toolchain (rust-version 1.87+, with rustfmt and clippy for .ci/run); Debian's
# cargo is too old, use rustup's.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup.sh: cargo is in $HOME/.cargo/bin; add it to PATH" >&2
  else
    echo "setup.sh: no cargo found: install a Rust toolchain (1.87 or newer) first" >&2
    exit 1
  fi
fi
