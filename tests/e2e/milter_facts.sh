#!/bin/bash
# tests/e2e/milter_facts.sh — establishes, on this machine's real Postfix, what a milter in
# non_smtpd_milters (mail from /usr/sbin/sendmail: postdrop -> pickup -> cleanup) and in smtpd_milters
# sees and how Postfix acts on its replies. Findings are written up in docs/postfix-milter-facts.md.
#
# Needs root (Postfix's master). Starts the e2e suite's PRIVATE Postfix instance (tests/e2e/lib.sh: config,
# queue, data dirs and maillog under /tmp, loopback ports only) without rateguardd's policy check, with
# tests/e2e/milter_probe.py as its non_smtpd_milters milter, and an smtp-sink as relayhost. Mail is
# submitted with `sendmail -t` as the unprivileged user nobody (lib.sh's submit_local). Teardown stops only
# the processes this script started (by PID / `postfix -c OURDIR stop`).
#
# postdrop is set-gid: with a non-default MAIL_CONFIG it insists that the DEFAULT main.cf
# (/etc/postfix/main.cf) lists the directory in alternate_config_directories. To leave /etc/postfix
# alone, each submission runs in a private mount namespace (unshare -m) in which a copy of /etc/postfix
# with such a main.cf is bind-mounted over /etc/postfix; nothing outside that one process sees it.
#
# Usage: tests/e2e/milter_facts.sh [SCENARIO...]   (default: all; see the bottom of this file)
#        UID_CHROOT=y runs the uid scenario's pickup and cleanup-local chrooted (Debian's stock setting).
#        LOCAL_USER=NAME submits as NAME (default nobody); PICKUP_WAKEUP=N, pickup's wakeup (default 10 s).
#        RG_E2E_KEEP=1 keeps the temp dir; evidence is copied to $MF_OUT (default /tmp/milter-facts).

set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RG_DAEMON=/bin/false # lib.sh wants one; no rateguardd is started here
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PROBE="$HERE/milter_probe.py"
PROBE_PID=""
MF_OUT=${MF_OUT:-/tmp/milter-facts}
PICKUP_WAKEUP=${PICKUP_WAKEUP:-10}
# lib.sh's instance without the policy check (nothing listens on its port), pickup waking every
# PICKUP_WAKEUP seconds; setup adds the milter.
RG_NO_POLICY=1
RG_STOCK_PICKUP_WAKEUP=$PICKUP_WAKEUP

note() { printf '\n=== %s\n' "$*" | tee -a "$MF_OUT/summary.txt" >&2; }
say() { printf '%s\n' "$*" | tee -a "$MF_OUT/summary.txt" >&2; }

# ---------------------------------------------------------------- the probe

# probe_start NAME [probe args...] — a fresh probe logging to $MF_OUT/NAME.jsonl
probe_start() {
  local name=$1
  shift
  PROBE_LOG="$MF_OUT/$name.jsonl"
  : >"$PROBE_LOG"
  python3 "$PROBE" --listen "inet:127.0.0.1:$MILTER_PORT" --log "$PROBE_LOG" "$@" 2>>"$MF_OUT/probe.stderr" &
  PROBE_PID=$!
  wait_until 5 port_open "$MILTER_PORT" || fail "milter probe did not listen on $MILTER_PORT"
}

probe_stop() {
  [ -n "$PROBE_PID" ] || return 0
  stop_pid "$PROBE_PID"
  PROBE_PID=""
}

probe_count() { grep -c "\"cmd\": \"$1\"" "$PROBE_LOG" 2>/dev/null || true; }
wait_probe() { wait_until "${3:-20}" eval '[ "$(probe_count '"$1"')" -ge '"$2"' ]'; }

# ---------------------------------------------------------------- Postfix instance

pf() { postconf -c "$T/conf" "$@"; }

# submit FILE [sendmail args...] — submit_local (lib.sh), and a failed sendmail ends the run.
submit() { submit_local "$@" || fail "sendmail of $1: exit $?: $(cat "$T/sendmail.last")"; }

