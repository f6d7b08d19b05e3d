#!/bin/sh
# tests/packaging/lint_man.sh PAGE... — every man page renders without a single warning: groff -ww (all
# warnings), man-db the way lintian runs it (man --warnings), and mandoc -T lint (stricter about macro use;
# skipped, and said so, where mandoc is not installed). Any output fails.
set -u
[ $# -gt 0 ] || { echo "usage: $0 PAGE..."; exit 2; }
bad=0 before=0
for page in "$@"; do
  before=$bad
  [ -s "$page" ] || { echo "FAIL: $page: missing or empty"; bad=1; continue; }
  out=$(groff -ww -man -z "$page" 2>&1)
  [ -z "$out" ] || { echo "FAIL: groff -ww -man -z $page:"; echo "$out"; bad=1; }
  out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
  [ -z "$out" ] || { echo "FAIL: man --warnings -l $page:"; echo "$out"; bad=1; }
  if command -v mandoc >/dev/null; then
    out=$(mandoc -T lint -W warning "$page" 2>&1)
    [ -z "$out" ] || { echo "FAIL: mandoc -T lint $page:"; echo "$out"; bad=1; }
  fi
  # Something was rendered: the NAME line of the page.
  name=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l -Tutf8 "$page" 2>/dev/null | col -b | sed -n '/^NAME/{n;p;q}')
  [ -n "$name" ] || { echo "FAIL: $page: no NAME section in the rendered page"; bad=1; }
  [ $bad -ne $before ] || echo "ok: $page:$name"
done
command -v mandoc >/dev/null || echo "note: mandoc not installed, its lint skipped (apt-get install mandoc)"
exit $bad
