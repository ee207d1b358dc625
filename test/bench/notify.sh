#!/usr/bin/env bash
# What NOTIFY costs: a bulk phase change of 100,000 rows (the UPDATE and its
# COMMIT timed apart, since PostgreSQL writes the notification queue at
# commit) and single-row phase transitions (pgbench), on identical tables
# with history, interleaved over several rounds, in the style of run.sh:
#
#   none        no trigger
#   silent      deploy_progress with history, events off (notify_channel => NULL)
#   summary     ... with events, deploy_progress.notify_bulk_threshold at its
#               default (100): the bulk statement sends one summary event
#   per_row     ... with events, the threshold -1: one event per transition
#
# No session listens: PostgreSQL writes the queue at commit all the same
# (a listener pays for reading the events in its own backend).
#
#   test/bench/notify.sh                         about 5 minutes on 2 cores
#   ROUNDS=1 SECONDS_PER_RUN=3 test/bench/notify.sh   a quick look
#
# Prints medians and ratios, and writes them to test/bench/notify_results.md
# (docs/performance.md quotes the last run).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
CLIENTS="${CLIENTS:-2}"
BULK_ROWS="${BULK_ROWS:-100000}"
ROWS="${ROWS:-10000}"           # rows of the single-row workload tables
OUT="$REPO/test/bench/notify_results.md"
WORK="$(mktemp -d /tmp/dp_notify_bench.XXXXXX)"
chmod 755 "$WORK"

ensure_packages
build_install

CONF=("synchronous_commit = off" "shared_buffers = '512MB'" "max_wal_size = '16GB'"
      "checkpoint_timeout = '1h'" "autovacuum = off" "fsync = off")
log "starting a throwaway cluster: ${CONF[*]}"
start_cluster "${CONF[@]}"
cleanup() { stop_cluster; rm -rf "$WORK"; }
trap cleanup EXIT

q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
createdb bench
q -c "CREATE EXTENSION deploy_progress"

VARIANTS=(none silent summary per_row)

q <<'SQL'
CREATE FUNCTION bench_table(name text, variant text, nrows integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($t$CREATE TABLE %I (
        id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL, completed_items bigint,
        total_items bigint, phase_updated_at timestamptz, progress_updated_at timestamptz,
        heartbeat_at timestamptz, started_at timestamptz, finished_at timestamptz)
        WITH (fillfactor = 90)$t$, name);
    EXECUTE format($i$INSERT INTO %I SELECT g, 'building', 0, 100, now(), now(), now(), now(), NULL
                        FROM generate_series(1, %s) g$i$, name, nrows);
    IF variant = 'none' THEN
        EXECUTE format($x$CREATE INDEX ON %I (phase) WHERE phase <> ALL ('{succeeded,failed,cancelled}'::deploy_progress.phase[])$x$, name);
    ELSIF variant = 'silent' THEN
        PERFORM deploy_progress.track(name, notify_channel => NULL);
    ELSE
        PERFORM deploy_progress.track(name);
    END IF;
END $$;
SQL
log "building tables: $BULK_ROWS-row bulk tables, $ROWS-row single-row tables"
for v in "${VARIANTS[@]}"; do
    q -c "SELECT bench_table('b_$v', '$v', $BULK_ROWS)" -c "SELECT bench_table('w_$v', '$v', $ROWS)" \
      -c "VACUUM ANALYZE b_$v" -c "VACUUM ANALYZE w_$v" >/dev/null
done

# threshold of a variant: the default, or -1 for per_row
threshold() { [ "$1" = per_row ] && echo -1 || echo 100; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f", a / b }'; }

declare -A UPD COM TOT TPS
run_bulk() { # variant -> "update_ms commit_ms"
    q -c "VACUUM b_$1" >/dev/null
    q -c '\timing on' -c "SET deploy_progress.notify_bulk_threshold = $(threshold "$1")" -c 'BEGIN' \
      -c "UPDATE b_$1 SET phase = CASE phase WHEN 'building' THEN 'transferring'::deploy_progress.phase ELSE 'building'::deploy_progress.phase END" \
      -c 'COMMIT' | awk '/^Time: / {t[++n] = $2} END {print t[3], t[4]}'
}
cat > "$WORK/transition.sql" <<EOF
\set id random(1, $ROWS)
UPDATE w_TABLE SET phase = CASE phase WHEN 'building' THEN 'transferring'::deploy_progress.phase ELSE 'building'::deploy_progress.phase END WHERE id = :id;
EOF
run_pgbench() { # variant -> tps
    sed "s/w_TABLE/w_$1/" "$WORK/transition.sql" > "$WORK/transition_$1.sql"
    q -c "VACUUM w_$1" >/dev/null
    PGOPTIONS="-c deploy_progress.notify_bulk_threshold=$(threshold "$1")" \
        pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$WORK/transition_$1.sql" bench 2>/dev/null |
        awk '/^tps = / {print $3}'
}

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    order=("${VARIANTS[@]:$(( (round - 1) % ${#VARIANTS[@]} ))}" "${VARIANTS[@]:0:$(( (round - 1) % ${#VARIANTS[@]} ))}")
    for v in "${order[@]}"; do
        read -r u c <<<"$(run_bulk "$v")"
        UPD[$v]="${UPD[$v]:-} $u"; COM[$v]="${COM[$v]:-} $c"
        TOT[$v]="${TOT[$v]:-} $(awk -v a="$u" -v b="$c" 'BEGIN {print a + b}')"
        printf '  bulk %-8s update %9s ms  commit %9s ms\n' "$v" "$u" "$c"
    done
    for v in "${order[@]}"; do
        t=$(run_pgbench "$v")
        TPS[$v]="${TPS[$v]:-} $t"
        printf '  single-row %-8s %10s tps\n' "$v" "$t"
    done
done

med() { echo $1 | tr ' ' '\n' | median; }
int() { awk -v a="$1" 'BEGIN { if (a == "nan") print a; else printf "%.0f", a }'; }
{
echo "## NOTIFY ($(date -u +%Y-%m-%d), PostgreSQL $(psql -XAtc 'SHOW server_version' | cut -d' ' -f1), $(nproc) cores)"
echo
echo "Configuration: ${CONF[*]}; $ROUNDS interleaved rounds, medians; bulk: one UPDATE of $BULK_ROWS rows, each changing phase, then COMMIT; single-row: pgbench -M prepared, $CLIENTS clients, ${SECONDS_PER_RUN}s per run, one-row phase transitions over $ROWS rows; no session listening."
echo
echo "| variant | bulk UPDATE (ms) | its COMMIT (ms) | total (ms) | total / none | total / silent | single-row (tps) | tps / none | tps / silent |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
    echo "| $v | $(med "${UPD[$v]}") | $(med "${COM[$v]}") | $(med "${TOT[$v]}") | $(ratio "$(med "${TOT[$v]}")" "$(med "${TOT[none]}")") | $(ratio "$(med "${TOT[$v]}")" "$(med "${TOT[silent]}")") | $(int "$(med "${TPS[$v]}")") | $(ratio "$(med "${TPS[$v]}")" "$(med "${TPS[none]}")") | $(ratio "$(med "${TPS[$v]}")" "$(med "${TPS[silent]}")") |"
done
echo
echo "per_row / summary, bulk total: $(ratio "$(med "${TOT[per_row]}")" "$(med "${TOT[summary]}")"); commit alone: $(ratio "$(med "${COM[per_row]}")" "$(med "${COM[summary]}")")"
} | tee "$OUT"
