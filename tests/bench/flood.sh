#!/usr/bin/env bash
# tests/bench/flood.sh — the memory store under a flood of new keys (issue 16): rateguardd with
# memory_max_keys = CAP and one `sasl_username *` rule; a normal Zipf run over 150 000 logins, then the store
# filled to the cap, then a run in which every message comes from a login never seen before. In both runs a
# watched login sends 60 messages at a steady pace against its own limit of 50/1h: its answers must switch
# from DUNNO to 450 exactly at the 51st (policy_bench --watch). Prints one csv line per run and the daemon's RSS.
# Usage: tests/bench/flood.sh   (SECS=5 per run, CAP=200000, C=8; DAEMON=path measures another rateguardd)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${SECS:-5}
CAP=${CAP:-200000}

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
memory_bench_setup rg-flood
cat >"$TMP/limits.conf" <<LIM
sasl_username   *         1000000/1h   defer
sasl_username   steady1   50/1h        defer
sasl_username   steady2   50/1h        defer
LIM
run_daemon "$TMP" "$PORT" "store = memory
memory_max_keys = $CAP"

run() {  # LABEL [extra...]
  local label=$1
  shift
  "$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --label "$label" --csv "$@" || echo "$label: policy_bench failed" >&2
}
echo "csv: label,C,U,requests,errors,seconds,req_per_s,p50_us,p90_us,p99_us,max_us,actions"
run normal --users 150000 --seconds "$SECS" --watch steady1 --watch-messages 60 --watch-limit 50
run fill --users "$CAP" --sequential --requests "$CAP" --max-rcpts 1 --seconds 120 --seed 2
echo "rss after fill: $(rss) kB"
run new-keys --users 150000 --new-keys 1 --seconds "$SECS" --seed 3 --watch steady2 --watch-messages 60 --watch-limit 50
echo "rss after new-keys: $(rss) kB"
grep -c "store-error" "$TMP/rateguardd.log" | sed 's/^/store-error log lines: /' || true
