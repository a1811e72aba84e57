#!/bin/bash
# The official postgres image's start-up, the part compose.yaml relies on: on an empty data directory,
# initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD (scram-sha-256 over TCP), create POSTGRES_DB;
# then run the server as the postgres user, listening on all addresses.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [[ "$(id -u)" == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    "$PGBIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    "$PGBIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [[ "$POSTGRES_DB" != "postgres" ]]; then
        "$PGBIN/psql" -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\""
    fi
    "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop
    echo "postgres-entrypoint: initialised $PGDATA (database $POSTGRES_DB, owner $POSTGRES_USER)"
fi

exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@"
