#!/usr/bin/env bash
# tests/sim/run.sh — the replay simulation (tests/sim/README.md): starts a private rateguardd (memory store,
# or RG_SIM_STORE=redis with a private redis-server on a unix socket) with tests/sim/rateguard.conf and
# tests/sim/limits.conf in a temp dir, runs rg_sim against it, prints the report, and stops exactly the
# PIDs it started. Extra arguments go to rg_sim (e.g. --json, --seed 7). Run by ctest (label sim).
#
# Environment: RG_DAEMON, RG_SIM (binaries; default build/), RG_SIM_STORE (memory|redis),
# RG_SIM_LIMITS (another limits file, e.g. tests/sim/variants/*.conf or the sample conf/limits.conf),
# RG_SIM_HOUR_MS (real ms per simulated hour: the file's own, or a whole multiple of it; for a real-time
# file any value, default 1000), RG_SIM_ASSERT (target ids to assert; default below), RG_SIM_KEEP=1 (keep the temp dir: daemon log, answers.tsv with every answer per message).
# Exit status: rg_sim's (0 asserted targets met, 1 one missed, 3 replay not valid), or 2 when the setup
# fails (bad settings, a config the daemon refuses, nothing listening) or the daemon does not exit 0.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DAEMON=${RG_DAEMON:-$ROOT/build/policyd/rateguardd}
SIM=${RG_SIM:-$ROOT/build/tests/sim/rg_sim}
STORE=${RG_SIM_STORE:-memory}
LIMITS=${RG_SIM_LIMITS:-$HERE/limits.conf}
# The compression a limits file is written for: its line "# rg_sim: hour_ms=N" (1s = 1 simulated hour at
# N = 1000); RG_SIM_HOUR_MS may slow the replay down by a whole factor and the windows are scaled. A file
# without that line (the sample conf/limits.conf) is written for real time: its windows are scaled to the
# compression, 1 h = RG_SIM_HOUR_MS (default 1000) ms, a window under 1 s rounded up to 1 s with its count
# scaled alike (looser, never tighter: scale_limits.py), and so are the durations of the rateguard.conf
# beside it (conf/rateguard.conf: lock_time, baseline_half_life, baseline_warmup, familiar_time; the daemon's
# defaults for those it does not set). A real-time file gets tests/sim/announced.conf appended: the population's
# announced newsletter, named as the sample's comment tells an admin to name a known bulk sender.
FILE_HOUR_MS=$(sed -n 's/^# rg_sim: hour_ms=\([0-9][0-9]*\)$/\1/p' "$LIMITS" | head -1)
HOUR_MS=${RG_SIM_HOUR_MS:-${FILE_HOUR_MS:-1000}}

# Every target: each incident (A-E) contained within 50 messages, no legitimate message held, legitimate
# deferrals under 0.1%, for issue 4's classes and for all (tests/sim/README.md "Targets").
ASSERT=${RG_SIM_ASSERT:-all}

for bin in "$DAEMON" "$SIM"; do
  [[ -x $bin ]] || { echo "run.sh: $bin is not built (cmake --build build)" >&2; exit 2; }
done
case $STORE in memory|redis) ;; *) echo "run.sh: RG_SIM_STORE must be memory or redis" >&2; exit 2 ;; esac
[[ $HOUR_MS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: RG_SIM_HOUR_MS must be a whole number of ms" >&2; exit 2; }
if [[ -n $FILE_HOUR_MS ]] && (( HOUR_MS < FILE_HOUR_MS || HOUR_MS % FILE_HOUR_MS != 0 )); then
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

# The limits file with every window scaled to the compression in use; NOTES: what the scaling changed, for
# the report's header.
NOTES=()
INPUT=$LIMITS
if [[ -z $FILE_HOUR_MS ]]; then
  INPUT=$TMP/input.conf
  cat "$LIMITS" "$HERE/announced.conf" >"$INPUT"
  NOTES+=(--note "added: tests/sim/announced.conf ($(grep -v '^#' "$HERE/announced.conf" | grep . | tr -s ' '))")
fi
scaled=$(python3 "$HERE/scale_limits.py" limits "$INPUT" "$TMP/limits.conf" "$HOUR_MS") || exit 2
if [[ -z $FILE_HOUR_MS ]]; then
  NOTES+=(--note "real-time limits scaled to the compression (1 h = $HOUR_MS ms); windows under 1 s rounded up to 1 s, their counts scaled alike (looser, never tighter):")
fi
while IFS= read -r line; do [[ -n $line ]] && NOTES+=(--note "  $line"); done <<<"$scaled"

{
  if [[ -n $FILE_HOUR_MS ]]; then
    # Durations of rateguard.conf that mean simulated time (written in seconds) scale like the windows.
    scale=$((HOUR_MS / FILE_HOUR_MS))
    awk -v k="$scale" '/^(lock_time|baseline_half_life|baseline_warmup|familiar_time)[ \t]*=[ \t]*[0-9]+s[ \t]*$/ {
        sub(/s[ \t]*$/, "", $3); print $1 " = " ($3 * k) "s"; next } { print }' "$HERE/rateguard.conf"
  else
    # A real-time limits file: the settings of the rateguard.conf beside it that shape decisions, the
    # durations scaled; a duration it does not set is the daemon's default (rateguardd --help).
    CONF=$(dirname "$LIMITS")/rateguard.conf
    setting() {  # $1: name; its value in $CONF (uncommented), else the daemon's default
      local v=""
      [[ -f $CONF ]] && v=$(sed -n "s/^[ \t]*$1[ \t]*=[ \t]*\([^ \t#]*\).*/\1/p" "$CONF" | tail -1)
      [[ -n $v ]] || v=$("$DAEMON" --help | sed -n "s/^  $1 = \([^ ]*\)\$/\1/p")
      echo "$v"
    }
    echo "limits = limits.conf"
    for name in mode on_store_error ipv6_prefix network_ipv4_prefix network_ipv6_prefix; do
      echo "$name = $(setting $name)"
    done
    durations=""
    for name in lock_time baseline_half_life baseline_warmup familiar_time; do
      v=$(setting $name)
      [[ -n $v ]] || { echo "run.sh: no value for $name" >&2; exit 2; }
      ms=$(python3 "$HERE/scale_limits.py" duration "$v" "$HOUR_MS") || exit 2
      echo "$name = $ms"
      durations+=" $name $v -> $ms,"
    done
    echo "# rg_sim note: settings of ${CONF#$ROOT/} and the daemon's defaults, scaled:${durations%,}"
  fi
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
} >"$TMP/rateguard.conf" || exit 2
note=$(sed -n 's/^# rg_sim note: //p' "$TMP/rateguard.conf")
[[ -n $note ]] && NOTES+=(--note "$note")

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
  --label "store=$STORE limits=${LIMITS#$ROOT/}" "${NOTES[@]}" "${KEEP_ARGS[@]}" "$@" || status=$?

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
