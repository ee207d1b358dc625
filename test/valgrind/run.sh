#!/usr/bin/env bash
# Runs the regression and isolation suites of deploy_progress with the
# server under Valgrind (memcheck), and fails on any error Valgrind reports
# that is not suppressed, and (with a server built without USE_VALGRIND)
# on any definite leak through our code.
#
#   test/valgrind/run.sh                 # everything (about 10-20 minutes)
#   REGRESS="stamp side_table" ISOLATION= test/valgrind/run.sh   # a subset
#
# test/run_all.sh runs it as its last step (DP_SKIP_VALGRIND=1 leaves it
# out, since it is slow).  The server is the assert-enabled, Valgrind-aware
# PostgreSQL 15 of test/cassert_pg.sh (built once from Debian's source,
# then reused from /var/cache): its Assert()s are checked, and its
# allocator tells memcheck about every palloc'd chunk, so that reads of
# freed or uninitialised palloc'd memory and writes past a chunk are
# reported, which a server built without USE_VALGRIND hides (its memory
# contexts carve malloc'd blocks up themselves).  PostgreSQL's own
# suppressions (src/tools/valgrind.supp of that source) apply with ours.
# DP_VALGRIND_PG_CONFIG names another server instead (for example
# /usr/lib/postgresql/15/bin/pg_config, Debian's, which sees malloc-level
# memory only).  The extension is built with -O0 -g so that reports point
# at source lines, and with -DUSE_ASSERT_CHECKING so that its Assert()s are
# checked in any server.  Reports land in $VALGRIND_LOG_DIR (default
# /tmp/deploy_progress_valgrind), one file per server process.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${DP_VALGRIND_PG_CONFIG:-}" ]; then
    DP_VALGRIND_PG_CONFIG="$("$HERE/../cassert_pg.sh")"
fi
export PG_CONFIG="$DP_VALGRIND_PG_CONFIG"
unset PG_MAJOR
source "$HERE/../lib.sh"

ensure_packages valgrind
# PostgreSQL's own suppressions, kept with the assert-enabled build
pg_supp=()
supp_file="$(dirname "$(dirname "$PG_CONFIG")")/valgrind.supp"
[ -f "$supp_file" ] && pg_supp=(--suppressions="$supp_file")
# Leaks: a Valgrind-aware server reports every palloc'd chunk still in a
# memory context at exit as lost (contexts are freed wholesale, or with the
# process), so leak checking means nothing there, as PostgreSQL's own
# Valgrind runs have it (the extension allocates nothing with malloc);
# under a server without USE_VALGRIND the definite leaks through our code
# are checked.
if "$PG_CONFIG" --configure | grep -q -- '-DUSE_VALGRIND'; then
    leak_check=(--leak-check=no)
else
    leak_check=(--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite)
fi
log "server: $("$PG_CONFIG" --version) from $PG_CONFIG (configure: $("$PG_CONFIG" --configure | grep -o -e '--enable-cassert' -e 'USE_VALGRIND' | tr '\n' ' '))"
log "building deploy_progress with -O0 -g -DUSE_ASSERT_CHECKING"
make -C "$REPO" -s clean PG_CONFIG="$PG_CONFIG" >/dev/null
make -C "$REPO" -s PG_CONFIG="$PG_CONFIG" PG_CFLAGS="-O0 -g -DUSE_ASSERT_CHECKING -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror"
as_root make -C "$REPO" -s install PG_CONFIG="$PG_CONFIG" >/dev/null

LOG_DIR="${VALGRIND_LOG_DIR:-/tmp/deploy_progress_valgrind}"
rm -rf "$LOG_DIR"; mkdir -p "$LOG_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$LOG_DIR"

# a cluster as usual, then the server restarted under valgrind
start_cluster
as_pg "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null
log "starting the server under valgrind (logs in $LOG_DIR)"
as_pg valgrind --quiet --tool=memcheck --trace-children=yes --track-origins=yes \
    "${leak_check[@]}" \
    --read-var-info=yes --num-callers=30 --error-limit=no \
    --suppressions="$REPO/test/valgrind/deploy_progress.supp" "${pg_supp[@]}" --gen-suppressions=all \
    --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \
    --log-file="$LOG_DIR/%p.log" \
    "$PGBIN/postgres" -D "$CLUSTER_DIR/data" >"$CLUSTER_DIR/server.log" 2>&1 &
for _ in $(seq 1 120); do
    "$PGBIN/pg_isready" -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 1
done

# The suites' own results are shown but do not decide: under valgrind the
# server is 20-50 times slower, and side_table's one-second
# statement_timeout check fails for that reason alone.
status=0
log "regression suite under valgrind"
make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= ISOLATION= \
    ${REGRESS+REGRESS="$REGRESS"} || { log "regression diffs (informative)"; cat "$REPO/regression.diffs" || true; }
if [ -n "${ISOLATION-x}" ]; then
    log "isolation suite under valgrind"
    make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= REGRESS= \
        ${ISOLATION+ISOLATION="$ISOLATION"} || { log "isolation diffs (informative)"; cat "$REPO/output_iso/regression.diffs" || true; }
fi

as_pg "$PGBIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w -t 300 stop >/dev/null || true
sleep 2

# every reported error, with the files that hold them
errors=$(grep -l VALGRINDERROR-BEGIN "$LOG_DIR"/*.log 2>/dev/null || true)
ours=$(grep -l 'deploy_progress' $errors /dev/null 2>/dev/null || true)
n_err=$(cat "$LOG_DIR"/*.log 2>/dev/null | grep -c VALGRINDERROR-BEGIN || true)
log "valgrind: $n_err unsuppressed error(s) in $(echo "$errors" | grep -c . || true) process(es); through deploy_progress code: $(echo "$ours" | grep -c . || true) process(es)"
if [ -n "$errors" ]; then
    status=1
    for f in $errors; do
        echo "---- $f"
        sed -n '/VALGRINDERROR-BEGIN/,/VALGRINDERROR-END/p' "$f" | head -120
    done
fi
if [ $status -eq 0 ]; then log "valgrind: clean"; else log "valgrind: FAILED"; fi
exit $status
