#!/usr/bin/env bash
# tests/bench/peers.sh — rateguardd next to its peers from Debian 12 (issue 17): postfwd2 (package postfwd) and
# policyd-rate-limit (sqlite), installed with apt-get when missing, each a private instance on a free loopback port
# with its own config in the bench temp dir, stopped by PID. Every server gets the same limit, N/1h per
# sasl_username and per client_address, defer when exceeded. First each server's correctness (150 single-RCPT
# messages at 100/h on one connection: 100 DUNNO, then 50 deferred), then policy_bench throughput at C = 1, 8, 32
# (QUICK=1: 8, 32) with 100/h x 1 000 000, each server fresh per point; one table with "x best peer".
# Alone: tests/bench/peers.sh (SECS, REPEAT, QUICK as run.sh). run.sh sources it and calls peers_install,
# peers_run and peers_table. Not a CI test: it installs packages and takes minutes.

PEERS_PACKAGES=(postfwd policyd-rate-limit)
# policyd-rate-limit commits to sqlite on every request: "-disk" keeps the file in the bench temp dir (the disk,
# as /var/lib/policyd-rate-limit would be), "-tmpfs" in /dev/shm (no fsync cost: like rateguardd's stores here,
# which persist nothing either). The ratio "x best peer" takes the faster.
PEERS_SERVERS=(trivial postfwd2 policyd-rate-limit-tmpfs policyd-rate-limit-disk rateguardd-memory rateguardd-redis)
PEERS_LIMIT=100          # per hour, per login and per client: the correctness check's limit
PEERS_SCALE=1000000      # the throughput runs' limit is PEERS_LIMIT x PEERS_SCALE: nobody reaches it
PEERS_DEFER_TEXT="4.7.1 Rate limit reached, retry later"
PEERS_START_TIMEOUT=30   # seconds a server may take to listen (postfwd2 forks its cache and policy daemons)

peers_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Processes of the peers' packaged services (any user), "PID ARGS" per line, to compare before and after the install.
peers_foreign_procs() {
  ps -eo pid=,args= | awk '/postfwd|policyd-rate-limit/ && !/awk/ {print}' || true
}

# apt-get install --no-install-recommends of the peers not installed yet, with a policy-rc.d that refuses every
# service start (exit 101, the invoke-rc.d interface), so the packages' own services stay down. An existing
# policy-rc.d is not ours: used if it refuses starts, never replaced or removed. A packaged service that is running
# after the install (it was started anyway) is reported, not stopped: this script did not start it. Returns 1 when
# the peers are not installed afterwards.
peers_install() {
  local missing=() p rcd=/usr/sbin/policy-rc.d own="" rc=0 before after started
  for p in "${PEERS_PACKAGES[@]}"; do peers_installed "$p" || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  if ((EUID != 0)); then
    echo "peers: ${missing[*]} not installed; as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    return 1
  fi
  if [[ -e $rcd ]]; then
    for p in "${missing[@]}"; do
      rc=0
      "$rcd" "$p" start >/dev/null 2>&1 || rc=$?
      if ((rc != 101)); then
        echo "peers: $rcd (not ours) lets $p start (exit $rc, not 101): not installing; install ${missing[*]} yourself" >&2
        return 1
      fi
    done
    echo "peers: $rcd exists (not ours) and refuses service starts: used as is, left in place" >&2
  else
    own=$rcd
    CLEANUP_PATHS+=("$rcd")  # bench_cleanup removes it too, should this script die during the install
    printf '#!/bin/sh\n# rateguard tests/bench/peers.sh, for the length of one apt-get install: start no service.\nexit 101\n' \
      >"$rcd"
    chmod 755 "$rcd"
  fi
  before=$(peers_foreign_procs)
  echo "== apt-get install --no-install-recommends ${missing[*]} (service starts refused by $rcd)" >&2
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
    "${missing[@]}" >&2 || rc=$?
  if ((rc != 0)); then
    echo "peers: apt-get install failed (exit $rc); apt-get update, then once more" >&2
    rc=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${missing[@]}"; } >&2 || rc=$?
  fi
  if [[ -n $own ]]; then rm -f "$own"; fi
  after=$(peers_foreign_procs)
  started=$(comm -13 <(sort <<<"$before") <(sort <<<"$after") | grep -v '^$' || true)
  if [[ -n $started ]]; then
    echo "peers: WARNING: the install started a packaged service anyway; left running (not started by this script):" >&2
    sed 's/^/peers:   /' <<<"$started" >&2
  fi
  for p in "${PEERS_PACKAGES[@]}"; do
    peers_installed "$p" || { echo "peers: $p is not installed" >&2; return 1; }
  done
}

