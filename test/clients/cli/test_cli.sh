#!/usr/bin/env bash
# README recipe "a CLI that prints JSON progress": the README's SQL block
# and its shell loop, run as they are shown, against a fake deployctl that
# prints JSON progress lines (and one that is not JSON, one with an unknown
# phase, one that counts past the total).  Checks what the trigger made of
# them.  Connects with the PG* environment variables (test/clients/run.sh
# sets them and PGBIN).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
README="$HERE/../../../README.md"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export PATH="$PGBIN:$PATH"
q() { psql -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# the first ```LANG block after the recipe's heading
block() {
    awk -v fence='```'"$1" '
        /^\*\*Recipe: a CLI that prints JSON progress\.\*\*/ { found = 1 }
        found && !inside && $0 == fence { inside = 1; next }
        inside && /^```/ { exit }
        inside { print }' "$README"
}
block sql > "$TMP/recipe.sql"
block sh > "$TMP/loop.sh"
[ -s "$TMP/recipe.sql" ] && [ -s "$TMP/loop.sh" ] || fail "recipe blocks not found in README.md"

psql -X -q -v ON_ERROR_STOP=1 -At -f "$TMP/recipe.sql" > "$TMP/recipe.out"
grep -q '^Transferring: 3/12 (25.0%)' "$TMP/recipe.out" || fail "describe() after the first line: $(cat "$TMP/recipe.out")"

# the tool: progress lines as a deployment tool prints them
deployctl() {
    cat <<'LINES'
{"phase": "transferring", "current": 6, "total": 12, "status": "uploading layer 6/12"}
Pushing web:1.2 ... this line is not JSON
{"phase": "transfering", "current": 7}
{"current": 12, "total": 12, "status": "uploaded"}
{"current": 13}
{"phase": "health_check", "current": 0, "total": 3, "status": "probing"}
{"phase": "succeeded", "status": "web:1.2 is live; it's done"}
LINES
}
export -f deployctl
bash "$TMP/loop.sh" 2> "$TMP/loop.err"

# three lines were refused, each with its own error, and changed nothing
[ "$(grep -c '^skipped: ' "$TMP/loop.err")" = 3 ] || fail "expected 3 skipped lines: $(cat "$TMP/loop.err")"
grep -q 'invalid input syntax for type json' "$TMP/loop.err" || fail "no json error: $(cat "$TMP/loop.err")"
grep -q 'invalid input value for enum deploy_progress.phase: "transfering"' "$TMP/loop.err" || fail "no enum error"
grep -q 'exceed its total' "$TMP/loop.err" || fail "no counter error"

got="$(q "SELECT phase, completed_items, total_items, status_line, finished_at IS NOT NULL FROM cli_deploys WHERE id = 7")"
[ "$got" = "succeeded|0|3|web:1.2 is live; it's done|t" ] || fail "row: $got"
got="$(q "SELECT string_agg(to_phase, ' > ' ORDER BY id) FROM deploy_progress.history WHERE relid = 'cli_deploys'::regclass AND key = '7'")"
[ "$got" = "queued > transferring > health_check > succeeded" ] || fail "history: $got"
echo "ok: the README's CLI recipe applied 4 lines and refused 3"
