#!/usr/bin/env python3
"""milter_probe.py - a recording milter (protocol version 6) for finding out what Postfix sends.

Standard library only. Listens on inet:HOST:PORT (loopback only) or unix:PATH, negotiates version 6,
asks for SMFIF_QUARANTINE (plus SMFIF_ADDHDRS and, with --symlist, SMFIF_SETSYMLIST) and skips no
event (protocol flags 0: every event is sent and every event gets a reply). Each packet received is
written as one JSON line to --log: connection number, sequence, command, decoded payload (macros
with their stage), and the reply the probe sent.

Replies are chosen per event with --reply EVENT=ACTION (repeatable):
  EVENT   connect helo mail rcpt data header eoh body eom unknown
  ACTION  continue | accept | reject | tempfail | discard | quarantine[:REASON] | reply:CODE TEXT
          (reply: sends 'y' with e.g. "550 5.7.1 go away"; Postfix wants a 4xx or 5xx code)
  --reply-once EVENT=ACTION applies ACTION to the first such event only, continue afterwards.
Examples:
  milter_probe.py --listen inet:127.0.0.1:10099 --log /tmp/p.jsonl --reply eom=quarantine:rate
  milter_probe.py --listen inet:127.0.0.1:10099 --log /tmp/p.jsonl --reply 'eom=reply:451 4.7.1 slow down'
  milter_probe.py ... --symlist 'mail=i {auth_authen} {uid}'   # ask Postfix for other macros (SETSYMLIST)
"""

import argparse
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

# Commands (MTA -> filter)
CMD_NAMES = {
    'A': 'abort', 'B': 'body', 'C': 'connect', 'D': 'macro', 'E': 'eom', 'H': 'helo',
    'L': 'header', 'M': 'mail', 'N': 'eoh', 'O': 'optneg', 'Q': 'quit', 'R': 'rcpt',
    'T': 'data', 'U': 'unknown', 'K': 'quit_nc',
}
# Event names used by --reply, by command letter
EVENT_OF = {'C': 'connect', 'H': 'helo', 'M': 'mail', 'R': 'rcpt', 'T': 'data', 'L': 'header',
            'N': 'eoh', 'B': 'body', 'E': 'eom', 'U': 'unknown'}
# Commands that get no reply
NO_REPLY = {'A', 'D', 'Q', 'K'}

SMFIF = {'ADDHDRS': 0x1, 'CHGBODY': 0x2, 'ADDRCPT': 0x4, 'DELRCPT': 0x8, 'CHGHDRS': 0x10,
         'QUARANTINE': 0x20, 'CHGFROM': 0x40, 'ADDRCPT_PAR': 0x80, 'SETSYMLIST': 0x100}
SMFIP = {'NOCONNECT': 0x1, 'NOHELO': 0x2, 'NOMAIL': 0x4, 'NORCPT': 0x8, 'NOBODY': 0x10,
         'NOHDRS': 0x20, 'NOEOH': 0x40, 'NR_HDR': 0x80, 'NOUNKNOWN': 0x100, 'NODATA': 0x200,
         'SKIP': 0x400, 'RCPT_REJ': 0x800, 'NR_CONN': 0x1000, 'NR_HELO': 0x2000,
         'NR_MAIL': 0x4000, 'NR_RCPT': 0x8000, 'NR_DATA': 0x10000, 'NR_UNKN': 0x20000,
         'NR_EOH': 0x40000, 'NR_BODY': 0x80000, 'HDR_LEADSPC': 0x100000}
# SETSYMLIST stages
STAGES = {'connect': 0, 'helo': 1, 'mail': 2, 'rcpt': 3, 'data': 4, 'eom': 5, 'eoh': 6}

MAX_PACKET = 1 << 20


def flag_names(value, table):
    names = [n for n, bit in table.items() if value & bit]
    rest = value & ~sum(table.values())
    if rest:
        names.append('0x%x' % rest)
    return names


def text(b):
    return b.decode('utf-8', 'backslashreplace')


def split_nul(b):
    """NUL-terminated strings -> list (a trailing NUL ends the last one)."""
    if b.endswith(b'\0'):
        b = b[:-1]
    return [text(x) for x in b.split(b'\0')] if b else []