# PEER_PORT: the next loopback port nobody listens on, counting up from PEERS_NEXT_PORT (below the ephemeral range,
# as run.sh's ports; a new port for every start, so no server waits for a predecessor's TIME_WAIT).
peers_next_port() {
  local i
  for i in $(seq 1 500); do
    PEER_PORT=$PEERS_NEXT_PORT
    PEERS_NEXT_PORT=$((PEERS_NEXT_PORT >= 32000 ? 21000 : PEERS_NEXT_PORT + 1))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$PEER_PORT") 2>/dev/null; then return 0; fi
  done
  echo "peers: no free loopback port found" >&2
  return 1
}

# peers_wait_port PORT PID: until something answers on 127.0.0.1:PORT (at most PEERS_START_TIMEOUT s); 1 if PID
# died first or time ran out.
peers_wait_port() {
  local i
  for i in $(seq 1 $((PEERS_START_TIMEOUT * 20))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    alive "$2" || return 1
    sleep 0.05
  done
  return 1
}

# The rules of each server for LIMIT per hour per login and per client, defer (450) when exceeded.
peers_write_config() {  # SERVER DIR LIMIT PORT DBDIR
  local s=$1 d=$2 n=$3 port=$4 db=$5
  case $s in
    rateguardd-*)
      # Messages per login and per client address; with one RCPT per message, one count per request.
      printf 'sasl_username   *   %s/1h   defer  %s\nclient_address  *   %s/1h   defer  %s\n' \
        "$n" "$PEERS_DEFER_TEXT" "$n" "$PEERS_DEFER_TEXT" >"$d/limits.conf" ;;
    postfwd2)
      # rate(item/max/seconds/action): a counter per value of the item, one count per request that reaches the rule.
      # The login rule only for requests with a login (an empty sasl_username would be one shared counter).
      cat >"$d/postfwd.cf" <<EOF
id=RATE_LOGIN; protocol_state==RCPT; sasl_username=.; action=rate(sasl_username/$n/3600/450 $PEERS_DEFER_TEXT)
id=RATE_CLIENT; protocol_state==RCPT; action=rate(client_address/$n/3600/450 $PEERS_DEFER_TEXT)
EOF
      ;;
    policyd-rate-limit-*)
      # /etc/policyd-rate-limit.yaml's format and defaults, except: no debug output per request, a private port,
      # pid file and sqlite file, our user (no privilege change), the limit, client addresses limited too (every
      # network), and the defer text. It keeps one counter per request: the login if there is one, else the client.
      cat >"$d/policyd-rate-limit.yaml" <<EOF
debug: False
user: "$(id -un)"
group: "$(id -gn)"
pidfile: "$d/run/policyd-rate-limit.pid"
sqlite_config:
    database: "$db/db.sqlite3"
backend: 0
SOCKET: ["127.0.0.1", $port]
limits:
    - [$n, 3600]
limits_by_id: {}
limit_by_sasl: True
limit_by_sender: False
limit_by_ip: True
limited_networks: ["0.0.0.0/0", "::/0"]
success_action: "dunno"
fail_action: "450 $PEERS_DEFER_TEXT"
db_error_action: "dunno"
report: False
delay_to_close: 300
EOF
      ;;
  esac
}

