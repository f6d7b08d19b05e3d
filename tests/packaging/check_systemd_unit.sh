#!/bin/bash
# tests/packaging/check_systemd_unit.sh UNIT RATEGUARDD MANDIR — checks the systemd unit offline (UNIT: the one
# the build configured from contrib/systemd/rateguard.service.in, build/contrib/rateguard.service; MANDIR: the
# built man pages, build/policyd/man, which verify looks up for the unit's Documentation= lines)
# (no running systemd needed): `systemd-analyze verify` prints nothing, `systemd-analyze security` scores
# it no worse than MAX_EXPOSURE, and rateguardd starts, binds a socket in a Postfix-like private dir and
# drops to nobody with only the unit's CapabilityBoundingSet, serves, reloads and stops using only system
# calls its SystemCallFilter allows (strace), sd_notify's included (NOTIFY_SOCKET set). Exit 77 (skip) without systemd-analyze. Not tested: the
# mount namespace and the filter as systemd installs it (both need a running systemd).
set -u
MAX_EXPOSURE=2.2   # measured with systemd 252 (Debian 12); lower it when the unit gets tighter

unit=$1 daemon=$(realpath "$2") mandir=$(realpath "$3")
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed (apt-get install systemd)"; exit 77; }
T=$(mktemp -d /tmp/rg-unit-XXXXXX) || exit 1
PID="" RPID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The unit names the installed path; verify wants an executable that exists.
installed=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$unit")
case $installed in /*/rateguardd) ;; *) fail "ExecStart does not name an installed rateguardd: ${installed:-none}" ;; esac
sed "s#$installed#$daemon#g" "$unit" >"$T/rateguard.service"
# verify runs `man` for each Documentation=man: page: give it the built ones, as the package installs them.
mkdir -p "$T/man/man5" "$T/man/man8"
cp "$mandir"/*.5 "$T/man/man5/" && cp "$mandir"/*.8 "$T/man/man8/" || fail "no man pages in $mandir"
export MANPATH="$T/man"

out=$(systemd-analyze verify "$T/rateguard.service" 2>&1) || fail "systemd-analyze verify failed: $out"
# verify loads every unit installed on the machine too: only what it says about ours counts (another package's
# unit may warn, e.g. policyd-rate-limit's StandardOutput=syslog once the bench's peers are installed).
ours=$(printf '%s\n' "$out" | grep -v '^/lib/systemd/system/\|^/usr/lib/systemd/system/\|^/etc/systemd/system/' | grep . || true)
[ -z "$ours" ] || fail "systemd-analyze verify warns: $ours"
echo "ok: systemd-analyze verify prints nothing about rateguard.service"

sec=$(systemd-analyze security --offline=true "$T/rateguard.service" 2>&1) || fail "systemd-analyze security failed: $sec"
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for rateguard.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure level in: $sec"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
  fail "exposure level $score is above $MAX_EXPOSURE:
$(printf '%s\n' "$sec" | grep '✗')"
echo "ok: exposure level $score (at most $MAX_EXPOSURE)"

# The unit's capabilities are enough for the start-up as root, none are left after the drop, and every
# system call of a start, requests, reload and stop is allowed by its SystemCallFilter (traced by strace).
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "ok: (capability run skipped: needs root and setpriv)"
  exit 0
fi
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_\(.*\)/+\1/p' | paste -sd, -)
[ -n "$caps" ] || fail "no CapabilityBoundingSet in $unit"
owner=postfix
getent passwd postfix >/dev/null || owner=daemon
mkdir -p "$T/spool/private"
chmod 755 "$T" "$T/spool"
chown "$owner" "$T/spool/private" && chmod 700 "$T/spool/private"
echo 'sasl_username * 10/1h defer' >"$T/limits.conf"
chmod 644 "$T/limits.conf"
cat >"$T/rateguard.conf" <<CONF
listen = unix:$T/spool/private/rateguard
listen = inet:127.0.0.1:0
unix_socket_owner = $owner
unix_socket_mode = 0660
limits = limits.conf
control_socket = $T/control
user = nobody
log_target = file:$T/rateguardd.log
CONF
chmod 644 "$T/rateguard.conf"
# With a Redis over TCP when there is one (the resolver thread, connect, AUTH-less handshake).
if command -v redis-server >/dev/null; then
  for _ in $(seq 1 50); do
    RPORT=$((20000 + RANDOM % 10000))
    (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null || break
  done
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$T" >"$T/redis.log" 2>&1 &
  RPID=$!
  printf 'store = redis\nredis = 127.0.0.1:%s\n' "$RPORT" >>"$T/rateguard.conf"
fi
tracer=()
# (Only where ptrace works: some containers forbid it. Not for the sanitized tree, which ctest runs with
# ASAN_OPTIONS set: LeakSanitizer refuses to run under ptrace, and the sanitizer runtime makes system calls
# of its own; the filter is about the production binary, which the normal tree checks.)
if [ -z "${ASAN_OPTIONS:-}" ]; then
  strace -f -qq -o /dev/null true 2>/dev/null && tracer=(strace -f -qq -o "$T/trace")
fi
# NOTIFY_SOCKET: a path nobody listens on, so sd_notify makes its system calls (socket, sendmsg) and fails
# harmlessly; the messages themselves are checked by the integration tests.
NOTIFY_SOCKET="$T/notify" "${tracer[@]}" setpriv --no-new-privs --inh-caps=-all --bounding-set "-all,$caps" "$daemon" -c "$T/rateguard.conf" \
  2>"$T/stderr" &
PID=$!
for _ in $(seq 1 100); do grep -q "started:" "$T/rateguardd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "running as user nobody" "$T/rateguardd.log" 2>/dev/null ||
  fail "rateguardd did not drop to nobody under CapabilityBoundingSet=$caps: $(cat "$T/stderr" "$T/rateguardd.log" 2>/dev/null)"
[ "$(stat -c '%U %a' "$T/spool/private/rateguard")" = "$owner 660" ] || fail "socket: $(ls -l "$T/spool/private")"
DPID=$(pgrep -f "^$daemon -c $T/rateguard.conf" | head -1)
[ -n "$DPID" ] || fail "no rateguardd process"
grep -q "^Uid:[[:space:]]*$(id -u nobody)[[:space:]]*$(id -u nobody)[[:space:]]*$(id -u nobody)" "/proc/$DPID/status" ||
  fail "not running as nobody: $(grep Uid "/proc/$DPID/status")"
grep -q "^CapEff:[[:space:]]*0000000000000000" "/proc/$DPID/status" || fail "capabilities left: $(grep Cap "/proc/$DPID/status")"
[ -z "$RPID" ] || grep -q "redis 127.0.0.1:$RPORT: connected" "$T/rateguardd.log" ||
  fail "no connection to Redis: $(cat "$T/rateguardd.log")"
echo "ok: bound and dropped to nobody with only $caps${RPID:+, then connected to Redis over TCP}"

# Two requests over TCP, a reload, a stop.
port=$(sed -n 's/.*listening on inet:127.0.0.1:\([0-9]*\).*/\1/p' "$T/rateguardd.log" | head -1)
[ -n "$port" ] || fail "no inet port in the log"
exec 4<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to port $port"
req="request=smtpd_access_policy
protocol_state=RCPT
sasl_username=alice
instance=unit.1
"
for i in 1 2; do
  printf '%s\n' "$req" >&4
  read -r -t 5 reply <&4 || fail "no reply to request $i"
  [ "$reply" = "action=DUNNO" ] || fail "request $i: $reply"
  read -r -t 5 _ <&4
