#!/usr/bin/env bash
# On the GPU machine: puts the pieces of scripts/bundle-parts.sh (bundle-parts/N/part, brought by earlier calls)
# together into bundle/based4j, replacing what was there. Exits non-zero when a piece is missing or damaged.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
PARTS="$ROOT/bundle-parts"
[ -f "$PARTS/1/part" ] || { echo "bundle-unpack: no $PARTS/1/part" >&2; exit 1; }
n=$(ls -d "$PARTS"/*/ | wc -l)
for i in $(seq 1 "$n"); do
    [ -f "$PARTS/$i/part" ] || { echo "bundle-unpack: piece $i of $n is missing" >&2; exit 1; }
done
rm -rf "$ROOT/bundle/based4j.new"
mkdir -p "$ROOT/bundle/based4j.new"
for i in $(seq 1 "$n"); do cat "$PARTS/$i/part"; done | gzip -d | tar -C "$ROOT/bundle/based4j.new" -xf -
rm -rf "$ROOT/bundle/based4j"
mv "$ROOT/bundle/based4j.new/based4j" "$ROOT/bundle/based4j"
rmdir "$ROOT/bundle/based4j.new"
echo "bundle-unpack: bundle/based4j from $n piece(s)"