# peer_start SERVER LIMIT: a fresh instance (new dir, new port, empty state; the Redis store's Redis flushed).
# Sets PEER_PID (in PIDS), PEER_PORT, PEER_DIR, PEER_DB, PEER_START_S (seconds until it listened). 1 if it did not
# start. peer_stop: stops it and removes its state.
peer_start() {
  local s=$1 n=$2 t0 i
  peers_next_port || return 1
  PEER_DIR=$(mktemp -d "$TMP/$s-XXXX")
  PEER_DB=$PEER_DIR/db
  [[ $s == policyd-rate-limit-tmpfs ]] && PEER_DB=$PEERS_SHM/$(basename "$PEER_DIR")
  peers_write_config "$s" "$PEER_DIR" "$n" "$PEER_PORT" "$PEER_DB"
  t0=$EPOCHREALTIME
  case $s in
    trivial)
      "$TRIVIAL" "$PEER_PORT" 900 >/dev/null 2>"$PEER_DIR/stderr" &
      PEER_PID=$! ;;
    rateguardd-memory | rateguardd-redis)
      [[ $s == rateguardd-redis ]] && redis-cli -s "$RSOCK" flushall >/dev/null
      run_daemon "$PEER_DIR" "$PEER_PORT" "store = ${s#rateguardd-}
redis = $RSOCK"
      PEER_PID=$PID
      PEER_START_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
      return 0 ;;
    postfwd2)
      # Debian's start (/etc/init.d/postfwd, /etc/default/postfwd's ARGS): the preforked policy server with its
      # cache daemon; it daemonizes, so its PID is the one in its pid file. Its cache socket is in PEER_DIR (the
      # default /var/tmp/postfwd2-cache.socket would be shared with any other postfwd2). No syslog here: it logs
      # nothing we could read.
      /usr/sbin/postfwd2 --summary=600 --cache=600 --cache-rdomain-only --cache-no-size --daemon \
        --file="$PEER_DIR/postfwd.cf" --interface=127.0.0.1 --port="$PEER_PORT" --user="$(id -un)" \
        --group="$(id -gn)" --pidfile="$PEER_DIR/postfwd2.pid" --cache_proto=unix \
        --cache_port="$PEER_DIR/cache.socket" >"$PEER_DIR/stderr" 2>&1 || true
      PEER_PID=""
      for i in $(seq 1 $((PEERS_START_TIMEOUT * 20))); do
        if [[ -s $PEER_DIR/postfwd2.pid ]]; then PEER_PID=$(tr -dc 0-9 <"$PEER_DIR/postfwd2.pid"); break; fi
        sleep 0.05
      done
      if [[ -z $PEER_PID ]]; then
        echo "peers: postfwd2 wrote no pid file within ${PEERS_START_TIMEOUT}s: $(tail -3 "$PEER_DIR/stderr")" >&2
        return 1
      fi ;;
    policyd-rate-limit-*)
      mkdir -p "$PEER_DIR/run" "$PEER_DB"
      policyd-rate-limit --file "$PEER_DIR/policyd-rate-limit.yaml" >"$PEER_DIR/stderr" 2>&1 &
      PEER_PID=$! ;;
    *) echo "peers: unknown server $s" >&2; return 1 ;;
  esac
  PIDS+=("$PEER_PID")
  # postfwd2's rate counters live in its cache daemon: a request before that listens would pass uncounted.
  if [[ $s == postfwd2 ]]; then
    for i in $(seq 1 $((PEERS_START_TIMEOUT * 20))); do [[ -S $PEER_DIR/cache.socket ]] && break; sleep 0.05; done
  fi
  if ! peers_wait_port "$PEER_PORT" "$PEER_PID"; then
    echo "peers: $s did not listen on 127.0.0.1:$PEER_PORT within ${PEERS_START_TIMEOUT}s: $(tail -3 "$PEER_DIR/stderr")" >&2
    stop_pid "$PEER_PID"
    return 1
  fi
  PEER_START_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
}

peer_stop() {
  stop_pid "$PEER_PID"
  rm -rf "$PEER_DIR" "$PEER_DB"
}

