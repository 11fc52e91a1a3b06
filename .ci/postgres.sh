# Sourced by .ci/run: a throwaway PostgreSQL server (Debian's package) on 127.0.0.1 for the tests that
# run the activity store on a real database. Exports ARRISK_TEST_POSTGRES_URL; stops the server on exit.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
PG_DATA=$(mktemp -d /tmp/arrisk-pg.XXXXXX)
PG_PORT=${ARRISK_PG_PORT:-55432}
# initdb refuses to run as root: the cluster belongs to the postgres user when CI runs as root.
if [ "$(id -u)" = 0 ]; then PG_AS="runuser -u postgres --"; chown postgres "$PG_DATA"; else PG_AS=""; fi
$PG_AS "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U arrisk >/dev/null
$PG_AS "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA" start >/dev/null
trap '$PG_AS "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1; rm -rf "$PG_DATA"' EXIT
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U arrisk arrisk_test
export ARRISK_TEST_POSTGRES_URL="postgresql+psycopg://arrisk@127.0.0.1:$PG_PORT/arrisk_test"
echo "PostgreSQL for the tests: $ARRISK_TEST_POSTGRES_URL"
