# Finds a JDK 25 or newer and exports JAVA_HOME and JAVA for the based4j scripts (sourced, not run).
based4j_java_version() {
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
        return 0
    fi
    echo "based4j: error: Apache Maven (mvn) is needed to build based4j; install it (e.g. apt-get install maven)." >&2
    return 1
}
