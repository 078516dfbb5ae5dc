#!/usr/bin/env bash
# Builds the benchmark data set once under bench/data (each step guarded by a stamp file).
#
#   layers/base-v1     debootstrap --variant=minbase bookworm root filesystem
#   layers/base-v2     base-v1 plus a synthetic security update (changed, added and removed files)
#   layers/pkg         package-manager-like install: python3 + perl .debs unpacked, dpkg database updated
#   layers/files-aufs  ~3000 small app files, .wh. whiteouts and an opaque dir (.wh..wh..opq), AUFS form
#                      as containers-storage writes layers for a mount program
#   layers/files-ovl   the same layer in kernel-overlay form (char 0/0 whiteouts, trusted.overlay.opaque)
#   layers/big         one 1 GiB file (data/big.bin)
#   lookup/N<n>/<i>    synthetic stacks of 1, 10, 50, 100 layers (layer 0 = top)
#   tar/base-v*.tar    rootfs tarballs for `podman import`
#   ctx/               build context of the app image used by the rebase figure
set -euo pipefail

DATA=${1:?usage: build-data.sh DATA_DIR}
mkdir -p "$DATA/layers" "$DATA/lookup" "$DATA/tar"
DATA=$(cd "$DATA" && pwd)
L=$DATA/layers
# The Debian mirror apt already uses (deb822 .sources or one-line .list), unless overridden.
apt_mirror() {
    # (a missing sources file makes grep fail; with pipefail that must not end the script)
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
      grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
    } | awk '$1 == "URIs:" {print $2} $1 == "deb" {print $2}' | { grep -v -- '-security' || true; } | head -n 1
}
MIRROR=${BENCH_MIRROR:-$(apt_mirror || true)} # no source file: the one-line reason below
[[ -n "$MIRROR" ]] || { echo "build-data.sh: no Debian mirror in apt's sources; set BENCH_MIRROR" >&2; exit 1; }
DATA_VERSION=2 # bump when the layout or content recipe changes

stamp() { [[ -f "$DATA/.stamp-$1" ]] && [[ "$(cat "$DATA/.stamp-$1")" == "$DATA_VERSION" ]]; }
done_stamp() { echo "$DATA_VERSION" >"$DATA/.stamp-$1"; }
log() { echo "[build-data] $*" >&2; }

