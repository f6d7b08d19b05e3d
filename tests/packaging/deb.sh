#!/bin/bash
# tests/packaging/deb.sh [DEB] — the Debian package, end to end, as root on a machine without a running systemd
# (CI): builds it (build_deb.sh), runs lintian (no error may be reported), installs it with apt-get, checks
# what it installed, runs `rateguardd --check` on the installed configuration, renders a man page, starts
# the daemon the way rateguard.service does (its ExecStart line, as root, dropping to the rateguard account)
# and asks it a policy request on 127.0.0.1:10033 and a rateguardctl command, then `dpkg -r` (conffiles
# stay) and purge, and checks that nothing of the package is left. The system account rateguard is kept by
# design (contrib/debian/rateguard.postrm). Refuses to run where rateguard is already installed by someone else.
# With DEB (a rateguard_VERSION_amd64.deb built before), it tests that file instead of building one.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$src/build/deb
version=$(sed -n 's/^project(rateguard VERSION \([0-9.]*\) .*/\1/p' "$src/CMakeLists.txt")
T=$(mktemp -d /tmp/rg-debtest-XXXXXX)
PID="" installed=no made_run=no
# Wait for dpkg's lock rather than fail when another apt-get runs on this machine.
apt=(apt-get -o DPkg::Lock::Timeout=300)
step() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ "$installed" = yes ] && "${apt[@]}" purge -y -qq rateguard >/dev/null 2>&1
  [ "$made_run" = yes ] && rmdir /run/rateguard 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "needs root (apt-get install)"
if dpkg-query -W -f='${Status}' rateguard 2>/dev/null | grep -q 'ok installed\|config-files'; then
  fail "rateguard is already installed here: this test installs and purges it (dpkg -P rateguard first)"
fi

