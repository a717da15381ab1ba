# shellcheck shell=bash
# Throwaway PostgreSQL 15 clusters for development, tests and benchmarks.
# Source this file, then: pg_start DIR  (exports the URLs below) ... pg_stop DIR
#
#   OWNER_URL  the cluster's superuser, used to run migrations
#   APP_URL    comprobify_app, the role the server logs in as
#   APP_SOCKET_URL  the same role through the cluster's Unix socket in DIR:
#              cheaper than loopback TCP for a server on the same machine
#
# With PG_TLS=1 the cluster also accepts TLS, with a self-signed certificate
# made when the cluster is created: APP_TLS_URL is APP_URL with sslmode=require,
# and PGSSLMODE=disable keeps every other client (libpq's default, "prefer",
# would encrypt) on plain connections.
#
# When run as root the cluster belongs to the `postgres` user (initdb refuses root).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

pg_as_owner() {
    # From / as postgres, who may not be able to enter the current folder.
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pg_start DIR [PORT]: creates the cluster in DIR if it has none, starts it on
# 127.0.0.1 (a free port unless PORT is given) and exports OWNER_URL, APP_URL,
# APP_SOCKET_URL, PGPORT and COMPROBIFY_APP_PASSWORD (and, with PG_TLS=1,
# APP_TLS_URL and PGSSLMODE).
pg_start() {
    local dir=$1 port=${2:-}
    if [ ! -x "$PG_BIN/initdb" ]; then
        echo "PostgreSQL 15 server binaries are missing: apt-get install -y postgresql-15" >&2
        return 1
    fi
    # The folder holds the passwords and the Unix socket (where local
    # connections are trusted): no other user may enter it.
    mkdir -p "$dir"
    if ! chmod 700 "$dir" 2>/dev/null; then
        echo "cannot restrict $dir, owned by $(stat -c %U "$dir"): run as that user (or root), or remove the folder" >&2
        return 1
    fi
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -x "$dir"; then
            echo "the postgres user cannot reach $dir: give its parent folders o+x, or put the checkout elsewhere" >&2
            return 1
        fi
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        (umask 077
            head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/owner.pw"
            head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/app.pw")
        [ "$(id -u)" = 0 ] && chown postgres: "$dir/owner.pw" "$dir/app.pw"
        pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/owner.pw" \
            --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; return 1; }
    fi
    local tls=""
    if [ "${PG_TLS:-0}" = 1 ]; then
        if [ ! -f "$dir/server.crt" ]; then
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
                -subj /CN=127.0.0.1 -keyout "$dir/server.key" -out "$dir/server.crt" 2>/dev/null \
                || { echo "openssl could not make the cluster's TLS certificate" >&2; return 1; }
            chmod 600 "$dir/server.key"
            [ "$(id -u)" = 0 ] && chown postgres: "$dir/server.key" "$dir/server.crt"
        fi
        tls="-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    fi
    # A cluster already running in this folder (a second scripts/run beside
    # the first) is said so in one line, not as pg_ctl's failure to start.
    if pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        echo "a PostgreSQL server already runs on $dir (pid $(head -1 "$dir/data/postmaster.pid")): stop what started it first (Ctrl-C of scripts/run)" >&2
        return 1
    fi
    [ -n "$port" ] || port=$(pg_free_port)
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 -c shared_buffers=256MB -c fsync=${PG_FSYNC:-on} -c max_locks_per_transaction=256 $tls" \
        >/dev/null || { tail -20 "$dir/postgres.log" >&2; return 1; }
    echo "$port" > "$dir/port"
    local owner_pw app_pw
    owner_pw=$(cat "$dir/owner.pw"); app_pw=$(cat "$dir/app.pw")
    export PGPORT=$port
    export OWNER_URL="postgresql://postgres:$owner_pw@127.0.0.1:$port/postgres"
    export APP_URL="postgresql://comprobify_app:$app_pw@127.0.0.1:$port/postgres"
    # PostgreSQL makes no socket when its path is too long for one (over 107
    # bytes): then APP_SOCKET_URL is APP_URL.
    if [ -S "$dir/.s.PGSQL.$port" ]; then
        export APP_SOCKET_URL="postgresql://comprobify_app:$app_pw@/postgres?host=$(cd "$dir" && pwd)&port=$port"
    else
        export APP_SOCKET_URL=$APP_URL
    fi
    export COMPROBIFY_APP_PASSWORD=$app_pw
    if [ -n "$tls" ]; then
        export APP_TLS_URL="$APP_URL?sslmode=require" PGSSLMODE=disable
    fi
}

pg_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
        || pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
}
