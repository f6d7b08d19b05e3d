#!/usr/bin/env bash
# tests/sim/run.sh — the replay simulation (tests/sim/README.md): starts a private rateguardd (memory store,
# or RG_SIM_STORE=redis with a private redis-server on a unix socket) with tests/sim/rateguard.conf and
# tests/sim/limits.conf in a temp dir, runs rg_sim against it, prints the report, and stops exactly the
# PIDs it started. Extra arguments go to rg_sim (e.g. --json, --seed 7). Run by ctest (label sim).
#
# Environment: RG_DAEMON, RG_SIM (binaries; default build/), RG_SIM_STORE (memory|redis),
# RG_SIM_LIMITS (another limits file, e.g. tests/sim/variants/*.conf), RG_SIM_HOUR_MS (real ms per
# simulated hour: the file's own, or a whole multiple of it), RG_SIM_ASSERT (target ids to assert; default
# below), RG_SIM_KEEP=1 (keep the temp dir: daemon log, answers.tsv with every answer per message).
# Exit status: rg_sim's (0 asserted targets met, 1 one missed, 3 replay not valid), or 2 when the setup
# fails (bad settings, a config the daemon refuses, nothing listening) or the daemon does not exit 0.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DAEMON=${RG_DAEMON:-$ROOT/build/policyd/rateguardd}
SIM=${RG_SIM:-$ROOT/build/tests/sim/rg_sim}
STORE=${RG_SIM_STORE:-memory}
LIMITS=${RG_SIM_LIMITS:-$HERE/limits.conf}
# The compression a limits file is written for: its line "# rg_sim: hour_ms=N" (default 1000, i.e. 1s = 1
# simulated hour). RG_SIM_HOUR_MS may slow the replay down by a whole factor; the windows are scaled.
FILE_HOUR_MS=$(sed -n 's/^# rg_sim: hour_ms=\([0-9][0-9]*\)$/\1/p' "$LIMITS" | head -1)
FILE_HOUR_MS=${FILE_HOUR_MS:-1000}
HOUR_MS=${RG_SIM_HOUR_MS:-$FILE_HOUR_MS}

# Every target is asserted: tests/sim/limits.conf (static limits plus the burst and client_ips detection
# rules) contains all three incidents within 50 messages and holds no legitimate mail (README.md).
ASSERT=${RG_SIM_ASSERT:-all}

for bin in "$DAEMON" "$SIM"; do
  [[ -x $bin ]] || { echo "run.sh: $bin is not built (cmake --build build)" >&2; exit 2; }
done
case $STORE in memory|redis) ;; *) echo "run.sh: RG_SIM_STORE must be memory or redis" >&2; exit 2 ;; esac
if (( HOUR_MS < FILE_HOUR_MS || HOUR_MS % FILE_HOUR_MS != 0 )); then
  echo "run.sh: RG_SIM_HOUR_MS must be a multiple of $FILE_HOUR_MS, the compression $LIMITS is written for" \
    "(windows are whole seconds, 1 s at least)" >&2
  exit 2
fi

TMP=$(mktemp -d /tmp/rg-sim-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do [[ -n $p ]] && wait "$p" 2>/dev/null || true; done
  if [[ ${RG_SIM_KEEP:-0} == 1 ]]; then echo "run.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# Waits (bounded: 5 s) until a unix socket accepts connections. $2: the PID that must stay alive.
wait_socket() {
  local i
  for i in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || { echo "run.sh: process $2 exited at start" >&2; return 1; }
    if python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "run.sh: nothing listens on $1" >&2
  return 1
}

# The limits file with every window (written in seconds of compressed time) scaled to the compression in use.
scale=$((HOUR_MS / FILE_HOUR_MS))
awk -v k="$scale" '
  /^[ \t]*#/ || NF == 0 { print; next }
  {
    for (i = 1; i <= NF; ++i) {
      if ($i !~ /^[a-z_.:0-9]*[0-9]+\//) continue  # not a limit (N/W, rcpt:N/W, burst:Kx:F/W, client_ips:N/W)
      if ($i !~ /\/[0-9]+s$/) {
        print "run.sh: " FILENAME ":" NR ": write windows in seconds of compressed time: " $i > "/dev/stderr"
        bad = 1
        continue
      }
      slash = index($i, "/")
      $i = substr($i, 1, slash) (substr($i, slash + 1, length($i) - slash - 1) * k) "s"
    }
    print
  }
  END { exit bad }' "$LIMITS" >"$TMP/limits.conf" || exit 2

{
  # Durations of rateguard.conf that mean simulated time (written in seconds) scale like the windows.
  awk -v k="$scale" '/^(lock_time|baseline_half_life|baseline_warmup)[ \t]*=[ \t]*[0-9]+s[ \t]*$/ {
      sub(/s[ \t]*$/, "", $3); print $1 " = " ($3 * k) "s"; next } { print }' "$HERE/rateguard.conf"
  echo "listen = unix:$TMP/policy.sock"
  echo "log_target = file:$TMP/rateguardd.log"
  # Its own control socket: the default /run/rateguard/control may belong to another rateguardd (another
  # replay running at the same time, or an installed daemon), and a live one is never taken over.
  echo "control_socket = $TMP/control"
  echo "store = $STORE"
  [[ $STORE == redis ]] && echo "redis = $TMP/redis.sock"
  # As root (ctest here), stay root in the private 0700 temp dir, as the integration fixture does.
  (( EUID == 0 )) && echo "allow_root = yes"
  true
} >"$TMP/rateguard.conf"

if [[ $STORE == redis ]]; then
  redis-server --port 0 --unixsocket "$TMP/redis.sock" --save "" --appendonly no --daemonize no \
    --logfile "$TMP/redis.log" &
  PIDS+=($!)
  wait_socket "$TMP/redis.sock" "${PIDS[-1]}" || exit 2
fi

"$DAEMON" --check -c "$TMP/rateguard.conf" >&2 || exit 2
"$DAEMON" -c "$TMP/rateguard.conf" 2>"$TMP/daemon.stderr" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_socket "$TMP/policy.sock" "$DAEMON_PID" || { cat "$TMP/daemon.stderr" >&2; exit 2; }

KEEP_ARGS=()
[[ ${RG_SIM_KEEP:-0} == 1 ]] && KEEP_ARGS=(--answers "$TMP/answers.tsv")
status=0
"$SIM" --connect "unix:$TMP/policy.sock" --hour-ms "$HOUR_MS" --assert "$ASSERT" \
  --label "store=$STORE limits=${LIMITS#$ROOT/}" "${KEEP_ARGS[@]}" "$@" || status=$?

# Stop the daemon here (its exit status is part of the verdict); the trap stops the rest.
OTHERS=()
for p in "${PIDS[@]}"; do [[ $p == "$DAEMON_PID" ]] || OTHERS+=("$p"); done
PIDS=("${OTHERS[@]}")
kill -TERM "$DAEMON_PID"
daemon_status=0
wait "$DAEMON_PID" || daemon_status=$?
if (( daemon_status != 0 )); then
  echo "run.sh: rateguardd exited with status $daemon_status" >&2
  (( status != 0 )) || status=2
fi
echo "run.sh: rg_sim exit status $status; daemon log: $(grep -c ': hold: ' "$TMP/rateguardd.log" || true) hold," \
  "$(grep -c ': defer: ' "$TMP/rateguardd.log" || true) defer lines" >&2
exit "$status"