def packet(cmd, payload=b''):
    return struct.pack('!I', len(payload) + 1) + cmd.encode() + payload


def parse_action(spec):
    """'quarantine:why' -> (letter, payload, description)."""
    name, _, arg = spec.partition(':')
    if name == 'continue':
        return ('c', b'', 'continue')
    if name == 'accept':
        return ('a', b'', 'accept')
    if name == 'reject':
        return ('r', b'', 'reject')
    if name == 'tempfail':
        return ('t', b'', 'tempfail')
    if name == 'discard':
        return ('d', b'', 'discard')
    if name == 'quarantine':
        return ('q', (arg or 'milter_probe').encode() + b'\0', 'quarantine ' + (arg or 'milter_probe'))
    if name == 'reply':
        if not arg or arg[0] not in '45':
            raise ValueError('reply needs "4xx ..." or "5xx ..." text: %r' % spec)
        return ('y', arg.encode() + b'\0', 'reply ' + arg)
    raise ValueError('unknown action %r' % spec)


class Probe:
    def __init__(self, args):
        self.log_path = args.log
        self.lock = threading.Lock()
        self.conn_seq = 0
        self.replies = {}
        self.once = {}
        for spec in args.reply or []:
            ev, _, act = spec.partition('=')
            self.replies[ev] = parse_action(act)
        for spec in args.reply_once or []:
            ev, _, act = spec.partition('=')
            self.once[ev] = parse_action(act)
        self.symlist = []
        for spec in args.symlist or []:
            st, _, names = spec.partition('=')
            self.symlist.append((STAGES[st], names))
        self.add_header = args.add_header

    def next_conn(self):
        with self.lock:
            self.conn_seq += 1
            return self.conn_seq

    def log(self, rec):
        rec['t'] = round(time.time(), 3)
        line = json.dumps(rec, sort_keys=False)
        with self.lock:
            with open(self.log_path, 'a') as f:
                f.write(line + '\n')

    def reply_for(self, event):
        with self.lock:
            if event in self.once:
                return self.once.pop(event)
        return self.replies.get(event, ('c', b'', 'continue'))


