#!/usr/bin/env bash
# Builds (once, cached) the real package-database fixtures of the rebase equivalence tests.
#
#   scripts/pkg-fixtures.sh deb [CACHE]   Debian: old base, new base, app .debs, app and rebuild roots
#   scripts/pkg-fixtures.sh rpm [CACHE]   rpm: tiny RPMs, base root, new base root, app and rebuild roots
#
# Prints the fixture directory on stdout (last line). CACHE defaults to
# $REBASEFS_FIXTURE_CACHE or /var/cache/rebasefs-tests; CI runs reuse it.
#
# Debian (deb-<key>/, key = recipe version + the Date: lines of the three suites' InRelease
# files, so a new point release or security upload rebuilds it; offline, the newest cached
# fixture is reused):
#   old-base/        debootstrap --variant=minbase bookworm (the bookworm suite only)
#   new-base/        old-base + `apt-get upgrade` from bookworm-updates and bookworm-security
#   upgraded.txt     "package old-version new-version" for every package the upgrade changed
#   debs/            the app's .debs (APP_PACKAGES and what they pull in on the old base),
#                    downloaded once, so the app installs offline (podman build --network none)
#   app/             old-base + the app installed offline from debs/ (apt-get install ./*.deb)
#   rebuild/         new-base + the same offline install
#   old-base.tar, new-base.tar   rootfs tars for `podman import`
#   timings.txt      seconds per step of the cold build
#
# rpm (rpm-<recipe>-<rpm version>/, database in /var/lib/rpm): rpms/*.rpm built with rpmbuild (noarch), roots old-base/ (initdb +
# rpmfix-base-1.0, rpmfix-lib-1.0), new-base/ (rpmfix-base upgraded to 1.1), app/ (old-base +
# rpmfix-app, which Requires rpmfix-lib >= 1.0), rebuild/ (new-base + rpmfix-app), and
# app-layer.tar / rebuild-layer.tar: what the install changed in the root, as a layer tar.
set -euo pipefail

kind=${1:?usage: pkg-fixtures.sh deb|rpm [CACHE]}
CACHE=${2:-${REBASEFS_FIXTURE_CACHE:-/var/cache/rebasefs-tests}}
# python3: an app whose dependencies (zlib1g, liblzma5, libzstd1, ...) the security update upgrades.
APP_PACKAGES=${REBASEFS_FIXTURE_APP:-python3}
DEB_RECIPE=1
RPM_RECIPE=2

log() { echo "[pkg-fixtures] $*" >&2; }
die() { echo "pkg-fixtures.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, rpm --root)"
mkdir -p "$CACHE"
# One builder at a time per kind (parallel test binaries, other checkouts on this machine).
exec 9>"$CACHE/.lock-$kind"
flock 9

# timed NAME CMD...: runs CMD, appends "NAME SECONDS" to $dir/timings.txt.
timed() {
  local name=$1 start
  shift
  start=$(date +%s.%N)
  "$@"
  awk -v a="$start" -v b="$(date +%s.%N)" -v n="$name" 'BEGIN { printf "%s %.1f\n", n, b - a }' >>"$dir/timings.tmp"
}

# The apt mirrors this machine uses (deb822 .sources or one-line .list entries).
apt_uris() {
  { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}'
  } | grep -E '/debian(-security)?/?$' || true
}

deb_fixture() {
  local mirror security
  mirror=${REBASEFS_FIXTURE_MIRROR:-$(apt_uris | grep -v -- '-security' | head -n 1)}
  security=${REBASEFS_FIXTURE_SECURITY:-$(apt_uris | grep -- '-security' | head -n 1)}
  [ -n "$mirror" ] || die "no Debian mirror in apt's sources; set REBASEFS_FIXTURE_MIRROR"
  [ -n "$security" ] || security=${mirror%/debian*}/debian-security
  mirror=${mirror%/} security=${security%/}
  local dates key
  if dates=$(for suite in "$mirror/dists/bookworm" "$mirror/dists/bookworm-updates" \
    "$security/dists/bookworm-security"; do
    release=$(curl -fsS --max-time 20 "$suite/InRelease") || exit 1
    grep '^Date:' <<<"$release" || exit 1
  done 2>/dev/null); then
    key=$(printf '%s\n%s\n' "$DEB_RECIPE $APP_PACKAGES" "$dates" | sha256sum | cut -c1-16)
    dir=$CACHE/deb-$key
  else
    dir=$(ls -dt "$CACHE"/deb-* 2>/dev/null | head -n 1 || true)
    [ -n "$dir" ] && [ -f "$dir/.complete" ] || die "the Debian mirror is unreachable and no fixture is cached in $CACHE"
    log "mirror unreachable: reusing $dir"
    echo "$dir"
    return
  fi
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return
  fi
  log "building $dir (mirror $mirror, security $security)"
  rm -rf "$dir"
  mkdir -p "$dir"
  printf '%s\n' "$dates" >"$dir/suites.txt"
  : >"$dir/timings.tmp"

  timed debootstrap debootstrap --variant=minbase bookworm "$dir/old-base" "$mirror" \
    >"$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
  clean_root "$dir/old-base"

  timed new-base-upgrade new_base "$mirror" "$security"
  timed app-debs download_app_debs "$mirror"
  timed app-install install_app "$dir/old-base" "$dir/app"
  timed rebuild-install install_app "$dir/new-base" "$dir/rebuild"
  timed tars make_tars
  # Old packages in the cache's other fixtures are stale now: keep only this one.
  for other in "$CACHE"/deb-*; do
    [ "$other" = "$dir" ] || rm -rf "$other"
  done
  mv "$dir/timings.tmp" "$dir/timings.txt"
  touch "$dir/.complete"
  log "upgraded by the new base: $(wc -l <"$dir/upgraded.txt") package(s); timings: $(tr '\n' ' ' <"$dir/timings.txt")"
  echo "$dir"
}

