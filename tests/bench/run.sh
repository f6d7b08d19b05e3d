#!/usr/bin/env bash
# tests/bench/run.sh — the rateguard benchmark (issue 6): Release build, then on loopback a private
# redis-server, rateguardd (memory and redis store), the trivial responder and redis-benchmark running the
# daemon's own Lua script; prints one table plus idle-connection RSS and Redis memory per key. Then the milter
# front (milter_bench against rateguardd's `milter =` listener and trivial_responder --milter). TLS to Redis:
# a second redis-server on plain TCP and TLS ports, a daemon on each, at C=32 in every pass (same run). Then the
# peers (peers.sh, issue 17): postfwd2 and policyd-rate-limit from Debian against rateguardd with the same limit,
# correctness first, and their table with "x best peer" (PEERS=0 leaves them out).
# Usage: tests/bench/run.sh   (QUICK=1: C=8,32 and U=1000 only, once; SECS=N seconds per run, default 2;
#        REPEAT=N passes over the whole matrix, default 3, the table shows each config's median-req/s pass)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
SECS=${SECS:-2}
QUICK=${QUICK:-0}
PEERS=${PEERS:-1}
if [[ $QUICK == 1 ]]; then CONCS=(8 32); USERS=(1000); REPEAT=${REPEAT:-1}
else CONCS=(1 8 32 128); USERS=(1000 100000); REPEAT=${REPEAT:-3}; fi
# Below the ephemeral port range (32768-60999 on Linux): the last daemons start after thousands of client
# connections, and a port one of them holds as its local end could not be bound.
PORT_BASE=${PORT_BASE:-$((21000 + RANDOM % 10000))}
P_TRIVIAL=$PORT_BASE P_MEM=$((PORT_BASE + 1)) P_REDIS=$((PORT_BASE + 2)) P_MEM_TIGHT=$((PORT_BASE + 3))
P_REDIS_TIGHT=$((PORT_BASE + 4)) P_IDLE=$((PORT_BASE + 5)) P_MEMKEY=$((PORT_BASE + 6))
P_TRIVIAL_MILTER=$((PORT_BASE + 7)) P_MILTER_POLICY=$((PORT_BASE + 8)) P_MILTER=$((PORT_BASE + 9))
P_REDIS_TCP=$((PORT_BASE + 10)) P_REDIS_TLS=$((PORT_BASE + 11)) P_RTCP=$((PORT_BASE + 12)) P_RTLS=$((PORT_BASE + 13))
P_MEM_METRICS=$((PORT_BASE + 14)) P_METRICS_HTTP=$((PORT_BASE + 15))

# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
# shellcheck source=tests/bench/peers.sh
. "$ROOT/tests/bench/peers.sh"
bench_build rateguardd policy_bench trivial_responder milter_bench
DAEMON=$BUILD/policyd/rateguardd
BENCH=$BUILD/tests/bench/policy_bench
MBENCH=$BUILD/tests/bench/milter_bench
TRIVIAL=$BUILD/tests/bench/trivial_responder

bench_setup rg-bench
ulimit -n 4096 2>/dev/null || true  # 1000 idle connections on both ends
# The peers' packages first: a failed install is reported now, and the rest of the benchmark runs without them.
if [[ $PEERS == 1 ]] && ! peers_install; then
  echo "== peers: NOT INSTALLED (see above): the run goes on without postfwd2 and policyd-rate-limit" >&2
  PEERS=0
fi

rcli() { redis-cli -s "$RSOCK" "$@"; }

start_daemon() {  # NAME PORT STORE SCALE [SETTINGS]
  local d=$TMP/$1
  mkdir -p "$d"
  write_limits "$d/limits.conf" "$4"
  run_daemon "$d" "$2" "store = $3
redis = $RSOCK
${5:-}"
  eval "PID_$1=$PID"
}

