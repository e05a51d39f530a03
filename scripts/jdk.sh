# Finds a JDK 25 or newer and exports JAVA_HOME and JAVA, and Maven as MVN, for the based4j scripts (sourced, not
# run).

# The feature release of the java command $1 (25 for 25.0.3): from the JDK's release file, else by asking the JVM
based4j_java_version() {
    local release
    release="$(dirname "$(dirname "$1")")/release"
    if [ -f "$release" ]; then
        sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release" | head -n 1
        return 0
    fi
    "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -n 1
}

based4j_find_jdk() {
    local candidates=()
    [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
    local j
    j=$(command -v java 2>/dev/null) && candidates+=("$(dirname "$(dirname "$(readlink -f "$j")")")")
    for d in /usr/lib/jvm/*; do
        [ -d "$d" ] && candidates+=("$d")
    done
    local tried=()
    for home in "${candidates[@]}"; do
        if [ -x "$home/bin/java" ] && [ -x "$home/bin/javac" ]; then
            local v
            v=$(based4j_java_version "$home/bin/java")
            tried+=("$home (Java ${v:-?})")
            if [ -n "$v" ] && [ "$v" -ge 25 ]; then
                export JAVA_HOME="$home"
                export JAVA="$home/bin/java"
                return 0
            fi
        fi
    done
    echo "based4j: error: needs a JDK 25 or newer (with javac); set JAVA_HOME to one." >&2
    if [ ${#tried[@]} -gt 0 ]; then
        echo "based4j: looked at: ${tried[*]}" >&2
    else
        echo "based4j: found no JDK in JAVA_HOME, on the PATH or under /usr/lib/jvm" >&2
    fi
    return 1
}

based4j_find_maven() {
    if command -v mvn >/dev/null 2>&1; then
        MVN=mvn
        # Maven's console library ends its output with colour resets (ESC[0m) on both streams when it cannot tell
        # that they are no terminal; the launcher's build notes and logs stay free of escape codes without them
        export MAVEN_OPTS="${MAVEN_OPTS:+$MAVEN_OPTS }-Djansi.noreset=true"
        return 0
    fi
    echo "based4j: error: Apache Maven (mvn) is needed to build based4j; install it (e.g. apt-get install maven)." >&2
    return 1
}
