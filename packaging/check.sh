#!/usr/bin/env bash
# Checks the packages packaging/build.sh wrote, then installs the .deb (CI uses it for the
# test run) or removes it again:
#
#   packaging/check.sh install   # contents of both packages, rpm -i into a scratch root,
#                                # dpkg -i, man rebasefs, the hook
#   packaging/check.sh remove    # dpkg --purge rebasefs
#
# Every failure is one line on stderr. The expected files include one man page per
# subcommand `rebasefs help` lists, so a new subcommand without a page fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-$(pwd)/target}/packages

fail() { echo "packaging/check.sh: $*" >&2; exit 1; }

if [ "${1:-}" = remove ]; then
  if dpkg-query -W -f='${Status}' rebasefs 2>/dev/null | grep -q 'install ok installed'; then
    dpkg --purge rebasefs >/dev/null || fail "dpkg --purge rebasefs failed"
  fi
  [ ! -e /usr/bin/rebasefs ] || fail "/usr/bin/rebasefs is still there after dpkg --purge"
  exit 0
fi
[ "${1:-}" = install ] || fail "usage: packaging/check.sh install|remove"

deb=$(ls "$out"/rebasefs_*.deb 2>/dev/null | head -n 1)
rpm=$(ls "$out"/rebasefs-*.rpm 2>/dev/null | head -n 1)
[ -n "$deb" ] && [ -n "$rpm" ] || fail "no packages in $out: run packaging/build.sh"
if dpkg-query -W -f='${Status}' rebasefs 2>/dev/null | grep -q 'install ok installed'; then
  fail "a rebasefs package is already installed; remove it first (packaging/check.sh remove)"
fi

# What both must ship (the binary lists its subcommands; each gets a page).
expected=(
  /usr/bin/rebasefs
  /usr/libexec/oci/hooks.d/rebasefs
  /usr/share/rebasefs/oci/hooks.d/rebasefs.json
  /etc/containers/containers.conf.d/rebasefs.conf
  /usr/share/rebasefs/storage.conf
  /usr/lib/modules-load.d/fuse.conf
  /usr/lib/systemd/system/rebasefs-auto-update.service
  /usr/lib/systemd/system/rebasefs-auto-update.timer
  /usr/lib/systemd/user/rebasefs-auto-update.service
  /usr/lib/systemd/user/rebasefs-auto-update.timer
  /usr/share/man/man1/rebasefs.1.gz
  /usr/share/man/man1/rebasefs-mount-program.1.gz
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
mapfile -t subcommands < <("$tmp/usr/bin/rebasefs" help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && $1 != "help" && NF {print $1}')
[ "${#subcommands[@]}" -gt 0 ] || fail "rebasefs help lists no subcommands"
for sub in "${subcommands[@]}"; do expected+=("/usr/share/man/man1/rebasefs-$sub.1.gz"); done

rpm_files=$(rpm -qlp "$rpm" 2>/dev/null) || fail "rpm -qlp $rpm failed"
deb_files=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|') || fail "dpkg-deb -c $deb failed"
for file in "${expected[@]}"; do
  grep -qxF "$file" <<<"$rpm_files" || fail "$(basename "$rpm") lacks $file"
  grep -qxF "$file" <<<"$deb_files" || fail "$(basename "$deb") lacks $file"
done

# The RPM, installed with rpm into a scratch root (this is a Debian machine): every file
# lands, the binary runs and its man page renders from there.
rpm_root=$tmp/rpm-root
mkdir -p "$rpm_root"
rpm --root "$rpm_root" --dbpath /var/lib/rpm --initdb 2>/dev/null || fail "rpm --initdb in $rpm_root failed"
rpm --root "$rpm_root" --dbpath /var/lib/rpm -i --nodeps --noscripts "$rpm" 2>/dev/null ||
  fail "rpm -i $(basename "$rpm") into a scratch root failed"
for file in "${expected[@]}"; do
  [ -e "$rpm_root$file" ] || [ -L "$rpm_root$file" ] || fail "$file is missing after rpm -i"
done
"$rpm_root/usr/bin/rebasefs" --version >/dev/null || fail "the RPM's /usr/bin/rebasefs does not run"
MANWIDTH=80 man -l "$rpm_root/usr/share/man/man1/rebasefs.1.gz" 2>/dev/null | grep -q 'MOUNT PROGRAM' ||
  fail "the RPM's man page rebasefs(1) does not render"

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
for file in "${expected[@]}"; do
  [ -e "$file" ] || fail "$file is missing after dpkg -i"
done
[ "$(readlink -f /usr/libexec/oci/hooks.d/rebasefs)" = /usr/bin/rebasefs ] ||
  fail "the hook /usr/libexec/oci/hooks.d/rebasefs is not the installed binary"
hook_path=$(sed -n 's/.*"path": *"\([^"]*\)".*/\1/p' /usr/share/rebasefs/oci/hooks.d/rebasefs.json)
[ -x "$hook_path" ] || fail "the installed hooks.d JSON names $hook_path, which is not executable"
page=$(man -w rebasefs 2>/dev/null) || fail "man rebasefs finds no page after installing the .deb"
[ "$page" = /usr/share/man/man1/rebasefs.1.gz ] || fail "man rebasefs shows $page, not the package's page"
MANWIDTH=80 man rebasefs 2>/dev/null | grep -q 'MOUNT PROGRAM' || fail "man rebasefs does not render"
MANWIDTH=80 man rebasefs-mount-program 2>/dev/null | grep -q 'lowerdir=' ||
  fail "man rebasefs-mount-program does not show the mount options"
echo "packaging/check.sh: $(basename "$deb") and $(basename "$rpm") ship ${#expected[@]} files each; the RPM installs into a scratch root, the .deb is installed, man rebasefs works from both"