peers_version() {  # SERVER
  case $1 in
    postfwd2) echo "$(/usr/sbin/postfwd2 --version 2>/dev/null | awk 'NR == 1 {print $1, $2}') (package postfwd" \
      "$(dpkg-query -W -f='${Version}' postfwd))" ;;
    policyd-rate-limit-*) echo "policyd-rate-limit $(dpkg-query -W -f='${Version}' policyd-rate-limit)" \
      "(sqlite on ${1#policyd-rate-limit-})" ;;
    rateguardd-*) echo "rateguardd $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" \
      "(${1#rateguardd-} store)" ;;
    trivial) echo "trivial_responder" ;;
  esac
}

# peers_check SERVER: three runs on fresh instances at PEERS_LIMIT/h, single-RCPT messages: 150 of one login from one
# client on one connection (100 accepted, then 50 deferred), the same for 150 logins once each (the per-client
# limit alone: informational), and one login on 32 connections for 2 s (exactly 100 accepted: no count lost or
# doubled under concurrency). The first and the last decide whether the server's rows count. Appends
# "check,SERVER,LOGIN,CLIENT,BUSY,ok|FAIL" (answers in order, or BUSY's histogram).
peers_check() {
  local s=$1 kind row out login="" client="" busy="" busy_accepted=-1 verdict=FAIL
  for kind in login client busy; do
    if ! peer_start "$s" "$PEERS_LIMIT"; then out="did-not-start"
    else
      case $kind in
        login) row=$("$BENCH" --connect "inet:127.0.0.1:$PEER_PORT" -c 1 --users 1 --anon-share 0 --max-rcpts 1 \
          --requests 150 --seconds 120 --order --label check --csv 2>&1 | tail -1) || true ;;
        client) row=$("$BENCH" --connect "inet:127.0.0.1:$PEER_PORT" -c 1 --users 150 --sequential --max-rcpts 1 \
          --requests 150 --seconds 120 --order --label check --csv 2>&1 | tail -1) || true ;;
        busy) row=$("$BENCH" --connect "inet:127.0.0.1:$PEER_PORT" -c 32 --users 1 --anon-share 0 --max-rcpts 1 \
          --seconds 2 --label check --csv 2>&1 | tail -1) || true ;;
      esac
      out=$(cut -d, -f12 <<<"$row")
      [[ $kind == busy ]] || out=${out##*order:}
      [[ $kind == busy ]] && busy_accepted=$(tr ';' '\n' <<<"$out" | awk -F: '$1 == "DUNNO" || $1 == "OK" {n += $2}
        END {print n + 0}')
      [[ -n $out ]] || out="no-answer"
      [[ $(cut -d, -f5 <<<"$row") == 0 ]] || out="$out(errors:$(cut -d, -f5 <<<"$row"))"
      peer_stop
    fi
    case $kind in login) login=$out ;; client) client=$out ;; busy) busy=$out ;; esac
  done
  # Accepted: DUNNO or OK; deferred: 450 (what every server here is configured to answer) or another 4xx/DEFER.
  if [[ $login =~ ^(DUNNO|OK)\*100/(450|4[0-9][0-9]|DEFER|DEFER_IF_PERMIT)\*50$ ]] && ((busy_accepted == 100)); then
    verdict=ok
  fi
  echo "check,$s,$login,$client,$busy,$verdict" | tee -a "$PEERS_RESULTS"
  [[ $verdict == ok ]] || echo "peers: $s FAILED the correctness check (150 at 100/h: $login; 32 connections: $busy):" \
    "its rows are NOT COMPARABLE" >&2
}