# A message as a PHP script might write it: forged Received/X-RG-Uid headers, two recipients.
make_msg() {
  local file=$1 subj=$2
  cat >"$file" <<EOF
X-RG-Uid: 0 id=FORGED1
Received: by evil.example (Postfix, from userid 0)
	id FORGED2; Thu,  3 Dec 2026 08:00:00 +0000 (UTC)
From: "Web App" <webapp@example.org>
To: rcpt1@example.net
Cc: rcpt2@example.net
Subject: $subj

Hello from sendmail, $subj.
EOF
}

maillog() { cat "$T/maillog" 2>/dev/null; }
maildrop_files() { find "$T/queue/maildrop" -type f 2>/dev/null | sort; }
empty_queues() {
  postsuper -c "$T/conf" -d ALL >/dev/null 2>&1
  find "$T/queue/maildrop" -type f -delete 2>/dev/null
}
# Evidence: the log lines added since mark_log.
mark_log() { LOG_MARK=$(wc -l <"$T/maillog" 2>/dev/null || echo 0); }
new_log() { tail -n +"$((LOG_MARK + 1))" "$T/maillog"; }
save_log() { new_log >"$MF_OUT/$1.maillog"; }

my_teardown() {
  local rc=$?
  probe_stop
  if [ -n "$T" ]; then
    [ ! -f "$T/maillog" ] || cp "$T/maillog" "$MF_OUT/full.maillog"
    [ ! -f "$T/sendmail.out" ] || cp "$T/sendmail.out" "$T/sendmail.last" "$MF_OUT/"
  fi
  teardown "$rc"
}

setup() {
  rm -rf "$MF_OUT" && mkdir -p "$MF_OUT"
  : >"$MF_OUT/summary.txt"
  trap my_teardown EXIT
  trap 'exit 130' INT TERM
  setup_dirs
  setup_sasl
  RG_MAIN_CF_EXTRA="myorigin = \$myhostname
# The milter under test.
non_smtpd_milters = inet:127.0.0.1:$MILTER_PORT
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 10s
milter_content_timeout = 10s"
  write_postfix_config
  write_etcpf
  start_sink
  probe_start startup
  start_postfix
  say "postfix: $(pf -h mail_version), milter probe on 127.0.0.1:$MILTER_PORT, temp dir $T"
}

# ---------------------------------------------------------------- scenarios

# 1+2: what cleanup sends for non-SMTP mail; two messages -> two milter connections?
scn_basic() {
  note "basic: events, macros, connections (probe answers continue)"
  probe_stop
  probe_start basic
  mark_log
  make_msg "$T/m1" "basic one"
  make_msg "$T/m2" "basic two"
  submit "$T/m1"
  wait_probe eom 1 || fail "no EOM seen"
  submit "$T/m2"
  wait_probe eom 2 || fail "no second EOM"
  wait_sink_count 2
  save_log basic
  say "milter connections (optneg): $(probe_count optneg), eom: $(probe_count eom), rcpt: $(probe_count rcpt)"
  say "sequence (first milter connection): $(python3 -c '
import json,sys
out=[]
first=None
for l in open(sys.argv[1]):
    r=json.loads(l)
    if "cmd" not in r: continue
    first=first or r["conn"]
    if r["conn"]!=first: continue
    c=r["cmd"]
    if c=="macro": c="macro[%s]:%s"%(r["stage"],",".join(r["macros"]))
    if c=="header": c="header[%s]"%r["name"]
    out.append(c)
print(" ".join(out))' "$PROBE_LOG")"
}

