# tests/e2e/lib.sh — fixture for the end-to-end suite: a PRIVATE Postfix 3.7 instance (own config,
# queue, data and maillog in a temp dir, loopback-only ports), an smtp-sink as its relayhost, a Cyrus
# sasldb for SMTP AUTH, and rateguardd itself. Sourced by run.sh; needs root (Postfix's master must be
# started as root). Nothing here touches /etc/postfix or port 25; teardown kills only PIDs it started.

set -u
# rateguardd drops to nobody: what it reads on reload must stay readable whatever umask the caller had.
umask 022

: "${RG_DAEMON:?RG_DAEMON must name the rateguardd binary}"
SASL_DOMAIN=rg-e2e.test
SASL_USER=alice
SASL_PASS=s3cret-e2e
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
RG_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTRIB="$RG_SRC/contrib/postfix"
# The pickup path (RG_WITH_PICKUP=1): the account that runs sendmail, and pickup's wakeup (contrib: 60 s;
# short here so a message deferred at end of message, or left while rateguardd was down, is offered again
# within seconds).
LOCAL_USER=${LOCAL_USER:-nobody}
RG_PICKUP_WAKEUP=${RG_PICKUP_WAKEUP:-2}

T=""            # the temp dir holding everything
RG_PID=""       # rateguardd, started by us
SINK_PID=""     # smtp-sink, started by us
PF_STARTED=""   # set once `postfix start` succeeded

log() { printf '# %s\n' "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  dump_diagnostics
  exit 1
}

# A free TCP port on 127.0.0.1: nothing answers a connect there. Bash's /dev/tcp keeps CI free of extra
# tools (no ss/python needed). Picked BELOW the kernel's ephemeral range: a port some client socket
# holds as its local port answers no connect yet makes bind() fail ("Address already in use").
free_port() {
  local p i lo=32768
  read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  [ "$lo" -gt 11000 ] || fail "ephemeral port range starts too low ($lo) to pick test ports"
  for i in $(seq 1 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      case " ${USED_PORTS:-} " in *" $p "*) continue ;; esac
      USED_PORTS="${USED_PORTS:-} $p"
      echo "$p"
      return 0
    fi
  done
  return 1
}

