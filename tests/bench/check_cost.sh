#!/bin/bash
# tests/bench/check_cost.sh — Redis CPU per call of the check function (INFO commandstats usec_per_call of
# FCALL, median of R alternating runs) and the Redis commands it runs per call, for the first-RCPT shape
# without detection, with one burst counter + one client_ips signal (the same address every time), the same
# with a new address every time (the worst case: PFCOUNT of 5 HyperLogLogs on every call), and the sample's
# login detection (two burst counters, new_domains and new_networks) with a familiar domain, and with a new one.
# Four floors for scale, run the same way: `empty` (a function that returns at once, with the plain shape's keys and
# arguments: what Redis spends on FCALL and its arguments alone), `commands` (a function that runs the Redis commands
# plain runs and no logic: plain minus commands is what the check's Lua costs), `least` (the fewest commands any
# design with the same guarantees runs: TIME, the charge-once SET NX, one MGET, one SET PXAT per key) and `min3` (a
# script of INCR and PEXPIRE on the same 3 keys, EVALSHA).
# INSTR=1 adds Redis's instructions per call of each shape, which do not move with the machine's load: callgrind on
# a redis-server of its own per shape and count, (instructions after 2500 calls - after 500) / 2000 (needs valgrind;
# about 20 s per server).
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
FN=$("$BENCH" --print-function)
EMPTY_LIB=$'#!lua name=rg_bench_empty\nredis.register_function(\'rg_bench_empty\', function(keys, args) return 1 end)'
# The plain shape's commands and nothing else: TIME, the charge-once SET NX, HGETALL of each key and one HSET per key
# of the bucket fields plain charges (each set to 1: no layout, no sums, no limits, no TTLs, no reply to build).
COMMANDS_LIB=$(cat <<'LUA'
#!lua name=rg_bench_commands
redis.register_function('rg_bench_commands', function(keys, args)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if not redis.call('SET', keys[1] .. ':once:' .. args[4], '1', 'PX', '600000', 'NX') then return 2 end
  for k = 1, 3 do redis.call('HGETALL', keys[k]) end
  local function field(unit, w) return unit .. w .. ':' .. string.format('%d', math.floor(now / math.floor(w * 1000 / 12))) end
  redis.call('HSET', keys[1], field('m', 60), '1', field('m', 3600), '1', field('m', 86400), '1', field('r', 3600), '1')
  redis.call('HSET', keys[2], field('m', 60), '1', field('m', 3600), '1')
  redis.call('HSET', keys[3], field('r', 3600), '1')
  return 1
end)
LUA
)
# The least any design can run with the same guarantees (Redis's clock, charge once, every identity read and written
# in the one call): TIME, the charge-once SET NX, one MGET of the 3 keys and one SET PXAT per key of a 64-byte value
# (a packed state per identity).
LEAST_LIB=$(cat <<'LUA'
#!lua name=rg_bench_least
redis.register_function('rg_bench_least', function(keys, args)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if not redis.call('SET', keys[1] .. ':once:' .. args[4], '1', 'PX', '600000', 'NX') then return 2 end
  redis.call('MGET', keys[1], keys[2], keys[3])
  local at = string.format('%d', now + 86400000)
  for k = 1, 3 do redis.call('SET', keys[k], string.rep('x', 64), 'PXAT', at) end
  return 1
end)
LUA
)
# The library and the floors, loaded into the server on socket $1.
load_all() {
  redis-cli -s "$1" function load "$("$BENCH" --print-lua)" >/dev/null
  redis-cli -s "$1" function load "$EMPTY_LIB" >/dev/null
  redis-cli -s "$1" function load "$COMMANDS_LIB" >/dev/null
  redis-cli -s "$1" function load "$LEAST_LIB" >/dev/null
  redis-cli -s "$1" script load "$MIN3_TEXT"
}
MIN3_TEXT="for k = 1, #KEYS do redis.call('INCR', KEYS[k]) redis.call('PEXPIRE', KEYS[k], 3600000) end return 1"
MIN3=$(load_all "$D/r.sock")
BIG=1000000000
# As the daemon sends a first RCPT (tests/bench/run.sh); the keys, arguments and layout are those of
# common/store/redis/redis_check.hpp (check_call_args, check_layout_counter, check_layout_signal). A counter in
# the layout is KEY TAG WINDOW COST REFUSE BURST_FACTOR BURST_FLOOR REFUSE_FACTOR REFUSE_FLOOR n|- (n: a novelty
# counter, its bits an argument after the token). The charge-once token is a new one per call like the daemon's:
# three __rand_int__ (each drawn on its own, below U), so with U=1000 a call repeats a token of the N before it
# with odds N / 10^9 (a repeat only reads, which would under-count). The warm-up run draws below U + 1: redis-benchmark
# seeds its random numbers with time(NULL) ^ getpid(), which two runs a second and a pid apart often share (an even
# second and pid, each one more), and the same sequence would repeat the warm-up's tokens, addresses and domains
# (only reads, no new values); another modulus makes other numbers of the same sequence.
KEYS3="rg:{u:user__rand_int__} rg:{ip:127.0.0.1} rg:{s:user__rand_int__@bench.test}"
H="604800000 1209600000 0"
ONCE=once__rand_int__.__rand_int__.__rand_int__
C1M="1 m 60 1 $BIG 0 0 0 0 -"
REST="1 r 3600 1 0 0 0 0 0 - 2 m 60 1 0 0 0 0 0 - 2 m 3600 1 0 0 0 0 0 - 3 r 3600 1 $BIG 0 0 0 0 -"
PLAIN="$H 7 $C1M 1 m 3600 1 $BIG 0 0 0 0 - 1 m 86400 1 $BIG 0 0 0 0 - $REST"
BURST_SIGNAL="$H 7 $C1M 1 m 3600 1 $BIG 3 50 0 0 - 1 m 86400 1 $BIG 0 0 0 0 - $REST 1 i 86400 0"
# The sample's detection on the login (conf/limits.conf): burst 24x:40 on the hour, 10x:100 on the day, a
# new_domains and a new_networks counter (the bits of a familiar domain and network, or a new domain each call).
SAMPLE="$H 9 $C1M 1 m 3600 1 $BIG 24 40 0 0 - 1 m 86400 1 $BIG 10 100 0 0 - $REST 1 D 3600 0 0 0 0 0 0 n 1 N 3600 0 0 0 0 0 0 n"
ORDER=(plain burst_signal burst_signal_new_value sample_detection sample_new_domain empty commands least min3)
# One shape as redis-benchmark's arguments (the layout is one argument).
shape_args() {
  case $1 in
    plain) ARGS=(FCALL "$FN" 3 $KEYS3 0 1 "$PLAIN" "$ONCE") ;;
    burst_signal) ARGS=(FCALL "$FN" 3 $KEYS3 0 1 "$BURST_SIGNAL" "$ONCE" 127.0.0.1) ;;
    burst_signal_new_value) ARGS=(FCALL "$FN" 3 $KEYS3 0 1 "$BURST_SIGNAL" "$ONCE" 10.0.__rand_int__) ;;
    sample_detection) ARGS=(FCALL "$FN" 3 $KEYS3 0 1 "$SAMPLE" "$ONCE" 17 300) ;;
    sample_new_domain) ARGS=(FCALL "$FN" 3 $KEYS3 0 1 "$SAMPLE" "$ONCE" __rand_int__ 300) ;;
    empty) ARGS=(FCALL rg_bench_empty 3 $KEYS3 0 1 "$PLAIN" "$ONCE") ;;
    commands) ARGS=(FCALL rg_bench_commands 3 $KEYS3 0 1 "$PLAIN" "$ONCE") ;;
    least) ARGS=(FCALL rg_bench_least 3 $KEYS3 0 1 "$PLAIN" "$ONCE") ;;
    min3) ARGS=(EVALSHA "$MIN3" 3 $KEYS3) ;;
  esac
}
declare -A RUNS COMMANDS
for _ in $(seq "$R"); do
  for name in "${ORDER[@]}"; do
    rcli flushall >/dev/null
    shape_args "$name"
    redis-benchmark -s "$D/r.sock" -c 1 -n "$N" -r "$((U + 1))" -P 1 -q "${ARGS[@]}" >/dev/null  # keys exist
    rcli config resetstat >/dev/null
    redis-benchmark -s "$D/r.sock" -c 1 -n "$N" -r "$U" -P 1 -q "${ARGS[@]}" >/dev/null
    line=$(rcli info commandstats | tr -d '\r' | awk -F'[:=,]' '
      /^cmdstat_(fcall|evalsha):/ {calls = $3; usec = $7; failed = $11 + $9}
      /^cmdstat_/ && !/fcall|evalsha|config|info/ {n[substr($1, 9)] = $3; all += $3}
      END {printf "%s %.2f", usec, all / calls; for (c in n) printf " %s=%.2f", c, n[c] / calls
           if (failed > 0) printf " FAILED=%d", failed}')
    RUNS[$name]+="${line%% *} "
    COMMANDS[$name]=${line#* }
  done
done
# Instructions of a fresh redis-server under callgrind, from start to shutdown, with N calls of shape $1 (U users).
instructions() {
  local d=$D/cg-$1-$2
  mkdir -p "$d"
  valgrind --tool=callgrind --callgrind-out-file="$d/out" redis-server --port 0 --unixsocket "$d/r.sock" --save '' \
    --appendonly no --dir "$d" >"$d/log" 2>&1 &
  local vp=$!
  for _ in $(seq 150); do redis-cli -s "$d/r.sock" ping >/dev/null 2>&1 && break; sleep 0.2; done
  load_all "$d/r.sock" >/dev/null
  shape_args "$1"
  redis-benchmark -s "$d/r.sock" -c 1 -n "$2" -r "$U" -P 1 -q "${ARGS[@]}" >/dev/null
  redis-cli -s "$d/r.sock" shutdown nosave >/dev/null 2>&1 || true
  wait "$vp" 2>/dev/null || true
  awk '/^totals:/ {print $2}' "$d/out"
}
declare -A INSTR
if [[ ${INSTR:-0} == 1 ]]; then
  for name in "${ORDER[@]}"; do
    a=$(instructions "$name" 500) b=$(instructions "$name" 2500)
    INSTR[$name]=$(( (b - a) / 2000 ))
  done
fi
printf '%-24s %10s %12s %s\n' shape usec/call instr/call "Redis commands per call (each)"
for name in "${ORDER[@]}"; do
  median=$(tr ' ' '\n' <<<"${RUNS[$name]}" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
  printf '%-24s %10s %12s %s   runs: %s\n' "$name" "$median" "${INSTR[$name]:--}" "${COMMANDS[$name]}" "${RUNS[$name]}"
done