# --- base v1 -----------------------------------------------------------------------------------
if ! stamp base-v1; then
    log "debootstrap minbase bookworm (mirror $MIRROR)"
    rm -rf "$L/base-v1" "$L/base-v1.tmp"
    debootstrap --variant=minbase bookworm "$L/base-v1.tmp" "$MIRROR" >"$DATA/debootstrap.log" 2>&1
    # An image rootfs carries no downloaded .debs.
    rm -f "$L/base-v1.tmp"/var/cache/apt/archives/*.deb
    echo v1 >"$L/base-v1.tmp/etc/bench-base-version"
    mv "$L/base-v1.tmp" "$L/base-v1"
    rm -f "$DATA"/.stamp-base-v2 "$DATA"/.stamp-tar
    done_stamp base-v1
fi

# --- base v2: a security update ------------------------------------------------------------------
# Deterministic selection: every 4th regular file under usr/lib and usr/bin is replaced (new inode,
# changed bytes, like dpkg unpacking an updated package), 120 files are added, every 8th file of
# docs, manuals, locales and gconv modules is removed.
if ! stamp base-v2; then
    log "base v2 (security update)"
    rm -rf "$L/base-v2" "$L/base-v2.tmp"
    cp -a "$L/base-v1" "$L/base-v2.tmp"
    cd "$L/base-v2.tmp"
    mapfile -t files < <(find usr/lib usr/bin -type f -size +0 | LC_ALL=C sort)
    changed=0 removed=0
    for i in "${!files[@]}"; do
        f=${files[$i]}
        if ((i % 4 == 1)); then
            cp -p "$f" "$f.dpkg-new"
            printf '\0security-update-2 %s\0' "$i" >>"$f.dpkg-new"
            mv -f "$f.dpkg-new" "$f"
            changed=$((changed + 1))
        fi
    done
    # Removals (what an update drops: docs, manuals, locales, obsolete modules), every 8th file.
    mapfile -t gone < <(find usr/share/doc usr/share/man usr/share/locale usr/lib/x86_64-linux-gnu/gconv \
        -type f | LC_ALL=C sort | awk 'NR % 8 == 3')
    for f in "${gone[@]}"; do
        rm -f "$f"
        removed=$((removed + 1))
    done
    mkdir -p usr/lib/x86_64-linux-gnu/security-update usr/share/doc/security-update
    for n in $(seq 1 60); do
        head -c $((20000 + n * 997)) /dev/urandom >"usr/lib/x86_64-linux-gnu/security-update/libfix$n.so.2"
        printf 'CVE-2026-%05d fixed\n' "$n" >"usr/share/doc/security-update/CVE-2026-$n.txt"
    done
    echo v2 >etc/bench-base-version
    echo "12.99" >etc/debian_version
    cd "$DATA"
    log "base v2: $changed changed, 120 added, $removed removed"
    mv "$L/base-v2.tmp" "$L/base-v2"
    rm -f "$DATA"/.stamp-tar
    done_stamp base-v2
fi

# --- package-manager-like install layer ----------------------------------------------------------
if ! stamp pkg; then
    log "pkg layer (python3 + perl unpacked from .debs)"
    rm -rf "$L/pkg" "$DATA/debs"
    mkdir -p "$L/pkg" "$DATA/debs"
    pkgs=(python3 python3.11 python3-minimal python3.11-minimal libpython3-stdlib libpython3.11-stdlib
        libpython3.11-minimal media-types libexpat1 libsqlite3-0 libreadline8 libncursesw6 libmpdec3
        libffi8 readline-common perl perl-modules-5.36 libperl5.36 libgdbm-compat4 netbase)
    for p in "${pkgs[@]}"; do
        (cd "$DATA/debs" && apt-get download "$p" >/dev/null 2>&1) || log "  (package $p not available, skipped)"
    done
    mkdir -p "$L/pkg/var/lib/dpkg/info"
    cp "$L/base-v1/var/lib/dpkg/status" "$L/pkg/var/lib/dpkg/status"
    for deb in "$DATA"/debs/*.deb; do
        name=$(dpkg-deb -f "$deb" Package)
        dpkg-deb -x "$deb" "$L/pkg"
        dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||; s|^$|/.|' >"$L/pkg/var/lib/dpkg/info/$name.list"
        { dpkg-deb -f "$deb" | sed '/^Status:/d' | sed '1a Status: install ok installed'; echo; } \
            >>"$L/pkg/var/lib/dpkg/status"
    done
    # The base is merged-/usr: dpkg would follow the /lib -> usr/lib symlinks; a layer must too,
    # or its real /lib directory would hide the base's symlink.
    for d in bin sbin lib lib64; do
        if [[ -d "$L/pkg/$d" && ! -L "$L/pkg/$d" ]]; then
            mkdir -p "$L/pkg/usr/$d"
            cp -a "$L/pkg/$d/." "$L/pkg/usr/$d/"
            rm -rf "${L:?}/pkg/$d"
        fi
    done
    rm -rf "$DATA/debs"
    rm -f "$DATA"/.stamp-ctx
    done_stamp pkg
fi

# --- small files with whiteouts and an opaque dir ------------------------------------------------
# The same logical layer twice: AUFS form for mount programs, kernel form for native overlay.
if ! stamp files; then
    log "files layer (3000 small files, whiteouts, opaque dir)"
    rm -rf "$L/files-aufs" "$L/files-ovl"
    mkdir -p "$L/files-aufs"
    cd "$L/files-aufs"
    for d in $(seq -w 0 29); do
        mkdir -p "app/mod$d"
        for f in $(seq -w 0 99); do
            head -c $(((10#$d * 100 + 10#$f) * 37 % 8000 + 100)) /dev/zero | tr '\0' "a" >"app/mod$d/file$f.py"
        done
    done
    # Whiteouts: every other gconv module and every 3rd doc dir of the base.
    mkdir -p usr/lib/x86_64-linux-gnu/gconv usr/share/doc
    i=0
    for f in $(ls "$L/base-v1/usr/lib/x86_64-linux-gnu/gconv" | LC_ALL=C sort); do
        ((i++ % 2 == 0)) && : >"usr/lib/x86_64-linux-gnu/gconv/.wh.$f"
    done
    i=0
    for f in $(ls "$L/base-v1/usr/share/doc" | LC_ALL=C sort); do
        ((i++ % 3 == 0)) && : >"usr/share/doc/.wh.$f"
    done
    # Opaque dir: the app replaces /usr/share/locale entirely.
    mkdir -p usr/share/locale/app
    : >usr/share/locale/.wh..wh..opq
    echo "app locale" >usr/share/locale/app/README
    # Kernel form.
    cp -a "$L/files-aufs" "$L/files-ovl"
    cd "$L/files-ovl"
    find . -name '.wh..wh..opq' | while read -r f; do
        setfattr -n trusted.overlay.opaque -v y "$(dirname "$f")"
        rm -f "$f"
    done
    find . -name '.wh.*' | while read -r f; do
        target="$(dirname "$f")/$(basename "$f" | sed 's/^\.wh\.//')"
        rm -f "$f"
        mknod "$target" c 0 0
    done
    cd "$DATA"
    done_stamp files
fi

# --- the 1 GiB file ------------------------------------------------------------------------------
if ! stamp big; then
    log "big layer (1 GiB file)"
    rm -rf "$L/big"
    mkdir -p "$L/big/data"
    head -c 1G /dev/urandom >"$L/big/data/big.bin"
    done_stamp big
fi

# --- synthetic lookup stacks ---------------------------------------------------------------------
# Every layer has dirs d00..d19 with 100 own files each; the bottom layer also has bottom_NNN files,
# so a lookup of a bottom name (or of a missing name) has to consult every layer.
if ! stamp lookup; then
    log "lookup stacks 1/10/50/100"
    rm -rf "$DATA/lookup"
    for n in 1 10 50 100; do
        for ((i = 0; i < n; i++)); do
            dir="$DATA/lookup/N$n/$i"
            mkdir -p "$dir"
            (cd "$dir" && mkdir d{00..19} && touch d{00..19}/l${i}_{000..099})
            if ((i == n - 1)); then
                (cd "$dir" && touch d{00..19}/bottom_{000..099})
            fi
        done
    done
    done_stamp lookup
fi

# --- tarballs and build context for podman -------------------------------------------------------
if ! stamp tar; then
    log "rootfs tarballs"
    tar -C "$L/base-v1" --numeric-owner --xattrs -cf "$DATA/tar/base-v1.tar" .
    tar -C "$L/base-v2" --numeric-owner --xattrs -cf "$DATA/tar/base-v2.tar" .
    done_stamp tar
fi
if ! stamp ctx; then
    log "app build context"
    rm -rf "$DATA/ctx"
    mkdir -p "$DATA/ctx"
    cp -a "$L/pkg" "$DATA/ctx/pkg"
    cp -a "$L/files-aufs/app" "$DATA/ctx/app"
    cat >"$DATA/ctx/Containerfile" <<'EOF'
ARG BASE=bench-base:v1
FROM $BASE
COPY pkg/ /
COPY app/ /app/
RUN rm -rf /usr/share/doc/* /usr/share/locale/* && echo app >/etc/app-release
EOF
    done_stamp ctx
fi
log "data set ready in $DATA"
