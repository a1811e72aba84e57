#!/usr/bin/env bash
# The mart's whole test suite, from a fresh machine: installs what it needs (uv and the locked Python
# packages, PostgreSQL, the Apache Kafka broker, buf, shellcheck, yamllint, deck, podman), starts PostgreSQL and
# Kafka, checks the contracts (buf lint, buf breaking, generated code up to date), runs pytest and fails
# if any test was skipped. Extra arguments go to pytest (e.g. `scripts/test.sh -k saga`).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
UV_VERSION="0.13.8"

step() { printf '\n==> %s\n' "$*"; }

step "Python packages (uv $UV_VERSION, uv.lock)"
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv==$UV_VERSION"
fi
uv sync --frozen --all-packages --quiet

step "Tools (PostgreSQL, buf, shellcheck, yamllint, deck)"
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    [[ "$(id -u)" -eq 0 ]] || { echo "PostgreSQL is missing and installing it needs root" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi
scripts/infra/tools.sh

step "Container images (podman; stand-in base from Debian packages, the six Dockerfiles; docs/docker.md)"
scripts/containers/build.sh

step "PostgreSQL and Kafka"
scripts/infra/postgres.sh start
scripts/infra/kafka.sh install
scripts/infra/kafka.sh start

step "Contracts: buf lint, buf breaking, generated code"
node_modules/.bin/buf lint protos
scripts/buf-breaking.sh
scripts/gen-protos.sh --check

step "Lint: ruff"
uv run --frozen ruff check .

step "pytest"
export MART_FORBID_SKIPS=1
uv run --frozen pytest -q -p no:cacheprovider "$@"
