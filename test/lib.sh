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

# server_packages MAJOR: the Debian packages of PostgreSQL MAJOR the build
# and the server suites need (the server, its development files, pg_cron,
# the compiler, libpq and IPC::Run for the TAP tests), by the names every
# Debian release uses.  test/matrix.sh installs the same in its root
# filesystems.
server_packages() {
    echo "postgresql-$1 postgresql-server-dev-$1 postgresql-$1-cron build-essential libipc-run-perl libpq-dev"
}

# Install the Debian packages the build and the suites need, if missing:
# those of PostgreSQL $PG_MAJOR (from PG_CONFIG, or PG_MAJOR; 15 by
# default, the version of bookworm) and the client suites', plus "$@".
ensure_packages() {
    # the client tests (test/clients) need libpq, git, Debian's python3
    # with psycopg 3, Ruby with ActiveRecord and pg, Node.js with npm, and
    # tmux (the terminal of deploy-progress-watch's screen tests), libcurl
    # (its --webhook relay), libmicrohttpd with pkg-config (its --serve) and
    # headless Chromium driven by Selenium (the web page's tests), and
    # Prometheus with postgres_exporter (the shipped rules and dashboard)
    local pkgs=($(server_packages "$PG_MAJOR") libcurl4-openssl-dev git python3-psycopg ruby-activerecord ruby-pg tmux
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

# The suites against the running cluster (start_cluster): each prints what
# failed and returns non-zero.  The regression and isolation suites run
# separately, so that a regression failure does not hide the isolation
# results.
run_regression() {
    log "regression suite (make installcheck)"
    if ! make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= ISOLATION= ; then
        [ -f "$REPO/regression.diffs" ] && cat "$REPO/regression.diffs"
        return 1
    fi
}

# pg_isolation_regress ships with the server's development files (Debian's
# PostgreSQL 13 has none); isolation_available says whether it is there.
isolation_available() {
    local pgxs_dir
    pgxs_dir="$(dirname "$("$PG_CONFIG" --pgxs)")/.."
    [ -x "$pgxs_dir/test/isolation/pg_isolation_regress" ] || [ -x "$PGBIN/pg_isolation_regress" ]
}

run_isolation() {
    log "isolation suite (make installcheck)"
    if ! make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= REGRESS= ; then
        [ -f "$REPO/output_iso/regression.diffs" ] && cat "$REPO/output_iso/regression.diffs"
        [ -f "$REPO/regression.diffs" ] && cat "$REPO/regression.diffs"
        return 1
    fi
}

# run_tap FILE...: runs TAP tests (paths or patterns relative to the tree,
# expanded there, for example 'test/t/*.pl') with prove as the server's OS
# user (the TAP framework starts clusters of its own, which must not run
# as root), with its logs in a directory that user owns; prints the end of
# the logs of a failure.  Returns prove's verdict.
run_tap() {
    local pgxs_dir tap_dir tap_src rc=0
    log "TAP suite"
    pgxs_dir="$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)"
    tap_dir="$(mktemp -d /tmp/deploy_progress_tap.XXXXXX)"
    tap_src="$REPO"
    if [ "$(id -u)" = 0 ]; then
        # postgres may not be able to read the tree (a clone under /root):
        # the tests run from a copy it owns
        tap_src="$tap_dir/src"
        mkdir "$tap_src"
        tar -C "$REPO" --exclude=./.git --exclude=./tmp_check -cf - . | tar -C "$tap_src" -xf -
        chown -R postgres: "$tap_dir"
    fi
    if ! (cd "$tap_src" && as_pg env TESTDIR="$tap_dir" PATH="$PGBIN:$PATH" DP_CITUS_SRC="$DP_CITUS_SRC" \
            PG_REGRESS="$pgxs_dir/src/test/regress/pg_regress" \
            prove -I "$pgxs_dir/src/test/perl" -I . ${PROVE_FLAGS:-} $*); then
        rc=1
        find "$tap_dir" -name 'regress_log_*' -exec tail -n 60 {} + 2>/dev/null || true
    fi
    rm -rf "$tap_dir"
    return $rc
}

# Citus, for the distributed-table test (test/t/018_citus.pl, run by
# test/citus.sh).  Its source is not on any package registry: it is looked
# for in ../shared/citus next to the repository, or in $DP_CITUS_SRC (a
# directory with citus-<version>.tar.gz and the *.patch files to apply).
# (next to the clone, else where this project's machines keep it)
if [ -z "${DP_CITUS_SRC:-}" ]; then
    for DP_CITUS_SRC in "$REPO/../shared/citus" /work/shared/citus; do
        [ -d "$DP_CITUS_SRC" ] && break
    done
fi
: "${DP_CITUS_VERSION:=13.2.2}"
: "${DP_CITUS_CACHE:=/var/cache/deploy_progress-citus}"
export DP_CITUS_SRC DP_CITUS_VERSION DP_CITUS_CACHE

# citus_source_missing: prints why Citus cannot be built (nothing when it can).
citus_source_missing() {
    if [ ! -f "$DP_CITUS_SRC/citus-$DP_CITUS_VERSION.tar.gz" ]; then
        echo "no Citus source: $DP_CITUS_SRC/citus-$DP_CITUS_VERSION.tar.gz is absent (set DP_CITUS_SRC)"
    fi
}

# ensure_citus: builds Citus from $DP_CITUS_SRC (the tarball plus its
# patches) for PG_CONFIG's PostgreSQL version, once, into a cache outside
# the clone ($DP_CITUS_CACHE/<PostgreSQL version>/<checksum of the tarball
# and patches>), then copies it into PG_CONFIG's installation unless that
# build is there already.  The build runs in a temporary directory that is
# renamed into the cache when complete, so an interrupted build leaves
# nothing that looks finished.  Installs the Debian build dependencies
# that are missing (libcurl4-openssl-dev stands in for the
# libcurl4-gnutls-dev of Citus' instructions: the two conflict, and the
# watcher needs the former).
ensure_citus() {
    local why; why="$(citus_source_missing)"
    if [ -n "$why" ]; then log "$why"; return 1; fi
    local pgver key cache tmp
    pgver="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9.]+).*/\1/')"
    key="$(cat "$DP_CITUS_SRC/citus-$DP_CITUS_VERSION.tar.gz" "$DP_CITUS_SRC"/*.patch 2>/dev/null | sha256sum | cut -c1-16)"
    cache="$DP_CITUS_CACHE/$pgver/$DP_CITUS_VERSION-$key"
    local pkglib share bin inc
    pkglib="$("$PG_CONFIG" --pkglibdir)"; share="$("$PG_CONFIG" --sharedir)"
    bin="$("$PG_CONFIG" --bindir)"; inc="$("$PG_CONFIG" --includedir-server)"
    if [ -f "$pkglib/citus.so" ] && [ "$(cat "$pkglib/citus.deploy_progress_build" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    if [ ! -f "$cache/done" ]; then
        local pkgs=(autoconf flex libcurl4-openssl-dev libkrb5-dev liblz4-dev libpam0g-dev
                    libselinux1-dev libzstd-dev libicu-dev libreadline-dev libssl-dev
                    libxslt1-dev uuid-dev "postgresql-server-dev-$PG_MAJOR" patch)
        local missing=() p
        for p in "${pkgs[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            log "installing the build dependencies of Citus: ${missing[*]}"
            as_root apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
        log "building Citus $DP_CITUS_VERSION for PostgreSQL $pgver (cache $cache)"
        as_root mkdir -p "$DP_CITUS_CACHE/$pgver"
        tmp="$(as_root mktemp -d "$DP_CITUS_CACHE/$pgver/.build.XXXXXX")"
        as_root chown "$(id -u):$(id -g)" "$tmp"
        (
            set -e
            cd "$tmp"
            tar xzf "$DP_CITUS_SRC/citus-$DP_CITUS_VERSION.tar.gz"
            cd "citus-$DP_CITUS_VERSION"
            for p in "$DP_CITUS_SRC"/*.patch; do [ -f "$p" ] && patch -s -p1 < "$p"; done
            ./configure -q PG_CONFIG="$PG_CONFIG" >"$tmp/configure.log" 2>&1
            nice make -s -j"$(nproc)" >"$tmp/build.log" 2>&1
            # stage the installation relative to PG_CONFIG's directories, so
            # the cached build installs into any copy of this version
            make -s install DESTDIR="$tmp/stage" >>"$tmp/build.log" 2>&1
            mkdir "$tmp/out"
            local d
            for d in pkglib:"$pkglib" share:"$share" bin:"$bin" include:"$inc"; do
                if [ -d "$tmp/stage${d#*:}" ]; then mv "$tmp/stage${d#*:}" "$tmp/out/${d%%:*}"; fi
            done
            rm -rf "$tmp/stage" "$tmp/citus-$DP_CITUS_VERSION"
            echo "$key" > "$tmp/out/done"
        ) || { log "building Citus failed: see $tmp/*.log"; return 1; }
        as_root rm -rf "$cache"
        as_root mv "$tmp/out" "$cache"
        as_root rm -rf "$tmp"
    fi
    log "installing Citus $DP_CITUS_VERSION into $(dirname "$bin")"
    local d
    for d in pkglib:"$pkglib" share:"$share" bin:"$bin" include:"$inc"; do
        if [ -d "$cache/${d%%:*}" ]; then
            as_root mkdir -p "${d#*:}"
            # (replacing files rather than writing into them: a server
            # running from this installation keeps the library it mapped)
            as_root cp -a --remove-destination "$cache/${d%%:*}/." "${d#*:}/"
        fi
    done
    echo "$key" | as_root tee "$pkglib/citus.deploy_progress_build" >/dev/null
}
