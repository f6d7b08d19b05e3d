#!/bin/sh
# tests/fuzz/run.sh [SECONDS] — builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# runs each for SECONDS (default 60) over a fresh copy of its seed corpus; prints executions and corpus
# size per target and fails if any target crashes, hangs or runs out of memory (the input is kept in
# build-fuzz/fuzz-run/TARGET/artifacts/). Each crash found becomes a Catch2 test in tests/unit.
set -eu
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-60}
case $SECONDS_PER_TARGET in '' | *[!0-9]*) echo "usage: tests/fuzz/run.sh [SECONDS]" >&2; exit 64 ;; esac
BUILD=build-fuzz

# No -Werror here: CI's g++ build enforces the warnings; a warning only clang gives should not stop fuzzing.
CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRATEGUARD_FUZZ=ON \
  -DRATEGUARD_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target fuzz_protocol fuzz_milter fuzz_limits

# Seeds: the captured real Postfix requests and the sample limits file, plus the hand-made ones (and any
# input that once crashed a target) committed in tests/fuzz/corpus/TARGET/.
seeds() {
  case $1 in
    protocol) echo tests/data/postfix-requests/* tests/fuzz/corpus/protocol/* ;;
    milter) echo tests/fuzz/corpus/milter/* ;;
    limits) echo conf/limits.conf tests/fuzz/corpus/limits/* ;;
  esac
}

passed=0
failed=0
for target in protocol milter limits; do
  work="$BUILD/fuzz-run/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  # shellcheck disable=SC2046 # seed file names have no blanks
  cp $(seeds "$target") "$work/corpus/"
  nseeds=$(ls "$work/corpus" | wc -l)
  # -timeout: one input taking over 10 s is a hang and fails like a crash. -rss_limit_mb: libFuzzer's
  # default (2 GB), stated so an allocation bomb fails here the same on every machine.
  rc=0
  "$BUILD/tests/fuzz/fuzz_$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="tests/fuzz/$target.dict" -artifact_prefix="$work/artifacts/" \
    "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?
  # The last status line: "#291191  DONE   cov: 1499 ft: 7257 corp: 901/448Kb lim: 1125 exec/s: ..."
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/fuzz.log" | tail -n 1 || true)
  artifacts=$(ls "$work/artifacts")
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ] || [ -z "$done_line" ]; then
    failed=$((failed + 1))
    echo "fuzz_$target: FAILED (exit $rc); log: $work/fuzz.log"
    # The report with its stack, without libFuzzer's progress lines (CI keeps no build directory).
    grep -v -E '^#[0-9]+[[:space:]]' "$work/fuzz.log" | tail -n 60 || true
    for a in $artifacts; do
      echo "fuzz_$target: input kept as $work/artifacts/$a (base64 below); add it to tests/fuzz/corpus/$target/"
      base64 "$work/artifacts/$a" | head -n 40
    done
    continue
  fi
  passed=$((passed + 1))
  echo "$done_line" | awk -v t="fuzz_$target" -v s="$SECONDS_PER_TARGET" -v n="$nseeds" '{
    for (i = 1; i <= NF; i++) {
      if ($i == "cov:") cov = $(i + 1)
      if ($i == "corp:") { split($(i + 1), c, "/"); units = c[1]; bytes = c[2] }
    }
    sub(/^#/, "", $1)
    printf "%s: %d executions in %s s, corpus %d inputs (%s) from %d seeds, coverage %d edges\n", t, $1, s, units, bytes, n, cov
  }'
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
