#!/usr/bin/env bash
# Writes the commit a build is made from to FILE (12 hex digits, "-dirty" after them where tracked files had
# uncommitted changes; "unknown" outside a git checkout), for `based4j --version` and the benchmarks' JSON.
#   build-commit.sh FILE
set -u
out="$1"
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
if commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null)" && [ -n "$commit" ]; then
    git -C "$root" diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
else
    commit=unknown
fi
mkdir -p "$(dirname "$out")"
printf '%s\n' "$commit" > "$out.$$" && mv "$out.$$" "$out"
