#!/usr/bin/env bash
# Local Zipkin server (trace viewer + span collector, no Docker) for `mart dist up --trace` and the tests.
#
#   scripts/infra/zipkin.sh install   fetch the io.zipkin:zipkin-server exec jar from Maven Central (mvn), once
#   scripts/infra/zipkin.sh start     start it (in-memory storage) and wait until /health answers UP
#   scripts/infra/zipkin.sh stop      SIGTERM, wait up to 20 s, then SIGKILL
#   scripts/infra/zipkin.sh status    exit 0 when it answers
#
# Zipkin 3.6.1 (pinned below), run with the installed Java 17 on 127.0.0.1:${MART_ZIPKIN_PORT:-9411}:
# UI on http://localhost:9411/zipkin/, spans accepted on /api/v2/spans, read back on /api/v2/trace/{id}.
# Storage is in memory (at most MART_ZIPKIN_MAX_SPANS spans, default 200000): a restart forgets the traces.
# See docs/tracing.md.
#
# Locations:
#   jar     ${MART_CACHE_DIR:-$HOME/.cache/online-mart}/zipkin-<version>/zipkin-server-<version>-exec.jar
#   state   ${MART_ZIPKIN_DIR:-${MART_DATA_DIR:-<repo>/.data}/zipkin}/: zipkin.pid, zipkin.out (JVM stdout/stderr)
set -euo pipefail

ZIPKIN_VERSION="3.6.1"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="${MART_CACHE_DIR:-$HOME/.cache/online-mart}/zipkin-${ZIPKIN_VERSION}"
JAR="$CACHE_DIR/zipkin-server-${ZIPKIN_VERSION}-exec.jar"
DATA_DIR="${MART_DATA_DIR:-$REPO_ROOT/.data}"
ZIPKIN_DIR="${MART_ZIPKIN_DIR:-$DATA_DIR/zipkin}"
PID_FILE="$ZIPKIN_DIR/zipkin.pid"
OUT_FILE="$ZIPKIN_DIR/zipkin.out"
HOST="127.0.0.1"
PORT="${MART_ZIPKIN_PORT:-9411}"
MAX_SPANS="${MART_ZIPKIN_MAX_SPANS:-200000}"
HEAP_OPTS="${MART_ZIPKIN_HEAP_OPTS:--Xms64m -Xmx512m}"
START_TIMEOUT=120
STOP_TIMEOUT=20

log() { printf '[zipkin] %s\n' "$*"; }
die() { printf '[zipkin] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/daemon.sh"

apt_install() {
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null
    fi
}

need_java() {
    command -v java >/dev/null 2>&1 && return 0
    log "java not found: installing openjdk-17-jre-headless"
    apt_install openjdk-17-jre-headless
}

jar_present() { [[ -f "$CACHE_DIR/.complete" && -s "$JAR" ]]; }

cmd_install() {
    if jar_present; then
        log "zipkin ${ZIPKIN_VERSION} already installed ($JAR)"
        return 0
    fi
    need_java
    if ! command -v mvn >/dev/null 2>&1; then
        log "mvn not found: installing maven"
        apt_install maven
    fi
    local tmp="$CACHE_DIR/jar.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    log "fetching io.zipkin:zipkin-server:${ZIPKIN_VERSION}:jar:exec with mvn"
    mvn -B -q -Dstyle.color=never "${DEPENDENCY_PLUGIN}:copy" \
        -Dartifact="io.zipkin:zipkin-server:${ZIPKIN_VERSION}:jar:exec" -DoutputDirectory="$tmp"
    [[ -s "$tmp/$(basename "$JAR")" ]] || die "mvn did not produce $(basename "$JAR") in $tmp"
    mv -f "$tmp/$(basename "$JAR")" "$JAR"
    rm -rf "$tmp"
    touch "$CACHE_DIR/.complete"
    log "installed zipkin ${ZIPKIN_VERSION} ($JAR)"
}

# PID of our server, if running (stale pid files are ignored).
running_pid() { daemon_pid "$PID_FILE" 'zipkin-server'; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# GET /health over bash's /dev/tcp (no curl needed): Zipkin answers {"status":"UP",...} when ready.
healthy() {
    port_open "$HOST" "$PORT" || return 1
    local reply
    reply="$(
        exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
        printf 'GET /health HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$HOST" "$PORT" >&3
        timeout 5 cat <&3
    )" 2>/dev/null || return 1
    [[ "$reply" == *'"status" : "UP"'* || "$reply" == *'"status":"UP"'* ]]
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        if healthy; then
            log "already running (pid $pid)"
            log "zipkin ready on http://${HOST}:${PORT}/zipkin/"
            return 0
        fi
        log "process $pid is running but not answering yet; waiting"
    else
        if port_open "$HOST" "$PORT"; then
            if healthy; then
                log "a Zipkin not started by this script already answers on ${HOST}:${PORT}; using it"
                return 0
            fi
            die "port ${PORT} on ${HOST} is taken by another process; stop it first"
        fi
        jar_present || cmd_install
        need_java
        mkdir -p "$ZIPKIN_DIR"
        log "starting zipkin ${ZIPKIN_VERSION} (in-memory storage, log: $OUT_FILE)"
        # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM flags
        STORAGE_TYPE=mem MEM_MAX_SPANS="$MAX_SPANS" QUERY_PORT="$PORT" \
            nohup java $HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
            -jar "$JAR" --armeria.ports[0].ip="$HOST" --armeria.ports[0].port="$PORT" \
            --logging.level.zipkin2=WARN >>"$OUT_FILE" 2>&1 </dev/null &
        pid=$!
        printf '%s\n' "$pid" >"$PID_FILE"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$OUT_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "zipkin (pid $pid) exited during start-up (see $OUT_FILE)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$OUT_FILE" >&2 || true
            die "zipkin (pid $pid) did not answer on ${HOST}:${PORT} within ${START_TIMEOUT}s (see $OUT_FILE)"
        fi
        sleep 0.5
    done
    log "zipkin ready on http://${HOST}:${PORT}/zipkin/ (pid $pid)"
}

cmd_stop() { daemon_stop zipkin "$PID_FILE" 'zipkin-server' "$STOP_TIMEOUT"; }

cmd_status() {
    local pid
    if healthy; then
        if pid="$(running_pid)"; then
            log "running (pid $pid) on http://${HOST}:${PORT}/zipkin/, zipkin ${ZIPKIN_VERSION}"
        else
            log "a Zipkin not started by this script answers on ${HOST}:${PORT}"
        fi
        return 0
    fi
    if pid="$(running_pid)"; then
        log "process $pid is running but does not answer on ${HOST}:${PORT}"
    else
        log "not running"
    fi
    return 1
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {install|start|stop|restart|status}" >&2
        exit 2
        ;;
esac
