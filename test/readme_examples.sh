#!/usr/bin/env bash
# Runs every SQL example of README.md on a throwaway cluster.
#
#   test/readme_examples.sh
#
# The ```sql blocks run in order, in one fresh database, each with psql.
# The "-- ERROR:  ..." comment lines of a block are the errors it must
# raise, in order, word for word; a block without them must raise none.
# Exits non-zero when a block does otherwise.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# test/run_all.sh runs this against its own cluster (DP_REUSE_CLUSTER=1)
if [ -z "${DP_REUSE_CLUSTER:-}" ]; then
    ensure_packages
    build_install
    log "starting a throwaway cluster"
    start_cluster
fi

blocks="$(mktemp -d /tmp/deploy_progress_readme.XXXXXX)"
trap 'rm -rf "$blocks"; [ -z "${DP_REUSE_CLUSTER:-}" ] && stop_cluster; true' EXIT
awk -v dir="$blocks" '
    /^```sql$/ { n++; file = sprintf("%s/%03d.sql", dir, n); inside = 1; printf "" > file; next }
    /^```/     { inside = 0; next }
    inside     { print > file }' "$REPO/README.md"

PGOPTIONS='-c client_min_messages=warning' "$PGBIN/psql" -X -q -c 'DROP DATABASE IF EXISTS readme_examples' -c 'CREATE DATABASE readme_examples'
status=0
for block in "$blocks"/*.sql; do
    want=$(sed -n 's/^-- \(ERROR:  .*\)$/\1/p' "$block")
    got=$("$PGBIN/psql" -X -q -d readme_examples -v ON_ERROR_STOP=0 -f "$block" 2>&1 >/dev/null |
          sed -n 's/^psql:[^ ]*: //; /^ERROR:  /p')
    if [ "$want" = "$got" ]; then
        echo "ok      README.md sql block $(basename "$block" .sql)"
    else
        status=1
        echo "FAILED  README.md sql block $(basename "$block" .sql)"
        sed 's/^/    | /' "$block"
        printf 'expected errors:\n%s\nraised:\n%s\n' "${want:-(none)}" "${got:-(none)}"
    fi
done

if [ $status -eq 0 ]; then log "every README example ran as shown"; else log "FAILED"; fi
exit $status
