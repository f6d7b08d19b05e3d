#!/usr/bin/env bash
# tests/bench/cpu_split.sh — where the CPU of a Redis-store request goes: rateguardd (redis store, run.sh's generous
# limits) on its private redis-server, driven by policy_bench; CPU time (user + system, /proc/PID/stat) of
# redis-server, rateguardd and policy_bench over the run, in µs per request. On a box whose cores the three share,
# their sum per request over the number of cores bounds the req/s, whatever each one's latency.
# Usage: tests/bench/cpu_split.sh [C (32)] [SECONDS (4)] [RUNS (3)]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C=${1:-32} SECS=${2:-4} RUNS=${3:-3}
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
memory_bench_setup rg-cpu-split
start_redis
write_limits "$TMP/limits.conf" 1000000
run_daemon "$TMP" "$PORT" "store = redis
redis = $RSOCK"
RPID=${PIDS[-2]}  # start_redis's, before run_daemon's
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
printf '%-6s %9s %8s %12s %12s %12s %8s\n' run requests req/s "redis us" "daemon us" "bench us" "sum us"
for run in $(seq "$RUNS"); do
  r0=$(ticks "$RPID") d0=$(ticks "$PID")
  # The generator's user + system seconds, from bash's time (its rusage as a child).
  TIMEFORMAT='%3U %3S'
  { time "$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --users 1000 --seconds "$SECS" --csv >"$TMP/bench.csv"; } \
    2>"$TMP/time"
  b=$(tail -n 1 "$TMP/time" | awk '{print $1 + $2}')
  r1=$(ticks "$RPID") d1=$(ticks "$PID")
  n=$(cut -d, -f4 "$TMP/bench.csv")
  rps=$(cut -d, -f7 "$TMP/bench.csv")
  awk -v run="$run" -v n="$n" -v rps="$rps" -v r=$((r1 - r0)) -v d=$((d1 - d0)) -v b="$b" -v hz="$HZ" 'BEGIN {
    u = 1e6 / hz / n
    printf "%-6s %9d %8d %12.1f %12.1f %12.1f %8.1f\n", run, n, rps, r * u, d * u, b * 1e6 / n, (r + d) * u + b * 1e6 / n }'
done
