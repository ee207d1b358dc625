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

pgxs_dir="$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)"
tap_dir="$(mktemp -d /tmp/deploy_progress_citus.XXXXXX)"
tap_src="$REPO"
if [ "$(id -u)" = 0 ]; then
    # the postgres OS user runs the test from a copy it owns
    tap_src="$tap_dir/src"
    mkdir "$tap_src"
    tar -C "$REPO" --exclude=./.git --exclude=./tmp_check -cf - . | tar -C "$tap_src" -xf -
    chown -R postgres: "$tap_dir"
fi
status=0
(cd "$tap_src" && as_pg env TESTDIR="$tap_dir" PATH="$PGBIN:$PATH" DP_CITUS_SRC="$DP_CITUS_SRC" \
    PG_REGRESS="$pgxs_dir/src/test/regress/pg_regress" \
    prove -I "$pgxs_dir/src/test/perl" -I . ${PROVE_FLAGS:-} test/t/018_citus.pl) || status=1
if [ $status != 0 ]; then
    find "$tap_dir" -name 'regress_log_*' -exec tail -n 60 {} + 2>/dev/null || true
fi
rm -rf "$tap_dir"
exit $status
