#!/usr/bin/env bash
# Build every image the compose stack needs on a host that cannot pull from a container registry
# (docs/docker.md, "Without a registry"), with podman:
#
#   1. the stand-in base (scripts/containers/base.sh: Debian bookworm's Python, as python:3.11-slim-bookworm)
#   2. the stand-ins for postgres:16 and apache/kafka:4 (scripts/containers/{postgres,kafka}/Containerfile)
#   3. the six service images and the web front's from their real Dockerfiles, with --build-arg BASE_IMAGE=<stand-in base>
#
#   scripts/containers/build.sh          build what changed (podman's layer cache; the rootfs is cached)
#
# Tags: online-mart/<service>:dev (the names compose.yaml uses), online-mart/postgres-standin:15,
# online-mart/kafka-standin:4.1.1 (compose.local.yaml). Installs podman & co. when missing
# (scripts/infra/containers.sh). Builds run with `nice -n 10`.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$SCRIPT_DIR/containers.conf}"
BASE_IMAGE="${MART_BASE_IMAGE:-localhost/mart-base/python:3.11-bookworm}"
SERVICES=(user_service product_service inventory_service order_service payment_service notification_service web_service)
KAFKA_VERSION="4.1.1"
KAFKA_LIBS="${MART_CACHE_DIR:-$HOME/.cache/online-mart}/kafka-${KAFKA_VERSION}/libs"

log() { printf '[build] %s\n' "$*"; }

"$REPO_ROOT/scripts/infra/containers.sh"
"$SCRIPT_DIR/base.sh"

build() {  # build TAG CONTEXT [podman build args...]
    local tag="$1" context="$2" begun=$SECONDS
    shift 2
    # --network host: RUN steps reach PyPI and the Debian mirror the way the host does.
    nice -n 10 podman build --quiet --format docker --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" "$@" "$context" \
        >/dev/null
    log "$tag built ($((SECONDS - begun)) s)"
}

build online-mart/postgres-standin:15 "$SCRIPT_DIR/postgres"

"$REPO_ROOT/scripts/infra/kafka.sh" install >/dev/null
kafka_ctx="$(mktemp -d)"
trap 'rm -rf "$kafka_ctx"' EXIT
cp "$SCRIPT_DIR"/kafka/* "$kafka_ctx/"
cp -r "$KAFKA_LIBS" "$kafka_ctx/libs"
touch -d @0 "$kafka_ctx"/libs/*  # stable timestamps: the COPY layer stays cached between runs
build "online-mart/kafka-standin:$KAFKA_VERSION" "$kafka_ctx"

for svc in "${SERVICES[@]}"; do
    build "online-mart/$svc:dev" "$REPO_ROOT" -f "$REPO_ROOT/$svc/Dockerfile"
done
# Every source change leaves the previous builder stages untagged (~0.5 GB per service): keep a day's worth
# as build cache, drop older ones so a CI machine's disk does not fill up.
podman image prune -f --filter until=24h >/dev/null
log "all images built on $BASE_IMAGE"
