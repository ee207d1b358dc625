#!/usr/bin/env bash
# The global readers at fleet scale: in_flight, stuck(), metrics,
# metrics_prometheus() and fail_stuck() (with nothing to fail) over 10 and
# over 500 tracked tables holding the same 1,000 rows in flight (evenly
# spread: 100 and 2 per table, plus 10 finished rows per table), interleaved
# over several rounds in one run; medians, and the 500 / 10 ratio.
#
#   test/bench/readers.sh                      the build of this tree
#   INSTALLS="before=/opt/a/bin/pg_config after=/opt/b/bin/pg_config" test/bench/readers.sh
#                                              several installations (each with
#                                              deploy_progress installed), one
#                                              cluster each, interleaved
#
# ROUNDS (5), CALLS (calls per query per round after the first, 10), TABLES ("10 500"),
# IN_FLIGHT (1000).  Prints a Markdown table.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

ROUNDS="${ROUNDS:-5}"
CALLS="${CALLS:-10}"
TABLES="${TABLES:-10 500}"
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
    (cd "$dir" && as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null)
    CLUSTERS+=("$bin $dir")
    HOST[$label]=$dir; PORT[$label]=$port
    LABELS+=("$label")
    port=$((port + 1))
    for n in $TABLES; do
        log "$label: $n tables, $IN_FLIGHT rows in flight"
        "$bin/createdb" -h "$dir" -p "${PORT[$label]}" -U postgres "f$n"
        "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "${PORT[$label]}" -U postgres -d "f$n" <<SQL
CREATE EXTENSION deploy_progress;
DO \$\$
DECLARE
    per integer := $IN_FLIGHT / $n;
BEGIN
    FOR i IN 1 .. $n LOOP
        EXECUTE format('CREATE TABLE fleet_%s (id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL DEFAULT ''queued'','
                       ' completed_items bigint, total_items bigint, phase_updated_at timestamptz,'
                       ' progress_updated_at timestamptz, heartbeat_at timestamptz, started_at timestamptz,'
                       ' finished_at timestamptz)', i);
        PERFORM deploy_progress.track(format('fleet_%s', i)::regclass);
        -- in flight: queued, building, transferring and waiting rows, none stuck
        EXECUTE format('INSERT INTO fleet_%s (id, phase, completed_items, total_items)'
                       ' SELECT g, CASE WHEN g <= %s'
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
        for n in $TABLES; do
            for q in "${QUERIES[@]}"; do
                times=$( { echo '\timing on'; for i in $(seq 0 "$CALLS"); do echo "${SQLQ[$q]};"; done; } \
                         | PGHOST=${HOST[$label]} PGPORT=${PORT[$label]} PGUSER=postgres \
                           psql -X -q -d "f$n" 2>/dev/null | awk '/^Time:/ {print $2}')
                c=$(echo "$times" | head -n 1)
                t=$(echo "$times" | tail -n +2 | median)
                MS[$label,$n,$q]="${MS[$label,$n,$q]:-} $t"
                COLD[$label,$n,$q]="${COLD[$label,$n,$q]:-} $c"
                printf '  %-8s %4s tables %-20s %10s ms (first call %s ms)\n' "$label" "$n" "$q" "$t" "$c" >&2
            done
        done
    done
done

first=${TABLES%% *}; last=${TABLES##* }
{
    printf '| reader |'
    for label in "${LABELS[@]}"; do printf ' %s, %s tables | %s, %s tables | %s: %s / %s |' \
        "$label" "$first" "$label" "$last" "$label" "$last" "$first"; done
    echo
    printf '|---|'
    for label in "${LABELS[@]}"; do printf -- '---:|---:|---:|'; done
    echo
    for q in "${QUERIES[@]}"; do
        printf '| `%s` |' "$q"
        for label in "${LABELS[@]}"; do
            a=$(echo ${MS[$label,$first,$q]} | tr ' ' '\n' | median)
            b=$(echo ${MS[$label,$last,$q]} | tr ' ' '\n' | median)
            printf ' %s ms | %s ms | %s× |' "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')"
        done
        echo
    done
    for q in "${QUERIES[@]}"; do
        printf '| `%s`, first call of a session |' "$q"
        for label in "${LABELS[@]}"; do
            a=$(echo ${COLD[$label,$first,$q]} | tr ' ' '\n' | median)
            b=$(echo ${COLD[$label,$last,$q]} | tr ' ' '\n' | median)
            printf ' %s ms | %s ms | %s× |' "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b / a}')"
        done
        echo
    done
    echo
    echo "$ROUNDS interleaved rounds; each round runs each query in a new session, once (the first call) and then $CALLS times; medians; $IN_FLIGHT rows in flight spread evenly over each fleet; $(nproc) cores, $(date -u +%Y-%m-%d)."
}
