#!/usr/bin/env bash
# Local PostgreSQL cluster for development and tests (no Docker).
#
#   scripts/infra/postgres.sh start       init the cluster once, start it, create the roles + databases
#   scripts/infra/postgres.sh stop        fast shutdown
#   scripts/infra/postgres.sh status      exit 0 when the cluster is up and accepts connections
#   scripts/infra/postgres.sh url NAME    print the SQLAlchemy URL for a service / role (no server needed)
#
# Cluster: listens on 127.0.0.1:5432 only, unix socket inside the cluster dir, `trust` auth on loopback
# and on the socket (a local developer cluster: never expose it). fsync stays on; max_connections=300,
# shared_buffers=256MB. One LOGIN role + one database (OWNER = the role) per service: user_service,
# product_service, inventory_service, order_service, payment_service, notification_service; plus
# mart_test (CREATEDB, tests create throwaway databases with it) and bench (for pgbench).
#
# Where the cluster lives: ${MART_DATA_DIR:-<repo>/.data}/pg. PostgreSQL refuses to run as root, so when the
# script runs as root, initdb/pg_ctl run as the `postgres` OS user (runuser) and the pg dir is owned by it.
# If that user cannot traverse the data dir (e.g. a clone under /root), the cluster goes to
# /var/lib/online-mart/<first 12 hex of sha256(data dir path)>/pg instead and <data dir>/pg becomes a
# symlink to it. The server log is <cluster dir>/postgresql.log.
#
# If port 5432 is taken by a Debian-managed cluster (pg_lsclusters), that cluster is stopped; any other
# listener makes `start` fail with a message naming it.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
DATA_DIR="${MART_DATA_DIR:-$REPO_ROOT/.data}"
PG_USER_OS="postgres"
HOST="127.0.0.1"
PORT=5432
START_TIMEOUT=60
SERVICES=(user_service product_service inventory_service order_service payment_service notification_service)
EXTRA_ROLES=(mart_test bench)
PREFERRED_MAJOR=15

