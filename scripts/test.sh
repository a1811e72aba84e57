#!/usr/bin/env bash
# The mart's whole test suite, from a fresh machine: installs what it needs (uv and the locked Python
# packages, PostgreSQL, the Apache Kafka broker, buf, shellcheck, yamllint, deck, Debian's Chromium and
# chromedriver, Mailpit built with Go, podman), starts PostgreSQL and
# Kafka, checks the contracts (buf lint, buf breaking, generated code up to date), runs pytest and fails
# if any test was skipped. Extra arguments go to pytest (e.g. `scripts/test.sh -k saga`).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() { printf '\n==> %s\n' "$*"; }

# uv: found or installed exactly as ./mart does (./mart may have installed it into ~/.local/bin, off PATH)
# shellcheck source=scripts/lib/uv.sh
source "$REPO_ROOT/scripts/lib/uv.sh"
step "Python packages (uv $MART_UV_VERSION, uv.lock)"
mart_ensure_uv
uv sync --frozen --all-packages --quiet
if [[ "${1:-}" == "--check-setup" ]]; then
    # Only the setup above (what a fresh clone needs before the suite): tests/deploy/test_fresh_clone.py
    printf 'uv %s at %s; environment in sync\n' "$(uv --version | awk '{print $2}')" "$MART_UV"
    exit 0
fi

step "Tools (PostgreSQL, buf, shellcheck, yamllint, deck, chromium, Mailpit)"
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    [[ "$(id -u)" -eq 0 ]] || { echo "PostgreSQL is missing and installing it needs root" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
scripts/infra/tools.sh
scripts/infra/mailpit.sh install  # built with Go once, cached (the distributed e2e tests send mail to it)

step "Container images (podman; stand-in base from Debian packages, the six Dockerfiles; docs/docker.md)"
scripts/containers/build.sh

step "PostgreSQL and Kafka"
scripts/infra/postgres.sh start
scripts/infra/kafka.sh install
scripts/infra/kafka.sh start
scripts/infra/zipkin.sh install  # the jar for the tracing e2e test, which starts Zipkin itself

step "Contracts: buf lint, buf breaking, generated code"
node_modules/.bin/buf lint protos
scripts/buf-breaking.sh
scripts/gen-protos.sh --check

step "Lint: ruff"
uv run --frozen ruff check .

step "pytest"
export MART_FORBID_SKIPS=1
uv run --frozen pytest -q -p no:cacheprovider "$@"
