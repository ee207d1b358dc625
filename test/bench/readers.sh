#!/usr/bin/env bash
# The global readers at fleet scale: in_flight, stuck(), metrics,
# metrics_prometheus() and fail_stuck() (with nothing to fail) over fleets
# of tracked tables holding the same 1,000 rows in flight, interleaved over
# several rounds in one run; medians, and each fleet against the first.
# A fleet is N tables (the rows spread evenly: 10 tables of 100 rows, 500
# tables of 2 rows) or N:B, N tables of which B hold the rows (500:10: 10
# busy tables among 490 idle ones); every table also has 10 finished rows.
#
#   test/bench/readers.sh                      the build of this tree
#   INSTALLS="before=/opt/a/bin/pg_config after=/opt/b/bin/pg_config" test/bench/readers.sh
#                                              several installations (each with
#                                              deploy_progress installed), one
#                                              cluster each, interleaved
#   OPTIONS_after="deploy_progress.reader_cache_size = '1GB'"   settings of
#                                              one installation's cluster
#
# ROUNDS (5), CALLS (calls per query per round after the first, 10), TABLES ("10 500 500:10"),
# IN_FLIGHT (1000).  Prints a Markdown table.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

ROUNDS="${ROUNDS:-5}"
CALLS="${CALLS:-10}"
TABLES="${TABLES:-10 500 500:10}"
IN_FLIGHT="${IN_FLIGHT:-1000}"
WORK="$(mktemp -d /tmp/dp_readers.XXXXXX)"
chmod 755 "$WORK"

if [ -z "${INSTALLS:-}" ]; then
    build_install
    INSTALLS="this=$PG_CONFIG"
fi

QUERIES=(in_flight stuck metrics metrics_prometheus fail_stuck)
declare -A SQLQ=(
    [in_flight]="SELECT count(*) FROM deploy_progress.in_flight"
    [stuck]="SELECT count(*) FROM deploy_progress.stuck()"
    [metrics]="SELECT count(*) FROM deploy_progress.metrics"
    [metrics_prometheus]="SELECT length(deploy_progress.metrics_prometheus())"
    [fail_stuck]="SELECT count(*) FROM deploy_progress.fail_stuck()"
)