# peers_run: versions, the correctness checks, then REPEAT passes over C x server, each server fresh per point:
# PEERS_WARMUP s (default 3) on the same connections, not counted, then SECS s measured. The warm-up keeps two start-up
# effects out of the rows: postfwd2 starts 10 children and forks more on demand (at C=32 it had its 37 after ~2 s,
# on this 2-core VM under load), and policyd-rate-limit listens with a backlog of 5, so some of 32 simultaneous
# connects wait 1-3 s for a SYN-ACK retransmission. csv as run.sh's.
peers_run() {
  local s c pass
  PEERS_RESULTS=${PEERS_RESULTS:-$TMP/peers.csv}
  PEERS_NEXT_PORT=${PEERS_NEXT_PORT:-$(( ${PORT_BASE:-$((21000 + RANDOM % 9000))} + 100 ))}
  PEERS_WARMUP=${PEERS_WARMUP:-3}
  if [[ $QUICK == 1 ]]; then PEERS_CONCS=(8 32); else PEERS_CONCS=(1 8 32); fi
  if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    PEERS_SHM=$(mktemp -d /dev/shm/rg-peers-XXXXXX)
    CLEANUP_PATHS+=("$PEERS_SHM")
  else
    echo "peers: /dev/shm is not a tmpfs: no policyd-rate-limit-tmpfs rows" >&2
    local keep=()
    for s in "${PEERS_SERVERS[@]}"; do [[ $s == policyd-rate-limit-tmpfs ]] || keep+=("$s"); done
    PEERS_SERVERS=("${keep[@]}")
  fi
  : >"$PEERS_RESULTS"
  for s in "${PEERS_SERVERS[@]}"; do echo "version,$s,$(peers_version "$s")" >>"$PEERS_RESULTS"; done
  echo "== peers: correctness, ${PEERS_LIMIT}/h per login and per client, 150 single-RCPT messages on one connection"
  for s in "${PEERS_SERVERS[@]}"; do [[ $s == trivial ]] || peers_check "$s"; done
  echo "== peers: load runs, ${PEERS_LIMIT}/h x $PEERS_SCALE, U=1000, one RCPT per message, ${PEERS_WARMUP}s warm-up +" \
    "${SECS}s, $REPEAT passes"
  for pass in $(seq 1 "$REPEAT"); do
    echo "-- peers pass $pass"
    for c in "${PEERS_CONCS[@]}"; do
      for s in "${PEERS_SERVERS[@]}"; do
        if ! peer_start "$s" $((PEERS_LIMIT * PEERS_SCALE)); then
          echo "$s,$c,1000,0,1,0,0,0,0,0,0,did-not-start" >>"$PEERS_RESULTS"
          continue
        fi
        echo "start,$s,$PEER_START_S" >>"$PEERS_RESULTS"
        "$BENCH" --connect "inet:127.0.0.1:$PEER_PORT" -c "$c" --users 1000 --max-rcpts 1 --warmup "$PEERS_WARMUP" \
          --seconds "$SECS" --label "$s" --csv | tee -a "$PEERS_RESULTS" || true
        peer_stop
      done
    done
  done
}

