# Starts the based4j CLI in place of the calling shell (sourced by the based4j launcher and by the bundle's
# bin/based4j, not run).
#
# The Vector API lives in an incubator module, and the JVM prints "WARNING: Using incubator modules:
# jdk.incubator.vector" on standard error whenever it is resolved at start-up; no JVM option silences it, and it
# cannot be resolved later (in a module layer of its own it is cut off from the java.base internals it needs).
# So the JVM starts with its standard error going through based4j_startup_filter, which drops that one line, and
# the real standard error set aside on another descriptor (-Dbased4j.stderr.fd); the CLI's first act
# (io.based4j.cli.Launch) is to put the real one back, so everything after start-up reaches standard error
# directly, in order with standard output. The JVM stays the process the caller started (exec): signals and the
# exit status are its own.

BASED4J_INCUBATOR_WARNING="WARNING: Using incubator modules: jdk.incubator.vector"

# Copies standard input to standard output, leaving out the incubator warning among the JVM's start-up warnings.
# Ignores SIGINT and SIGTERM: it ends when the JVM closes its side, so nothing the JVM prints while it stops is lost.
based4j_startup_filter() {
    trap '' INT TERM
    local line
    while IFS= read -r line; do
        if [ "$line" = "$BASED4J_INCUBATOR_WARNING" ]; then
            exec cat
        fi
        printf '%s\n' "$line"
        case "$line" in
            'WARNING: '* | *' VM warning: '*) ;;
            *) exec cat ;;
        esac
    done
    printf '%s' "$line"
}

# based4j_exec JAVA HOME CLASSPATH [ARGUMENTS...]: runs the CLI with the JVM at JAVA, the models and files of HOME,
# and the jars of CLASSPATH (entries may end in /*). JAVA_OPTS adds JVM options.
based4j_exec() {
    local java="$1" home="$2" classpath="$3"
    shift 3
    local jvm=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:+UseParallelGC)
    # shellcheck disable=SC2206 # JAVA_OPTS is a list of options split at spaces
    jvm+=(${JAVA_OPTS:-} "-Dbased4j.home=$home" -cp "$classpath")
    local err
    if : >&2; then
        exec {err}>&2
        exec "$java" "${jvm[@]}" "-Dbased4j.stderr.fd=$err" io.based4j.cli.Launch "$@" \
            2> >(based4j_startup_filter >&"$err")
    fi
    # no standard error to keep apart (it is closed)
    exec "$java" "${jvm[@]}" io.based4j.cli.Main "$@"
}
