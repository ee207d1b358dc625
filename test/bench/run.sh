#!/usr/bin/env bash
# deploy_progress benchmarks: trigger overhead against no trigger, contrib's
# moddatetime and hand-written PL/pgSQL triggers, on identical tables, in
# one run, interleaved over several rounds (side storage also against its
# hand-written equivalent, side_hand: no trigger, and the application
# updates a side table of its own in the same transaction); then bulk
# updates (100,000 rows, and 1,000 rows of a 100,000-row table), stuck() and
# in_flight at 1M and 10M rows, and backend memory across 1M trigger calls.
#
#   test/bench/run.sh              full run (about 15 minutes on 2 cores)
#   ROUNDS=1 SECONDS_PER_RUN=3 BIG_ROWS=1000000 test/bench/run.sh   quick look
#
# Prints medians and ratios, and writes them to test/bench/results.md.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

ROUNDS="${ROUNDS:-5}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
CLIENTS="${CLIENTS:-2}"
ROWS="${ROWS:-100000}"          # rows per workload table
IN_FLIGHT="${IN_FLIGHT:-1000}"  # of which in flight
BULK_ROWS="${BULK_ROWS:-100000}"
BIG_ROWS="${BIG_ROWS:-10000000}"
MEM_CALLS="${MEM_CALLS:-1000000}"
OUT="$REPO/test/bench/results.md"
WORK="$(mktemp -d /tmp/dp_bench.XXXXXX)"
chmod 755 "$WORK"

ensure_packages
build_install

CONF=("synchronous_commit = off" "shared_buffers = '1GB'" "max_wal_size = '16GB'"
      "checkpoint_timeout = '1h'" "autovacuum = off" "fsync = off")
log "starting a throwaway cluster: ${CONF[*]}"
start_cluster "${CONF[@]}"
cleanup() { stop_cluster; rm -rf "$WORK"; }
trap cleanup EXIT

q() { psql -X -q -v ON_ERROR_STOP=1 -d bench "$@"; }
createdb bench
q -c "CREATE EXTENSION deploy_progress; CREATE EXTENSION moddatetime;"

VARIANTS=(none moddatetime plpgsql_stamp plpgsql_full dp_row dp_row_history dp_side side_hand)

# Hand-written PL/pgSQL triggers with deploy_progress's stamping semantics
# (and, for plpgsql_full, its history and NOTIFY): what a team would write.
q <<'SQL'
CREATE TABLE bench_plpgsql_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, relid regclass, key text,
    from_phase text, to_phase text, at timestamptz, time_in_previous interval,
    completed bigint, total bigint, reason text);
CREATE INDEX ON bench_plpgsql_history (relid, key, at);

CREATE FUNCTION bench_plpgsql_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ts timestamptz := statement_timestamp();
BEGIN
    IF TG_OP = 'INSERT' OR NEW.phase IS DISTINCT FROM OLD.phase THEN
        IF TG_OP = 'UPDATE' AND OLD.phase IN ('succeeded', 'failed', 'cancelled') THEN
            RAISE EXCEPTION 'cannot move a row from terminal phase "%" to "%"', OLD.phase, NEW.phase
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.phase_updated_at := now_ts;
        NEW.progress_updated_at := now_ts;
        IF NEW.phase NOT IN ('queued', 'waiting', 'succeeded', 'failed', 'cancelled')
           AND (TG_OP = 'INSERT' OR OLD.started_at IS NULL) THEN
            NEW.started_at := now_ts;
        ELSIF TG_OP = 'UPDATE' THEN
            NEW.started_at := OLD.started_at;
        END IF;
        IF NEW.phase IN ('succeeded', 'failed', 'cancelled') THEN
            NEW.finished_at := now_ts;
        ELSIF TG_OP = 'UPDATE' THEN
            NEW.finished_at := OLD.finished_at;
        END IF;
    ELSE
        IF NEW.completed_items IS DISTINCT FROM OLD.completed_items
           OR NEW.total_items IS DISTINCT FROM OLD.total_items THEN
            NEW.progress_updated_at := now_ts;
        ELSE
            NEW.progress_updated_at := OLD.progress_updated_at;
        END IF;
        NEW.phase_updated_at := OLD.phase_updated_at;
        NEW.started_at := OLD.started_at;
        NEW.finished_at := OLD.finished_at;
    END IF;
    IF NEW.completed_items < 0 OR NEW.total_items < 0 OR NEW.completed_items > NEW.total_items THEN
        RAISE EXCEPTION 'completed items out of range: % of %', NEW.completed_items, NEW.total_items
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.heartbeat_at := now_ts;
    RETURN NEW;
