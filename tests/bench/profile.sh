#!/usr/bin/env bash
# tests/bench/profile.sh — instruction counts per request of rateguardd (issue 6): the daemon runs under
# callgrind (instrumented only while policy_bench sends the measured requests, after a warm-up), then the
# per-request cost of each component is printed. Instruction counts, not wall time: stable on a shared box.
# Usage: tests/bench/profile.sh memory|redis C [N] [BUILD]  (N requests, default 20000; BUILD default build/)
#        METRICS=S: with `metrics = inet:127.0.0.1:PORT`, /metrics scraped S times during the measured requests
#        (S=1 with N=20000: the rate of one scrape a second at 20 000 requests a second)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STORE=${1:?memory or redis} C=${2:?connections} N=${3:-20000} BUILD=${4:-$ROOT/build}
OUT=${OUT:-$(mktemp /tmp/rg-callgrind-XXXXXX.out)}
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_setup rg-profile
PORT=$((30000 + RANDOM % 20000))
if [[ $STORE == redis ]]; then start_redis; fi
# run.sh's "generous" limits: every counter read and charged, every answer DUNNO.
write_limits "$TMP/limits.conf" 1000000
# redis_timeout 2s: under callgrind the daemon is ~50x slower, a 100 ms deadline would fail requests.
cat >"$TMP/rateguard.conf" <<EOF
listen = inet:127.0.0.1:$PORT
limits = limits.conf
store = $STORE
redis = $RSOCK
redis_timeout = 2s
log_target = file:$TMP/rateguardd.log
control_socket = $TMP/control
max_connections = 2000
EOF
METRICS=${METRICS:-}
if [[ -n $METRICS ]]; then echo "metrics = inet:127.0.0.1:$((PORT + 1))" >>"$TMP/rateguard.conf"; fi
if (( EUID == 0 )); then echo "allow_root = yes" >>"$TMP/rateguard.conf"; fi
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" "$BUILD/policyd/rateguardd" \
  -c "$TMP/rateguard.conf" 2>"$TMP/valgrind.log" &
VPID=$!
PIDS+=("$VPID")
for _ in $(seq 1 400); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
BENCH=$BUILD/tests/bench/policy_bench
"$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --users 1000 --requests 2000 --seconds 120 --seed 7 --csv >/dev/null
callgrind_control -i on "$VPID" >/dev/null 2>&1
if [[ -n $METRICS ]]; then
  # The scrapes spread over the measured run, each a whole GET of /metrics (its size printed to show it worked).
  (for i in $(seq 1 "$METRICS"); do
     sleep 2
     exec 3<>"/dev/tcp/127.0.0.1/$((PORT + 1))" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 &&
       echo "scrape $i: $(wc -c <&3) bytes" >&2
     exec 3<&-
   done) &
  SCRAPER=$!
fi
"$BENCH" --connect "inet:127.0.0.1:$PORT" -c "$C" --users 1000 --requests "$N" --seconds 600 --seed 8 --label measured --csv
if [[ -n $METRICS ]]; then wait "$SCRAPER" || true; fi
callgrind_control -i off "$VPID" >/dev/null 2>&1
kill "$VPID"
wait "$VPID" || true
echo "callgrind output: $OUT"

# Inclusive cost per function summed over its inlined parts (callgrind_annotate lists those apart), and
# call counts; recursion is not corrected, so only non-recursive functions are shown.
python3 - "$OUT" "$N" <<'PY'
import collections, re, sys
path, n = sys.argv[1], int(sys.argv[2])
names, incl, calls, total = {}, collections.Counter(), collections.Counter(), 0
def name(s):
    m = re.match(r'\((\d+)\)(?: (.*))?', s)
    if not m: return s
    if m.group(2) is not None: names[m.group(1)] = m.group(2)
    return names[m.group(1)]
fn = cfn = pending = None
for line in open(path):
    line = line.rstrip('\n')
    if line.startswith('fn='): fn = name(line[3:]); continue
    if line.startswith('cfn='): cfn = name(line[4:]); continue
    if line.startswith('calls='): pending = (cfn, int(line[6:].split()[0])); continue
    if line and (line[0].isdigit() or line[0] in '+-*'):
        parts = line.split(); cost = int(parts[1]) if len(parts) > 1 else 0
        if pending:
            target, count = pending; pending = None
            if target != fn: incl[fn] += cost
            calls[target] += count
        else:
            incl[fn] += cost; total += cost
def per(rx, table):
    r = re.compile(rx)
    return sum(v for k, v in table.items() if r.search(k)) / n
print(f"{'instructions per request':<48}{total / n:>8,.0f}")
for label, rx in [("protocol parse (request_parser::feed)", r'^rg::request_parser::feed'),
                  ("engine prepare", r'^rg::message_tracker::prepare'),
                  ("engine finish", r'^rg::message_tracker::finish'),
                  ("decision log (log_decision)", r'^rg::(server|policy_service)::log_decision'),
                  ("memory store (memory_store::check)", r'^rg::memory_store::check\('),
                  ("Redis: encode the call (append_check_call)", r'^rg::append_check_call'),
                  ("Redis: RESP decode (redisReaderGetReply)", r'^redisReaderGetReply$'),
                  ("Redis: free the reply (free_reply)", r"^rg::free_reply\(redisReply\*\)$"),
                  ("Redis: parse_check_reply", r'^rg::parse_check_reply')]:
    v = per(rx, incl)
    if v: print(f"{label:<48}{v:>8,.0f}")
for label, rx in [("malloc + calloc calls", r'^(malloc|calloc)$'), ("memalign calls", r'^memalign$'),
                  ("recv calls", r'^recv$'), ("send calls", r'^send$')]:
    print(f"{label:<48}{per(rx, calls):>8.2f}")
PY