done
exec 4>&-
kill -HUP "$DPID"
for _ in $(seq 1 50); do grep -q "reload:" "$T/rateguardd.log" && break; sleep 0.1; done
grep -q "reload:" "$T/rateguardd.log" || fail "no reload: $(cat "$T/rateguardd.log")"
kill -TERM "$DPID"
wait "$PID" || fail "rateguardd exited $?: $(cat "$T/stderr")"
PID=""
echo "ok: requests, reload and stop as nobody"

[ ${#tracer[@]} -gt 0 ] || { echo "ok: (system call check skipped: sanitized build or no working strace)"; exit 0; }
# Every system call after rateguardd's own execve (before it: setpriv's) must pass the unit's filter.
expand() {
  systemd-analyze syscall-filter "$1" | sed -n 's/^    \([@a-z0-9_-]*\)$/\1/p' | while read -r n; do
    case $n in @*) expand "$n" ;; *) echo "$n" ;; esac
  done
}
allowed=$(for set in $(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$unit"); do expand "$set"; done | sort -u)
denied=$(for set in $(sed -n 's/^SystemCallFilter=~//p' "$unit"); do expand "$set"; done | sort -u)
used=$(sed -n "\#execve(\"$daemon\"#,\$p" "$T/trace" | sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' | sort -u)
[ -n "$used" ] || fail "empty trace"
bad=$(comm -23 <(echo "$used") <(comm -23 <(echo "$allowed") <(echo "$denied")))
[ -z "$bad" ] || fail "system calls outside the unit's SystemCallFilter: $bad"
echo "ok: all $(echo "$used" | wc -l) system calls used are allowed by the unit's SystemCallFilter"