END $$;

CREATE FUNCTION bench_plpgsql_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_plpgsql_history (relid, key, from_phase, to_phase, at, time_in_previous, completed, total)
    VALUES (TG_RELID, NEW.id::text, OLD.phase::text, NEW.phase::text, NEW.phase_updated_at,
            NEW.phase_updated_at - OLD.phase_updated_at, NEW.completed_items, NEW.total_items);
    PERFORM pg_notify('deploy_progress', json_build_object(
        'table', TG_TABLE_NAME, 'key', left(NEW.id::text, 200), 'from', OLD.phase, 'to', NEW.phase,
        'at', NEW.phase_updated_at,
        'percent', CASE WHEN NEW.total_items > 0 THEN round(100.0 * NEW.completed_items / NEW.total_items, 1) END)::text);
    RETURN NULL;
END $$;

CREATE FUNCTION bench_make_table(name text, variant text, nrows bigint, in_flight bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', name);
    EXECUTE format($t$CREATE TABLE %I (
        id bigint PRIMARY KEY, name text NOT NULL, phase deploy_progress.phase NOT NULL,
        completed_items bigint, total_items bigint %s) WITH (fillfactor = 90)$t$, name,
        CASE WHEN variant IN ('dp_side', 'side_hand') THEN '' ELSE
        ', phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
           started_at timestamptz, finished_at timestamptz' END);
    EXECUTE format($i$INSERT INTO %I (id, name, phase, completed_items, total_items %s)
        SELECT g, 'deployment ' || g,
               CASE WHEN g <= %s THEN 'building' ELSE 'succeeded' END::deploy_progress.phase,
               0, 1000000000000 %s
          FROM generate_series(1, %s) g$i$, name,
        CASE WHEN variant IN ('dp_side', 'side_hand') THEN '' ELSE ', phase_updated_at, progress_updated_at, heartbeat_at, started_at, finished_at' END,
        in_flight,
        CASE WHEN variant IN ('dp_side', 'side_hand') THEN '' ELSE ', now(), now(), now(), now(), CASE WHEN g > ' || in_flight || ' THEN now() END' END,
        nrows);
    -- every variant gets the partial index over in-flight rows that a
    -- stuck-deployment query needs (track() creates it for the dp_ variants),
    -- so that the tables are identical and only the triggers differ
    IF variant NOT LIKE 'dp%' THEN
        EXECUTE format($x$CREATE INDEX %I ON %I (phase) WHERE phase <> ALL ('{succeeded,failed,cancelled}'::deploy_progress.phase[])$x$,
                       name || '_in_flight', name);
    END IF;
    CASE variant
    WHEN 'none' THEN NULL;
    WHEN 'moddatetime' THEN
        EXECUTE format('CREATE TRIGGER stamp BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION moddatetime(heartbeat_at)', name);
    WHEN 'plpgsql_stamp' THEN
        EXECUTE format('CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_stamp()', name);
    WHEN 'plpgsql_full' THEN
        EXECUTE format('CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION bench_plpgsql_stamp()', name);
        EXECUTE format('CREATE TRIGGER transition AFTER UPDATE ON %I FOR EACH ROW WHEN (OLD.phase IS DISTINCT FROM NEW.phase) EXECUTE FUNCTION bench_plpgsql_transition()', name);
    WHEN 'dp_row' THEN
        PERFORM deploy_progress.track(name, history => 'off', notify_channel => NULL);
    WHEN 'dp_row_history' THEN
        PERFORM deploy_progress.track(name);
    WHEN 'dp_side' THEN
        PERFORM deploy_progress.track(name, storage => 'side', history => 'off', notify_channel => NULL);
        -- every row has its side row, as after its first write
        EXECUTE format('UPDATE %I SET name = name', name);
    WHEN 'side_hand' THEN
        -- the hand-written equivalent of side storage: a side table of the
        -- application's own, updated by the application in the same transaction
        EXECUTE format('DROP TABLE IF EXISTS %I', name || '_timings');
        EXECUTE format($t$CREATE TABLE %I (id bigint PRIMARY KEY, phase_updated_at timestamptz,
            progress_updated_at timestamptz, heartbeat_at timestamptz, started_at timestamptz,
            finished_at timestamptz) WITH (fillfactor = 90)$t$, name || '_timings');
        EXECUTE format('INSERT INTO %I SELECT id, now(), now(), now(), now(), NULL FROM %I',
                       name || '_timings', name);
    END CASE;
END $$;
SQL

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f", a / b }'; }

log "building workload tables: $ROWS rows, $IN_FLIGHT in flight, $BULK_ROWS-row bulk tables"
for v in "${VARIANTS[@]}"; do
    q -c "SELECT bench_make_table('w_$v', '$v', $ROWS, $IN_FLIGHT)" -c "VACUUM ANALYZE w_$v" >/dev/null
    q -c "SELECT bench_make_table('b_$v', '$v', $BULK_ROWS, $BULK_ROWS)" -c "VACUUM ANALYZE b_$v" >/dev/null
done

cat > "$WORK/heartbeat.sql" <<EOF
\set id random(1, $IN_FLIGHT)
UPDATE w_TABLE SET completed_items = completed_items + 1 WHERE id = :id;
EOF
cat > "$WORK/transition.sql" <<EOF
\set id random(1, $IN_FLIGHT)
UPDATE w_TABLE SET phase = CASE phase WHEN 'building' THEN 'transferring'::deploy_progress.phase ELSE 'building'::deploy_progress.phase END WHERE id = :id;
EOF
# side_hand: the same writes, and the side table's, in one transaction
cat > "$WORK/heartbeat_side_hand.sql" <<EOF
\set id random(1, $IN_FLIGHT)
BEGIN;
UPDATE w_side_hand SET completed_items = completed_items + 1 WHERE id = :id;
UPDATE w_side_hand_timings SET progress_updated_at = now(), heartbeat_at = now() WHERE id = :id;
COMMIT;
EOF
cat > "$WORK/transition_side_hand.sql" <<EOF
\set id random(1, $IN_FLIGHT)
BEGIN;
UPDATE w_side_hand SET phase = CASE phase WHEN 'building' THEN 'transferring'::deploy_progress.phase ELSE 'building'::deploy_progress.phase END WHERE id = :id;
UPDATE w_side_hand_timings SET phase_updated_at = now(), progress_updated_at = now(), heartbeat_at = now() WHERE id = :id;
COMMIT;
EOF

declare -A TPS BULK
run_pgbench() { # workload variant -> tps
    [ "$2" = side_hand ] || sed "s/w_TABLE/w_$2/" "$WORK/$1.sql" > "$WORK/$1_$2.sql"
    q -c "VACUUM w_$2" >/dev/null
    if [ "$2" = side_hand ]; then q -c "VACUUM w_side_hand_timings" >/dev/null; fi
    if [ "$2" = dp_side ]; then q -c "VACUUM deploy_progress.timings" >/dev/null; fi
    pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$WORK/$1_$2.sql" bench 2>/dev/null |
        awk '/^tps = / {print $3}'
}
run_bulk() { # kind variant -> milliseconds
    local sql where=""
    [ "$1" = heartbeat1000 ] && where=" WHERE id <= 1000"
    if [ "$1" = transition ]; then
        sql="UPDATE b_$2 SET phase = CASE phase WHEN 'building' THEN 'transferring'::deploy_progress.phase ELSE 'building'::deploy_progress.phase END"
        [ "$2" = side_hand ] && sql="BEGIN; $sql; UPDATE b_side_hand_timings SET phase_updated_at = now(), progress_updated_at = now(), heartbeat_at = now(); COMMIT"
    else
        sql="UPDATE b_$2 SET completed_items = completed_items + 1$where"
        [ "$2" = side_hand ] && sql="BEGIN; $sql; UPDATE b_side_hand_timings SET progress_updated_at = now(), heartbeat_at = now()$where; COMMIT"
    fi
    q -c "VACUUM b_$2" >/dev/null
    if [ "$2" = side_hand ]; then q -c "VACUUM b_side_hand_timings" >/dev/null; fi
    if [ "$2" = dp_side ]; then q -c "VACUUM deploy_progress.timings" >/dev/null; fi
    q -c '\timing on' -c "$sql" | awk '/^Time: / {print $2}'
}

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    # rotate the order each round so no variant always runs first
    order=("${VARIANTS[@]:$(( (round - 1) % ${#VARIANTS[@]} ))}" "${VARIANTS[@]:0:$(( (round - 1) % ${#VARIANTS[@]} ))}")
    for w in heartbeat transition; do
        for v in "${order[@]}"; do
            t=$(run_pgbench "$w" "$v")
            TPS[$w,$v]="${TPS[$w,$v]:-} $t"
            printf '  %-10s %-15s %10s tps\n' "$w" "$v" "$t"
        done
    done
    for k in heartbeat transition heartbeat1000; do
        for v in "${order[@]}"; do
            t=$(run_bulk "$k" "$v")
            BULK[$k,$v]="${BULK[$k,$v]:-} $t"
            printf '  bulk %-10s %-15s %10s ms\n' "$k" "$v" "$t"
        done
    done
done

# stuck() and in_flight on big tables with 1,000 rows in flight, one
# database per size so that each query sees only its own table
declare -A QMS
query_bench() { # db size
    local db=$1
    createdb "$db"
    psql -X -q -d "$db" -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION deploy_progress;
CREATE TABLE big (
    id bigint PRIMARY KEY, phase deploy_progress.phase NOT NULL, completed_items bigint, total_items bigint,
    phase_updated_at timestamptz, progress_updated_at timestamptz, heartbeat_at timestamptz,
    started_at timestamptz, finished_at timestamptz);
INSERT INTO big SELECT g, CASE WHEN g % ($2 / 1000) = 0 THEN 'transferring' ELSE 'succeeded' END::deploy_progress.phase,
       10, 100, now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour',
       now() - interval '1 hour', CASE WHEN g % ($2 / 1000) <> 0 THEN now() END
  FROM generate_series(1, $2) g;
SELECT relid FROM deploy_progress.track('big', validate => false) \g /dev/null
VACUUM ANALYZE big;
SQL
    for what in stuck in_flight; do
        if [ $what = stuck ]; then
            echo "SELECT count(*) FROM deploy_progress.stuck();" > "$WORK/q.sql"
        else
            echo "SELECT * FROM deploy_progress.in_flight;" > "$WORK/q.sql"
        fi
        rm -f "$WORK"/pgbench_log.*
        (cd "$WORK" && pgbench -n -c 1 -T "$SECONDS_PER_RUN" -f q.sql -l "$db" >/dev/null 2>&1)
        QMS[$what,$1]=$(cat "$WORK"/pgbench_log.* | awk '{print $3 / 1000}' | median)
        printf '  %-10s %-8s median %8s ms\n' "$what" "$1" "${QMS[$what,$1]}"
    done
}
log "stuck() and in_flight at 1M and $BIG_ROWS rows, 1000 in flight"
query_bench bench_1m 1000000
query_bench bench_big "$BIG_ROWS"

log "backend memory across $MEM_CALLS trigger calls in one session"
q <<SQL >/dev/null
CREATE PROCEDURE bench_mem(calls integer) LANGUAGE plpgsql AS \$\$
BEGIN
    FOR i IN 1 .. calls LOOP
        UPDATE w_dp_row SET completed_items = completed_items + 1 WHERE id = 1 + i % $IN_FLIGHT;
        IF i % 10000 = 0 THEN COMMIT; END IF;
    END LOOP;
END \$\$;
SQL
MEM=$(q -At <<SQL
SELECT sum(total_bytes) FROM pg_backend_memory_contexts;
CALL bench_mem(10000);
SELECT sum(total_bytes) FROM pg_backend_memory_contexts;
CALL bench_mem($MEM_CALLS);
SELECT sum(total_bytes) FROM pg_backend_memory_contexts;
SELECT coalesce(sum(total_bytes), 0) FROM pg_backend_memory_contexts WHERE name LIKE 'deploy_progress%';
SQL
)
read -r MEM0 MEM1 MEM2 MEMDP <<<"$(echo $MEM)"

# report
{
    echo "## Results ($(date -u +%Y-%m-%d), PostgreSQL $(psql -XAtc 'SHOW server_version' | cut -d' ' -f1), $(nproc) cores)"
    echo
    echo "Configuration: ${CONF[*]}; pgbench -M prepared, $CLIENTS clients, ${SECONDS_PER_RUN}s per run, $ROUNDS interleaved rounds; medians."
    echo "Workload tables: $ROWS rows, $IN_FLIGHT in flight, fillfactor 90, identical for every variant (primary key + partial index over in-flight rows); bulk tables: $BULK_ROWS rows, all in flight."
    echo
    echo "| workload | variant | median | ratio to none |"
    echo "|---|---|---:|---:|"
    for w in heartbeat transition; do
        base=$(echo ${TPS[$w,none]} | tr ' ' '\n' | median)
        for v in "${VARIANTS[@]}"; do
            m=$(echo ${TPS[$w,$v]} | tr ' ' '\n' | median)
            echo "| $w (tps) | $v | $m | $(ratio "$m" "$base") |"
        done
    done
    for k in heartbeat transition heartbeat1000; do
        base=$(echo ${BULK[$k,none]} | tr ' ' '\n' | median)
        for v in "${VARIANTS[@]}"; do
            m=$(echo ${BULK[$k,$v]} | tr ' ' '\n' | median)
            if [ $k = heartbeat1000 ]; then
                echo "| bulk heartbeat, 1,000 of $BULK_ROWS rows (ms) | $v | $m | $(ratio "$m" "$base") |"
            else
                echo "| bulk $k, $BULK_ROWS rows (ms) | $v | $m | $(ratio "$m" "$base") |"
            fi
        done
    done
    echo
    echo "Side storage against its hand-written equivalent (side_hand: the same UPDATE and an UPDATE of the application's own side table in one transaction); for throughput higher is better, for bulk times lower:"
    echo
    echo "| workload | dp_side / side_hand |"
    echo "|---|---:|"
    for w in heartbeat transition; do
        echo "| $w (tps) | $(ratio "$(echo ${TPS[$w,dp_side]} | tr ' ' '\n' | median)" "$(echo ${TPS[$w,side_hand]} | tr ' ' '\n' | median)") |"
    done
    for k in heartbeat transition heartbeat1000; do
        echo "| bulk $k (ms) | $(ratio "$(echo ${BULK[$k,dp_side]} | tr ' ' '\n' | median)" "$(echo ${BULK[$k,side_hand]} | tr ' ' '\n' | median)") |"
    done
    echo
    echo "| query, 1000 rows in flight | 1M rows (ms) | $BIG_ROWS rows (ms) | ratio |"
    echo "|---|---:|---:|---:|"
    for what in stuck in_flight; do
        echo "| $what | ${QMS[$what,bench_1m]} | ${QMS[$what,bench_big]} | $(ratio "${QMS[$what,bench_big]}" "${QMS[$what,bench_1m]}") |"
    done
    echo
    echo "Backend memory (sum of pg_backend_memory_contexts): $MEM0 bytes at start, $MEM1 after 10,000 trigger calls, $MEM2 after $MEM_CALLS more; deploy_progress's own contexts: $MEMDP bytes."
} | tee "$OUT"
log "written to $OUT"