# 1b: which macro names cleanup resolves at all: ask for many at every stage.
scn_macros() {
  note "macros: every stage asked for a long list of names"
  local all='j v _ {daemon_name} {daemon_addr} {daemon_port} {if_name} {if_addr} {client_addr} {client_name} {client_port} {client_ptr} {client_resolve} {client_connections} i {auth_type} {auth_authen} {auth_author} {auth_ssf} {mail_addr} {mail_host} {mail_mailer} {rcpt_addr} {rcpt_host} {rcpt_mailer} {uid} {login} {user} {sasl_username} {tls_version} {cert_subject} {rg_source}'
  pf -e "milter_connect_macros=$all" "milter_helo_macros=$all" "milter_mail_macros=$all" \
    "milter_rcpt_macros=$all" "milter_data_macros=$all" "milter_end_of_header_macros=$all" \
    "milter_end_of_data_macros=$all" "milter_unknown_command_macros=$all"
  pf_reload
  probe_stop
  probe_start macros
  mark_log
  make_msg "$T/m3" "macros"
  submit "$T/m3"
  wait_probe eom 1 || fail "no EOM"
  save_log macros
  say "$(python3 -c '
import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get("cmd")=="macro": print("  %-8s %s" % (r["stage"], json.dumps(r["macros"])))' "$PROBE_LOG")"
  # Per-service defaults: milter_macro_defaults supplies a value where cleanup has none.
  pf -X milter_connect_macros milter_helo_macros milter_mail_macros milter_rcpt_macros milter_data_macros \
    milter_end_of_header_macros milter_end_of_data_macros milter_unknown_command_macros
  pf_reload
  wait_queue_empty
}

scn_quarantine() {
  note "quarantine at EOM"
  probe_stop
  probe_start quarantine --reply eom=quarantine:rateguard-limit
  mark_log
  make_msg "$T/m4" "quarantine"
  submit "$T/m4"
  wait_probe eom 1 || fail "no EOM"
  wait_until 10 eval 'queue_json | grep -q "\"queue_name\": *\"hold\""' || fail "not held"
  save_log quarantine
  queue_json >"$MF_OUT/quarantine.queue.json"
  say "queue: $(cat "$MF_OUT/quarantine.queue.json")"
  grep -E 'milter-hold|hold' "$MF_OUT/quarantine.maillog" | tee -a "$MF_OUT/summary.txt" >&2
  empty_queues
}

