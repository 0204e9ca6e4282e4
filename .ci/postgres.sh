#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite and print the URL
# of a database the tests may use. Runs the server as the `postgres` user
# (PostgreSQL refuses to run as root). Installs PostgreSQL when missing, and
# PgBouncer, which the test suite starts in front of the server itself.
#
#   eval "$(bash .ci/postgres.sh)"   # exports CHECKPOINTDB_TEST_POSTGRES_URL
set -euo pipefail

PGPORT="${PGPORT:-54329}"
PGDATA_DIR="${PGDATA_DIR:-/tmp/checkpointdb-pg-$PGPORT}"

bindir=""
for candidate in /usr/lib/postgresql/*/bin; do
  [ -x "$candidate/pg_ctl" ] && bindir="$candidate"
done
if [ -z "$bindir" ]; then
  echo "PostgreSQL not found: installing it" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  for candidate in /usr/lib/postgresql/*/bin; do
    [ -x "$candidate/pg_ctl" ] && bindir="$candidate"
  done
fi
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "PgBouncer not found: installing it" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
fi
id postgres >/dev/null 2>&1 || useradd --system --create-home postgres

as_postgres() { runuser -u postgres -- "$@"; }

if ! as_postgres "$bindir/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
  rm -rf "$PGDATA_DIR"
  mkdir -p "$PGDATA_DIR"
  chown postgres: "$PGDATA_DIR"
  as_postgres "$bindir/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 >/dev/null
  # Durability is not under test on this throwaway server; speed is welcome.
  cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDATA_DIR'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  as_postgres "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w start >/dev/null
fi

psql_admin() { as_postgres "$bindir/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'checkpointdb'")" != "1" ]; then
  psql_admin -c "CREATE ROLE checkpointdb LOGIN PASSWORD 'checkpointdb' CREATEDB" >/dev/null
fi
# CREATEROLE: the tests of `checkpointdb db create-reader` create (and drop) roles.
psql_admin -c "ALTER ROLE checkpointdb CREATEROLE" >/dev/null
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'checkpointdb_test'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE checkpointdb_test OWNER checkpointdb" >/dev/null
fi
echo "export CHECKPOINTDB_TEST_POSTGRES_URL=postgresql+psycopg://checkpointdb:checkpointdb@127.0.0.1:$PGPORT/checkpointdb_test"
