package io.based4j.cli;

import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;

/**
 * What every benchmark's JSON says of the run beside its figures, so that two files can be told apart by more than
 * their numbers: the build and its commit, the Java runtime, and the based4j settings given as system properties (the kernel
 * versions and thresholds a run was asked for, {@code -Dbased4j.cuda.linearDeferVersion=7} say, through
 * {@code JAVA_OPTS}).
 */
final class BenchRun {
    /** The property that says where the installation lives: where, not how, a run ran. */
    static final String HOME_PROPERTY = "based4j.home";
    /** The properties the launcher sets for itself (where the installation lives, the standard error it keeps). */
    static final Set<String> LAUNCHER_PROPERTIES = Set.of(HOME_PROPERTY, Launch.STDERR_FD);

    private BenchRun() {
    }

    /** The {@code based4j.*} system properties in effect, by name, without the launcher's own. */
    static Map<String, String> settings(Properties properties) {
        Map<String, String> settings = new TreeMap<>();
        for (String name : properties.stringPropertyNames()) {
            if (name.startsWith("based4j.") && !LAUNCHER_PROPERTIES.contains(name)) {
                settings.put(name, properties.getProperty(name));
            }
        }
        return settings;
    }

    /**
     * Adds {@code based4j} (the build's version), {@code commit} (the commit it was built from), {@code java} and
     * {@code settings} to a benchmark's JSON.
     */
    static void describe(Map<String, Object> doc) {
        doc.put("based4j", Main.Version.build());
        doc.put("commit", Main.Version.commit());
        doc.put("java", Runtime.version().toString());
        doc.put("settings", settings(System.getProperties()));
    }
}