echo "== start redis-server, daemons, trivial responder (ports $PORT_BASE..$P_MEMKEY)"
start_redis
"$TRIVIAL" "$P_TRIVIAL" 1800 >/dev/null &
PIDS+=($!)
wait_port "$P_TRIVIAL"
start_daemon mem "$P_MEM" memory 1000000
start_daemon redis "$P_REDIS" redis 1000000
start_daemon mem_tight "$P_MEM_TIGHT" memory 1
start_daemon redis_tight "$P_REDIS_TIGHT" redis 1
# TLS vs plain TCP to the same redis-server (test certificates, tests/support/make_tls_certs.sh).
sh "$ROOT/tests/support/make_tls_certs.sh" "$TMP/tls"
redis-server --port "$P_RTCP" --bind 127.0.0.1 --tls-port "$P_RTLS" --tls-cert-file "$TMP/tls/server.pem" \
  --tls-key-file "$TMP/tls/server.key" --tls-ca-cert-file "$TMP/tls/ca.pem" --tls-auth-clients no \
  --unixsocket "$TMP/redis-tls.sock" --save "" --appendonly no --daemonize no --logfile "$TMP/redis-tls.log" &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -s "$TMP/redis-tls.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
for kind in tcp tls; do
  mkdir -p "$TMP/redis_$kind"
  write_limits "$TMP/redis_$kind/limits.conf" 1000000
done
run_daemon "$TMP/redis_tcp" "$P_REDIS_TCP" "store = redis
redis = 127.0.0.1:$P_RTCP"
run_daemon "$TMP/redis_tls" "$P_REDIS_TLS" "store = redis
redis = 127.0.0.1:$P_RTLS
redis_tls = yes
redis_tls_ca_file = $TMP/tls/ca.pem"
# Metrics on vs off (issue 14): the same memory-store daemon with its metrics listener, scraped every second
# (Prometheus's usual interval is 15 s to 1 m: this is the harsh case) by a loop of plain HTTP GETs for as long
# as the benchmark runs. "memory" rows are the same daemon without the listener. The counters themselves are
# counted in both (they are not optional), so this measures the listener and the scrapes, not the counting.
start_daemon memmetrics "$P_MEM_METRICS" memory 1000000 "metrics = inet:127.0.0.1:$P_METRICS_HTTP"
wait_port "$P_METRICS_HTTP"
scrape_loop() {
  local i
  for i in $(seq 1 3600); do
    { exec 3<>"/dev/tcp/127.0.0.1/$P_METRICS_HTTP" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3 >/dev/null; } 2>/dev/null
    exec 3<&- 2>/dev/null
    sleep 1
  done
}
scrape_loop &
PIDS+=($!)

rcli function load "$("$BENCH" --print-lua)" >/dev/null
rb_shapes

RESULTS=$TMP/results.csv
: >"$RESULTS"
run_bench() {  # LABEL PORT C U [extra...]
  local label=$1 port=$2 c=$3 u=$4
  shift 4
  "$BENCH" --connect "inet:127.0.0.1:$port" -c "$c" --users "$u" --seconds "$SECS" --label "$label" --csv "$@" \
    | tee -a "$RESULTS" || true
}
# The daemon's CPU time (user + system, clock ticks) from /proc/PID/stat.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# run_bench, and a row "cpu,LABEL,C,U,ticks,requests" with the daemon's CPU time over the run: CPU per request is
# what metrics cost, and it varies far less than req/s when other work shares the cores.
run_bench_cpu() {  # LABEL PORT PID C U
  local label=$1 port=$2 pid=$3 c=$4 u=$5 t0 t1 row
  t0=$(cpu_ticks "$pid")
  row=$(run_bench "$label" "$port" "$c" "$u" | tail -1)
  t1=$(cpu_ticks "$pid")
  echo "$row"
  echo "cpu,$label,$c,$u,$((t1 - t0)),$(echo "$row" | cut -d, -f4)" | tee -a "$RESULTS"
}
# redis-benchmark at the same concurrency; prints req/s and p50/p99 (µs) of one shape.
run_rb() {  # C U N SHAPE...
  local c=$1 u=$2 n=$3
  shift 3
  redis-benchmark -s "$RSOCK" -c "$c" -n "$n" -r "$u" -P 1 --csv "$@" | tail -1 |
    awk -F, '{for (i = 1; i <= NF; ++i) gsub(/"/, "", $i); printf "%.0f %.0f %.0f\n", $(NF-6), $(NF-3) * 1000, $(NF-1) * 1000}'
}