scn_eom5xx() {
  note "5xx at EOM"
  probe_stop
  probe_start eom5xx --reply 'eom=reply:550 5.7.1 rateguard: limit exceeded'
  mark_log
  local before
  before=$(sink_count)
  make_msg "$T/m5" "eom5xx"
  submit "$T/m5"
  wait_probe eom 1 || fail "no EOM"
  wait_sink_count $((before + 1))
  sleep 1
  save_log eom5xx
  grep -E 'milter-reject|bounce|from=<>|status=' "$MF_OUT/eom5xx.maillog" | tee -a "$MF_OUT/summary.txt" >&2
  local b
  b=$(ls -t "$T"/sink/* | head -1)
  cp "$b" "$MF_OUT/eom5xx.bounce.eml"
  say "bounce in sink: $(grep -m3 -E '^(Subject|To|From):' "$b" | tr '\n' ' ')"
  say "maildrop after: $(maildrop_count) file(s); milter connections: $(probe_count optneg)"
  wait_queue_empty
}

scn_eom4xx() {
  note "4xx at EOM (pickup wakeup ${PICKUP_WAKEUP}s)"
  probe_stop
  probe_start eom4xx --reply 'eom=reply:451 4.7.1 rateguard: slow down'
  mark_log
  make_msg "$T/m6" "eom4xx"
  submit "$T/m6"
  wait_probe eom 1 || fail "no EOM"
  maildrop_files >"$MF_OUT/eom4xx.maildrop.1"
  ls -l --time-style=+%T "$T/queue/maildrop" >>"$MF_OUT/eom4xx.maildrop.1"
  sleep $((PICKUP_WAKEUP * 3 + 3))
  maildrop_files >"$MF_OUT/eom4xx.maildrop.2"
  say "EOMs seen in $((PICKUP_WAKEUP * 3 + 3))s: $(probe_count eom); queue IDs: $(python3 -c '
import json,sys
ids=[]
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get("cmd")=="macro" and r["stage"]=="mail": ids.append(r["macros"].get("i"))
print(" ".join(i or "-" for i in ids))' "$PROBE_LOG")"
  say "maildrop file before/after: $(cat "$MF_OUT/eom4xx.maildrop.1" | head -1) / $(cat "$MF_OUT/eom4xx.maildrop.2")"
  # Now let it through: the same maildrop file is delivered at the next wakeup.
  probe_stop
  local before
  before=$(sink_count)
  probe_start eom4xx-then-continue
  wait_sink_count $((before + 1))
  save_log eom4xx
  grep -E 'milter-reject|pickup|uid=' "$MF_OUT/eom4xx.maillog" | head -20 | tee -a "$MF_OUT/summary.txt" >&2
  say "after probe continue: maildrop $(maildrop_count) file(s), delivered."
}

# reject/tempfail/4xx/5xx at RCPT
scn_rcpt() {
  local act
  for act in reject tempfail 'reply:550 5.7.1 no such luck' 'reply:450 4.7.1 later'; do
    local tag
    tag=rcpt-$(printf '%s' "$act" | tr -c 'a-z0-9' '_' | cut -c1-14)
    note "RCPT answered: $act"
    probe_stop
    probe_start "$tag" --reply "rcpt=$act"
    mark_log
    make_msg "$T/m7" "$tag"
    submit "$T/m7"
    wait_probe rcpt 1 || fail "no RCPT"
    sleep 2
    save_log "$tag"
    grep -E 'milter|warning' "$MF_OUT/$tag.maillog" | tee -a "$MF_OUT/summary.txt" >&2
    say "events seen: $(python3 -c '
import json,sys
print(" ".join(r["cmd"] for r in map(json.loads, open(sys.argv[1])) if "cmd" in r and r["cmd"]!="macro"))' "$PROBE_LOG")"
    say "maildrop: $(maildrop_count) file(s)"
    empty_queues
  done
}

scn_down() {
  local mode
  for mode in accept tempfail; do
    note "milter down, milter_default_action = $mode"
    probe_stop
    pf -e "milter_default_action=$mode"
    pf_reload
    mark_log
    local before
    before=$(sink_count)
    make_msg "$T/m8" "down-$mode"
    submit "$T/m8"
    sleep 4
    save_log "down-$mode"
    grep -E 'milter|warning|status=' "$MF_OUT/down-$mode.maillog" | tee -a "$MF_OUT/summary.txt" >&2
    say "sink: $(($(sink_count) - before)) new message(s); maildrop: $(maildrop_count) file(s)"
    if [ "$mode" = tempfail ]; then
      probe_start down-then-up
      wait_sink_count $((before + 1))
      say "after the milter came back: delivered at the next pickup wakeup; maildrop $(maildrop_count)"
      new_log >"$MF_OUT/down-$mode.maillog"
    fi
  done
  pf -e milter_default_action=tempfail
  pf_reload
}

# 3b: a file deferred at EOM is offered again at every pickup pass, and every submission triggers one.
scn_trigger() {
  note "4xx at EOM: re-offers triggered by other submissions"
  empty_queues
  probe_stop
  probe_start trigger --reply 'eom=reply:451 4.7.1 rateguard: slow down'
  mark_log
  make_msg "$T/mA" "trigger-A"
  submit "$T/mA"
  wait_probe eom 1 || fail "no EOM"
  local i
  for i in 1 2 3 4; do
    make_msg "$T/mB$i" "trigger-B$i"
    submit "$T/mB$i"
    sleep 0.5
  done
  sleep 1
  save_log trigger
  say "offers of message A (subject trigger-A), by time: $(python3 -c '
import json,sys,time
for r in map(json.loads, open(sys.argv[1])):
    if r.get("cmd")=="header" and r["name"]=="Subject":
        print("  %s %s conn=%d" % (time.strftime("%H:%M:%S", time.gmtime(r["t"])) + ("%.3f" % (r["t"] % 1))[1:], r["value"], r["conn"]))' "$PROBE_LOG")"
  say "maildrop: $(maildrop_count) file(s)"
  empty_queues
}

# 4(d): the envelope sender is whatever the script says, unless local_login_sender_maps restricts it.
scn_sender() {
  note "sendmail -f: envelope sender forgery, and local_login_sender_maps"
  probe_stop
  probe_start sender
  mark_log
  local before
  before=$(sink_count)
  make_msg "$T/m10" "sender-forged"
  submit_local "$T/m10" -f ceo@example.org || fail "sendmail -f refused with default settings"
  say "default (static:*): sendmail -f ceo@example.org exit 0"
  wait_probe eom 1 || fail "no EOM"
  wait_sink_count $((before + 1))
  printf '%s\n' '/^(.+)$/ $1, $1@mx.rg-e2e.test' >"$T/conf/login_senders"
  pf -e "local_login_sender_maps = inline:{ { root = * }, { postfix = * } }, regexp:$T/conf/login_senders"
  make_msg "$T/m11" "sender-restricted"
  if submit_local "$T/m11" -f ceo@example.org; then
    say "local_login_sender_maps: sendmail -f ceo@example.org was ACCEPTED"
  else
    say "local_login_sender_maps: sendmail -f ceo@example.org refused, exit $?: $(cat "$T/sendmail.last")"
  fi
  submit_local "$T/m11" -f nobody@mx.rg-e2e.test && say "local_login_sender_maps: -f nobody@mx.rg-e2e.test accepted"
  submit_local "$T/m11" && say "local_login_sender_maps: no -f (sender = login name) accepted"
  wait_probe eom 3 || fail "no EOM"
  sleep 1
  save_log sender
  grep -E 'uid=|postdrop|sendmail|not authorized|warning' "$MF_OUT/sender.maillog" | tee -a "$MF_OUT/summary.txt" >&2
  say "milter MAIL: $(python3 -c '
import json,sys
print(" ".join(r["args"][0] for r in map(json.loads, open(sys.argv[1])) if r.get("cmd")=="mail"))' "$PROBE_LOG")"
  pf -X local_login_sender_maps
  wait_queue_empty
}

# 1c: can a local user inject the attributes behind {auth_authen} / client macros? Talk to postdrop
# directly (as sendmail does) with extra named-attribute records in the envelope.
scn_attrs() {
  note "postdrop: forged sasl_username / client attributes in the envelope"
  probe_stop
  probe_start attrs
  mark_log
  python3 - >"$T/attrs.rec" <<'PY'
import sys
def rec(t, data=b""):
    n = len(data); out = bytearray(t.encode())
    while True:
        b = n & 0x7f; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: break
    return bytes(out) + data
r = [rec("A", b"sasl_username=alice@rg-e2e.test"), rec("A", b"sasl_method=PLAIN"),
     rec("A", b"client_address=192.0.2.7"), rec("A", b"client_name=mail.example.com"),
     rec("A", b"client_address_type=2"), rec("A", b"helo_name=forged.example"),
     rec("S", b"nobody"), rec("R", b"rcpt1@example.net"), rec("M"),
     rec("N", b"Subject: attrs"), rec("N", b""), rec("N", b"forged attributes"), rec("X"), rec("E")]
sys.stdout.buffer.write(b"".join(r))
PY
  as_local_user /usr/sbin/postdrop -r <"$T/attrs.rec" >"$MF_OUT/attrs.postdrop.out" 2>&1
  say "postdrop exit $?"
  wait_probe eom 1 || fail "no EOM"
  sleep 1
  save_log attrs
  grep -E 'postdrop|warning' "$MF_OUT/attrs.maillog" | tee -a "$MF_OUT/summary.txt" >&2
  say "$(python3 -c '
import json,sys
for r in map(json.loads, open(sys.argv[1])):
    c=r.get("cmd")
    if c=="macro" and r["stage"] in ("connect","helo","mail"): print("  macro %-8s %s" % (r["stage"], json.dumps(r["macros"])))
    elif c in ("connect","helo","mail"): print("  %s %s" % (c, json.dumps({k:v for k,v in r.items() if k not in ("conn","seq","t","cmd","reply")})))' "$PROBE_LOG")"
  wait_queue_empty
}

# 4: the submitting uid, from pickup's own Received: header, via a pickup-only cleanup.
scn_uid() {
  note "uid: pickup -> cleanup-local with header_checks PREPEND"
  cat >"$T/conf/pickup_header_checks" <<'EOF'
# pickup's own header is always the first one cleanup sees:
#   Received: by HOST (Postfix, from userid UID)\n\tid QUEUEID; DATE
# Copy the uid (and the queue ID, which the milter can compare with macro i) into a header placed
# before it. PREPENDed text is not inspected again, so the IGNORE rule below removes only copies
# that came with the message.
/^Received: by [^ ]+ \(Postfix, from userid ([0-9]+)\)[[:space:]]+id ([0-9A-Za-z]+);/ PREPEND X-RG-Submitter: uid=$1 id=$2
/^X-RG-Submitter:/ IGNORE
EOF
  pf -e non_smtpd_milters=
  cat >>"$T/conf/master.cf" <<EOF
cleanup-local unix n - ${UID_CHROOT:-n} - 0 cleanup
  -o header_checks=regexp:$T/conf/pickup_header_checks
  -o mime_header_checks=
  -o nested_header_checks=
  -o non_smtpd_milters=inet:127.0.0.1:$MILTER_PORT
  -o milter_macro_daemon_name=rg-pickup
  -o milter_macro_defaults=rg_source=pickup
  -o milter_connect_macros=j,{daemon_name},v,{rg_source}
EOF
  sed -i "s|^pickup .*|pickup    unix  n - ${UID_CHROOT:-n} $PICKUP_WAKEUP   1 pickup\n  -o cleanup_service_name=cleanup-local|" "$T/conf/master.cf"
  pf_reload
  probe_stop
  probe_start uid
  mark_log
  local before
  before=$(sink_count)
  cat >"$T/m9" <<'EOF'
X-RG-Submitter: uid=0 id=FORGED0
Received: by mx.rg-e2e.test (Postfix, from userid 0)
	id FORGED1; Thu,  3 Dec 2026 08:00:00 +0000 (UTC)
From: root@example.org
To: rcpt1@example.net
Subject: uid

forged uid headers above.
EOF
  submit "$T/m9"
  wait_probe eom 1 || fail "no EOM"
  wait_sink_count $((before + 1))
  save_log uid
  grep -E 'prepend|ignore|uid=' "$MF_OUT/uid.maillog" | tee -a "$MF_OUT/summary.txt" >&2
  say "milter saw headers: $(python3 -c '
import json,sys
for r in map(json.loads, open(sys.argv[1])):
    if r.get("cmd")=="header": print("   %s: %s" % (r["name"], r["value"].replace("\n","\\n")))
    if r.get("cmd")=="macro" and r["stage"] in ("connect","mail"): print("   macros[%s] %s" % (r["stage"], json.dumps(r["macros"])))' "$PROBE_LOG")"
  cp "$(ls -t "$T"/sink/* | head -1)" "$MF_OUT/uid.delivered.eml"
  say "check: $(python3 -c '
import json,sys
qid=None; first=None
for r in map(json.loads, open(sys.argv[1])):
    if r.get("cmd")=="macro" and "i" in r["macros"]: qid=qid or r["macros"]["i"]
    if r.get("cmd")=="header" and first is None: first=(r["name"], r["value"])
ok = first and first[0]=="X-RG-Submitter" and first[1].endswith(" id=%s" % qid)
print("first header the milter sees: %s: %s; macro i=%s -> %s" % (first[0], first[1], qid, "TRUSTED" if ok else "NOT TRUSTED"))
sys.exit(0 if ok else 1)' "$PROBE_LOG")" || fail "uid recipe: first header check failed"
  say "delivered message starts with:"
  sed -n '/^X-RG-Submitter/,/^Subject/p' "$MF_OUT/uid.delivered.eml" | tee -a "$MF_OUT/summary.txt" >&2
  # The SMTP path does not go through cleanup-local: no header added there.
}

# 5: the same milter in smtpd_milters, SMTP AUTH submission.
scn_smtp() {
  note "smtpd_milters: SMTP AUTH submission"
  pf -e "smtpd_milters=inet:127.0.0.1:$MILTER_PORT"
  pf_reload
  probe_stop
  probe_start smtp
  mark_log
  local before
  before=$(sink_count)
  send_auth "$MF_OUT/smtp.swaks" --to rcpt1@example.net,rcpt2@example.net
  grep -q 'queued as' "$MF_OUT/smtp.swaks" || fail "swaks: $(tail -5 "$MF_OUT/smtp.swaks")"
  wait_probe eom 1 || fail "no EOM"
  wait_sink_count $((before + 1))
  save_log smtp
  say "$(python3 -c '
import json,sys
for r in map(json.loads, open(sys.argv[1])):
    c=r.get("cmd")
    if c=="macro": print("  macro %-8s %s" % (r["stage"], json.dumps(r["macros"])))
    elif c in ("connect","helo","mail","rcpt"): print("  %s %s" % (c, json.dumps({k:v for k,v in r.items() if k not in ("conn","seq","t","cmd")})))' "$PROBE_LOG")"
  pf -e smtpd_milters=
  pf_reload
}

# 5b: with smtpd_milters empty, does SMTP mail reach a main.cf-wide non_smtpd_milters?
scn_smtp_nonsmtpd() {
  note "SMTP AUTH submission, smtpd_milters empty, non_smtpd_milters set in main.cf"
  pf -e "non_smtpd_milters=inet:127.0.0.1:$MILTER_PORT" smtpd_milters=
  pf_reload
  probe_stop
  probe_start smtp-nonsmtpd
  mark_log
  local before
  before=$(sink_count)
  send_auth "$MF_OUT/smtp-nonsmtpd.swaks" --to rcpt1@example.net
  grep -q 'queued as' "$MF_OUT/smtp-nonsmtpd.swaks" || fail "swaks: $(tail -5 "$MF_OUT/smtp-nonsmtpd.swaks")"
  wait_sink_count $((before + 1))
  save_log smtp-nonsmtpd
  say "milter connections: $(probe_count optneg)"
  say "$(python3 -c '
import json,sys
for r in map(json.loads, open(sys.argv[1])):
    c=r.get("cmd")
    if c=="macro" and r["stage"] in ("connect","mail"): print("  macro %-8s %s" % (r["stage"], json.dumps(r["macros"])))
    elif c in ("connect","helo","mail"): print("  %s %s" % (c, json.dumps({k:v for k,v in r.items() if k not in ("conn","seq","t","cmd","reply")})))' "$PROBE_LOG")"
  pf -e non_smtpd_milters=
  pf_reload
}

# ---------------------------------------------------------------- main

[ "$(id -u)" -eq 0 ] || { echo "needs root (Postfix master)" >&2; exit 2; }
missing=$(pickup_prereqs)
[ -z "$missing" ] || { echo "sendmail as $LOCAL_USER in a private mount namespace needs:$missing" >&2; exit 2; }
setup
if [ $# -eq 0 ]; then
  set -- basic macros quarantine eom5xx eom4xx trigger rcpt down sender attrs uid smtp smtp_nonsmtpd
fi
for s in "$@"; do "scn_$s"; done
note "done; evidence in $MF_OUT"
