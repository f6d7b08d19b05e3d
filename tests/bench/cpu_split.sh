#!/usr/bin/env bash
# tests/bench/cpu_split.sh — where the CPU of a request goes: rateguardd (run.sh's generous limits) driven by
# policy_bench, with the Redis store on its private redis-server or with the memory store next to the trivial
# responder; CPU time (user + system, /proc/PID/stat) of each server and policy_bench over the run, in µs per request.
# With the Redis store, redis-benchmark runs the same check on the same Redis next (run.sh's FIRST and LATER calls,
# 1:1 like policy_bench's requests), its own CPU in the "bench us" column.
# On a box whose cores they share, their sum per request over the number of cores bounds the req/s, whatever each
# one's latency; a single-threaded server's own µs per request bounds it too (1e6 / µs).
# Usage: tests/bench/cpu_split.sh [C (32)] [SECONDS (4)] [RUNS (3)] [STORE (redis | memory)]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C=${1:-32} SECS=${2:-4} RUNS=${3:-3} STORE=${4:-redis}
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
memory_bench_setup rg-cpu-split
write_limits "$TMP/limits.conf" 1000000
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
if [[ $STORE == redis ]]; then
  start_redis
  run_daemon "$TMP" "$PORT" "store = redis
redis = $RSOCK"
  RPID=${PIDS[-2]}  # start_redis's, before run_daemon's
  SERVERS=("rateguardd:$PID:$PORT")
else
  bench_build trivial_responder
  run_daemon "$TMP" "$PORT" ""
  "$BUILD/tests/bench/trivial_responder" "$((PORT + 1))" 3600 >/dev/null &
  PIDS+=($!)
  wait_port "$((PORT + 1))"
  SERVERS=("trivial:${PIDS[-1]}:$((PORT + 1))" "rateguardd:$PID:$PORT")
fi
if [[ $STORE == redis ]]; then
  rb_shapes
  printf '%-6s %-16s %9s %8s %10s %10s %10s %8s\n' run client requests req/s "redis us" "daemon us" "bench us" "sum us"
else
  printf '%-6s %-11s %9s %8s %12s %12s %8s\n' run server requests req/s "server us" "bench us" "sum us"
fi
for run in $(seq "$RUNS"); do
  for server in "${SERVERS[@]}"; do
    IFS=: read -r name spid sport <<<"$server"
    r0=0 r1=0
    if [[ $STORE == redis ]]; then r0=$(ticks "$RPID"); fi
    d0=$(ticks "$spid")
    # The generator's user + system seconds, from bash's time (its rusage as a child).
    TIMEFORMAT='%3U %3S'
    { time "$BENCH" --connect "inet:127.0.0.1:$sport" -c "$C" --users 1000 --seconds "$SECS" --csv >"$TMP/bench.csv"; } \
      2>"$TMP/time"
    b=$(tail -n 1 "$TMP/time" | awk '{print $1 + $2}')
    if [[ $STORE == redis ]]; then r1=$(ticks "$RPID"); fi
    d1=$(ticks "$spid")
    n=$(cut -d, -f4 "$TMP/bench.csv")
    rps=$(cut -d, -f7 "$TMP/bench.csv")
    awk -v run="$run" -v name="$name" -v store="$STORE" -v n="$n" -v rps="$rps" -v r=$((r1 - r0)) -v d=$((d1 - d0)) \
      -v b="$b" -v hz="$HZ" 'BEGIN {
      u = 1e6 / hz / n
      if (store == "redis")
        printf "%-6s %-16s %9d %8d %10.1f %10.1f %10.1f %8.1f\n", run, "rateguardd", n, rps, r * u, d * u, b * 1e6 / n,
               (r + d) * u + b * 1e6 / n
      else
        printf "%-6s %-11s %9d %8d %12.1f %12.1f %8.1f\n", run, name, n, rps, d * u, b * 1e6 / n, d * u + b * 1e6 / n }'
  done
  if [[ $STORE == redis ]]; then
    # The same number of calls as policy_bench's requests, half of each shape, on the Redis the daemon used.
    half=$(( $(cut -d, -f4 "$TMP/bench.csv") / 2 ))
    r0=$(ticks "$RPID")
    t0=$(date +%s%N)
    { time { redis-benchmark -s "$RSOCK" -c "$C" -n "$half" -r 1000 -P 1 -q "${FIRST[@]}" >/dev/null
             redis-benchmark -s "$RSOCK" -c "$C" -n "$half" -r 1000 -P 1 -q "${LATER[@]}" >/dev/null; }; } 2>"$TMP/time"
    t1=$(date +%s%N)
    r1=$(ticks "$RPID")
    b=$(tail -n 1 "$TMP/time" | awk '{print $1 + $2}')
    awk -v run="$run" -v n=$((2 * half)) -v ns=$((t1 - t0)) -v r=$((r1 - r0)) -v b="$b" -v hz="$HZ" 'BEGIN {
      u = 1e6 / hz / n
      printf "%-6s %-16s %9d %8d %10.1f %10s %10.1f %8.1f\n", run, "redis-benchmark", n, n * 1e9 / ns, r * u, "-",
             b * 1e6 / n, r * u + b * 1e6 / n }'
    redis-cli -s "$RSOCK" flushall >/dev/null
  fi
done
