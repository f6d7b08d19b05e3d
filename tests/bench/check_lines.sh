#!/usr/bin/env bash
# tests/bench/check_lines.sh — the check library's own Lua cost, line by line: VM instructions per call for each
# source line, the Redis commands it calls and the library functions (tonumber, match, ...) per call, for check_cost.sh's
# plain or sample_detection shape on a steady flow (1000 users, one call every STEP ms, WARM calls first). Runs the
# library in Debian's lua5.1 (the Lua Redis embeds) against a stand-in for the commands (check_lines.lua), so it
# needs no Redis and its counts do not move with the machine's load. Redis's side of each call is check_cost.sh's.
# Usage: check_lines.sh [plain|sample] [CALLS (5000)] [WARM (20000)] [STEP ms (33)] [TOP lines (30)]
# Needs lua5.1 (apt-get install lua5.1) and build-bench/tests/bench/policy_bench (RG_BENCH to use another).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${RG_BENCH:-$ROOT/build-bench/tests/bench/policy_bench}
command -v lua5.1 >/dev/null || { echo "check_lines.sh: needs lua5.1 (apt-get install lua5.1)" >&2; exit 2; }
LIB=$(mktemp /tmp/rg-check-lines.XXXXXX)
trap 'rm -f "$LIB"' EXIT
"$BENCH" --print-lua >"$LIB"
lua5.1 "$ROOT/tests/bench/check_lines.lua" "$LIB" "${1:-plain}" "${2:-5000}" "${3:-20000}" "${4:-33}" "${5:-30}"