echo "== load runs: ${SECS}s each, $REPEAT passes; csv: label,C,U,requests,errors,seconds,req_per_s,p50_us,p90_us,p99_us,max_us,actions"
# Passes outermost, so a burst of noise from elsewhere on the box hits one pass of many configs, not all
# passes of one config.
for pass in $(seq 1 "$REPEAT"); do
echo "-- pass $pass"
for c in "${CONCS[@]}"; do
  run_bench trivial "$P_TRIVIAL" "$c" 1000
  for u in "${USERS[@]}"; do
    # Metrics off then on in odd passes, on then off in even ones: neither always runs first.
    if ((pass % 2)); then
      run_bench_cpu memory "$P_MEM" "$PID_mem" "$c" "$u"
      run_bench_cpu memory-metrics "$P_MEM_METRICS" "$PID_memmetrics" "$c" "$u"
    else
      run_bench_cpu memory-metrics "$P_MEM_METRICS" "$PID_memmetrics" "$c" "$u"
      run_bench_cpu memory "$P_MEM" "$PID_mem" "$c" "$u"
    fi
    rcli flushall >/dev/null
    run_bench redis "$P_REDIS" "$c" "$u"
    rcli flushall >/dev/null
    # Enough operations for roughly SECS seconds at the speeds seen here; weighted 1:1 (2 RCPTs per message).
    n=$((SECS * 15000))
    read -r f_rps f_p50 f_p99 < <(run_rb "$c" "$u" "$n" "${FIRST[@]}")
    rcli flushall >/dev/null
    read -r l_rps l_p50 l_p99 < <(run_rb "$c" "$u" "$n" "${LATER[@]}")
    rcli flushall >/dev/null
    echo "redis-benchmark,$c,$u,$f_rps,$f_p50,$f_p99,$l_rps,$l_p50,$l_p99" | tee -a "$RESULTS"
  done
done
run_bench redis-tcp "$P_REDIS_TCP" 32 1000
redis-cli -s "$TMP/redis-tls.sock" flushall >/dev/null
run_bench redis-tls "$P_REDIS_TLS" 32 1000
redis-cli -s "$TMP/redis-tls.sock" flushall >/dev/null
done
echo "== tight limits (sample limits.conf): deferrals and holds exercised"
run_bench memory-tight "$P_MEM_TIGHT" 32 1000
rcli flushall >/dev/null
run_bench redis-tight "$P_REDIS_TIGHT" 32 1000
rcli flushall >/dev/null

if [[ $PEERS == 1 ]]; then peers_run; fi

echo "== milter front, memory store, C=8: whole messages (cleanup: one connection each; smtpd: 100 per connection)"
# csv as above, in messages: label,C,U,messages,errors,seconds,msg_per_s,p50_us,p90_us,p99_us,max_us,replies
"$TRIVIAL" --milter "$P_TRIVIAL_MILTER" 1800 >/dev/null &
PIDS+=($!)
wait_port "$P_TRIVIAL_MILTER"
# One rule that every message reaches and none trips: every message is read, counted and answered continue.
mkdir -p "$TMP/milter"
echo "sender * 1000000/1h defer" >"$TMP/milter/limits.conf"
run_milter() {  # LABEL PORT [extra...]
  local label=$1 port=$2
  shift 2
  "$MBENCH" --connect "inet:127.0.0.1:$port" -c 8 --users 1000 --seconds "$SECS" --label "$label" --csv "$@" \
    | tee -a "$RESULTS" || true
}
run_daemon "$TMP/milter" "$P_MILTER_POLICY" "store = memory
milter = inet:127.0.0.1:$P_MILTER"
wait_port "$P_MILTER"
for pass in $(seq 1 "$REPEAT"); do
  run_milter trivial-milter "$P_TRIVIAL_MILTER"
  run_milter trivial-milter-smtpd "$P_TRIVIAL_MILTER" --smtpd --per-connection 100
  run_milter milter "$P_MILTER"
  run_milter milter-smtpd "$P_MILTER" --smtpd --per-connection 100
done

echo "== RSS of rateguardd (memory store, fresh) with 1000 idle connections"
start_daemon idle "$P_IDLE" memory 1000000
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
RSS0=$(rss "$PID_idle")
"$BENCH" --connect "inet:127.0.0.1:$P_IDLE" --idle-connections 1000 --seconds 3 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
sleep 2
RSS1=$(rss "$PID_idle")
wait "$IDLE_PID" || true
echo "rss,$RSS0,$RSS1" | tee -a "$RESULTS"

