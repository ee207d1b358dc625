#!/usr/bin/env bash
# Runs every test suite of deploy_progress on a throwaway cluster.
#
#   test/run_all.sh
#
# Works on a fresh Debian bookworm machine: installs what is missing
# (apt-get, as root or with sudo), builds with -Werror, installs, starts a
# private PostgreSQL 15 cluster, runs the regression and isolation suites
# (make installcheck) and the TAP tests, stops the cluster, and exits
# non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_packages
build_install

log "starting a throwaway cluster"
start_cluster "shared_preload_libraries = 'pg_cron'" "cron.database_name = 'postgres'"

status=0
log "regression and isolation suites (make installcheck)"
if ! make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= ; then
    status=1
    [ -f "$REPO/regression.diffs" ] && cat "$REPO/regression.diffs"
    [ -f "$REPO/output_iso/regression.diffs" ] && cat "$REPO/output_iso/regression.diffs"
fi

if ls "$REPO"/test/t/*.pl >/dev/null 2>&1; then
    log "TAP suite"
    # the TAP framework starts clusters of its own, which must not run as root
    rm -rf "$REPO/tmp_check"
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$REPO/tmp_check" && chown -R postgres: "$REPO/tmp_check"
    fi
    if ! as_pg make -C "$REPO" installcheck PG_CONFIG="$PG_CONFIG" REGRESS= ISOLATION= ; then
        status=1
        find "$REPO/tmp_check" -name 'regress_log_*' -exec tail -n 40 {} + 2>/dev/null || true
    fi
fi

if [ $status -eq 0 ]; then log "all suites passed"; else log "FAILED"; fi
exit $status
