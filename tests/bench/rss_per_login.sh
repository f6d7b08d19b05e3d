#!/usr/bin/env bash
# tests/bench/rss_per_login.sh — memory store footprint per login (issue 16): rateguardd with the sample
# conf/limits.conf (per login 4 counters, one with a burst baseline, and a client_ips signal), LOGINS logins
# sending one single-RCPT message each, then 9 more each, every login from its own client address (10.x.y.z,
# so the sample's client_address rules, which name loopback, add no identity and nothing is held). Reads VmRSS
# from /proc/PID/status fresh, after 1 and after 10 messages per login; prints bytes per login.
# Usage: tests/bench/rss_per_login.sh   (LOGINS=200000, C=8; DAEMON=path measures another rateguardd)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOGINS=${LOGINS:-200000}

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
memory_bench_setup rg-rss
cp "$ROOT/conf/limits.conf" "$TMP/limits.conf"
run_daemon "$TMP" "$PORT" "store = memory
memory_max_keys = $((LOGINS + 1000))"

R0=$(rss)
"$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --users "$LOGINS" --sequential --requests "$LOGINS" --max-rcpts 1 \
  --client-per-user --seconds 600 --label one-message --csv
R1=$(rss)
"$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --users "$LOGINS" --sequential --requests $((9 * LOGINS)) \
  --max-rcpts 1 --client-per-user --seconds 600 --label ten-messages --csv
R10=$(rss)
awk -v r0="$R0" -v r1="$R1" -v r10="$R10" -v n="$LOGINS" 'BEGIN {
  printf "rateguardd VmRSS: %.1f MB fresh, %.1f MB after 1 message per login, %.1f MB after 10 (%d logins)\n",
    r0 / 1024, r1 / 1024, r10 / 1024, n
  printf "bytes per login: %.0f after 1 message, %.0f after 10\n", (r1 - r0) * 1024 / n, (r10 - r0) * 1024 / n }'
