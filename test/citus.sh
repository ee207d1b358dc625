#!/usr/bin/env bash
# The Citus test: builds Citus (once, cached in $DP_CITUS_CACHE, default
# /var/cache/deploy_progress-citus) from ../shared/citus or $DP_CITUS_SRC
# into PG_CONFIG's installation, builds and installs the extension, and
# runs test/t/018_citus.pl as the server's OS user.  Without the Citus
# source it says so and exits 0 (the test is skipped).
#
#   PG_CONFIG=/path/to/pg_config test/citus.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DP_CITUS_SRC="$(cd "$DP_CITUS_SRC" 2>/dev/null && pwd || echo "$DP_CITUS_SRC")"
export DP_CITUS_SRC
why="$(citus_source_missing)"
if [ -n "$why" ]; then
    echo "test/t/018_citus.pl skipped: $why"
    exit 0
fi
ensure_citus
build_install

run_tap test/t/018_citus.pl
