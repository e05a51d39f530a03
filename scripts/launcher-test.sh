#!/usr/bin/env bash
# The based4j launcher as a new user meets it on a machine without the CUDA toolkit: a copy of the sources without
# build outputs, a PATH without nvcc, no CUDA_HOME and no /usr/local/cuda. Checks that the README's first command
# builds on first use without the GPU kernels (saying so in one line) and runs; that --device cuda then says how to
# get the kernels; exit codes; and what a user sees on standard error: no JVM incubator warning, no terminal escape
# codes, notes in order with the output. Run by ./build test after the Maven tests (a build of its own, ~30 s).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
. "$ROOT/scripts/jdk.sh"
based4j_find_jdk
based4j_find_maven

WORK="$(mktemp -d "${TMPDIR:-/tmp}/based4j-launcher-test.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
WARNING="WARNING: Using incubator modules: jdk.incubator.vector"
checks=0
failures=0
say() { echo "[launcher-test] $*" >&2; }
check() { # check DESCRIPTION COMMAND...: counts a check, reports it when COMMAND fails
    local what="$1"
    shift
    checks=$((checks + 1))
    if ! "$@"; then
        failures=$((failures + 1))
        say "FAILED: $what"
    fi
}
starts_with() { case "$(head -c "${#2}" "$1")" in "$2") return 0 ;; *) return 1 ;; esac; }
has_no_escape() { ! grep -q $'\e' "$1"; }
has_no_warning() { ! grep -qF "$WARNING" "$1"; }
line_count_is() { [ "$(grep -c '' "$1")" -eq "$2" ]; }

# A PATH without nvcc: each folder holding one is replaced by a folder of links to everything else in it
no_nvcc_path() {
    local dirs dir i=0 path=""
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        if [ -e "$dir/nvcc" ]; then
            i=$((i + 1))
            mkdir -p "$WORK/path/$i"
            find "$dir" -mindepth 1 -maxdepth 1 ! -name nvcc -exec ln -s {} "$WORK/path/$i/" \;
            dir="$WORK/path/$i"
        fi
        path="${path:+$path:}$dir"
    done
    echo "$path"
}
NO_NVCC_PATH="$(no_nvcc_path)"
if PATH="$NO_NVCC_PATH" command -v nvcc >/dev/null 2>&1; then
    say "error: cannot make a PATH without nvcc (found $(PATH="$NO_NVCC_PATH" command -v nvcc))"
    exit 1
fi
# as without the toolkit: nothing in $CUDA_HOME or the standard place (an empty folder stands for /usr/local/cuda)
mkdir -p "$WORK/no-cuda"
based4j() {
    env -u CUDA_HOME -u NVCC PATH="$NO_NVCC_PATH" BASED4J_CUDA_DEFAULT_HOME="$WORK/no-cuda" JAVA_HOME="$JAVA_HOME" \
        bash "$WORK/based4j/based4j" "$@" # through bash: the temporary folder may not allow running files
}

# the sources as a checkout has them: no build outputs, only the built-in model
mkdir -p "$WORK/based4j/models"
tar -C "$ROOT" --exclude=./.git --exclude=./bundle --exclude=./data --exclude=./runs --exclude=./models \
    --exclude=target -cf - . | tar -C "$WORK/based4j" -xf -
cp -r "$ROOT/models/based-small" "$ROOT/models/golden-tiny" "$WORK/based4j/models/"

say "first use without nvcc: ./based4j generate --prompt \"The\" --max-new-tokens 32 (builds the project)"
rc=0
based4j generate --prompt "The" --max-new-tokens 32 >"$WORK/out" 2>"$WORK/err" || rc=$?
check "exit status 0 (got $rc; stderr: $(head -c 2000 "$WORK/err"))" [ "$rc" -eq 0 ]
check "the output continues the prompt" starts_with "$WORK/out" "The"
check "the build notes are the building line and one line on the kernels left out" diff \
    <(printf '%s\n' "[based4j] building (first use or sources changed)..." \
        "based4j-cuda: no nvcc on PATH, in \$CUDA_HOME/bin or $WORK/no-cuda/bin: building without GPU kernels (--device cuda needs them: install the CUDA toolkit 13 and rebuild)") \
    <(sed '/^\[based4j\] loaded /,$d' "$WORK/err")
check "no terminal escape codes on stderr" has_no_escape "$WORK/err"
check "no terminal escape codes on stdout" has_no_escape "$WORK/out"
check "no incubator warning on stderr" has_no_warning "$WORK/err"
check "the kernel-less build has no fatbin" [ ! -e "$WORK/based4j/based4j-cuda/target/classes/io/based4j/cuda/based4j-kernels.fatbin" ]

say "second run: no build; notes in order with the output on one stream"
rc=0
based4j generate --prompt "The" --max-new-tokens 4 --seed 1 >"$WORK/both" 2>&1 || rc=$?
check "exit status 0 (got $rc)" [ "$rc" -eq 0 ]
check "no build the second time" sh -c '! grep -qF "[based4j] building" "$1"' _ "$WORK/both"
check "the note on the model comes first" starts_with "$WORK/both" "[based4j] loaded "
check "the output follows it" sh -c 'sed -n 2p "$1" | grep -q "^The"' _ "$WORK/both"
check "the timing note comes last" sh -c 'tail -n 1 "$1" | grep -q "^\[based4j\] 4 tokens in "' _ "$WORK/both"
check "three lines in all" line_count_is "$WORK/both" 3

say "--device cuda on a build without kernels"
rc=0
based4j generate --device cuda --prompt-ids 1 -n 1 >"$WORK/out" 2>"$WORK/err" || rc=$?
check "exit status 1 (got $rc)" [ "$rc" -eq 1 ]
check "one line on stderr: $(cat "$WORK/err")" line_count_is "$WORK/err" 1
check "it says how to get the kernels" grep -q "install the CUDA toolkit 13 and rebuild with ./build package" "$WORK/err"
check "nothing on stdout" [ ! -s "$WORK/out" ]

say "a bad option value"
rc=0
based4j generate --prompt x --top-p 1.5 >"$WORK/out" 2>"$WORK/err" || rc=$?
check "exit status 2 (got $rc)" [ "$rc" -eq 2 ]
check "stderr starts with the error" starts_with "$WORK/err" "based4j: error: "

if [ "$failures" -gt 0 ]; then
    say "$failures of $checks checks FAILED"
    exit 1
fi
say "all $checks checks passed"
