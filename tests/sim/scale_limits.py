#!/usr/bin/env python3
# tests/sim/scale_limits.py: writes a limits file and the simulated-time settings of rateguard.conf scaled
# to the replay's compression (run.sh calls it; tests/sim/README.md "Compression"). Not a parser of the
# limits file: it rewrites the LIMIT tokens (N/W, rcpt:N/W, burst:Kx:F/W, client_ips:N/W, rcpt_domains:N/W,
# new_networks:N/W, new_domains:N/W)
# and leaves everything else as written; rateguardd --check judges the result.
#
#   scale_limits.py limits IN OUT HOUR_MS   the limits file; prints one note line per change on stdout
#   scale_limits.py duration VALUE HOUR_MS  a rateguard.conf duration (1d, 7d, 90m, 500ms, 24s) in ms of
#                                           compressed real time, e.g. 1d at 1000 ms per hour -> 24000ms
#
# A file with a line "# rg_sim: hour_ms=F" is written for compressed time (F real ms per simulated hour;
# windows in seconds): its windows are multiplied by HOUR_MS / F, a whole number. Any other file (the
# sample conf/limits.conf) is written for real time: a window of W real seconds becomes W * HOUR_MS / 3600
# real ms. The daemon takes whole seconds from 1 s, so a window that does not come out whole is rounded UP
# to whole seconds, and its count (or floor) is multiplied by ceil(new window / exact window): at most that
# many old windows fit in the new one, so the scaled limit lets through everything the real one would:
# looser, never tighter. Two limits of one line that land on the same unit and window (30/1m and 200/1h
# both become 1 s) are not allowed on one line: the one with the smaller count is kept (the other now
# allows more in the same window, so it could never trip first).
import math
import re
import sys

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
LIMIT = re.compile(
    r"^((?:msg:|rcpt:)?)((?:burst:[0-9.]+x:)?|client_ips:|rcpt_domains:|new_networks:|new_domains:)([0-9]+)/([0-9]*)([smhd]?)$")


def seconds(n, unit):
    return (int(n) if n else 1) * UNITS[unit]


def file_hour_ms(lines):
    for line in lines:
        m = re.match(r"^# rg_sim: hour_ms=([0-9]+)\s*$", line)
        if m:
            return int(m.group(1))
    return None


def scale_limits(src, dst, hour_ms):
    lines = open(src).read().split("\n")
    compressed = file_hour_ms(lines)
    if compressed is not None and (hour_ms < compressed or hour_ms % compressed):
        sys.exit(f"scale_limits: {src} is written for hour_ms={compressed}; RG_SIM_HOUR_MS must be a multiple of it")
    notes, out, bad = [], [], False
    for no, line in enumerate(lines, 1):
        if line.lstrip().startswith("#") or not line.strip():
            out.append(line)
            continue
        fields = line.split()
        seen = {}  # (unit, kind, window) -> index in fields of the kept limit
        drop = set()
        line_notes = {}  # index in fields -> what happened to that limit
        for i, tok in enumerate(fields):
            m = LIMIT.match(tok)
            if not m or "/" not in tok:
                continue
            unit, kind, count, n, u = m.groups()
            if compressed is not None:
                if u != "s":
                    print(f"scale_limits: {src}:{no}: write windows in seconds of compressed time: {tok}", file=sys.stderr)
                    bad = True
                    continue
                window, mult = int(n or 1) * hour_ms // compressed, 1
            else:
                exact_ms = seconds(n, u or "s") * hour_ms / 3600  # real ms of the compressed window
                window = max(1, math.ceil(exact_ms / 1000 - 1e-9))
                mult = 1 if abs(window * 1000 - exact_ms) < 1e-6 else math.ceil(window * 1000 / exact_ms - 1e-9)
            new = f"{unit}{kind}{int(count) * mult}/{window}s"
            if mult != 1:
                line_notes[i] = f"{tok} -> {new} (window rounded up to 1 s, count x{mult}: looser)"
            fields[i] = new
            key = (unit or "msg:", kind.split(":")[0], window)
            if key in seen:  # keep the smaller count of the two
                j = seen[key]
                keep, lose = (j, i) if int(LIMIT.match(fields[j]).group(3)) <= int(count) * mult else (i, j)
                drop.add(lose)
                seen[key] = keep
                line_notes[lose] = line_notes.get(lose, fields[lose]) + f", dropped ({fields[keep]} allows less)"
            else:
                seen[key] = i
        notes += [f"{src}:{no}: {line_notes[k]}" for k in sorted(line_notes)]
        indent = line[: len(line) - len(line.lstrip())]  # a continuation line stays one
        out.append(indent + " ".join(f for k, f in enumerate(fields) if k not in drop))
    if bad:
        sys.exit(2)
    open(dst, "w").write("\n".join(out))
    for n in notes:
        print(n)


def duration_ms(value, hour_ms):
    m = re.match(r"^([0-9]+)(ms|s|m|h|d)?$", value.strip())
    if not m:
        sys.exit(f"scale_limits: not a duration: {value}")
    return max(1, round(int(m.group(1)) * UNITS[m.group(2) or "s"] * hour_ms / 3600))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "limits":
        scale_limits(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "duration":
        print(f"{duration_ms(sys.argv[2], int(sys.argv[3]))}ms")
    else:
        sys.exit("usage: scale_limits.py limits IN OUT HOUR_MS | duration VALUE HOUR_MS")
