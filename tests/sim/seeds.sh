#!/usr/bin/env bash
# tests/sim/seeds.sh: runs the replay simulation (run.sh) at seeds 1..N with one limits file and prints one
# table: per seed each incident's contained-at (leaked after), and held/deferred legitimate messages per
# class (tests/sim/README.md "Several seeds"). A measurement, not a test: it asserts nothing.
#
#   tests/sim/seeds.sh [N [LIMITS]]        N: 8 by default; LIMITS: tests/sim/limits.conf by default
#
# A replay declared invalid (run.sh exit 3: the machine lagged) is run again, at most twice. The JSON
# reports stay in RG_SIM_OUT (default: a temp dir, removed) as seed-N.json. Other RG_SIM_* variables go
# to run.sh as they are (RG_SIM_HOUR_MS, RG_SIM_STORE, ...). Exit: 0, or 3 when a seed had no valid replay.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
N=${1:-8}
LIMITS=${2:-$HERE/limits.conf}
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "seeds.sh: N must be a positive whole number" >&2; exit 2; }
[[ -f $LIMITS ]] || { echo "seeds.sh: no limits file $LIMITS" >&2; exit 2; }

if [[ -n ${RG_SIM_OUT:-} ]]; then
  OUT=$RG_SIM_OUT
  mkdir -p "$OUT"
else
  OUT=$(mktemp -d /tmp/rg-sim-seeds-XXXXXX)
  trap 'rm -rf "$OUT"' EXIT
fi

status=0
for seed in $(seq 1 "$N"); do
  for attempt in 1 2 3; do
    rc=0
    RG_SIM_LIMITS=$LIMITS "$HERE/run.sh" --json --quiet --seed "$seed" >"$OUT/seed-$seed.json" 2>"$OUT/seed-$seed.log" || rc=$?
    echo "seeds.sh: seed $seed attempt $attempt: run.sh exit $rc" >&2
    (( rc == 3 )) || break
  done
  if (( rc == 3 )); then status=3; elif (( rc != 0 && rc != 1 )); then cat "$OUT/seed-$seed.log" >&2; exit "$rc"; fi
done

python3 - "$OUT" "$N" "$LIMITS" <<'EOF'
import json, os, sys

out, n, limits = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reports = []
for seed in range(1, n + 1):
    try:
        reports.append((seed, json.load(open(os.path.join(out, f"seed-{seed}.json")))))
    except (OSError, ValueError):
        reports.append((seed, None))
first = next((r for _, r in reports if r), None)
if first is None:
    sys.exit("seeds.sh: no report")
print(f"limits: {first['label']}; 1 simulated hour = {first['model']['hour_ms']} ms")
for note in first.get("notes", []):
    print(f"  {note.strip()}")
ids = [i["id"] for i in first["incidents"]]
classes = [c for c in first["legitimate"] if c not in ("issue-4 classes", "total")]
print()
print("incidents: contained at message (leaked after); never (leaked): not contained")
print("legitimate: held/deferred messages")
print()
head = ["seed"] + ids + classes + ["all held", "all deferred"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for seed, r in reports:
    if r is None or not r["replay"]["valid"]:
        print(f"| {seed} | " + " | ".join(["invalid replay"] + [""] * (len(head) - 2)) + " |")
        continue
    row = [str(seed)]
    by_id = {i["id"]: i for i in r["incidents"]}
    for i in ids:
        x = by_id[i]
        if x["contained"]:
            cell = f"{x['contained_at_message']} ({x['leaked_after_containment']})"
            if x["contained_at_message"] > 50:
                cell = f"**{cell}**"
        else:
            cell = f"**never ({x['leaked_before_containment']})**"
        row.append(cell)
    for c in classes:
        x = r["legitimate"][c]
        row.append(f"{x['held']}/{x['deferred']}")
    t = r["legitimate"]["total"]
    row.append(str(t["held"]))
    row.append(f"{t['deferred']} ({100 * t['deferred'] / max(1, t['messages']):.3f}%)")
    print("| " + " | ".join(row) + " |")
print()
for seed, r in reports:
    if r:
        descr = "; ".join(f"{i['id']}: {i['description']}" for i in r["incidents"] if i["id"] in ("D1", "D2", "E"))
        print(f"seed {seed}: {descr}")
EOF
exit "$status"