# Polls `cmd` every 100 ms until it succeeds or `secs` pass (every wait in this suite is bounded).
# To wait on a command's output, quote the whole test for eval: wait_until 5 eval '[ "$(sink_count)" -ge 2 ]'.
# (An unquoted "$(...)" argument is expanded once, before the first poll, and the wait never sees a change.)
wait_until() {
  local secs=$1 i
  shift
  for i in $(seq 1 $((secs * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- rateguardd

# start_rateguard LIMITS_TEXT — writes limits.conf and starts rateguardd on POLICY_PORT. Started as root,
# it drops to nobody like a production install ($T/rg and its files are world-readable for reloads).
start_rateguard() {
  printf '%s\n' "$1" >"$T/rg/limits.conf"
  cat >"$T/rg/rateguard.conf" <<EOF
listen = inet:127.0.0.1:$POLICY_PORT
${RG_WITH_PICKUP:+milter = inet:127.0.0.1:$MILTER_PORT}
limits = limits.conf
log_target = file:$T/rg/rateguardd.log
control_socket = $T/rg/control
store = memory
user = nobody
group = nogroup
${RG_EXTRA_SETTINGS:-}
EOF
  "$RG_DAEMON" -c "$T/rg/rateguard.conf" >/dev/null 2>>"$T/rg/stderr" &
  RG_PID=$!
  # 20 s: a sanitized daemon on a busy machine; it usually listens within 0.1 s.
  wait_until 20 eval 'port_open "$POLICY_PORT" || ! kill -0 "$RG_PID" 2>/dev/null'
  kill -0 "$RG_PID" 2>/dev/null || fail "rateguardd exited at start: $(tail -3 "$T/rg/stderr")"
  port_open "$POLICY_PORT" || fail "rateguardd did not listen on $POLICY_PORT"
  if [ -n "${RG_WITH_PICKUP:-}" ]; then
    wait_until 5 port_open "$MILTER_PORT" || fail "rateguardd did not listen on milter port $MILTER_PORT"
  fi
}

# Rewrites limits.conf atomically (rename), so a reload never reads half a file.
write_limits() {
  printf '%s\n' "$1" >"$T/rg/limits.conf.tmp"
  mv -f "$T/rg/limits.conf.tmp" "$T/rg/limits.conf"
}

# stop_pid PID — a child of this shell: SIGTERM, up to 5 s to exit, then SIGKILL; reaped.
stop_pid() {
  local i
  kill -TERM "$1" 2>/dev/null
  for i in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

stop_rateguard() {
  [ -n "$RG_PID" ] || return 0
  stop_pid "$RG_PID"
  RG_PID=""
}

rg_log() { cat "$T/rg/rateguardd.log" 2>/dev/null; }

# rateguardctl against our rateguardd (RG_CTL names the binary; set by ctest).
ctl() { "${RG_CTL:?RG_CTL must name the rateguardctl binary}" -c "$T/rg/rateguard.conf" "$@"; }

# ---------------------------------------------------------------- Postfix

setup_dirs() {
  T=$(mktemp -d /tmp/rg-e2e-XXXXXX) || exit 1
  # The postfix user must traverse it (smtpd reads the sasldb, smtp-sink writes its dumps).
  chmod 755 "$T"
  mkdir -p "$T/conf/sasl" "$T/queue" "$T/data" "$T/rg" "$T/sink"
  chown postfix "$T/sink" "$T/data"
  SMTP_PORT=$(free_port) && SUB_PORT=$(free_port) && SINK_PORT=$(free_port) && POLICY_PORT=$(free_port) &&
    MILTER_PORT=$(free_port) || fail "no free ports"
}

setup_sasl() {
  # Debian's Postfix reads $config_directory/sasl/smtpd.conf (upstream: cyrus_sasl_config_path); both
  # point here. Private sasldb: realm = smtpd_sasl_local_domain, so users log in as plain "alice".
  echo "$SASL_PASS" | saslpasswd2 -p -f "$T/conf/sasl/sasldb2" -c -u "$SASL_DOMAIN" "$SASL_USER" ||
    fail "saslpasswd2 failed"
  chgrp postfix "$T/conf/sasl/sasldb2" && chmod 640 "$T/conf/sasl/sasldb2"
  cat >"$T/conf/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $T/conf/sasl/sasldb2
mech_list: PLAIN LOGIN
EOF
}

# The policy check, per call: a short timeout and one try keep the "rateguardd down" case fast
# (Postfix's default is 2 tries, 1 s apart); default_action=DUNNO is the documented fail-open choice.
# RG_POLICY_VIA (a port), RG_POLICY_TIMEOUT, RG_POLICY_TRIES: the resend scenario's proxy, timeout and tries.
policy_check() {
  echo "check_policy_service { inet:127.0.0.1:${RG_POLICY_VIA:-$POLICY_PORT}, timeout=${RG_POLICY_TIMEOUT:-5s}," \
    "try_limit=${RG_POLICY_TRIES:-1}, default_action=DUNNO }"
}

# main.cf's restrictions: the policy check comes before any permit_*; the end-of-data check lets rateguardd log
# the queue ID. RG_NO_POLICY=1: none (Postfix's defaults), for an instance without rateguardd.
policy_restrictions() {
  [ -z "${RG_NO_POLICY:-}" ] || return 0
  echo "smtpd_recipient_restrictions = $(policy_check), permit_sasl_authenticated, permit_mynetworks, reject"
  echo "smtpd_end_of_data_restrictions = $(policy_check)"
}

# The instance's main.cf and master.cf. What another driver of the same instance (milter_facts.sh) may change:
# RG_NO_POLICY=1 (above); RG_MAIN_CF_EXTRA, lines appended to main.cf; RG_STOCK_PICKUP_WAKEUP, the wakeup of
# the stock pickup service (default 60 s, Postfix's; the pickup path, RG_WITH_PICKUP, brings its own pickup).
write_postfix_config() {
  cat >"$T/conf/main.cf" <<EOF
# Private instance (generated by tests/e2e/lib.sh); loopback only, nothing shared with /etc/postfix.
compatibility_level = 3.6
queue_directory = $T/queue
data_directory = $T/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$SASL_DOMAIN
mydomain = $SASL_DOMAIN
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Everything leaves through the sink; brackets: no MX lookup.
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
maillog_file = $T/maillog
maillog_file_prefixes = $T
# SASL (enabled on the submission service only, see master.cf).
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = $T/conf/sasl
smtpd_sasl_local_domain = $SASL_DOMAIN
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
$(policy_restrictions)
${RG_MAIN_CF_EXTRA:-}
EOF
  # chroot column "n": the services read the temp dirs directly. (The pickup path's pickup and cleanup-local
  # come from contrib as they are, chroot "y": they read nothing outside the queue after start-up.)
  cat >"$T/conf/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SUB_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
$([ -n "${RG_WITH_PICKUP:-}" ] || echo "pickup    unix  n - n ${RG_STOCK_PICKUP_WAKEUP:-60}   1 pickup")
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
smtp      unix  - - n -    - smtp
relay     unix  - - n -    - smtp
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
  [ -z "${RG_WITH_PICKUP:-}" ] || write_pickup_config
}

# ---------------------------------------------------------------- the pickup path (sendmail, PHP mail())

# The instance's pickup path is contrib/postfix's recipe as README shows it, with only the milter port,
# the header_checks path and pickup's wakeup replaced; a contrib change that these replacements no longer
# fit fails here instead of silently testing something else.
write_pickup_config() {
  local m="$CONTRIB/master.cf.pickup.snippet" h="$T/conf/rateguard_pickup_header_checks" out
  cp "$CONTRIB/rateguard_pickup_header_checks" "$h" || fail "no $CONTRIB/rateguard_pickup_header_checks"
  out=$(sed -e "s|non_smtpd_milters=inet:127.0.0.1:10029\$|non_smtpd_milters=inet:127.0.0.1:$MILTER_PORT|" \
    -e "s|header_checks=regexp:/etc/postfix/rateguard_pickup_header_checks\$|header_checks=regexp:$h|" "$m" |
    awk -v w="$RG_PICKUP_WAKEUP" '$1 == "pickup" && $2 == "unix" && $6 == "60" { $6 = w } { print }') ||
    fail "cannot read $m"
  printf '%s\n' "$out" | grep -qx "  -o non_smtpd_milters=inet:127.0.0.1:$MILTER_PORT" &&
    printf '%s\n' "$out" | grep -qx "  -o header_checks=regexp:$h" &&
    printf '%s\n' "$out" | grep -qE "^pickup unix .* $RG_PICKUP_WAKEUP 1 pickup\$" ||
    fail "$m no longer has the lines lib.sh adapts (milter port 10029, header_checks path, pickup wakeup 60)"
  printf '\n%s\n' "$out" >>"$T/conf/master.cf"
  { echo; cat "$CONTRIB/main.cf.pickup.snippet"; } >>"$T/conf/main.cf" || fail "no main.cf.pickup.snippet"
  write_etcpf
}

# postdrop is set-gid: for a non-default MAIL_CONFIG it wants the DEFAULT main.cf to list the directory in
# alternate_config_directories. as_local_user bind-mounts this copy ($T/etcpf) over /etc/postfix in a private
# mount namespace, so /etc/postfix itself is never changed (docs/postfix-milter-facts.md).
write_etcpf() {
  mkdir -p "$T/etcpf"
  cp -a /etc/postfix/. "$T/etcpf/"
  printf 'alternate_config_directories = %s\n' "$T/conf" >"$T/etcpf/main.cf"
}

# Can this machine run the pickup path? (unshare -m needs CAP_SYS_ADMIN; the account must exist.)
pickup_prereqs() {
  local missing=""
  command -v setpriv >/dev/null 2>&1 || missing="$missing setpriv"
  [ -x /usr/sbin/sendmail ] || missing="$missing /usr/sbin/sendmail"
  getent passwd "$LOCAL_USER" >/dev/null || missing="$missing user:$LOCAL_USER"
  unshare -m true 2>/dev/null || missing="$missing unshare-m"
  echo "$missing"
}

# as_local_user COMMAND [ARGS...] — COMMAND as the unprivileged LOCAL_USER, with a clean environment and
# MAIL_CONFIG naming our instance, in a private mount namespace where $T/etcpf is /etc/postfix (write_etcpf).
as_local_user() {
  unshare -m /bin/sh -c 'mount --bind "$1" /etc/postfix || exit 97; shift; exec "$@"' sh "$T/etcpf" \
    setpriv --reuid="$LOCAL_USER" --regid="$(id -g "$LOCAL_USER")" --init-groups \
    env -i PATH=/usr/sbin:/usr/bin:/bin MAIL_CONFIG="$T/conf" "$@"
}

# submit_local FILE [sendmail args...] — FILE through `/usr/sbin/sendmail -t -i` (what PHP's mail() runs)
# as LOCAL_USER; returns sendmail's exit status (0 even when the milter later refuses the message: postdrop
# has stored it by then). Its output: this call's in $T/sendmail.last, every call's in $T/sendmail.out.
submit_local() {
  local file=$1 rc
  shift
  as_local_user /usr/sbin/sendmail -t -i "$@" <"$file" >"$T/sendmail.last" 2>&1
  rc=$?
  cat "$T/sendmail.last" >>"$T/sendmail.out"
  return "$rc"
}

# local_msg FILE SUBJECT [HEADER...] — a message as a PHP script hands it to sendmail: the extra header
# lines first, then From/To/Subject and a body.
local_msg() {
  local file=$1 subj=$2
  shift 2
  {
    [ $# -eq 0 ] || printf '%s\n' "$@"
    printf 'From: Web App <webapp@example.org>\nTo: rcpt@example.net\nSubject: %s\n\nHello from sendmail, %s.\n' \
      "$subj" "$subj"
  } >"$file"
}

# send_local FIRST LAST [sendmail args...] — messages FIRST..LAST ($T/lN) submitted as LOCAL_USER.
send_local() {
  local i first=$1 last=$2
  shift 2
  for ((i = first; i <= last; i++)); do
    local_msg "$T/l$i" "local $i"
    submit_local "$T/l$i" "$@" || fail "sendmail of local message $i: exit $?: $(tail -3 "$T/sendmail.out")"
  done
}

maildrop_count() { find "$T/queue/maildrop" -type f 2>/dev/null | wc -l; }
pf_reload() {
  postfix -c "$T/conf" reload >/dev/null 2>&1 || fail "postfix reload"
  # The master re-reads its files at once; give the new pickup and cleanup-local a moment.
  sleep 1.5
}

start_sink() {
  # Runs as postfix after binding; each accepted message becomes one file in $T/sink.
  "$SMTP_SINK" -u postfix -d "$T/sink/msg-%H%M%S." -c "127.0.0.1:$SINK_PORT" 10 >"$T/sink.out" 2>&1 &
  SINK_PID=$!
  wait_until 5 port_open "$SINK_PORT" || fail "smtp-sink did not listen on $SINK_PORT"
}

start_postfix() {
  postfix -c "$T/conf" start >"$T/postfix-start.out" 2>&1 || fail "postfix start: $(cat "$T/postfix-start.out")"
  PF_STARTED=1
  wait_until 10 port_open "$SMTP_PORT" || fail "postfix smtpd not listening on $SMTP_PORT"
  wait_until 5 port_open "$SUB_PORT" || fail "postfix submission not listening on $SUB_PORT"
}

stop_postfix() {
  [ -n "$PF_STARTED" ] || return 0
  local pid
  pid=$(tr -d ' ' <"$T/queue/pid/master.pid" 2>/dev/null)
  postfix -c "$T/conf" stop >/dev/null 2>&1
  if [ -n "$pid" ]; then
    local i
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      postfix -c "$T/conf" abort >/dev/null 2>&1
      sleep 0.5
      kill -KILL "$pid" 2>/dev/null
    fi
  fi
  PF_STARTED=""
}

# A private redis-server on a unix socket in $T (for the store=redis scenarios); REDIS_PID is ours alone.
start_redis() {
  redis-server --port 0 --unixsocket "$T/redis.sock" --unixsocketperm 777 --save "" --appendonly no \
    --dir "$T" --daemonize no >"$T/redis.log" 2>&1 &
  REDIS_PID=$!
  wait_until 5 redis-cli -s "$T/redis.sock" ping || fail "redis-server did not start"
}
stop_redis() {
  [ -n "${REDIS_PID:-}" ] || return 0
  kill -TERM "$REDIS_PID" 2>/dev/null
  wait "$REDIS_PID" 2>/dev/null
  REDIS_PID=""
}

# teardown [STATUS] — stops what we started, removes $T and exits with STATUS (default: the last command's).
teardown() {
  local rc=${1:-$?}
  stop_postfix
  stop_rateguard
  stop_redis
  if [ -n "${PROXY_PID:-}" ]; then stop_pid "$PROXY_PID"; PROXY_PID=""; fi
  if [ -n "$SINK_PID" ]; then kill -TERM "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; fi
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ -n "${RG_E2E_KEEP:-}" ]; then log "kept $T"; else rm -rf "$T"; fi
  fi
  exit "$rc"
}

# Everything up, with rateguardd running LIMITS_TEXT. RG_SETUP_HOOK, if set, names a function run once $T and
# the sink exist and before rateguardd starts (it may set RG_EXTRA_SETTINGS from paths in $T).
setup_all() {
  trap teardown EXIT
  trap 'exit 130' INT TERM
  setup_dirs
  setup_sasl
  write_postfix_config
  start_sink
  if [ -n "${RG_WITH_REDIS:-}" ]; then
    start_redis
    RG_EXTRA_SETTINGS="store = redis
redis = $T/redis.sock"
  fi
  [ -z "${RG_SETUP_HOOK:-}" ] || "$RG_SETUP_HOOK"
  start_rateguard "$1"
  start_postfix
}

dump_diagnostics() {
  [ -n "$T" ] || return 0
  echo "---- rateguardd log" >&2; rg_log | tail -30 >&2
  echo "---- rateguardd stderr" >&2; tail -20 "$T/rg/stderr" >&2 2>/dev/null
  echo "---- postfix maillog" >&2; tail -40 "$T/maillog" >&2 2>/dev/null
  echo "---- queue" >&2; postqueue -c "$T/conf" -j >&2 2>/dev/null
  if [ -n "${RG_WITH_PICKUP:-}" ]; then
    echo "---- maildrop: $(maildrop_count) file(s); sendmail output" >&2; tail -5 "$T/sendmail.out" >&2 2>/dev/null
  fi
}

# ---------------------------------------------------------------- SMTP client and assertions

# send_mail PORT OUTFILE [swaks args...] — one transaction; the transcript lands in OUTFILE.
send_mail() {
  local port=$1 out=$2
  shift 2
  timeout 60 swaks --server "127.0.0.1:$port" --helo client.test --timeout 20 \
    --from sender@example.com --to rcpt@example.net "$@" >"$out" 2>&1
  return 0
}

send_auth() {
  local out=$1
  shift
  send_mail "$SUB_PORT" "$out" --auth PLAIN --auth-user "$SASL_USER" --auth-password "$SASL_PASS" "$@"
}

queued_id() { sed -n -E 's/^ *<- +250 .*queued as ([0-9A-F]+).*/\1/p' "$1" | head -1; }

expect_accepted() {
  local out=$1 what=$2 id
  id=$(queued_id "$out")
  [ -n "$id" ] || { cat "$out" >&2; fail "$what: not accepted (no 250 queued as)"; }
  echo "$id"
}

# send_accepted FIRST LAST [NOTE] — messages FIRST..LAST as the SASL user (transcripts $T/mN), each of them
# must be queued; a failure says "message N NOTE".
send_accepted() {
  local i
  for ((i = $1; i <= $2; i++)); do
    send_auth "$T/m$i"
    expect_accepted "$T/m$i" "message $i${3:+ $3}" >/dev/null
  done
}

# A 450 4.7.1 reply carrying our text (Postfix puts "<rcpt>: Recipient address rejected: " before it).
has_reply() { grep -F -- "$2" "$1" | grep -qE '^<\*\* +450 4\.7\.1 '; }
expect_rcpt_reply() {
  local out=$1 want=$2 what=$3
  has_reply "$out" "$want" || { cat "$out" >&2; fail "$what: expected 450 4.7.1 ... '$want'"; }
  grep -q 'queued as' "$out" && { cat "$out" >&2; fail "$what: message was queued despite '$want'"; }
  return 0
}

sink_count() { find "$T/sink" -type f | wc -l; }
wait_sink_count() {
  local n=$1
  wait_until 15 eval '[ "$(sink_count)" -ge "$n" ]' || fail "sink has $(sink_count) messages, want $n"
  sleep 0.3
  [ "$(sink_count)" -eq "$n" ] || fail "sink has $(sink_count) messages, want exactly $n"
}

# Queue as JSON lines (one per message); "queue_name" is active/deferred/hold/incoming/maildrop.
queue_json() { postqueue -c "$T/conf" -j 2>/dev/null; }
queue_ids_in() { queue_json | grep "\"queue_name\": *\"$1\"" | sed -n -E 's/.*"queue_id": *"([0-9A-F]+)".*/\1/p' | sort; }
queue_count() { queue_json | grep -c '"queue_id"'; }
wait_queue_empty() { wait_until 15 eval '[ "$(queue_count)" -eq 0 ]' || fail "queue not empty: $(queue_json)"; }

expect_log() {
  local pattern=$1 what=$2
  wait_until 15 grep -qE -- "$pattern" "$T/rg/rateguardd.log" || fail "$what: rateguardd log lacks /$pattern/"
}
log_count() { grep -cE -- "$1" "$T/rg/rateguardd.log" 2>/dev/null || true; }
