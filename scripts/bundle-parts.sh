#!/usr/bin/env bash
# Packs the bundle that scripts/bundle.sh made (bundle/based4j) into gzip'd pieces of at most MAX_MIB MiB each,
# bundle-parts/1/part, bundle-parts/2/part, ... (git-ignored), for a GPU machine that takes a limited amount of data
# per call beside the repository: each call brings one piece, and scripts/bundle-unpack.sh there puts them together
# into bundle/based4j.
#   scripts/bundle-parts.sh [MAX_MIB]      (default 20)
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
MAX_MIB="${1:-20}"
case "$MAX_MIB" in ''|*[!0-9]*) echo "bundle-parts: MAX_MIB must be a whole number of MiB, got '$MAX_MIB'" >&2; exit 2 ;; esac
[ -x "$ROOT/bundle/based4j/runtime/bin/java" ] || { echo "bundle-parts: no bundle in $ROOT/bundle/based4j: run scripts/bundle.sh first" >&2; exit 1; }
OUT="$ROOT/bundle-parts"
TMP="$ROOT/.bundle-parts.$$"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP"
tar -C "$ROOT/bundle" -cf - based4j | gzip -9 > "$TMP/bundle.tar.gz"
split -b "${MAX_MIB}M" -d -a 2 "$TMP/bundle.tar.gz" "$TMP/piece."
n=0
for piece in "$TMP"/piece.*; do
    n=$((n + 1))
    mkdir -p "$TMP/out/$n"
    mv "$piece" "$TMP/out/$n/part"
done
rm -rf "$OUT"
mv "$TMP/out" "$OUT"
echo "bundle-parts: $n piece(s) of at most $MAX_MIB MiB in $OUT:" $(cd "$OUT" && ls -d */ | tr -d /)
