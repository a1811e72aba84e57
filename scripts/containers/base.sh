#!/usr/bin/env bash
# Stand-in base images for hosts that cannot pull from a container registry (docs/docker.md, "Without a
# registry"). Built from Debian bookworm packages with debootstrap and `podman import`:
#
#   localhost/mart-base/python:3.11-bookworm   stands in for python:3.11.13-slim-bookworm: Debian's Python
#       3.11 at /usr/bin, linked at /usr/local/bin/python{,3} and pip{,3} like the official image, pip
#       usable without --break-system-packages (no EXTERNALLY-MANAGED marker), ca-certificates.
#
#   scripts/containers/base.sh            build the base when the tag is missing (uses the cached rootfs)
#   scripts/containers/base.sh --force    rebuild the rootfs from the Debian mirror
#
# The rootfs tarball is cached under ${MART_CACHE_DIR:-$HOME/.cache/online-mart}/containers/, keyed by the
# package list below, so a warm machine only re-imports it (seconds). Needs root, podman and debootstrap
# (scripts/infra/containers.sh installs them).
#
# The host's local certificate authorities (/usr/local/share/ca-certificates/*.crt, e.g. a TLS-inspecting
# egress proxy's, as on our CI machine) are added in a last layer, so pip and uv inside `docker build`
# reach PyPI the way the host does; SSL_CERT_FILE points uv at the system bundle. Public certificates only.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE="bookworm"
MIRROR="${MART_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,ca-certificates,passwd,tzdata"
BASE_TAG="${MART_BASE_IMAGE:-localhost/mart-base/python:3.11-bookworm}"
CACHE_DIR="${MART_CACHE_DIR:-$HOME/.cache/online-mart}/containers"
LOCAL_CAS=/usr/local/share/ca-certificates
ROOTFS_KEY="$(printf '%s|%s|rootfs-v1' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-16)"
TARBALL="$CACHE_DIR/rootfs-$SUITE-python-$ROOTFS_KEY.tar"
ROOTFS_TAG="localhost/mart-base/rootfs:$SUITE-$ROOTFS_KEY"
ca_digest="$(find "$LOCAL_CAS" -name '*.crt' -type f -print0 2>/dev/null | sort -z | xargs -0r cat | sha256sum | cut -c1-12)"
KEY="$(printf '%s|%s|%s' "$ROOTFS_KEY" "$ca_digest" "$(sha256sum "$SCRIPT_DIR/base.sh" | cut -c1-12)" | sha256sum | cut -c1-16)"
PODMAN="${PODMAN:-podman}"

log() { printf '[base] %s\n' "$*"; }
die() { printf '[base] ERROR: %s\n' "$*" >&2; exit 1; }

force=0
[[ "${1:-}" == "--force" ]] && force=1

if ((force == 0)) && "$PODMAN" image exists "$BASE_TAG" \
    && [[ "$("$PODMAN" image inspect --format '{{ index .Labels "org.online-mart.base-key" }}' "$BASE_TAG" 2>/dev/null)" == "$KEY" ]]; then
    log "$BASE_TAG present (key $KEY)"
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "debootstrap and podman import need root"
command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/infra/containers.sh installs it)"

if ((force == 1)) || [[ ! -s "$TARBALL" ]]; then
    mkdir -p "$CACHE_DIR"
    rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE ($PACKAGES) from $MIRROR"
    nice -n 10 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$CACHE_DIR/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    # The official slim image's layout: python, python3, pip, pip3 in /usr/local/bin; pip installs into the
    # system interpreter without --break-system-packages (Debian's PEP 668 marker removed).
    for name in python python3; do ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/$name"; done
    for name in pip pip3; do ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/$name"; done
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    # apt sources with security updates, for Dockerfiles that apt-get install on top of the base.
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
SOURCES
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-python-*.tar" ! -name "$(basename "$TARBALL")" -delete
    log "rootfs cached: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

if ! "$PODMAN" image exists "$ROOTFS_TAG" || ((force == 1)); then
    log "podman import -> $ROOTFS_TAG"
    "$PODMAN" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$TARBALL" "$ROOTFS_TAG" >/dev/null
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx" "${rootfs:-}"' EXIT
mkdir -p "$ctx/ca"
find "$LOCAL_CAS" -maxdepth 1 -name '*.crt' -type f -exec cp {} "$ctx/ca/" \; 2>/dev/null || true
cat >"$ctx/Containerfile" <<CONTAINERFILE
FROM $ROOTFS_TAG
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CONTAINERFILE
log "adding $(find "$ctx/ca" -name '*.crt' | wc -l) local CA certificate(s) -> $BASE_TAG"
"$PODMAN" build --quiet --network none \
    --label "org.online-mart.base-key=$KEY" \
    --label 'org.opencontainers.image.description=Stand-in for python:3.11-slim-bookworm, built from Debian packages' \
    -t "$BASE_TAG" "$ctx" >/dev/null
log "$BASE_TAG ready"