def decode(cmd, data):
    """Decoded payload of one MTA->filter packet, as a dict."""
    if cmd == 'O':
        if len(data) < 12:
            return {'error': 'short optneg', 'raw': data.hex()}
        ver, act, proto = struct.unpack('!III', data[:12])
        return {'version': ver, 'actions': flag_names(act, SMFIF), 'actions_hex': '0x%x' % act,
                'protocol': flag_names(proto, SMFIP), 'protocol_hex': '0x%x' % proto}
    if cmd == 'D':
        if not data:
            return {'error': 'empty macro packet'}
        stage_cmd = chr(data[0])
        items = split_nul(data[1:])
        macros = {}
        for i in range(0, len(items) - 1, 2):
            macros[items[i]] = items[i + 1]
        return {'stage': CMD_NAMES.get(stage_cmd, stage_cmd), 'macros': macros}
    if cmd == 'C':
        nul = data.find(b'\0')
        host = text(data[:nul])
        rest = data[nul + 1:]
        fam = chr(rest[0]) if rest else ''
        out = {'hostname': host, 'family': fam}
        if fam in ('4', '6') and len(rest) >= 3:
            out['port'] = struct.unpack('!H', rest[1:3])[0]
            out['address'] = split_nul(rest[3:])[0] if rest[3:] else ''
        elif fam in ('L', 'U'):
            out['path'] = split_nul(rest[3:])[0] if rest[3:] else ''
        return out
    if cmd in ('H',):
        return {'helo': split_nul(data)[0] if data else ''}
    if cmd in ('M', 'R'):
        args = split_nul(data)
        return {'args': args}
    if cmd == 'L':
        items = split_nul(data)
        return {'name': items[0] if items else '', 'value': items[1] if len(items) > 1 else ''}
    if cmd == 'B':
        return {'len': len(data), 'chunk': text(data)}
    if cmd == 'U':
        return {'line': split_nul(data)}
    return {'len': len(data)} if data else {}


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.probe = self.server.probe
        self.conn = self.probe.next_conn()
        self.seq = 0
        self.peer = str(self.client_address)

    def read_exact(self, n):
        buf = b''
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self):
        self.probe.log({'conn': self.conn, 'event': 'accept', 'peer': self.peer})
        while True:
            hdr = self.read_exact(4)
            if hdr is None:
                self.probe.log({'conn': self.conn, 'event': 'eof'})
                return
            (n,) = struct.unpack('!I', hdr)
            if n < 1 or n > MAX_PACKET:
                self.probe.log({'conn': self.conn, 'event': 'bad_length', 'len': n})
                return
            body = self.read_exact(n)
            if body is None:
                self.probe.log({'conn': self.conn, 'event': 'eof_in_packet'})
                return
            cmd, data = chr(body[0]), body[1:]
            self.seq += 1
            rec = {'conn': self.conn, 'seq': self.seq, 'cmd': CMD_NAMES.get(cmd, cmd)}
            rec.update(decode(cmd, data))
            out = []
            if cmd == 'O':
                actions = SMFIF['QUARANTINE']
                if self.probe.add_header:
                    actions |= SMFIF['ADDHDRS']
                extra = b''
                if self.probe.symlist:
                    actions |= SMFIF['SETSYMLIST']
                    for stage, names in self.probe.symlist:
                        extra += struct.pack('!I', stage) + names.encode() + b'\0'
                out.append(('O', struct.pack('!III', 6, actions, 0) + extra,
                            'optneg version=6 actions=%s protocol=0' % '|'.join(flag_names(actions, SMFIF))))
            elif cmd in NO_REPLY:
                pass
            elif cmd == 'E':
                letter, payload, desc = self.probe.reply_for('eom')
                if self.probe.add_header:
                    name, _, value = self.probe.add_header.partition(':')
                    out.append(('h', name.encode() + b'\0' + value.strip().encode() + b'\0',
                                'addheader ' + self.probe.add_header))
                if letter == 'q':  # quarantine is a modification action; EOM still needs a final reply
                    out.append(('q', payload, desc))
                    out.append(('c', b'', 'continue'))
                else:
                    out.append((letter, payload, desc))
            else:
                letter, payload, desc = self.probe.reply_for(EVENT_OF.get(cmd, cmd))
                out.append((letter, payload, desc))
            if out:
                rec['reply'] = [d for _, _, d in out]
            self.probe.log(rec)
            for letter, payload, _ in out:
                self.request.sendall(packet(letter, payload))
            if cmd == 'Q':
                return


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--listen', required=True, help='inet:127.0.0.1:PORT or unix:/path')
    ap.add_argument('--log', required=True, help='JSON lines output file (appended)')
    ap.add_argument('--reply', action='append', metavar='EVENT=ACTION')
    ap.add_argument('--reply-once', action='append', metavar='EVENT=ACTION')
    ap.add_argument('--symlist', action='append', metavar='STAGE=NAMES',
                    help='request these macros at STAGE (connect helo mail rcpt data eoh eom)')
    ap.add_argument('--add-header', metavar='NAME: VALUE', help='add this header at EOM (SMFIF_ADDHDRS)')
    ap.add_argument('--pidfile')
    args = ap.parse_args()
    try:
        probe = Probe(args)
    except (ValueError, KeyError) as e:
        ap.error(str(e))

    kind, _, where = args.listen.partition(':')
    if kind == 'inet':
        host, _, port = where.rpartition(':')
        if host not in ('127.0.0.1', '::1', 'localhost'):
            ap.error('loopback addresses only')
        server = TCPServer((host, int(port)), Handler)
    elif kind == 'unix':
        if os.path.exists(where):
            os.unlink(where)
        server = UnixServer(where, Handler)
        os.chmod(where, 0o666)
    else:
        ap.error('--listen inet:HOST:PORT or unix:PATH')
    server.probe = probe
    if args.pidfile:
        with open(args.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    probe.log({'event': 'listening', 'listen': args.listen, 'pid': os.getpid(),
               'replies': {k: v[2] for k, v in probe.replies.items()},
               'once': {k: v[2] for k, v in probe.once.items()}})
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if kind == 'unix' and os.path.exists(where):
            os.unlink(where)


if __name__ == '__main__':
    main()
