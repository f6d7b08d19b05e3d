#!/bin/bash
# tests/packaging/check_systemd_unit.sh UNIT RATEGUARDD — checks contrib/systemd/rateguard.service offline
# (no running systemd needed): `systemd-analyze verify` prints nothing, `systemd-analyze security` scores
# it no worse than MAX_EXPOSURE, and rateguardd starts, binds a socket in a Postfix-like private dir and
# drops to nobody with only the unit's CapabilityBoundingSet. Exit 77 (skip) without systemd-analyze.
# Not a test of the seccomp filter or the mount namespace: those need a running systemd.
set -u
MAX_EXPOSURE=2.2   # measured with systemd 252 (Debian 12); lower it when the unit gets tighter

unit=$1 daemon=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed (apt-get install systemd)"; exit 77; }
T=$(mktemp -d /tmp/rg-unit-XXXXXX) || exit 1
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The unit names the installed path; verify wants an executable that exists.
sed "s#/usr/local/sbin/rateguardd#$daemon#g" "$unit" >"$T/rateguard.service"

out=$(systemd-analyze verify "$T/rateguard.service" 2>&1) || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "ok: systemd-analyze verify prints nothing"

sec=$(systemd-analyze security --offline=true "$T/rateguard.service" 2>&1) || fail "systemd-analyze security failed: $sec"
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for rateguard.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure level in: $sec"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
  fail "exposure level $score is above $MAX_EXPOSURE:
$(printf '%s\n' "$sec" | grep '✗')"
echo "ok: exposure level $score (at most $MAX_EXPOSURE)"

# The unit's capabilities are enough for the start-up as root, and none are left after the drop.
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
cat >"$T/rateguard.conf" <<CONF
listen = unix:$T/spool/private/rateguard
unix_socket_owner = $owner
unix_socket_mode = 0660
limits = limits.conf
user = nobody
log_target = file:$T/rateguardd.log
CONF
setpriv --no-new-privs --inh-caps=-all --bounding-set "-all,$caps" "$daemon" -c "$T/rateguard.conf" 2>"$T/stderr" &
PID=$!
for _ in $(seq 1 50); do grep -q "started:" "$T/rateguardd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "running as user nobody" "$T/rateguardd.log" 2>/dev/null ||
  fail "rateguardd did not drop to nobody under CapabilityBoundingSet=$caps: $(cat "$T/stderr" "$T/rateguardd.log" 2>/dev/null)"
[ "$(stat -c '%U %a' "$T/spool/private/rateguard")" = "$owner 660" ] || fail "socket: $(ls -l "$T/spool/private")"
grep -q "^Uid:[[:space:]]*$(id -u nobody)[[:space:]]*$(id -u nobody)[[:space:]]*$(id -u nobody)" "/proc/$PID/status" ||
  fail "not running as nobody: $(grep Uid "/proc/$PID/status")"
grep -q "^CapEff:[[:space:]]*0000000000000000" "/proc/$PID/status" || fail "capabilities left: $(grep Cap "/proc/$PID/status")"
echo "ok: bound and dropped to nobody with only $caps"