if [ $# -gt 0 ]; then
  deb=$(realpath "$1")
  step "testing $deb (not built now)"
else
  step "build"
  "$src/tests/packaging/build_deb.sh" "$out" || fail "package build"
  deb=$out/rateguard_${version}_amd64.deb
fi
[ -f "$deb" ] || fail "no $deb"
[ "$(basename "$deb")" = "rateguard_${version}_amd64.deb" ] || fail "$deb: not named for project(VERSION) $version"

step "lintian"
# Errors fail; warnings and infos are printed (contrib/debian/rateguard.lintian-overrides says why those kept are).
lintian --info --display-level '>=info' "$deb" | tee "$T/lintian"
grep -q '^E: ' "$T/lintian" && fail "lintian reports errors"

step "install"
installed=yes
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq "$deb" >"$T/install" 2>&1 || { cat "$T/install"; fail "apt-get install"; }
grep -q 'check_policy_service { inet:127.0.0.1:10033' "$T/install" || fail "postinst did not print the main.cf lines: $(cat "$T/install")"
for f in /usr/sbin/rateguardd /usr/sbin/rateguardctl /etc/rateguard/rateguard.conf /etc/rateguard/limits.conf \
  /lib/systemd/system/rateguard.service /etc/logrotate.d/rateguard /usr/share/doc/rateguard/README.md \
  /usr/share/doc/rateguard/copyright /usr/share/doc/rateguard/examples/postfix/main.cf.snippet \
  /usr/share/doc/rateguard/examples/postfix/master.cf.pickup.snippet \
  /usr/share/man/man8/rateguardd.8.gz /usr/share/man/man8/rateguardctl.8.gz \
  /usr/share/man/man5/rateguard.conf.5.gz /usr/share/man/man5/rateguard-limits.conf.5.gz; do
  [ -e "$f" ] || fail "not installed: $f"
done
for f in /etc/rateguard/rateguard.conf /etc/rateguard/limits.conf /etc/logrotate.d/rateguard; do
  grep -qx "$f" /var/lib/dpkg/info/rateguard.conffiles || fail "not a conffile: $f"
done
grep -qx 'ExecStart=/usr/sbin/rateguardd -c /etc/rateguard/rateguard.conf' /lib/systemd/system/rateguard.service ||
  fail "the unit's ExecStart: $(grep ^ExecStart= /lib/systemd/system/rateguard.service)"
grep -qx 'user = rateguard' /etc/rateguard/rateguard.conf || fail "the installed rateguard.conf does not say user = rateguard"
getent passwd rateguard >/dev/null || fail "no system account rateguard"
[ "$(getent passwd rateguard | cut -d: -f7)" = /usr/sbin/nologin ] || fail "rateguard's shell: $(getent passwd rateguard)"
[ "$(/usr/sbin/rateguardd --version)" = "rateguardd $version" ] || fail "version: $(/usr/sbin/rateguardd --version)"
dpkg -L rateguard | sort >"$T/files"
echo "ok: $(wc -l <"$T/files") paths; conffiles: $(tr '\n' ' ' </var/lib/dpkg/info/rateguard.conffiles)"

step "rateguardd --check on the installed configuration"
/usr/sbin/rateguardd --check -c /etc/rateguard/rateguard.conf || fail "rateguardd --check"

step "man rateguardd"
page=$(MANWIDTH=80 man --warnings -E UTF-8 -P cat rateguardd 2>"$T/man.err") || fail "man rateguardd: $(cat "$T/man.err")"
[ ! -s "$T/man.err" ] || fail "man rateguardd warns: $(cat "$T/man.err")"
printf '%s\n' "$page" | tr -s ' ' | grep -q 'rateguardd - Postfix policy daemon' || fail "man rateguardd renders: $(printf '%s\n' "$page" | head)"
printf '%s\n' "$page" | sed -n '1,4p'

step "start it as rateguard.service does (no systemd here)"
(exec 3<>/dev/tcp/127.0.0.1/10033) 2>/dev/null && fail "127.0.0.1:10033 is already in use: cannot start the installed daemon"
unit=/lib/systemd/system/rateguard.service
read -r -a pre <<<"$(sed -n 's/^ExecStartPre=//p' "$unit")"
read -r -a start <<<"$(sed -n 's/^ExecStart=//p' "$unit")"
umask_=$(sed -n 's/^UMask=//p' "$unit")
# What systemd would do: RuntimeDirectory=rateguard (RuntimeDirectoryMode=0755), ExecStartPre, then ExecStart
# with UMask. The runtime directory is a fresh tmpfs on /run/rateguard in a mount namespace of the daemon's
# own (unshare execs it: same PID), so a daemon elsewhere on this machine that uses /run/rateguard/control (a
# test's) neither stops this one nor is disturbed; rateguardctl enters that namespace (nsenter).
if [ ! -e /run/rateguard ]; then
  install -d -m 0755 /run/rateguard
  made_run=yes
fi
"${pre[@]}" >/dev/null || fail "ExecStartPre: ${pre[*]}"
(umask "${umask_:-0022}"
 exec unshare --mount --propagation private sh -c 'mount -t tmpfs -o mode=0755 rateguard /run/rateguard && exec "$@"' \
   sh "${start[@]}") 2>"$T/daemon.log" &
PID=$!
for _ in $(seq 1 100); do grep -q ' started: ' "$T/daemon.log" && break; sleep 0.1; done
grep -q ' started: ' "$T/daemon.log" || fail "the daemon did not start: $(cat "$T/daemon.log")"
grep -q 'running as user rateguard' "$T/daemon.log" || fail "not running as rateguard: $(cat "$T/daemon.log")"
grep -q "^Uid:[[:space:]]*$(id -u rateguard)[[:space:]]" "/proc/$PID/status" || fail "uid: $(grep Uid "/proc/$PID/status")"
exec 4<>/dev/tcp/127.0.0.1/10033 || fail "cannot connect to 127.0.0.1:10033"
printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=ci@example.com\nclient_address=192.0.2.1\ninstance=deb.1\n\n' >&4
read -r -t 10 reply <&4 || fail "no answer to the policy request"
exec 4>&-
[ "$reply" = "action=DUNNO" ] || fail "answer: $reply"
echo "ok: $reply from $(sed -n 's/.*\(rateguardd [0-9.]* started.*\)/\1/p' "$T/daemon.log")"
ctl_rc=0
nsenter --target "$PID" --mount /usr/sbin/rateguardctl status sasl_username:ci@example.com >"$T/ctl" 2>&1 || ctl_rc=$?
# 0 (the key was counted) or 1 (not found) both mean the daemon answered on its control socket.
[ $ctl_rc -le 1 ] || fail "rateguardctl status: exit $ctl_rc: $(cat "$T/ctl")"
echo "ok: rateguardctl status answered (exit $ctl_rc)"
if command -v logrotate >/dev/null; then
  logrotate --debug /etc/logrotate.d/rateguard >"$T/logrotate" 2>&1 || fail "logrotate: $(cat "$T/logrotate")"
  echo "ok: logrotate accepts /etc/logrotate.d/rateguard"
fi
kill -TERM "$PID"
wait "$PID"; rc=$?
PID=""
[ $rc = 0 ] || fail "the daemon exited $rc after SIGTERM: $(cat "$T/daemon.log")"
[ "$made_run" = no ] || { rmdir /run/rateguard; made_run=no; }  # systemd removes the RuntimeDirectory at stop
echo "ok: stopped with exit 0"

step "dpkg -r: the programs go, the conffiles stay"
"${apt[@]}" remove -y -qq rateguard >"$T/remove" 2>&1 || { cat "$T/remove"; fail "apt-get remove"; }
[ ! -e /usr/sbin/rateguardd ] || fail "/usr/sbin/rateguardd left after remove"
[ -f /etc/rateguard/rateguard.conf ] || fail "remove deleted the conffile rateguard.conf"

step "dpkg -P: nothing is left"
"${apt[@]}" purge -y -qq rateguard >"$T/purge" 2>&1 || { cat "$T/purge"; fail "apt-get purge"; }
installed=no
# A directory may stay when another package owns it too or something else is in it; a file may not.
left=$(while read -r p; do
  [ "$p" = /. ] && continue
  [ -e "$p" ] || continue
  if [ -d "$p" ]; then
    [ -n "$(dpkg -S "$p" 2>/dev/null)" ] || [ -n "$(ls -A "$p")" ] && continue
  fi
  echo "$p"
done <"$T/files")
[ -z "$left" ] || fail "left after purge: $left"
for p in /etc/rateguard /var/log/rateguard /usr/share/doc/rateguard \
  /etc/systemd/system/multi-user.target.wants/rateguard.service /var/lib/systemd/deb-systemd-helper-enabled/rateguard.service.dsh-also; do
  [ ! -e "$p" ] || fail "left after purge: $p"
done
ls /var/lib/dpkg/info/rateguard.* >/dev/null 2>&1 && fail "dpkg still knows rateguard: $(ls /var/lib/dpkg/info/rateguard.*)"
echo "ok: nothing left; the system account is kept by design: $(getent passwd rateguard)"
echo "deb.sh: 1 passed, 0 failed"
