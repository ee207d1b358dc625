# Shared shell functions of the scripts in test/ and of demo/run.sh:
# install what is missing, build and install the extension, and run a
# throwaway PostgreSQL cluster on a private socket directory.
#
# PostgreSQL refuses to run as root, so when these scripts run as root
# (CI) the server and the TAP tests run as the "postgres" OS user.

# PG_MAJOR selects the PostgreSQL major version (default 15): its Debian
# packages are installed and its pg_config used.  Given PG_CONFIG instead,
# the major version is read from it.
if [ -z "${PG_MAJOR:-}" ] && [ -n "${PG_CONFIG:-}" ] && [ -x "$PG_CONFIG" ]; then
    PG_MAJOR="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
fi
: "${PG_MAJOR:=15}"
export PG_MAJOR
export PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}"
PGBIN="$("$PG_CONFIG" --bindir 2>/dev/null || echo "/usr/lib/postgresql/$PG_MAJOR/bin")"
export PGBIN
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One locale for everything these scripts start (initdb, servers, TAP
# clusters): the caller's may not be installed, and output must not vary.
# (The TAP framework drops LC_ALL, so LANG is set too.)
export LANG=C.UTF-8 LC_ALL=C.UTF-8
unset LANGUAGE LC_CTYPE LC_COLLATE LC_MESSAGES LC_MONETARY LC_NUMERIC LC_TIME

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Run a command as the server's OS user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Install the Debian packages the build and the suites need, if missing.
ensure_packages() {
    # the client tests (test/clients) need libpq, git, Debian's python3
    # with psycopg 3, Ruby with ActiveRecord and pg, Node.js with npm, and
    # tmux (the terminal of deploy-progress-watch's screen tests), libcurl
    # (its --webhook relay), libmicrohttpd with pkg-config (its --serve) and
    # headless Chromium driven by Selenium (the web page's tests), and
    # Prometheus with postgres_exporter (the shipped rules and dashboard)
    local pkgs=(build-essential "postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
                "postgresql-$PG_MAJOR-cron" postgresql-contrib libipc-run-perl
                libpq-dev libcurl4-openssl-dev git python3-psycopg ruby-activerecord ruby-pg tmux
                pkg-config libmicrohttpd-dev chromium chromium-driver python3-selenium
                prometheus prometheus-postgres-exporter "$@")
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # Debian's nodejs and npm, unless a Node.js with its npm is there already
    # (NodeSource's nodejs package bundles npm and conflicts with Debian's)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # the Debian package starts a cluster of its own; these scripts do not use it
}

# Build with warnings as errors (the shipped Makefile leaves -Werror out) and install.
build_install() {
    log "building and installing deploy_progress"
    make -C "$REPO" -s clean PG_CONFIG="$PG_CONFIG" >/dev/null
    make -C "$REPO" -s PG_CONFIG="$PG_CONFIG" \
        PG_CFLAGS="-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror ${EXTRA_CFLAGS:-}"
    # sudo only when the installation is not writable (a private copy may be)
    if [ -w "$("$PG_CONFIG" --pkglibdir)" ] && [ -w "$("$PG_CONFIG" --sharedir)/extension" ]; then
        make -C "$REPO" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
    else
        as_root make -C "$REPO" -s install PG_CONFIG="$PG_CONFIG" >/dev/null
    fi
}

# start_cluster [extra postgresql.conf lines...]: initdb + start a server
# listening only on a private Unix socket.  Sets PGHOST, PGPORT, PGUSER,
# PGDATABASE and CLUSTER_DIR; stop_cluster removes everything.
start_cluster() {
    CLUSTER_DIR="$(mktemp -d /tmp/deploy_progress.XXXXXX)"
    trap stop_cluster EXIT      # also removes a cluster that failed to start
    chmod 755 "$CLUSTER_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$CLUSTER_DIR"; fi
    export PGHOST="$CLUSTER_DIR" PGPORT="${PGPORT_TEST:-54$(( RANDOM % 90 + 10 ))}" PGUSER=postgres PGDATABASE=postgres
    # (run from the cluster's directory: the caller's may be closed to postgres)
    (cd "$CLUSTER_DIR" && as_pg "$PGBIN/initdb" -D "$CLUSTER_DIR/data" -U postgres -A trust --no-sync >/dev/null)
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$CLUSTER_DIR'"
        echo "port = $PGPORT"
        echo "fsync = off"
        echo "max_connections = 50"
        for line in "$@"; do echo "$line"; done
    } >> "$CLUSTER_DIR/data/postgresql.conf"
    if ! (cd "$CLUSTER_DIR" && as_pg "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null); then
        tail -n 20 "$CLUSTER_DIR/server.log" >&2 || true
        return 1
    fi
}

stop_cluster() {
    if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
        (cd "$CLUSTER_DIR" && as_pg "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1) || true
        rm -rf "$CLUSTER_DIR"
    fi
    CLUSTER_DIR=
}