# An image rootfs carries no downloaded .debs, apt lists or logs of how it was made.
clean_root() {
  rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*
  mkdir -p "$1/var/lib/apt/lists/partial"
  rm -f "$1/etc/resolv.conf"
}

# in_chroot ROOT CMD...: runs CMD in ROOT with /proc, /dev and DNS available, then cleans up.
in_chroot() {
  local root=$1 status=0
  shift
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  mount -t devpts -o newinstance devpts "$root/dev/pts" 2>/dev/null || true
  LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$root" "$@" || status=$?
  umount "$root/dev/pts" 2>/dev/null || true
  umount "$root/dev"
  umount "$root/proc"
  return $status
}

apt_in() {
  in_chroot "$1" apt-get -o APT::Sandbox::User=root -y -q "${@:2}"
}

versions_of() {
  dpkg-query --admindir="$1/var/lib/dpkg" -W -f '${Package}:${Architecture} ${Version}\n' | sort
}

new_base() {
  local mirror=$1 security=$2 new=$dir/new-base
  cp -a "$dir/old-base" "$new"
  cat >"$new/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
  apt_in "$new" update >"$dir/new-base.log" 2>&1
  apt_in "$new" upgrade >>"$dir/new-base.log" 2>&1 || { tail -20 "$dir/new-base.log" >&2; die "apt-get upgrade failed"; }
  clean_root "$new"
  join <(versions_of "$dir/old-base") <(versions_of "$new") |
    awk '$2 != $3 { sub(/:[^:]*$/, "", $1); print }' >"$dir/upgraded.txt"
  [ -s "$dir/upgraded.txt" ] || log "warning: the security update upgrades nothing today"
}

