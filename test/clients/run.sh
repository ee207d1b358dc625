#!/usr/bin/env bash
# Client tests of deploy_progress: the extension used from Node.js
# (node-postgres + Drizzle ORM), Python (psycopg 3), Ruby (ActiveRecord),
# the deploy-progress-watch command, the Prometheus path (postgres_exporter,
# alert rules, Grafana dashboard) and the packaging (META.json, make dist).
#
#   test/clients/run.sh [SUITE...]     SUITE: node python ruby watch prometheus cli dist (default: all)
#
# Runs against the server named by PGHOST/PGPORT/PGUSER, with the extension
# and deploy-progress-watch installed from this tree (test/run_all.sh calls
# it with its throwaway cluster).  Each suite gets a database of its own,
# created here with the extension.  Exits non-zero when a suite fails and
# closes with the line "N passed, N failed".
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../lib.sh"

: "${PGHOST:?set PGHOST (test/run_all.sh does)}" "${PGPORT:?set PGPORT}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER
# Debian's psycopg is installed for Debian's python3, whatever python3 is first on PATH
PYTHON="${PYTHON:-/usr/bin/python3}"
RUBY="${RUBY:-/usr/bin/ruby}"
export DEPLOY_PROGRESS_WATCH="${DEPLOY_PROGRESS_WATCH:-$PGBIN/deploy-progress-watch}"

# A fresh database with the extension for one suite.
fresh_db() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres \
        -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$1" -c "CREATE EXTENSION deploy_progress" >/dev/null
}

suite_node() {
    fresh_db dp_client_node
    cd "$HERE/node"
    # the versions pinned in package-lock.json, nothing else
    npm ci --no-audit --no-fund --loglevel=error
    PGDATABASE=dp_client_node node --test --test-reporter=spec deployments.test.js drizzle_kit.test.js
}

suite_python() {
    fresh_db dp_client_python
    cd "$HERE/python"
    PGDATABASE=dp_client_python "$PYTHON" -m unittest -v test_worker_listener
}

suite_ruby() {
    fresh_db dp_client_ruby
    cd "$HERE/ruby"
    PGDATABASE=dp_client_ruby "$RUBY" test_steps.rb --verbose
    fresh_db dp_client_rails
    PGDATABASE=dp_client_rails "$RUBY" test_rails_tables.rb --verbose
}

suite_watch() {
    fresh_db dp_client_watch
    cd "$HERE/watch"
    PGDATABASE=dp_client_watch "$PYTHON" -m unittest -v test_watch test_relay test_serve
}

suite_prometheus() {
    fresh_db dp_client_prometheus
    cd "$HERE/prometheus"
    PGDATABASE=dp_client_prometheus "$PYTHON" -m unittest -v test_prometheus
}

suite_cli() {
    fresh_db dp_client_cli
    PGDATABASE=dp_client_cli "$HERE/cli/test_cli.sh"
}

suite_dist() {
    "$HERE/dist.sh"
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(node python ruby watch prometheus cli dist)
passed=0 failed=0 failures=()
for s in "${suites[@]}"; do
    log "client suite: $s"
    if (suite_"$s"); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$s")
    fi
done
[ $failed -eq 0 ] || log "client suites that failed: ${failures[*]}"
echo "clients: $passed passed, $failed failed"
[ $failed -eq 0 ]
