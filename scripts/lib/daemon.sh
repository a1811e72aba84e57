# shellcheck shell=bash
# Helpers for the background servers of scripts/infra (Kafka, Zipkin, Mailpit): a pid file, the process it
# names, and a bounded stop. Sourced; the caller defines log().

# daemon_pid PID_FILE PATTERN: print the pid in PID_FILE if that process runs and its command line matches
# PATTERN (a pid file left by a crash, or a pid reused by another program, is not ours).
daemon_pid() {
    local pid_file="$1" pattern="$2" pid
    [[ -f "$pid_file" ]] || return 1
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    printf '%s\n' "$pid"
}

# daemon_stop NAME PID_FILE PATTERN TIMEOUT_S: SIGTERM, wait up to TIMEOUT_S, then SIGKILL; remove PID_FILE.
daemon_stop() {
    local name="$1" pid_file="$2" pattern="$3" timeout="$4" pid
    if ! pid="$(daemon_pid "$pid_file" "$pattern")"; then
        rm -f "$pid_file"
        log "not running"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "still alive after ${timeout}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
    done
    rm -f "$pid_file"
    log "stopped"
}
