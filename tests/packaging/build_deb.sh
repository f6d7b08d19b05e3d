#!/bin/sh
# tests/packaging/build_deb.sh [OUTDIR] — builds rateguard_VERSION_amd64.deb from this checkout with Debian's
# own tools (debhelper, contrib/debian/): copies the tracked and new files (no build trees) into a temporary
# directory, puts contrib/debian/ there as debian/ (the top of the tree holds only the project's own folders), runs `dpkg-buildpackage -us -uc -b` there (so the checkout stays clean), and moves the .deb,
# the rateguard-dbgsym .deb, .buildinfo and .changes to OUTDIR (default build/deb). Needs debhelper and the build
# dependencies of contrib/debian/control (.ci/install-deps installs them). The build's output is in OUTDIR/build.log.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/build/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d /tmp/rg-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/rateguard"
cd "$src"
if git rev-parse --git-dir >/dev/null 2>&1; then
  # Tracked and untracked-but-not-ignored files that exist (a deleted, unstaged file is skipped).
  git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf - | tar -xf - -C "$tmp/rateguard"
else
  tar --exclude='./build*' --exclude='./.git' -cf - . | tar -xf - -C "$tmp/rateguard"
fi
cp -R "$tmp/rateguard/contrib/debian" "$tmp/rateguard/debian"
rm -f "$out"/rateguard_* "$out"/rateguard-dbgsym_*
start=$(date +%s)
if ! (cd "$tmp/rateguard" && dpkg-buildpackage -us -uc -b -J"$(nproc)") >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "build_deb: dpkg-buildpackage failed (whole output: $out/build.log)"
  exit 1
fi
mv "$tmp"/rateguard_* "$out"/
mv "$tmp"/rateguard-dbgsym_* "$out"/ 2>/dev/null || true
echo "build_deb: $(cd "$out" && ls rateguard_*.deb) in $out ($(($(date +%s) - start)) s)"
