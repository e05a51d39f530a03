#!/usr/bin/env bash
# Writes the commit a build is made from to FILE (12 hex digits, "-dirty" after them where the build's sources, the
# poms and the modules' src/main, had uncommitted changes; "unknown" outside a git checkout or where git cannot
# run), for `based4j --version` and the benchmarks' JSON.
#   build-commit.sh FILE
set -u
out="$1"
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
if commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null)" && [ -n "$commit" ]; then
    (cd "$root" && git diff --quiet HEAD -- pom.xml 'based4j-*/pom.xml' 'based4j-*/src/main/*') 2>/dev/null \
        || commit="$commit-dirty"
else
    commit=unknown
fi
mkdir -p "$(dirname "$out")"
printf '%s\n' "$commit" > "$out.$$" && mv "$out.$$" "$out"
