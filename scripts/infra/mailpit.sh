#!/usr/bin/env bash
# Mailpit, the mail catcher of the local distributed mode (`mart dist up` starts it; docs/looking-around.md).
#
#   scripts/infra/mailpit.sh install   go install github.com/axllent/mailpit@<version> into the cache, once
#   scripts/infra/mailpit.sh start     start it (SMTP 127.0.0.1:1025, HTTP API 127.0.0.1:8025), wait until ready
#   scripts/infra/mailpit.sh stop      SIGTERM, wait up to 10 s, then SIGKILL
#   scripts/infra/mailpit.sh status    exit 0 when it answers
#
# Built from the Go module proxy with the installed Go toolchain (Go >= 1.21 on PATH or in /usr/local/go).
# The Go module ships no built web UI (its assets are built with npm in Mailpit's own release process), so
# the web page at :8025 is blank; the REST API (/api/v1/messages, /api/v1/search, /api/v1/message/<id>)
# works, and `mart mail` style tools and the tests use it. See docs/adr/0028-mailpit-in-the-local-distributed-mode.md.
#
# Locations:
#   binary  ${MART_CACHE_DIR:-$HOME/.cache/online-mart}/mailpit-<version>/bin/mailpit
#   state   ${MART_MAILPIT_DIR:-${MART_DATA_DIR:-<repo>/.data}/mailpit}/: mailpit.db (the messages),
#           mailpit.pid, mailpit.out
# Ports: MART_MAILPIT_SMTP_PORT (1025) and MART_MAILPIT_HTTP_PORT (8025), on 127.0.0.1 only.
# Kept: the newest MART_MAILPIT_MAX messages (5000); older ones are deleted.
set -euo pipefail

MAILPIT_VERSION="1.33.1"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE_DIR="${MART_CACHE_DIR:-$HOME/.cache/online-mart}/mailpit-${MAILPIT_VERSION}"
BIN="$CACHE_DIR/bin/mailpit"
DATA_DIR="${MART_DATA_DIR:-$REPO_ROOT/.data}"
STATE_DIR="${MART_MAILPIT_DIR:-$DATA_DIR/mailpit}"
PID_FILE="$STATE_DIR/mailpit.pid"
OUT_FILE="$STATE_DIR/mailpit.out"
HOST="127.0.0.1"
SMTP_PORT="${MART_MAILPIT_SMTP_PORT:-1025}"
HTTP_PORT="${MART_MAILPIT_HTTP_PORT:-8025}"
START_TIMEOUT=30
STOP_TIMEOUT=10

log() { printf '[mailpit] %s\n' "$*"; }
die() { printf '[mailpit] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/daemon.sh"

find_go() {
    if command -v go >/dev/null 2>&1; then command -v go; return 0; fi
    if [[ -x /usr/local/go/bin/go ]]; then printf '%s\n' /usr/local/go/bin/go; return 0; fi
    if [[ -x /usr/lib/go/bin/go ]]; then printf '%s\n' /usr/lib/go/bin/go; return 0; fi
    return 1
}

cmd_install() {
    if [[ -x "$BIN" ]] && "$BIN" version --no-release-check >/dev/null 2>&1; then
        log "mailpit ${MAILPIT_VERSION} already installed ($BIN)"
        return 0
    fi
    local go
    go="$(find_go)" || die "Go is needed to build Mailpit (Go >= 1.21; it fetches the toolchain Mailpit's go.mod asks for from the Go module proxy)"
    # Go >= 1.21 downloads the newer toolchain Mailpit needs (go 1.26) by itself (GOTOOLCHAIN=auto)
    "$go" version | grep -Eq 'go1\.(2[1-9]|[3-9][0-9])' || die "$("$go" version): Go >= 1.21 is needed (Debian 12's golang-go is 1.19)"
    log "go install github.com/axllent/mailpit@v${MAILPIT_VERSION} ($("$go" version))"
    mkdir -p "$CACHE_DIR/bin"
    # a throwaway module directory: `go install pkg@version` must not see the caller's go.mod
    (cd "$CACHE_DIR" && GOBIN="$CACHE_DIR/bin" GOTOOLCHAIN=auto "$go" install \
        "github.com/axllent/mailpit@v${MAILPIT_VERSION}") || die "go install failed"
    [[ -x "$BIN" ]] || die "go install did not produce $BIN"
    log "installed $BIN"
}

running_pid() { daemon_pid "$PID_FILE" 'mailpit'; }

answers() {
    (exec 3<>"/dev/tcp/$HOST/$HTTP_PORT") 2>/dev/null || return 1
    "$BIN" readyz --listen "${HOST}:${HTTP_PORT}" >/dev/null 2>&1
}

cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        if answers; then
            log "already running (pid $pid): SMTP ${HOST}:${SMTP_PORT}, API http://${HOST}:${HTTP_PORT}/api/v1/messages"
            return 0
        fi
        log "process $pid is running but not answering yet; waiting"
    else
        if (exec 3<>"/dev/tcp/$HOST/$SMTP_PORT") 2>/dev/null || (exec 3<>"/dev/tcp/$HOST/$HTTP_PORT") 2>/dev/null; then
            die "port ${SMTP_PORT} or ${HTTP_PORT} on ${HOST} is taken by another process; stop it first"
        fi
        [[ -x "$BIN" ]] || cmd_install
        mkdir -p "$STATE_DIR"
        log "starting mailpit ${MAILPIT_VERSION} (log: $OUT_FILE)"
        nohup "$BIN" --disable-version-check \
            --smtp "${HOST}:${SMTP_PORT}" --listen "${HOST}:${HTTP_PORT}" \
            --database "$STATE_DIR/mailpit.db" --max "${MART_MAILPIT_MAX:-5000}" \
            >>"$OUT_FILE" 2>&1 </dev/null &
        pid=$!
        printf '%s\n' "$pid" >"$PID_FILE"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$OUT_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "mailpit (pid $pid) exited during start-up (see $OUT_FILE)"
        fi
        ((SECONDS < deadline)) || die "mailpit (pid $pid) did not answer within ${START_TIMEOUT}s (see $OUT_FILE)"
        sleep 0.2
    done
    log "mailpit ready (pid $pid): SMTP ${HOST}:${SMTP_PORT}, API http://${HOST}:${HTTP_PORT}/api/v1/messages"
}

cmd_stop() { daemon_stop mailpit "$PID_FILE" 'mailpit' "$STOP_TIMEOUT"; }

cmd_status() {
    local pid
    if pid="$(running_pid)" && answers; then
        log "running (pid $pid): SMTP ${HOST}:${SMTP_PORT}, API http://${HOST}:${HTTP_PORT}"
        return 0
    fi
    log "not running"
    return 1
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {install|start|stop|status}" >&2
        exit 2
        ;;
esac
