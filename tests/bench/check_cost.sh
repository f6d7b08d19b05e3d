#!/bin/bash
# tests/bench/check_cost.sh — Redis CPU per call of the check script (INFO commandstats usec_per_call of
# EVALSHA, median of R alternating runs) and the Redis commands it runs per call, for the first-RCPT shape
# without detection, with one burst counter + one client_ips signal (the same address every time), and the
# same with a new address every time (the worst case: PFCOUNT of 5 HyperLogLogs on every call).
# Usage: check_cost.sh [R runs (5)] [N calls per run (50000)] [U users (1000)]; needs redis-server,
# redis-cli, redis-benchmark and build/tests/bench/policy_bench. Starts a private redis-server on a unix
# socket in a temp dir and stops only that one (by PID).
set -euo pipefail
R=${1:-5} N=${2:-50000} U=${3:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${RG_BENCH:-$ROOT/build/tests/bench/policy_bench}
D=$(mktemp -d /tmp/rg-check-cost.XXXXXX)
redis-server --port 0 --unixsocket "$D/r.sock" --save '' --appendonly no --dir "$D" >"$D/log" 2>&1 &
RP=$!
trap 'kill $RP 2>/dev/null; wait $RP 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do redis-cli -s "$D/r.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
rcli() { redis-cli -s "$D/r.sock" "$@"; }
SHA=$(rcli script load "$("$BENCH" --print-lua)")
BIG=1000000000
# As the daemon sends a first RCPT (tests/bench/run.sh); the KEYS and ARGV layout is the one in
# common/store/redis/redis_script.hpp (check_head_args, check_counter_args, check_signal_args).
HEAD="EVALSHA $SHA 3 rg:{u:user__rand_int__} rg:{ip:127.0.0.1} rg:{s:user__rand_int__@bench.test} 0 1 604800000 7"
TAIL="1 m 86400 1 $BIG 0 0 1 r 3600 1 0 0 0 2 m 60 1 0 0 0 2 m 3600 1 0 0 0 3 r 3600 1 $BIG 0 0"
declare -A SHAPE=(
  [plain]="$HEAD 1 m 60 1 $BIG 0 0 1 m 3600 1 $BIG 0 0 $TAIL"
  [burst_signal]="$HEAD 1 m 60 1 $BIG 0 0 1 m 3600 1 $BIG 3 50 $TAIL 1 i 86400 127.0.0.1 0"
  [burst_signal_new_value]="$HEAD 1 m 60 1 $BIG 0 0 1 m 3600 1 $BIG 3 50 $TAIL 1 i 86400 10.0.__rand_int__ 0"
)
ORDER=(plain burst_signal burst_signal_new_value)
declare -A RUNS COMMANDS
for _ in $(seq "$R"); do
  for name in "${ORDER[@]}"; do
    rcli flushall >/dev/null
    # shellcheck disable=SC2086  # the shape is a word list on purpose
    redis-benchmark -s "$D/r.sock" -c 1 -n "$N" -r "$U" -P 1 -q ${SHAPE[$name]} >/dev/null  # keys exist
    rcli config resetstat >/dev/null
    # shellcheck disable=SC2086
    redis-benchmark -s "$D/r.sock" -c 1 -n "$N" -r "$U" -P 1 -q ${SHAPE[$name]} >/dev/null
    line=$(rcli info commandstats | tr -d '\r' | awk -F'[:=,]' '
      /^cmdstat_evalsha/ {calls = $3; usec = $7}
      /^cmdstat_/ && !/evalsha|config|info/ {n[substr($1, 9)] = $3; all += $3}
      END {printf "%s %.2f", usec, all / calls; for (c in n) printf " %s=%.2f", c, n[c] / calls}')
    RUNS[$name]+="${line%% *} "
    COMMANDS[$name]=${line#* }
  done
done
printf '%-24s %10s %s\n' shape usec/call "Redis commands per call (each)"
for name in "${ORDER[@]}"; do
  median=$(tr ' ' '\n' <<<"${RUNS[$name]}" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  printf '%-24s %10s %s   runs: %s\n' "$name" "$median" "${COMMANDS[$name]}" "${RUNS[$name]}"
done