# Downloads the app's packages as apt would install them on the old base (bookworm suite).
download_app_debs() {
  local scratch=$dir/download-root
  cp -a "$dir/old-base" "$scratch"
  apt_in "$scratch" update >"$dir/download.log" 2>&1
  # shellcheck disable=SC2086 # APP_PACKAGES is a word list
  apt_in "$scratch" install --download-only --no-install-recommends $APP_PACKAGES >>"$dir/download.log" 2>&1
  mkdir -p "$dir/debs"
  mv "$scratch"/var/cache/apt/archives/*.deb "$dir/debs/"
  rm -rf "$scratch"
}

# The app's .debs that are dependencies, not APP_PACKAGES themselves.
auto_packages() {
  local deb name
  for deb in "$dir"/debs/*.deb; do
    name=$(dpkg-deb -f "$deb" Package)
    case " $APP_PACKAGES " in *" $name "*) ;; *) printf '%s ' "$name" ;; esac
  done
}

# install_app FROM TO: TO = copy of FROM + the app's .debs installed offline, as the
# Containerfile's `RUN apt-get install /debs/*.deb` does.
install_app() {
  local to=$2
  cp -a "$1" "$to"
  mkdir -p "$to/debs"
  mount --bind "$dir/debs" "$to/debs"
  local status=0
  # The glob is the chroot's: sh expands it there. Dependencies are then marked
  # automatically installed, as `apt-get install APP` would have left them.
  in_chroot "$to" sh -c "apt-get -o APT::Sandbox::User=root -y -q install --no-install-recommends /debs/*.deb && apt-mark auto $(auto_packages)" \
    >"$to.log" 2>&1 || status=$?
  umount "$to/debs"
  rmdir "$to/debs"
  [ "$status" -eq 0 ] || { tail -20 "$to.log" >&2; die "offline install into $to failed"; }
  clean_root "$to"
}

make_tars() {
  for root in old-base new-base; do
    tar -C "$dir/$root" --numeric-owner --xattrs -cf "$dir/$root.tar" .
  done
}

# --- rpm ----------------------------------------------------------------------------------------

# spec NAME VERSION FILE-TEXT [REQUIRES]: a noarch spec installing /usr/share/NAME/data.txt.
spec() {
  cat <<EOF
Name: $1
Version: $2
Release: 1
Summary: rebasefs test package $1
License: Apache-2.0
BuildArch: noarch
${4:+Requires: $4}
Provides: $1-capability = $2

%description
Test package $1 for the rebasefs rpm fixtures.

%install
mkdir -p %{buildroot}/usr/share/$1 %{buildroot}/etc/$1
printf '%s\n' '$3' > %{buildroot}/usr/share/$1/data.txt
printf 'setting=$2\n' > %{buildroot}/etc/$1/$1.conf

%files
/usr/share/$1/data.txt
%config(noreplace) /etc/$1/$1.conf
EOF
}

build_rpms() {
  local top=$dir/rpmbuild
  mkdir -p "$top"/{SPECS,RPMS,BUILD,BUILDROOT,SOURCES,SRPMS} "$dir/rpms"
  spec rpmfix-base 1.0 "base one" >"$top/SPECS/base-1.0.spec"
  spec rpmfix-base 1.1 "base one point one (security fix)" >"$top/SPECS/base-1.1.spec"
  spec rpmfix-lib 1.0 "a library" >"$top/SPECS/lib-1.0.spec"
  spec rpmfix-app 1.0 "the app" "rpmfix-lib >= 1.0, rpmfix-base" >"$top/SPECS/app-1.0.spec"
  for s in "$top"/SPECS/*.spec; do
    rpmbuild --quiet -bb --define "_topdir $top" "$s" >>"$dir/rpmbuild.log" 2>&1 ||
      { tail -20 "$dir/rpmbuild.log" >&2; die "rpmbuild $s failed"; }
  done
  mv "$top"/RPMS/noarch/*.rpm "$dir/rpms/"
  rm -rf "$top"
}

# Debian's rpm keeps its database in ~/.rpmdb; an rpm-based image keeps it in /var/lib/rpm.
RPM_DBPATH=/var/lib/rpm
rpm_in() { rpm --root "$1" --dbpath "$RPM_DBPATH" --nodeps --nosignature "${@:2}"; }

# layer_tar BEFORE AFTER TAR: what turned BEFORE into AFTER, as a layer tar (no deletions:
# rpm -i only adds and rewrites files).
layer_tar() {
  local before=$1 after=$2
  (cd "$after" && find . -mindepth 1 \( -type f -o -type l -o -type d \) -print0 |
    while IFS= read -r -d '' p; do
      if [ -d "$p" ] && [ ! -L "$p" ]; then
        [ -d "$before/$p" ] || printf '%s\0' "$p"
      elif ! cmp -s "$p" "$before/$p" 2>/dev/null; then
        printf '%s\0' "$p"
      fi
    done | LC_ALL=C sort -z | tar --null --no-recursion --numeric-owner --format=posix -cf "$3" -T -)
}

rpm_fixture() {
  dir=$CACHE/rpm-$RPM_RECIPE-$(rpm --version | awk '{print $3}')
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  : >"$dir/timings.tmp"
  timed rpmbuild build_rpms
  local r=$dir/rpms
  timed base-roots rpm_roots "$r"
  mv "$dir/timings.tmp" "$dir/timings.txt"
  touch "$dir/.complete"
  for other in "$CACHE"/rpm-*; do
    [ "$other" = "$dir" ] || rm -rf "$other"
  done
  echo "$dir"
}

rpm_roots() {
  local r=$1
  mkdir -p "$dir/old-base"
  rpm --root "$dir/old-base" --dbpath "$RPM_DBPATH" --initdb
  rpm_in "$dir/old-base" -i "$r"/rpmfix-base-1.0-1.noarch.rpm "$r"/rpmfix-lib-1.0-1.noarch.rpm
  sleep 1
  cp -a "$dir/old-base" "$dir/new-base"
  rpm_in "$dir/new-base" -U "$r"/rpmfix-base-1.1-1.noarch.rpm
  # containers-storage's layer diff compares size and mtime: an rpmdb.sqlite rewritten to
  # the same size within the same second would drop out of the app's layer.
  sleep 1
  cp -a "$dir/old-base" "$dir/app"
  rpm_in "$dir/app" -i "$r"/rpmfix-app-1.0-1.noarch.rpm
  cp -a "$dir/new-base" "$dir/rebuild"
  rpm_in "$dir/rebuild" -i "$r"/rpmfix-app-1.0-1.noarch.rpm
  layer_tar "$dir/old-base" "$dir/app" "$dir/app-layer.tar"
  layer_tar "$dir/new-base" "$dir/rebuild" "$dir/rebuild-layer.tar"
  for root in old-base new-base; do
    tar -C "$dir/$root" --numeric-owner -cf "$dir/$root.tar" .
  done
}

case $kind in
deb) deb_fixture ;;
rpm) rpm_fixture ;;
*) die "unknown fixture kind $kind (deb or rpm)" ;;
esac
