#!/usr/bin/env bash
# Container tooling for the image build and the container journeys (docs/docker.md, "Without a registry"),
# each installed only when missing: podman + runc + debootstrap (Debian packages) and podman-compose (PyPI,
# pinned in pyproject.toml's dev group, so `uv sync` already brought it into .venv).
#
#   scripts/infra/containers.sh          install what is missing, then check that podman can run a container
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
APT_UPDATED=0

log() { printf '[containers] %s\n' "$*"; }
die() { printf '[containers] ERROR: %s\n' "$*" >&2; exit 1; }

apt_install() {
    [[ "$(id -u)" -eq 0 ]] || die "need root to apt-get install $*"
    log "apt-get install -y $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y "$@" >/dev/null 2>&1; then
        if ((APT_UPDATED == 0)); then
            log "apt-get update"
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=600 -y "$@" >/dev/null
    fi
}

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
else
    log "podman $(podman --version | awk '{print $3}'), runc, debootstrap present"
fi

[[ -x "$REPO_ROOT/.venv/bin/podman-compose" ]] || (cd "$REPO_ROOT" && uv sync --frozen --all-packages --quiet)
[[ -x "$REPO_ROOT/.venv/bin/podman-compose" ]] || die "podman-compose missing from .venv (dev dependency group)"
log "podman-compose $("$REPO_ROOT/.venv/bin/podman-compose" --version 2>/dev/null | awk '/podman-compose/ {print $NF}')"