log() { printf '[postgres] %s\n' "$*"; }
die() { printf '[postgres] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a server-side command as the postgres OS user when we are root.
as_pg() {
    if is_root; then
        runuser -u "$PG_USER_OS" -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    local want="${1:-}" d
    if [[ -n "$want" ]]; then
        [[ -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]] && { printf '%s\n' "/usr/lib/postgresql/$want/bin"; return 0; }
        return 1
    fi
    if [[ -x "/usr/lib/postgresql/$PREFERRED_MAJOR/bin/pg_ctl" ]]; then
        printf '%s\n' "/usr/lib/postgresql/$PREFERRED_MAJOR/bin"
        return 0
    fi
    d="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/pg_ctl' 2>/dev/null | sort -V | tail -n1)"
    [[ -n "$d" ]] || return 1
    dirname "$d"
}

install_postgres() {
    log "PostgreSQL server binaries not found: apt-get install -y postgresql"
    is_root || die "not root: install PostgreSQL yourself (apt-get install postgresql)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null
    fi
}

# Sets PGDATA (the real cluster dir) and creates it with the right owner.
resolve_pgdata() {
    mkdir -p "$DATA_DIR"
    local link="$DATA_DIR/pg"
    if ! is_root; then
        PGDATA="$link"
    elif [[ -L "$link" ]]; then
        PGDATA="$(readlink -f "$link")"
    elif runuser -u "$PG_USER_OS" -- test -x "$DATA_DIR"; then
        PGDATA="$link"
    else
        local hash
        hash="$(printf '%s' "$(cd "$DATA_DIR" && pwd -P)" | sha256sum | cut -c1-12)"
        PGDATA="/var/lib/online-mart/$hash/pg"
        mkdir -p "$(dirname "$PGDATA")"
        chmod 755 /var/lib/online-mart "$(dirname "$PGDATA")"
        if [[ -d "$link" ]] && [[ -z "$(ls -A "$link")" ]]; then rmdir "$link"; fi
        [[ -e "$link" ]] || ln -s "$PGDATA" "$link"
        log "postgres cannot traverse $DATA_DIR: cluster lives in $PGDATA (symlinked from $link)"
    fi
    mkdir -p "$PGDATA"
    if is_root; then
        chown "$PG_USER_OS:$PG_USER_OS" "$PGDATA"
    fi
    chmod 700 "$PGDATA"
    # unix socket paths are limited to 107 bytes
    if ((${#PGDATA} + 14 > 107)); then
        SOCKET_DIR="/tmp/online-mart-$(printf '%s' "$PGDATA" | sha256sum | cut -c1-12)"
        mkdir -p "$SOCKET_DIR"
        if is_root; then chown "$PG_USER_OS:$PG_USER_OS" "$SOCKET_DIR"; fi
        chmod 700 "$SOCKET_DIR"
    else
        SOCKET_DIR="$PGDATA"
    fi
    PGLOG="$PGDATA/postgresql.log"
}

setup_bindir() {
    local ver=""
    if [[ -f "$PGDATA/PG_VERSION" ]]; then
        ver="$(cat "$PGDATA/PG_VERSION")"
    fi
    if ! BINDIR="$(find_bindir "$ver")"; then
        install_postgres
        BINDIR="$(find_bindir "$ver")" || die "PostgreSQL ${ver:-server} binaries not found under /usr/lib/postgresql after install"
    fi
}

write_config() {
    as_pg tee "$PGDATA/online-mart.conf" >/dev/null <<EOF
# generated by scripts/infra/postgres.sh (rewritten on every start)
listen_addresses = '${HOST}'
port = ${PORT}
unix_socket_directories = '${SOCKET_DIR}'
max_connections = 300
shared_buffers = 256MB
fsync = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<'EOF'
# generated by scripts/infra/postgres.sh: local developer cluster, trust on loopback only
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
EOF
    if ! grep -q "^include_if_exists = 'online-mart.conf'" "$PGDATA/postgresql.conf"; then
        printf "\ninclude_if_exists = 'online-mart.conf'\n" | as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
    fi
}

init_cluster() {
    if [[ -f "$PGDATA/PG_VERSION" ]]; then
        return 0
    fi
    log "initdb in $PGDATA ($("$BINDIR/postgres" --version))"
    as_pg "$BINDIR/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=trust >"$DATA_DIR/pg-initdb.log" 2>&1 \
        || { cat "$DATA_DIR/pg-initdb.log" >&2; die "initdb failed"; }
}

ours_running() {
    [[ -f "$PGDATA/postmaster.pid" ]] && as_pg "$BINDIR/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Free port 5432 if a Debian-managed cluster holds it; fail clearly for anything else.
free_port() {
    port_open || return 0
    local stopped=0 ver name port status
    if command -v pg_lsclusters >/dev/null 2>&1; then
        while read -r ver name port status _; do
            if [[ "$port" == "$PORT" && "$status" == online* ]]; then
                log "port $PORT is taken by the Debian cluster $ver/$name: stopping it (pg_ctlcluster $ver $name stop)"
                pg_ctlcluster "$ver" "$name" stop -m fast || die "could not stop cluster $ver/$name"
                stopped=1
            fi
        done < <(pg_lsclusters -h 2>/dev/null || true)
    fi
    if ((stopped)); then
        local tries=20
        while ((tries-- > 0)); do port_open || return 0; sleep 0.5; done
    fi
    local who=""
    if command -v ss >/dev/null 2>&1; then
        who="$(ss -ltnpH "sport = :$PORT" 2>/dev/null | head -n3)"
    fi
    die "port $PORT on $HOST is taken by another process (not the cluster in $PGDATA)${who:+: $who}. Stop it first."
}

wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$BINDIR/pg_isready" -q -h "$HOST" -p "$PORT" -d postgres -U postgres; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "$PGLOG" >&2 || true
            die "PostgreSQL did not become ready on $HOST:$PORT within ${START_TIMEOUT}s (log: $PGLOG)"
        fi
        sleep 0.5
    done
}

psql_admin() {
    "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}

ensure_roles() {
    local name attrs sql="SET client_min_messages = warning;"$'\n'
    for name in "${SERVICES[@]}" "${EXTRA_ROLES[@]}"; do
        attrs="LOGIN"
        [[ "$name" == mart_test ]] && attrs="LOGIN CREATEDB"
        sql+="SELECT format('CREATE ROLE %I', '$name') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$name')"$'\n'"\\gexec"$'\n'
        sql+="ALTER ROLE \"$name\" $attrs;"$'\n'
        sql+="SELECT format('CREATE DATABASE %I OWNER %I', '$name', '$name') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$name')"$'\n'"\\gexec"$'\n'
        sql+="ALTER DATABASE \"$name\" OWNER TO \"$name\";"$'\n'
    done
    # DROP DATABASE ... WITH (FORCE) on a test database must also end an autovacuum worker there.
    sql+="GRANT pg_signal_backend TO mart_test;"$'\n'
    printf '%s' "$sql" | psql_admin -f - >/dev/null
    log "roles + databases ensured: ${SERVICES[*]} ${EXTRA_ROLES[*]}"
}

cmd_start() {
    resolve_pgdata
    setup_bindir
    init_cluster
    if ours_running; then
        log "already running ($PGDATA)"
    else
        free_port
        write_config
        log "starting PostgreSQL $(cat "$PGDATA/PG_VERSION") on $HOST:$PORT (data: $PGDATA, log: $PGLOG)"
        as_pg "$BINDIR/pg_ctl" start -D "$PGDATA" -l "$PGLOG" -w -t "$START_TIMEOUT" -s \
            || { tail -n 30 "$PGLOG" >&2 || true; die "pg_ctl start failed (log: $PGLOG)"; }
    fi
    wait_ready
    ensure_roles
    log "postgres ready on $HOST:$PORT"
}

cmd_stop() {
    resolve_pgdata
    setup_bindir
    if ! ours_running; then
        log "not running"
        return 0
    fi
    as_pg "$BINDIR/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 -s || die "pg_ctl stop failed (log: $PGLOG)"
    log "stopped"
}

cmd_status() {
    resolve_pgdata
    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        log "no cluster in $PGDATA"
        return 1
    fi
    setup_bindir
    if ours_running && "$BINDIR/pg_isready" -q -h "$HOST" -p "$PORT" -d postgres -U postgres; then
        log "running on $HOST:$PORT (data: $PGDATA)"
        return 0
    fi
    log "not running (data: $PGDATA)"
    return 1
}

cmd_url() {
    local name="${1:-}" known
    [[ -n "$name" ]] || die "usage: $0 url NAME"
    for known in "${SERVICES[@]}" "${EXTRA_ROLES[@]}"; do
        if [[ "$name" == "$known" ]]; then
            printf 'postgresql+asyncpg://%s@%s:%s/%s\n' "$name" "$HOST" "$PORT" "$name"
            return 0
        fi
    done
    die "unknown name '$name' (one of: ${SERVICES[*]} ${EXTRA_ROLES[*]})"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url "${2:-}" ;;
    *)
        echo "usage: $0 {start|stop|status|url NAME}" >&2
        exit 2
        ;;
esac
