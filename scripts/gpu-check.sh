#!/usr/bin/env bash
# Runs the GPU tests and the GPU benchmark from a bundle made by scripts/bundle.sh, on a GPU host that has no Java.
#   gpu-check.sh [BUNDLE_DIR]
# BUNDLE_DIR defaults to the folder holding this script when that is a bundle (bundle.sh copies it there), else to
# bundle/based4j of the repository holding it. Writes under ${OUT:-/tmp}: gpu-tests/ (the JUnit XML report) and
# bench-gpu.json. BENCH_ARGS adds options to `based4j bench gpu`; JAVA_OPTS adds JVM options to both runs;
# GPU_TESTS (a regular expression over fully qualified class names) runs only the matching test classes;
# SKIP_BENCH=1 leaves the benchmark out.
# The tests run are those tagged "gpu" anywhere under the package io.based4j (GPU tests live in io.based4j.cuda and
# io.based4j.model).
# Exits non-zero when a test fails (the benchmark runs all the same) or when the benchmark fails.
set -uo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
if [ $# -ge 1 ]; then
    BUNDLE="$1"
elif [ -x "$HERE/runtime/bin/java" ]; then
    BUNDLE="$HERE"
else
    BUNDLE="$HERE/../bundle/based4j"
fi
if [ ! -x "$BUNDLE/runtime/bin/java" ]; then
    echo "gpu-check: error: $BUNDLE is not a based4j bundle (no runtime/bin/java); make one with scripts/bundle.sh" >&2
    exit 2
fi
BUNDLE="$(cd "$BUNDLE" && pwd)"
OUT_DIR="${OUT:-/tmp}"
REPORTS="$OUT_DIR/gpu-tests"
mkdir -p "$REPORTS"
JAVA="$BUNDLE/runtime/bin/java"
JVM_ARGS=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Dbased4j.home="$BUNDLE")

echo "== GPUs"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
    nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/driver, memory: /'
else
    echo "(no nvidia-smi on the PATH)"
fi

# The console launcher takes no class-path wildcards: list the jars. The launcher's own jar stays off the class path
# (it is on -jar; twice would register the JUnit engines twice).
CONSOLE=""
CLASS_PATH=""
for jar in "$BUNDLE"/lib/*.jar "$BUNDLE"/test-lib/*.jar; do
    case "$(basename "$jar")" in
        junit-platform-console-standalone-*.jar) CONSOLE="$jar"; continue ;;
    esac
    CLASS_PATH="${CLASS_PATH:+$CLASS_PATH:}$jar"
done
if [ -z "$CONSOLE" ]; then
    echo "gpu-check: error: no junit-platform-console-standalone jar in $BUNDLE/test-lib" >&2
    exit 2
fi

echo "== GPU tests (report: $REPORTS)"
# shellcheck disable=SC2086
# -Dbased4j.requireGpu turns a skipped GPU test into a failure: on a GPU host a skip means a broken setup
# the tests' timed product choices stay in memory (not in the user's cache)
"$JAVA" "${JVM_ARGS[@]}" -Dbased4j.requireGpu=true -Dbased4j.cuda.gemmChoices=none ${JAVA_OPTS:-} -jar "$CONSOLE" execute \
    --class-path "$CLASS_PATH" \
    --select-package io.based4j \
    --include-tag gpu \
    ${GPU_TESTS:+--include-classname "$GPU_TESTS"} \
    --fail-if-no-tests \
    --details=tree --disable-banner --disable-ansi-colors \
    --reports-dir "$REPORTS"
tests_rc=$?
if [ $tests_rc -ne 0 ]; then
    echo "gpu-check: GPU tests FAILED (exit $tests_rc)" >&2
fi

if [ -n "${SKIP_BENCH:-}" ]; then
    exit $tests_rc
fi
echo "== bench gpu (json: $OUT_DIR/bench-gpu.json)"
# shellcheck disable=SC2086
"$BUNDLE/bin/based4j" bench gpu --json "$OUT_DIR/bench-gpu.json" ${BENCH_ARGS:-}
bench_rc=$?
if [ $bench_rc -ne 0 ]; then
    echo "gpu-check: bench gpu FAILED (exit $bench_rc)" >&2
fi

if [ $tests_rc -ne 0 ]; then
    exit $tests_rc
fi
exit $bench_rc
