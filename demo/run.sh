#!/usr/bin/env bash
# Watch deploy_progress track five simulated deployments.
#
#   demo/run.sh
#
# Works on a fresh Debian bookworm machine, as root or as a user with sudo:
# installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL cluster on a private socket, and creates two tracked
# tables (demo/setup.sql).  Five workers then drive their deployments through
# their phases for about half a minute, each on a session of its own, while
# the progress table (demo/progress.sql) is printed every second or two: one
# deployment fails, one waits for approval, one loses its worker and is
# failed by the stuck sweep (demo/sweep.sql).  It ends with a short report
# (demo/report.sql) and the writes the trigger refuses (demo/rules.sql).
# The cluster is stopped on exit, also after an error or Ctrl-C.
#
# DEMO_REFRESH=seconds sets the refresh interval (default 1 on a terminal,
# 2 otherwise).  On a terminal the table is redrawn in place; otherwise each
# refresh is printed below the previous one, so a log stays readable.
set -euo pipefail
DEMO="$(cd "$(dirname "$0")" && pwd)"
source "$DEMO/../test/lib.sh"

if [ -t 1 ]; then TTY=1; else TTY=0; fi
REFRESH="${DEMO_REFRESH:-$(( TTY ? 1 : 2 ))}"
TIME_LIMIT=120                  # seconds; the scenario takes about 30

WORKERS=()                      # process group ids of the workers
WORK=""                         # events and worker errors

cleanup() {
    local pid
    for pid in "${WORKERS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    stop_cluster
    if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}

ensure_packages
build_install
log "starting a throwaway cluster"
start_cluster
trap cleanup EXIT
trap 'echo; log "interrupted: stopping the workers and the cluster"; exit 130' INT TERM
WORK="$(mktemp -d /tmp/deploy_progress_demo.XXXXXX)"
EVENTS="$WORK/events"
: > "$EVENTS"

PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -P pager=off)

log "creating and tracking the tables (demo/setup.sql)"
"${PSQL[@]}" -f "$DEMO/setup.sql"

#--------------------------------------------------------------------------
# The workers.  Each scenario function writes SQL statements to its stdout,
# which a psql session of its own executes as they arrive; the sleeps
# between them make the timeline.  D is the deployment a worker drives.
#--------------------------------------------------------------------------

