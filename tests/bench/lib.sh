# tests/bench/lib.sh — what the bench scripts share, sourced by each: the Release build, a temp dir and the
# processes they start (stopped by PID on exit or by stop_pid, then the dir removed), the private redis-server on a
# unix socket in it, a rateguardd on a loopback port, and the limits file with conf/limits.conf's rule shapes.
# Nothing here runs on its own.

# bench_build TARGET...: the Release tree $BUILD. -Wno-error=restrict: GCC 12 at -O3 reports a false -Wrestrict
# inside std::string operator+ (GCC bug 105329) in common/rules/net_addr.cpp and common/rules/rules.cpp; it stays
# a warning, every other warning is an error.
bench_build() {
  echo "== build (Release) in $BUILD" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRATEGUARD_WERROR=ON -DCMAKE_CXX_FLAGS=-Wno-error=restrict \
    >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target "$@" >/dev/null
}

# Waits (bounded) until something answers on 127.0.0.1:$1.
wait_port() {
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  exit 1
}

# run_daemon DIR PORT [SETTINGS]: $DAEMON with DIR/limits.conf on 127.0.0.1:PORT, its log and control socket in
# DIR, SETTINGS (lines) added to its rateguard.conf; sets PID (also added to PIDS) and returns once it listens.
run_daemon() {
  cat >"$1/rateguard.conf" <<EOF
listen = inet:127.0.0.1:$2
limits = limits.conf
log_target = file:$1/rateguardd.log
control_socket = $1/control
max_connections = 2000
${3:-}
EOF
  # A benchmark run by root keeps root (nothing here is exposed beyond loopback).
  if (( EUID == 0 )); then echo "allow_root = yes" >>"$1/rateguard.conf"; fi
  "$DAEMON" -c "$1/rateguard.conf" 2>"$1/stderr" &
  PID=$!
  PIDS+=("$PID")
  wait_port "$2"
}

# memory_bench_setup NAME: what flood.sh and rss_per_login.sh (one rateguardd, memory store, driven by policy_bench)
# do first: rateguardd and policy_bench built in $BUILD (default build-bench), DAEMON (default the one built), BENCH,
# C (connections, default 8), PORT (default random, below the ephemeral range), then bench_setup NAME.
memory_bench_setup() {
  BUILD=${BUILD:-$ROOT/build-bench}
  C=${C:-8}
  PORT=${PORT:-$((21000 + RANDOM % 10000))}
  bench_build rateguardd policy_bench
  DAEMON=${DAEMON:-$BUILD/policyd/rateguardd}
  BENCH=$BUILD/tests/bench/policy_bench
  bench_setup "$1"
}

# rss: VmRSS in kB of the daemon run_daemon started last.
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }

# bench_setup NAME: TMP (a new dir /tmp/NAME-XXXXXX), PIDS (append every PID started), CLEANUP_PATHS (what else
# was created outside TMP, removed on exit), RSOCK, the exit trap.
bench_setup() {
  TMP=$(mktemp -d "/tmp/$1-XXXXXX")
  PIDS=()
  CLEANUP_PATHS=()
  RSOCK=$TMP/redis.sock
  trap bench_cleanup EXIT
}

# alive PID: the process exists and is not a zombie.
alive() {
  local s
  s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $s != Z* ]]
}

# Stops exactly the PIDs started here (some are daemons that forked away from this shell, such as postfwd2's
# master: those are waited for by polling, at most 5 s), then removes the temp dir and CLEANUP_PATHS.
bench_cleanup() {
  local p i
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for i in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
  done
  rm -rf "$TMP"
  for p in "${CLEANUP_PATHS[@]}"; do rm -rf "$p"; done
}

# stop_pid PID: SIGTERM to one process started here, wait until it is gone (at most 10 s, then SIGKILL to that PID),
# and drop it from PIDS, so that the exit trap never signals a number the system may since have given to another
# process.
stop_pid() {
  local p=$1 i keep=()
  kill "$p" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$p" || break; sleep 0.1; done
  if alive "$p"; then
    echo "warning: PID $p still running 10 s after SIGTERM: SIGKILL" >&2
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [[ $i == "$p" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# A redis-server without persistence on $RSOCK; returns once it answers PING (bounded).
start_redis() {
  redis-server --port 0 --unixsocket "$RSOCK" --save "" --appendonly no --daemonize no --logfile "$TMP/redis.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -s "$RSOCK" ping >/dev/null 2>&1 && break; sleep 0.05; done
}

# redis-benchmark's FIRST and LATER: the daemon's two request kinds as FCALLs of its check function, for the same
# limits as write_limits' (generous: BIG refuses nobody).
# first RCPT of a message: u (3 message windows + rcpt window), ip (2 message windows), s (rcpt window);
# later RCPTs of the same message: only the rcpt windows of u and s.
# Keys, arguments and layout as common/store/redis/redis_check.hpp lays them out (now 0: Redis TIME; charge 1;
# the layout: half-life, familiarity epoch, warm-up, the counters (per counter: burst factor and floor, refusing
# burst factor and floor, all 0: no baseline; -: no novelty bits); last the charge-once token, a new one per call
# like the daemon's).
rb_shapes() {
  local fn big=1000000000
  fn=$("$BENCH" --print-function)
  FIRST=(FCALL "$fn" 3 'rg:{u:user__rand_int__}' 'rg:{ip:127.0.0.1}' 'rg:{s:user__rand_int__@bench.test}' 0 1
    "604800000 1209600000 0 7 1 m 60 1 $big 0 0 0 0 - 1 m 3600 1 $big 0 0 0 0 - 1 m 86400 1 $big 0 0 0 0 - 1 r 3600 1 0 0 0 0 0 - 2 m 60 1 0 0 0 0 0 - 2 m 3600 1 0 0 0 0 0 - 3 r 3600 1 $big 0 0 0 0 -"
    'once__rand_int__')
  LATER=(FCALL "$fn" 2 'rg:{u:user__rand_int__}' 'rg:{s:user__rand_int__@bench.test}' 0 1
    "604800000 1209600000 0 2 1 r 3600 1 0 0 0 0 0 - 2 r 3600 1 $big 0 0 0 0 -" 'once__rand_int__')
}

# Same rule shapes as conf/limits.conf, every limit times SCALE: 1 gives the sample's limits ("tight"),
# 1000000 limits nobody reaches ("generous": every counter read and charged, every answer DUNNO).
write_limits() {  # FILE SCALE
  local s=$2
  cat >"$1" <<LIMITS
sasl_username   *             $((30 * s))/1m $((200 * s))/1h $((1000 * s))/1d  defer
sasl_username   *             rcpt:$((2000 * s))/1h                 hold
client_address  127.0.0.0/8   $((60 * s))/1m $((500 * s))/1h                   hold
sender          *             rcpt:$((2000 * s))/1h                 defer
LIMITS
}