declare -A HOST PORT
LABELS=()
CLUSTERS=()
cleanup() {
    for c in "${CLUSTERS[@]}"; do
        read -r bin dir <<<"$c"
        (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1) || true
        rm -rf "$dir"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

port=$(( ${PGPORT_TEST:-5430} ))
for inst in $INSTALLS; do
    label=${inst%%=*}; pgc=${inst#*=}
    bin="$("$pgc" --bindir)"
    dir="$(mktemp -d /tmp/dp_readers_cluster.XXXXXX)"
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    (cd "$dir" && as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null)
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
synchronous_commit = off
shared_buffers = '256MB'
autovacuum = off
CONF
    opts="OPTIONS_$label"
    if [ -n "${!opts:-}" ]; then echo "${!opts}" >> "$dir/data/postgresql.conf"; fi
    (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null)
    CLUSTERS+=("$bin $dir")
    HOST[$label]=$dir; PORT[$label]=$port
    LABELS+=("$label")
    port=$((port + 1))
    for fleet in $TABLES; do
        n=${fleet%%:*}; busy=${fleet#*:}
        log "$label: $n tables, $IN_FLIGHT rows in flight in $busy of them"
        "$bin/createdb" -h "$dir" -p "${PORT[$label]}" -U postgres "f${fleet/:/_}"
        "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "${PORT[$label]}" -U postgres -d "f${fleet/:/_}" <<SQL
CREATE EXTENSION deploy_progress;
DO \$\$
DECLARE
    per integer := $IN_FLIGHT / $busy;
BEGIN
    FOR i IN 1 .. $n LOOP
        EXECUTE format('CREATE TABLE fleet_%s (id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT ''queued'','
                       ' completed_items bigint, total_items bigint, phase_updated_at timestamptz,'
                       ' progress_updated_at timestamptz, heartbeat_at timestamptz, started_at timestamptz,'
                       ' finished_at timestamptz)', i);
        -- deadlines far enough that no row gets stuck while the bench runs
        PERFORM deploy_progress.track(format('fleet_%s', i)::regclass,
                                      heartbeat_deadline => '1 day', progress_deadline => '1 day');
        -- in flight: queued, building, transferring and waiting rows, none stuck
        EXECUTE format('INSERT INTO fleet_%s (id, phase, completed_items, total_items)'
                       ' SELECT g, CASE WHEN g <= %s AND ' || (i <= $busy) || ''
                       '                THEN (ARRAY[''queued'', ''building'', ''transferring'', ''waiting''])[1 + g %% 4]'
                       '                ELSE ''succeeded'' END::deploy_progress.phase, g, 1000'
                       '   FROM generate_series(1, %s) g', i, per, per + 10);
    END LOOP;
END
\$\$;
VACUUM ANALYZE;
SQL
    done
done

median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# one round: every installation, size and query, in a new session each: the
# first call (a new session's, which builds what the session caches) and the
# median of CALLS more calls, in milliseconds
declare -A MS COLD
for r in $(seq "$ROUNDS"); do
    log "round $r of $ROUNDS"
    for label in "${LABELS[@]}"; do
        for fleet in $TABLES; do
            for q in "${QUERIES[@]}"; do
                times=$( { echo '\timing on'; for i in $(seq 0 "$CALLS"); do echo "${SQLQ[$q]};"; done; } \
                         | PGHOST=${HOST[$label]} PGPORT=${PORT[$label]} PGUSER=postgres \
                           psql -X -q -d "f${fleet/:/_}" 2>/dev/null | awk '/^Time:/ {print $2}')
                c=$(echo "$times" | head -n 1)
                t=$(echo "$times" | tail -n +2 | median)
                MS[$label,$fleet,$q]="${MS[$label,$fleet,$q]:-} $t"
                COLD[$label,$fleet,$q]="${COLD[$label,$fleet,$q]:-} $c"
                printf '  %-10s %-7s %-20s %10s ms (first call %s ms)\n' "$label" "$fleet" "$q" "$t" "$c" >&2
            done
        done
    done
done

# nothing may have been failed: every fleet still has its rows in flight
for label in "${LABELS[@]}"; do
    for fleet in $TABLES; do
        n=$(PGHOST=${HOST[$label]} PGPORT=${PORT[$label]} PGUSER=postgres \
            psql -X -At -d "f${fleet/:/_}" -c "SELECT count(*) FROM deploy_progress.in_flight")
        if [ "$n" != "$IN_FLIGHT" ]; then
            echo "$label, fleet $fleet: $n rows in flight at the end, not $IN_FLIGHT" >&2
            exit 1
        fi
    done
done

# one table per measure: a row per reader and fleet, for each installation
# the median and its ratio to the first fleet's
first=${TABLES%% *}
report() { # array name, title
    local -n M=$1
    echo "$2"
    echo
    printf '| reader | fleet (tables:busy) |'
    for label in "${LABELS[@]}"; do printf ' %s | %s / %s |' "$label" "$label" "$first"; done
    echo
    printf '|---|---|'
    for label in "${LABELS[@]}"; do printf -- '---:|---:|'; done
    echo
    for q in "${QUERIES[@]}"; do
        for fleet in $TABLES; do
            printf '| `%s` | %s |' "$q" "$fleet"
            for label in "${LABELS[@]}"; do
                a=$(echo ${M[$label,$first,$q]} | tr ' ' '\n' | median)
                b=$(echo ${M[$label,$fleet,$q]} | tr ' ' '\n' | median)
                printf ' %s ms | %s× |' "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')"
            done
            echo
        done
    done
    echo
}
{
    report MS "Calls after the first of a session (the session's prepared queries in place):"
    report COLD "The first call of a session:"
    echo "$ROUNDS interleaved rounds; each round runs each query in a new session, once (the first call) and then $CALLS times; medians; $IN_FLIGHT rows in flight per fleet; $(nproc) cores, $(date -u +%Y-%m-%d)."
    for label in "${LABELS[@]}"; do
        opts="OPTIONS_$label"
        if [ -n "${!opts:-}" ]; then echo "$label: ${!opts}"; fi
    done
}