# peers_table: run.sh's table format for the peers' runs (median-req/s pass per server and C), with "x best peer"
# for rateguardd's rows (its req/s over the best correct peer's at the same C), then the checks and start times.
peers_table() {
  python3 - "$PEERS_RESULTS" "$PEERS_LIMIT" "$PEERS_SCALE" <<'PY'
import csv, sys
limit, scale = int(sys.argv[2]), int(sys.argv[3])
runs, version, check, start = {}, {}, {}, {}
for r in csv.reader(open(sys.argv[1])):
    if r[0] == "version":
        version[r[1]] = r[2]
    elif r[0] == "check":
        check[r[1]] = r[2:]
    elif r[0] == "start":
        start.setdefault(r[1], []).append(float(r[2]))
    elif len(r) >= 12:
        runs.setdefault((r[0], int(r[1])), []).append((float(r[6]), int(r[7]), int(r[9]), int(r[4]), r[11]))
med = {k: sorted(v)[(len(v) - 1) // 2] for k, v in runs.items()}
spread = {k: (min(t[0] for t in v), max(t[0] for t in v)) for k, v in runs.items()}
peers = ("postfwd2", "policyd-rate-limit-tmpfs", "policyd-rate-limit-disk")
ok = lambda s: check.get(s, ["FAIL"])[-1] == "ok"
print(f"\npeers: {limit}/h x {scale} per login and per client (defer), U=1000 Zipf, one RCPT per message, "
      f"each server fresh per point, warm-up on the same connections first")
print(f"{'config':<40}{'req/s':>9}{'p50 us':>8}{'p99 us':>8}{'errors':>7}{'/trivial':>10}{'x best peer':>12}  notes")
order = {"trivial": 0, "postfwd2": 1, "policyd-rate-limit-tmpfs": 2, "policyd-rate-limit-disk": 3,
         "rateguardd-memory": 4, "rateguardd-redis": 5}
no_best = []
for c in sorted({k[1] for k in med}):
    best = max((med[(p, c)][0] for p in peers if (p, c) in med and ok(p) and med[(p, c)][3] == 0), default=0)
    if not best:
        no_best.append(str(c))
    triv = med.get(("trivial", c), (0,))[0]
    for key in sorted((k for k in med if k[1] == c), key=lambda k: order.get(k[0], 9)):
        s = key[0]
        rps, p50, p99, err, acts = med[key]
        t = f"{rps / triv:.2f}" if triv else "-"
        x = f"{rps / best:.1f}" if best and s.startswith("rateguardd") else "-"
        lo, hi = spread[key]
        notes = [f"min-max {lo:.0f}-{hi:.0f}"] if lo != hi else []
        if s != "trivial" and not ok(s):
            notes.insert(0, "NOT COMPARABLE (correctness check failed or missing)")
        if err:
            notes.append(acts)
        print(f"{s + ' C=' + str(c):<40}{rps:>9.0f}{p50:>8}{p99:>8}{err:>7}{t:>10}{x:>12}  {' '.join(notes)}")
# The same ratio with policyd-rate-limit only as packaged (sqlite on the disk): what an unchanged install competes with.
packaged = []
for c in sorted({k[1] for k in med}):
    cands = [(med[(p, c)][0], p) for p in ("postfwd2", "policyd-rate-limit-disk")
             if (p, c) in med and ok(p) and med[(p, c)][3] == 0]
    if cands and ("policyd-rate-limit-tmpfs", c) in med:
        b, who = max(cands)
        xs = [f"{s[len('rateguardd-'):]} {med[(s, c)][0] / b:.1f}" for s in ("rateguardd-memory", "rateguardd-redis")
              if (s, c) in med]
        packaged.append(f"  C={c}: {who} {b:.0f} req/s; rateguardd " + ", ".join(xs))
if packaged:
    print("x best peer with policyd-rate-limit's sqlite on the disk only (as packaged):")
    print("\n".join(packaged))
if no_best:
    print(f"x best peer: no peer passed its checks and ran without errors at C={', '.join(no_best)}: no ratio there")
print(f"\ncorrectness at {limit}/h, single-RCPT messages: 150 of one login from one client on one connection, "
      f"answers in order; the same from 150 logins; one login on 32 connections for 2 s")
for s in sorted(check, key=lambda k: order.get(k, 9)):
    login, client, busy, verdict = check[s]
    print(f"  {version.get(s, s):<56} {verdict.upper():<5} {login}  |  150 logins: {client}  |  C=32: {busy}")
if any(s.startswith("policyd-rate-limit") for s in check):
    print("  (policyd-rate-limit keeps one counter per request: the login when there is one, else the client address;"
          " so 150 logins from one client pass)")
if start:
    print("start until listening: " + ", ".join(f"{s} {min(v):.2f}-{max(v):.2f} s" for s, v in
          sorted(start.items(), key=lambda kv: order.get(kv[0], 9))))
PY
}

peers_main() {
  set -euo pipefail
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  BUILD=${BUILD:-$ROOT/build-bench}
  SECS=${SECS:-2}
  QUICK=${QUICK:-0}
  if [[ $QUICK == 1 ]]; then REPEAT=${REPEAT:-1}; else REPEAT=${REPEAT:-3}; fi
  # shellcheck source=tests/bench/lib.sh
  . "$ROOT/tests/bench/lib.sh"
  bench_build rateguardd policy_bench trivial_responder
  DAEMON=$BUILD/policyd/rateguardd
  BENCH=$BUILD/tests/bench/policy_bench
  TRIVIAL=$BUILD/tests/bench/trivial_responder
  bench_setup rg-peers
  peers_install || { echo "peers: the peers are not installed: nothing to compare" >&2; exit 1; }
  start_redis
  peers_run
  peers_table
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then peers_main "$@"; fi