echo "== Redis memory per tracked key: 100000 users, one message each, through the redis daemon"
start_daemon memkey "$P_MEMKEY" redis 1000000
rcli flushall >/dev/null
mem() { rcli info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
M0=$(mem)
"$BENCH" --connect "inet:127.0.0.1:$P_MEMKEY" -c 32 --users 100000 --requests 100000 --sequential --max-rcpts 1 \
  --seconds 120 --label memkey --csv | tee -a "$RESULTS"
M1=$(mem)
# The charge-once records (a string key per RCPT for 10 min) apart: counted, deleted, and their memory is the drop.
ONCE=$(rcli eval "local n = 0 for _, k in ipairs(redis.call('KEYS', 'rg:*:once:*')) do redis.call('DEL', k) n = n + 1 end return n" 0)
M2=$(mem)
KEYS=$(rcli dbsize)
# Window fields: every field but t (the key's expiry as last set, one per key).
FIELDS=$(rcli eval "local n = 0 for _, k in ipairs(redis.call('KEYS', 'rg:*')) do n = n + redis.call('HLEN', k) - redis.call('HEXISTS', k, 't') end return n" 0)
echo "redismem,$M0,$M2,$KEYS,$FIELDS,$ONCE,$((M1 - M2))" | tee -a "$RESULTS"

echo
python3 - "$RESULTS" "$QUICK" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
def median(runs):  # the pass with the median req/s (first element), whole row kept
    runs = sorted(runs, key=lambda t: t[0])
    return runs[(len(runs) - 1) // 2]
load_runs, rb_runs = {}, {}
extra, cpu = {}, {}
for r in rows:
    if r[0] == "redis-benchmark":
        c, u = r[1], r[2]
        f, l = float(r[3]), float(r[6])
        w = 1.0 / (0.5 / f + 0.5 / l) if f > 0 and l > 0 else 0.0
        rb_runs.setdefault((c, u), []).append((w, f, l, int(r[4]), int(r[5])))
    elif r[0] in ("rss", "redismem"):
        extra[r[0]] = r[1:]
    elif r[0] == "cpu":
        t = cpu.setdefault((r[1], r[2], r[3]), [0, 0])
        t[0] += int(r[4])
        t[1] += int(r[5] or 0)
    else:
        load_runs.setdefault((r[0], r[1], r[2]), []).append((float(r[6]), int(r[7]), int(r[9]), int(r[4]), r[11]))
load = {k: median(v) for k, v in load_runs.items()}  # (label, C, U) -> (rps, p50, p99, errors, actions)
rb = {k: median(v) for k, v in rb_runs.items()}      # (C, U) -> (weighted rps, first, later, p50, p99)
spread = {k: (min(t[0] for t in v), max(t[0] for t in v)) for k, v in load_runs.items()}
trivial = {c: v[0] for (l, c, u), v in load.items() if l == "trivial"}
print(f"{'config':<40}{'req/s':>9}{'p50 us':>8}{'p99 us':>8}{'errors':>7}{'/trivial':>10}{'/redis-bm':>10}  notes")
def line(name, rps, p50, p99, err, c, ref, acts=""):
    t = f"{rps / trivial[c]:.2f}" if trivial.get(c) else "-"
    r = f"{rps / ref:.2f}" if ref else "-"
    print(f"{name:<40}{rps:>9.0f}{p50:>8}{p99:>8}{err:>7}{t:>10}{r:>10}  {acts}")
order = {"trivial": 0, "memory": 1, "memory-metrics": 1.5, "redis": 2, "redis-tcp": 2.1, "redis-tls": 2.2, "memory-tight": 4, "redis-tight": 5}
for key in sorted(load, key=lambda k: (order.get(k[0], 9) >= 4, int(k[1]), int(k[2]), order.get(k[0], 9))):
    l, c, u = key
    if l == "memkey" or "milter" in l:
        continue
    rps, p50, p99, err, acts = load[key]
    ref = rb.get((c, u), (0,))[0] if l.startswith("redis") else None
    name = f"{l} C={c}" + ("" if l == "trivial" else f" U={u}")
    lo, hi = spread[key]
    note = f"min-max {lo:.0f}-{hi:.0f}" if lo != hi else ""
    line(name, rps, p50, p99, err, c, ref, note + ("  " + acts if l.endswith("tight") else ""))
    if l == "redis" and (c, u) in rb:
        w, f, lt, fp50, fp99 = rb[(c, u)]
        print(f"{'  redis-benchmark FCALL C=' + c + ' U=' + u:<40}{w:>9.0f}{fp50:>8}{fp99:>8}{'':>7}{'':>10}{'1.00':>10}"
              f"  (first RCPT {f:.0f}/s, later RCPT {lt:.0f}/s, weighted 1:1; p50/p99 of first RCPT)")
tcp, tls = load.get(("redis-tcp", "32", "1000")), load.get(("redis-tls", "32", "1000"))
if tcp and tls:
    print(f"  TLS to Redis vs plain TCP at C=32 U=1000: {tls[0]:.0f} vs {tcp[0]:.0f} req/s ({tls[0] / tcp[0]:.2f}), "
          f"p99 {tls[2]} vs {tcp[2]} us (median pass of each)")
# Metrics on vs off: per (C, U), the median pass of each, and every pass's pair (the two ran back to back).
pairs = sorted((k[1], k[2]) for k in load if k[0] == "memory-metrics")
if pairs:
    print(f"\n{'metrics on vs off (memory store)':<40}{'off':>9}{'on':>9}{'on/off':>8}  per pass (on/off)")
    for c, u in sorted(pairs, key=lambda p: (int(p[0]), int(p[1]))):
        off, on = load.get(("memory", c, u)), load[("memory-metrics", c, u)]
        if not off:
            continue
        per_pass = " ".join(f"{b[0] / a[0]:.3f}" for a, b in zip(load_runs[("memory", c, u)], load_runs[("memory-metrics", c, u)]))
        print(f"{'C=' + c + ' U=' + u:<40}{off[0]:>9.0f}{on[0]:>9.0f}{on[0] / off[0]:>8.3f}  {per_pass}")
    # The daemon's CPU per request over all passes (clock ticks of 10 ms; the scrapes' own cost included).
    print(f"{'daemon CPU per request (all passes)':<40}{'off us':>9}{'on us':>9}{'on/off':>8}")
    for c, u in sorted(pairs, key=lambda p: (int(p[0]), int(p[1]))):
        a, b = cpu.get(("memory", c, u)), cpu.get(("memory-metrics", c, u))
        if not a or not b or not a[1] or not b[1] or not a[0]:
            continue
        off_us, on_us = a[0] * 10000 / a[1], b[0] * 10000 / b[1]
        print(f"{'C=' + c + ' U=' + u:<40}{off_us:>9.2f}{on_us:>9.2f}{on_us / off_us:>8.3f}")
milter = {k: v for k, v in load.items() if "milter" in k[0]}
if milter:
    # Whole messages (negotiate .. QUIT for cleanup's shape; MAIL .. EOM + ABORT for smtpd's 100 per connection),
    # against trivial_responder --milter in the same shape.
    print(f"\n{'milter front (whole messages)':<40}{'msg/s':>9}{'p50 us':>8}{'p99 us':>8}{'errors':>7}{'/trivial':>10}  notes")
    for key in sorted(milter, key=lambda k: (k[0].endswith("smtpd"), not k[0].startswith("trivial"))):
        l, c, u = key
        rps, p50, p99, err, acts = milter[key]
        ref = milter.get(("trivial-milter-smtpd" if l.endswith("smtpd") else "trivial-milter", c, u), (0,))[0]
        t = f"{rps / ref:.2f}" if ref else "-"
        lo, hi = spread[key]
        note = (f"min-max {lo:.0f}-{hi:.0f}  " if lo != hi else "") + acts
        print(f"{l + ' C=' + c:<40}{rps:>9.0f}{p50:>8}{p99:>8}{err:>7}{t:>10}  {note}")
if "rss" in extra:
    r0, r1 = map(int, extra["rss"])
    print(f"\nrateguardd VmRSS: {r0 / 1024:.1f} MB fresh, {r1 / 1024:.1f} MB with 1000 idle connections "
          f"({(r1 - r0) / 1000:.1f} kB per connection)")
if "redismem" in extra:
    m0, m1, keys, fields, once, once_mem = map(int, extra["redismem"])
    d = m1 - m0
    print(f"Redis used_memory: +{d / 1048576:.1f} MB for {keys} keys / {fields} key x window fields: "
          f"{d / keys:.0f} B per key, {d / fields:.0f} B per key and window")
    if once:
        print(f"  and {once} charge-once records (one per RCPT, 10 min TTL): +{once_mem / 1048576:.1f} MB, "
              f"{once_mem / once:.0f} B each")
PY
if [[ $PEERS == 1 ]]; then peers_table; fi
