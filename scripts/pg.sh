#!/usr/bin/env bash
# Makes a local PostgreSQL server ready for the test suite and the benchmarks,
# on Debian 12 (a developer machine or a fresh CI runner), as root. Idempotent:
# run it as often as you like.
#
#   eval "$(scripts/pg.sh)"     # sets TEST_DATABASE_URL, BENCH_DATABASE_URL, PGBENCH
#
# What it does:
#   1. installs postgresql + postgresql-contrib with apt-get if missing;
#   2. makes sure a cluster exists and is running (Debian's pg_createcluster /
#      pg_ctlcluster, which work without systemd);
#   3. sets the password of user `postgres` (default `postgres`) so TCP logins
#      on 127.0.0.1 work with the stock scram-sha-256 pg_hba rule;
#   4. waits until the server accepts connections;
#   5. makes `pgbench` available on PATH;
#   6. prints `export ...` lines on stdout. Everything else goes to stderr.
#
# Environment: PG_PASSWORD (default postgres).
set -euo pipefail

PASSWORD="${PG_PASSWORD:-postgres}"

log() { echo "pg.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts the server as user postgres)"

# 1. Packages.
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql and postgresql-contrib"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql postgresql-contrib >&2
fi

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
[ -x "/usr/lib/postgresql/$VERSION/bin/postgres" ] || die "no PostgreSQL server binary under /usr/lib/postgresql"
CLUSTER=main

# 2. A cluster, running. Without systemd, pg_ctlcluster runs pg_ctl itself.
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
    log "creating cluster $VERSION/$CLUSTER"
    pg_createcluster "$VERSION" "$CLUSTER" >&2
fi
install -d -o postgres -g postgres -m 2775 /var/run/postgresql

status() { pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { print $4 }'; }
PORT="$(pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1 == v && $2 == c { print $3 }')"
if [ "$(status)" != "online" ]; then
    log "starting cluster $VERSION/$CLUSTER on port $PORT"
    # A stale pid file from a killed container is handled by pg_ctl itself.
    pg_ctlcluster "$VERSION" "$CLUSTER" start >&2 || {
        log "pg_ctlcluster failed; last lines of the server log:"
        tail -n 20 "/var/log/postgresql/postgresql-$VERSION-$CLUSTER.log" >&2 || true
        exit 1
    }
fi

# 4. Wait for it (socket first, to set the password over peer auth).
PG_ISREADY="/usr/lib/postgresql/$VERSION/bin/pg_isready"
for _ in $(seq 1 60); do
    if "$PG_ISREADY" -q -h /var/run/postgresql -p "$PORT"; then break; fi
    sleep 0.5
done
"$PG_ISREADY" -q -h /var/run/postgresql -p "$PORT" || die "server on port $PORT did not come up within 30 s"

# 3. Password for TCP logins.
# (psql interpolates :'pw' only in script input, not in -c.)
echo "ALTER USER postgres PASSWORD :'pw';" | runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 \
    -p "$PORT" -h /var/run/postgresql -d postgres -v pw="$PASSWORD" >&2

for _ in $(seq 1 20); do
    if "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 0.5
done
"$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" || die "server does not accept TCP connections on 127.0.0.1:$PORT"

URL="postgres://postgres:${PASSWORD}@127.0.0.1:${PORT}/postgres"
PGPASSWORD="$PASSWORD" psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null \
    || die "cannot log in as postgres over TCP with the configured password"

# 5. pgbench ships with the server package; Debian's wrapper puts it on PATH.
PGBENCH="$(command -v pgbench || true)"
if [ -z "$PGBENCH" ]; then
    PGBENCH="/usr/lib/postgresql/$VERSION/bin/pgbench"
    [ -x "$PGBENCH" ] || die "pgbench not found (expected $PGBENCH)"
    ln -sf "$PGBENCH" /usr/local/bin/pgbench
fi

log "PostgreSQL $VERSION ready at 127.0.0.1:$PORT"
echo "export TEST_DATABASE_URL='$URL'"
echo "export BENCH_DATABASE_URL='$URL'"
echo "export PGBENCH='$PGBENCH'"
