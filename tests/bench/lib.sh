# tests/bench/lib.sh — what run.sh and profile.sh share, sourced by both: a temp dir and the processes they
# start (stopped by PID on exit, then the dir removed), the private redis-server on a unix socket in it, and
# the limits file with conf/limits.conf's rule shapes. Nothing here runs on its own.

# bench_setup NAME: TMP (a new dir /tmp/NAME-XXXXXX), PIDS (append every PID started), RSOCK, the exit trap.
bench_setup() {
  TMP=$(mktemp -d "/tmp/$1-XXXXXX")
  PIDS=()
  RSOCK=$TMP/redis.sock
  trap bench_cleanup EXIT
}

# Stops exactly the PIDs started here, then removes the temp dir.
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}

# A redis-server without persistence on $RSOCK; returns once it answers PING (bounded).
start_redis() {
  redis-server --port 0 --unixsocket "$RSOCK" --save "" --appendonly no --daemonize no --logfile "$TMP/redis.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -s "$RSOCK" ping >/dev/null 2>&1 && break; sleep 0.05; done
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
