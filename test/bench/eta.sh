#!/usr/bin/env bash
# Accuracy benchmark of the whole-run ETA (not a timing): simulated
# deployments, test/bench/eta.sql, on a throwaway cluster.  About a minute.
#
#   test/bench/eta.sh
#
# Prints the median absolute percentage error of deploy_progress's ETA and
# of the naive elapsed / overall_progress extrapolation at 25, 50 and 75 %
# of the runs (docs/performance.md has the last run's numbers).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
ensure_packages
build_install
start_cluster
trap stop_cluster EXIT
createdb eta_bench
psql -X -q -d eta_bench -c "CREATE EXTENSION deploy_progress"
psql -X -q -d eta_bench -f "$REPO/test/bench/eta.sql"
