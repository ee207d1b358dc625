#!/usr/bin/env bash
# Runs every test suite of deploy_progress on a throwaway cluster.
#
#   test/run_all.sh
#
# DP_SKIP_VALGRIND=1 skips the last, slowest step (the suites under
# Valgrind).
#
# Works on a fresh Debian bookworm machine: installs what is missing
# (apt-get, as root or with sudo), builds with -Werror, installs, starts a
# private PostgreSQL cluster (15, or what PG_MAJOR or PG_CONFIG name) with
# pg_cron, runs the regression and isolation suites (make installcheck),
# the README examples (test/readme_examples.sh), the TAP tests (with Citus
# built from ../shared/citus when it is there, for test/t/018_citus.pl) and the
# client tests (test/clients), stops the cluster, runs the suites under
# Valgrind (test/valgrind/run.sh), and exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_packages
build_install

# Citus, for the distributed-table test test/t/018_citus.pl: built once from
# ../shared/citus (or $DP_CITUS_SRC) into a cache outside the clone
# ($DP_CITUS_CACHE) and installed into PG_CONFIG's installation; without
# its source the test says it is skipped, and why
citus_status=0
if [ -z "$(citus_source_missing)" ]; then
    ensure_citus || citus_status=1
fi

log "starting a throwaway cluster"
start_cluster "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'"

status=$citus_status
# the two suites run separately, so that a regression failure does not
# hide the isolation results
run_regression || status=1
run_isolation || status=1

log "README examples (test/readme_examples.sh)"
if ! DP_REUSE_CLUSTER=1 "$REPO/test/readme_examples.sh"; then
    status=1
fi

# (as the server's OS user, with Citus for test/t/018_citus.pl when
# ensure_citus installed it above)
run_tap 'test/t/*.pl' || status=1

log "client tests: Node.js, Python, Ruby, deploy-progress-watch, packaging"
if ! "$REPO/test/clients/run.sh"; then
    status=1
fi

# Last, the regression and isolation suites again with the server under
# Valgrind (10-20 minutes; it rebuilds the extension with -O0 and starts a
# cluster of its own).  DP_SKIP_VALGRIND=1 leaves it out of a quick run.
if [ -z "${DP_SKIP_VALGRIND:-}" ]; then
    stop_cluster
    log "the suites under Valgrind (test/valgrind/run.sh)"
    if ! "$REPO/test/valgrind/run.sh"; then
        status=1
    fi
fi

if [ $status -eq 0 ]; then log "all suites passed"; else log "FAILED"; fi
exit $status
