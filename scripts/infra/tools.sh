#!/usr/bin/env bash
# Developer / CI tools, each installed only when missing:
#   ShellCheck, yamllint, deck (Debian's package `deck` = Kong's decK), pgbench (postgresql-contrib),
#   Chromium + chromedriver (Debian's chromium, chromium-driver: the Swagger UI browser test),
#   buf (npm package @bufbuild/buf, pinned in <repo>/package.json + package-lock.json; run it as
#   <repo>/node_modules/.bin/buf), Helm (built from the Go module proxy with the machine's Go:
#   `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`, cached as $HELM; tests/deploy/test_helm.py runs it).
# Debian packages come from apt (apt-get update runs only when an install fails without it);
# buf comes from the npm registry (`npm ci` when package-lock.json exists, else `npm install`).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
BUF_VERSION="1.75.0"
BUF="$REPO_ROOT/node_modules/.bin/buf"
HELM_VERSION="v3.22.0"
HELM_DIR="${MART_CACHE_DIR:-$HOME/.cache/online-mart}/helm-${HELM_VERSION}"
HELM="$HELM_DIR/helm"
APT_UPDATED=0

log() { printf '[tools] %s\n' "$*"; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }

apt_install() {
    [[ "$(id -u)" -eq 0 ]] || die "need root to apt-get install $*"
    log "apt-get install -y $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1; then
        if ((APT_UPDATED == 0)); then
            log "apt-get update"
            DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null
    fi
}

# ensure COMMAND PACKAGE
ensure() {
    if command -v "$1" >/dev/null 2>&1; then
        log "$1 present"
    else
        apt_install "$2"
    fi
}

pgbench_present() {
    command -v pgbench >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/pgbench' >/dev/null
}

ensure_buf() {
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [[ ! -f "$REPO_ROOT/package.json" ]]; then
        log "writing $REPO_ROOT/package.json (@bufbuild/buf $BUF_VERSION)"
        cat >"$REPO_ROOT/package.json" <<EOF
{
  "name": "online-mart-tools",
  "private": true,
  "description": "Node-distributed developer tools of the mart (buf for the Protobuf contracts).",
  "devDependencies": {
    "@bufbuild/buf": "${BUF_VERSION}"
  }
}
EOF
    fi
    # (the Dev Containers CLI comes from the same package.json: tests/deploy/test_devcontainer.py)
    if [[ -x "$BUF" ]] && "$BUF" --version >/dev/null 2>&1 && [[ -f "$REPO_ROOT/package-lock.json" ]] \
        && [[ -x "$REPO_ROOT/node_modules/.bin/devcontainer" ]]; then
        log "buf present ($BUF)"
        return 0
    fi
    if [[ -f "$REPO_ROOT/package-lock.json" ]]; then
        log "npm ci (buf)"
        (cd "$REPO_ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    else
        log "npm install (buf), writing package-lock.json"
        (cd "$REPO_ROOT" && npm install --no-audit --no-fund --loglevel=error)
    fi
    "$BUF" --version >/dev/null || die "buf did not install ($BUF)"
}

ensure_helm() {
    if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
        log "helm present ($HELM)"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go is needed to build helm $HELM_VERSION (go install from the Go module proxy)"
    log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION -> $HELM_DIR"
    mkdir -p "$HELM_DIR"
    GOBIN="$HELM_DIR" nice -n 10 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    "$HELM" version --short >/dev/null || die "helm did not build ($HELM)"
}

ensure shellcheck shellcheck
ensure yamllint yamllint
ensure deck deck
ensure chromium chromium
ensure chromedriver chromium-driver
if pgbench_present; then
    log "pgbench present"
else
    apt_install postgresql-contrib
fi
ensure_buf
ensure_helm

pgbench_bin="$(command -v pgbench || compgen -G '/usr/lib/postgresql/*/bin/pgbench' | sort -V | tail -n1)"
log "versions:"
printf '  %-11s %s\n' \
    shellcheck "$(shellcheck --version | sed -n 's/^version: //p')" \
    yamllint "$(yamllint --version 2>&1 | awk '{print $2}')" \
    deck "$(deck version 2>&1 | head -n1)" \
    pgbench "$("$pgbench_bin" --version)" \
    chromium "$(chromedriver --version | awk '{print $2}') (chromedriver; /usr/bin/chromium)" \
    buf "$("$BUF" --version) ($BUF)" \
    helm "$("$HELM" version --short) ($HELM)"
