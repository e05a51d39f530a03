#!/usr/bin/env bash
# Builds a self-contained based4j bundle under bundle/based4j (git-ignored) for a host without Java, such as a GPU
# machine: a jlink'ed Java runtime, the CLI and its jars, the test jars and the JUnit console launcher for the GPU
# tests (scripts/gpu-check.sh), and the built-in test model. Removes the old bundle first.
#   scripts/bundle.sh [maven options]     e.g. scripts/bundle.sh -Dbased4j.skipKernels=true
# Fails when the bundle exceeds 80 MiB: what travels to a GPU machine is its gzip'd pieces (scripts/bundle-parts.sh,
# one a call, each of at most the size it is given).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
. "$ROOT/scripts/jdk.sh"
based4j_find_jdk
based4j_find_maven

BUNDLE="$ROOT/bundle/based4j"
LIMIT_BYTES=$((80 * 1024 * 1024))
JUNIT_PLATFORM_VERSION=1.11.4
CONSOLE_JAR="junit-platform-console-standalone-$JUNIT_PLATFORM_VERSION.jar"
# java.xml and jdk.zipfs: the JUnit console launcher writes its XML report with the first and finds the test classes
# in the test jars with the second; jdk.jfr: JAVA_OPTS=-XX:StartFlightRecording=... records where the host's time goes
MODULES=java.base,jdk.incubator.vector,jdk.httpserver,java.logging,jdk.unsupported,java.management,java.xml,jdk.zipfs,jdk.jfr

say() { echo "[bundle] $*" >&2; }
die() { echo "[bundle] error: $*" >&2; exit 1; }

cd "$ROOT"
rm -rf "$BUNDLE"

# (a) the jars: tests compiled and packed into the test jars, but not run
say "building with Maven ($MVN, JDK $JAVA_HOME)"
"$MVN" -B -ntp -q -Dstyle.color=never -DskipTests package "$@"

# the one jar among the arguments (a glob's matches), leaving out -tests and -sources jars unless $KEEP_TESTS
one_jar() {
    local matches=()
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        case "$f" in
            *-sources.jar) continue ;;
            *-tests.jar) [ -n "${KEEP_TESTS:-}" ] || continue ;;
        esac
        matches+=("$f")
    done
    [ ${#matches[@]} -eq 1 ] || die "expected one jar among: $*; found ${#matches[@]}"
    echo "${matches[0]}"
}
shopt -s nullglob
CLI_JAR=$(one_jar based4j-cli/target/based4j-cli-*.jar)
CUDA_JAR=$(one_jar based4j-cuda/target/based4j-cuda-*.jar)
CUDA_TESTS=$(KEEP_TESTS=1 one_jar based4j-cuda/target/based4j-cuda-*-tests.jar)
CORE_TESTS=$(KEEP_TESTS=1 one_jar based4j-core/target/based4j-core-*-tests.jar)
# the charting library stays out: its charts need AWT (java.desktop), which the bundle's runtime leaves out to
# stay small; `based4j plot` says so in one line there
DEPS=()
for jar in based4j-cli/target/lib/*.jar; do
    case "$(basename "$jar")" in
        jfreechart-*.jar) ;;
        *) DEPS+=("$jar") ;;
    esac
done
[ ${#DEPS[@]} -gt 0 ] || die "based4j-cli/target/lib has no jars (the copy-runtime-jars step did not run?)"
# a bundle is made for a GPU host: without kernels (no nvcc here) it is of no use there, unless asked for
case " $* " in
    *" -Dbased4j.skipKernels=true "* | *" -Dbased4j.skipKernels "*) ;;
    *) "$JAVA_HOME/bin/jar" tf "$CUDA_JAR" | grep 'based4j-kernels\.fatbin$' >/dev/null \
        || die "$CUDA_JAR has no CUDA kernels (no nvcc here): install the CUDA toolkit 13, or pass" \
            "-Dbased4j.skipKernels=true for a bundle without them" ;;
esac

# (b) the Java runtime
JLINK="$JAVA_HOME/bin/jlink"
[ -x "$JLINK" ] || die "no jlink in $JAVA_HOME"
say "linking the runtime ($MODULES)"
mkdir -p "$BUNDLE"
"$JLINK" --add-modules "$MODULES" --strip-debug --no-man-pages --no-header-files --compress=zip-9 \
    --output "$BUNDLE/runtime" 2>&1 | { grep -v 'Using incubator modules' || true; } >&2
# jlink keeps the native libraries' symbol tables (libjvm.so: 5 MB of 30); only the dynamic symbols are needed
if command -v strip >/dev/null 2>&1; then
    find "$BUNDLE/runtime" -name '*.so' -exec strip --strip-unneeded {} +
fi

# (c) jars, test jars, the JUnit console launcher, the model
mkdir -p "$BUNDLE/lib" "$BUNDLE/test-lib" "$BUNDLE/models" "$BUNDLE/bin"
cp "$CLI_JAR" "${DEPS[@]}" "$BUNDLE/lib/"
# the CUDA backend's jar, also when the CLI does not (yet) depend on it: same name, so no second copy
cp "$CUDA_JAR" "$BUNDLE/lib/"
cp "$CUDA_TESTS" "$CORE_TESTS" "$BUNDLE/test-lib/"
say "fetching $CONSOLE_JAR"
"$MVN" -B -ntp -q -N -Dstyle.color=never dependency:copy \
    -Dartifact="org.junit.platform:junit-platform-console-standalone:$JUNIT_PLATFORM_VERSION" \
    -DoutputDirectory="$BUNDLE/test-lib"
[ -f "$BUNDLE/test-lib/$CONSOLE_JAR" ] || die "$CONSOLE_JAR was not fetched"
[ -d models/golden-tiny ] || die "models/golden-tiny is missing"
cp -r models/golden-tiny "$BUNDLE/models/golden-tiny"
cp scripts/gpu-check.sh "$BUNDLE/gpu-check.sh"
chmod +x "$BUNDLE/gpu-check.sh"

# (d) the launcher: the same start-up as the based4j script of the repository (scripts/launch.sh)
cp scripts/launch.sh "$BUNDLE/bin/launch.sh"
cat > "$BUNDLE/bin/based4j" <<'EOF'
#!/usr/bin/env bash
# based4j with the Java runtime of this bundle. JAVA_OPTS adds JVM options.
set -euo pipefail
BUNDLE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
. "$BUNDLE/bin/launch.sh"
based4j_exec "$BUNDLE/runtime/bin/java" "$BUNDLE" "$BUNDLE/lib/*" "$@"
EOF
chmod +x "$BUNDLE/bin/based4j"
"$BUNDLE/runtime/bin/java" --add-modules jdk.incubator.vector -version >/dev/null 2>&1 \
    || die "the linked runtime does not start"

# (e) the size
bytes=$(du -sb "$BUNDLE" | cut -f1)
for part in runtime lib test-lib models; do
    say "$(du -sh "$BUNDLE/$part" | cut -f1)	$part"
done
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
if [ "$bytes" -gt "$LIMIT_BYTES" ]; then
    die "the bundle is $mib MiB ($bytes bytes), over the 80 MiB limit"
fi
echo "bundle: $BUNDLE ($mib MiB, $bytes bytes)"