now_ms() { local ns; ns=$(date +%s%N); echo $(( ns / 1000000 )); }
T0=$(now_ms)
clock() { local ms=$(( $(now_ms) - T0 )); printf 't+%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }

# event TEXT: a line in the event log shown under the table
event() { printf '%-8s %-15s %s\n' "$(clock)" "$D" "$*" >> "$EVENTS"; }

q() { printf '%s\n' "$*"; }
pause() { sleep "$1"; }

new_deployment() {
    D=$1
    q "INSERT INTO deployments (name) VALUES ('$D');"
    event "queued"
}

# enter PHASE [TOTAL [MESSAGE]]: move to PHASE, with counters at 0 of TOTAL
# (none when TOTAL is empty) and the worker's message
enter() {
    local counters="completed_items = NULL, total_items = NULL" message=NULL
    if [ -n "${2:-}" ]; then counters="completed_items = 0, total_items = $2"; fi
    if [ -n "${3:-}" ]; then message="'$3'"; fi
    q "UPDATE deployments SET phase = '$1', $counters, message = $message WHERE name = '$D';"
}

# work TOTAL SECONDS [STOP [CURVE]]: count completed items up to TOTAL over
# SECONDS, one update every quarter of a second, stopping early at STOP;
# CURVE "uneven" starts slowly and speeds up halfway
work() {
    local total=$1 stop=${3:-$1} c
    for c in $(awk -v t="$total" -v s="$2" -v curve="${4:-linear}" 'BEGIN {
                   n = int(s * 4 + 0.5); if (n < 1) n = 1
                   for (i = 1; i <= n; i++) {
                       x = i / n
                       y = (curve == "uneven") ? (x < 0.5 ? 0.6 * x : 0.3 + 1.4 * (x - 0.5)) : x
                       print int(t * y + 0.5)
                   } }'); do
        if [ "$c" -gt "$stop" ]; then c=$stop; fi
        pause 0.25
        q "UPDATE deployments SET completed_items = $c WHERE name = '$D';"
        if [ "$c" -ge "$stop" ]; then break; fi
    done
}

# rollout HOST...: phase "starting" updates the hosts one after the other,
# each a row of the steps table going through the host_rollout lifecycle
rollout() {
    local n=$# hosts h
    hosts=$(printf "'%s'," "$@")
    enter starting "$n"
    q "INSERT INTO steps (deployment_id, position, host)
       SELECT d.id, h.position, h.host
         FROM deployments d, unnest(ARRAY[${hosts%,}]) WITH ORDINALITY AS h(host, position)
        WHERE d.name = '$D';"
    for h in $(seq 1 "$n"); do
        step "$h" draining;  pause 0.3
        step "$h" updating;  pause 0.5
        step "$h" verifying; pause 0.3
        q "BEGIN;"
        step "$h" done
        q "UPDATE deployments SET completed_items = $h WHERE name = '$D';"
        q "COMMIT;"
    done
}
step() {
    q "UPDATE steps SET phase = '$2' WHERE deployment_id = (SELECT id FROM deployments WHERE name = '$D') AND position = $1;"
}

succeed() { enter succeeded; event "succeeded"; }
fail() {
    q "UPDATE deployments SET phase = 'failed', failure_reason = '$1' WHERE name = '$D';"
    event "failed: $1"
}

web_frontend() {
    new_deployment web-frontend
    pause 1;   enter preparing
    pause 1;   enter fetching 40;         work 40 2
               enter building 120;        work 120 3
               enter transferring 31344;  work 31344 10 31344 uneven
               rollout web-1 web-2 web-3
               enter health_check 3;      work 3 1.5
               enter finishing;           pause 1
               succeed
}

billing_api() {
    pause 0.2; new_deployment billing-api
    pause 0.5; enter preparing
    pause 1;   enter fetching 12;         work 12 1.5
               enter building 60;         work 60 3
               enter transferring 2200;   work 2200 3
               enter migrating 120;       work 120 6 57
               fail "migration 0057: lock timeout"
}

search_indexer() {
    pause 0.4; new_deployment search-indexer
    pause 2;   enter preparing
    pause 1;   enter fetching 8;          work 8 1
               enter building 40;         work 40 2
               enter waiting "" "awaiting approval"
               event "waiting for approval"
    pause 10;  event "approved by alice"
               enter transferring 5000;   work 5000 4
               rollout search-1 search-2
               enter health_check 2;      work 2 1
               enter finishing;           pause 0.5
               succeed
}

reports_worker() {
    pause 0.6; new_deployment reports-worker
    pause 1;   enter preparing
    pause 0.5; enter fetching 25;         work 25 1
               enter building 200;        work 200 6 80
               event "worker lost (simulated crash): no more writes"
}

docs_site() {
    pause 5;   new_deployment docs-site
               q "UPDATE deployments SET message = 'no free runner' WHERE name = '$D';"
    pause 4;   enter preparing
    pause 0.5; enter fetching 8;          work 8 1
               enter building 40;         work 40 2
               enter transferring 800;    work 800 3
               rollout docs-1
               enter health_check 1;      work 1 1
               enter finishing;           pause 0.5
               succeed
}

# start_worker SCENARIO: run it in the background, in a process group of its
# own (so that cleanup can end the scenario and its psql together)
start_worker() {
    set -m
    ( "$1" | "${PSQL[@]}" >/dev/null 2>>"$WORK/$1.err" ) &
    set +m
    WORKERS+=("$!")
    WORKER_NAMES+=("$1")
}

#--------------------------------------------------------------------------
# The monitor
#--------------------------------------------------------------------------

# Stop with an error when a worker failed.
WORKER_DONE=()
check_workers() {
    local i
    for i in "${!WORKERS[@]}"; do
        if [ -n "${WORKER_DONE[$i]:-}" ] || kill -0 "${WORKERS[$i]}" 2>/dev/null; then continue; fi
        WORKER_DONE[$i]=1
        if ! wait "${WORKERS[$i]}"; then
            log "worker ${WORKER_NAMES[$i]} failed:"
            cat "$WORK/${WORKER_NAMES[$i]}.err" >&2
            exit 1
        fi
    done
}

workers_running() {
    local pid
    for pid in "${WORKERS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then return 0; fi
    done
    return 1
}

deployments_in_flight() {
    "${PSQL[@]}" -At -c "SELECT count(*) FROM deploy_progress.in_flight WHERE relid = 'deployments'::regclass"
}

# The stuck sweep a cron job would run; what it fails goes to the event log.
sweep() {
    local name reason
    "${PSQL[@]}" -At -F '|' -f "$DEMO/sweep.sql" | while IFS='|' read -r name reason; do
        D=$name event "$reason"
    done
}

SHOWN_LINES=0       # lines drawn by the last refresh (terminal)
SHOWN_EVENTS=0      # events printed so far (log)

refresh() {
    local table out cols
    table=$("${PSQL[@]}" -P footer=off -P border=0 -f "$DEMO/progress.sql")
    if [ "$TTY" = 1 ]; then
        out="$(printf 'Deployments at %s\n%s\n\nEvents:\n' "$(clock)" "$table"; tail -n 8 "$EVENTS")"
        cols=$(tput cols 2>/dev/null || echo 80)
        # move up over the previous refresh and draw over it
        if [ "$SHOWN_LINES" -gt 0 ]; then printf '\033[%dA\033[J' "$SHOWN_LINES"; fi
        printf '%s\n' "$out"
        SHOWN_LINES=$(printf '%s\n' "$out" | awk -v c="$cols" '{ n += length($0) > c ? int((length($0) - 1) / c) + 1 : 1 } END { print n }')
    else
        printf '\n-- %s\n%s\n' "$(clock)" "$table"
        tail -n +"$(( SHOWN_EVENTS + 1 ))" "$EVENTS" | sed 's/^/   /'
        SHOWN_EVENTS=$(wc -l < "$EVENTS")
    fi
}

log "running five deployments for about 30 seconds"
T0=$(now_ms)
WORKER_NAMES=()
for scenario in web_frontend billing_api search_indexer reports_worker docs_site; do
    start_worker "$scenario"
done

sleep 0.7           # let the first workers queue their deployments
while :; do
    check_workers
    sweep
    refresh
    if ! workers_running && [ "$(deployments_in_flight)" = 0 ]; then break; fi
    if [ $(( $(now_ms) - T0 )) -gt $(( TIME_LIMIT * 1000 )) ]; then
        log "deployments still in flight after ${TIME_LIMIT}s"
        exit 1
    fi
    sleep "$REFRESH"
done
check_workers
elapsed=$(clock)

"${PSQL[@]}" -P footer=off -f "$DEMO/report.sql"

echo
echo "Writes the stamping trigger refuses:"
"$PGBIN/psql" -X -q -P pager=off -e -f "$DEMO/rules.sql" 2>&1 | sed -e 's/^psql:[^ ]*: //' -e 's/^--/\n--/'

log "demo finished at ${elapsed#t+}; stopping the cluster"
