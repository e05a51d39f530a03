package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.json.Json;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Runs the Node.js scripts of {@code src/test/node} (the official OpenAI client, the playground in Chromium) for the
 * server's end-to-end tests. The scripts and their pinned packages ({@code package.json}, {@code package-lock.json})
 * are copied to {@code target/node-tests} and installed there with {@code npm ci} once per lock file; a machine
 * without Node.js or npm fails the test with what to install, never skips it.
 */
final class NodeScripts {
    /** The oldest Node.js the pinned packages support (their package.json's engines). */
    static final int MIN_NODE_MAJOR = 20;
    private static final Path SOURCES = Path.of("src", "test", "node");
    private static final Path HOME = Path.of("target", "node-tests");
    /** Copy of the lock file that the installed node_modules were made from. */
    private static final Path INSTALLED_LOCK = HOME.resolve("node_modules").resolve(".based4j-installed-lock.json");
    private static final String INSTALL_HINT = "install them with scripts/install-test-tools.sh (Debian: apt-get install"
            + " nodejs npm)";

    private static boolean installed;

    private NodeScripts() {
    }

    /** What a script printed and how it ended. */
    record Result(int exitCode, String out, String err) {
        /** The script's standard output as one JSON object; fails the test, showing both streams, otherwise. */
        Map<String, Object> json() {
            if (exitCode != 0) {
                fail("the script exited with " + exitCode + "; its error output:\n" + err + "\nits output:\n" + out);
            }
            try {
                return Json.parseObject(out.strip());
            } catch (RuntimeException e) {
                fail("the script's output is not a JSON object (" + e.getMessage() + "):\n" + out + "\n" + err);
                return null;
            }
        }
    }

    /**
     * Runs {@code node SCRIPT} from {@code target/node-tests} with {@code env} added to the environment, after
     * installing the packages if needed; fails the test when it runs past {@code timeoutSeconds}.
     */
    static Result run(String script, Map<String, String> env, long timeoutSeconds) throws IOException,
            InterruptedException {
        install();
        ProcessBuilder pb = new ProcessBuilder(tool("node"), script);
        pb.environment().putAll(env);
        return exec(pb, timeoutSeconds, "node " + script);
    }

    /** Checks Node.js and npm, copies the scripts and installs the pinned packages when the lock file changed. */
    static synchronized void install() throws IOException, InterruptedException {
        if (installed) {
            return;
        }
        int major = nodeMajor();
        if (major < MIN_NODE_MAJOR) {
            fail("the client tests need Node.js " + MIN_NODE_MAJOR + " or newer, this machine has " + major + ": "
                    + INSTALL_HINT);
        }
        Files.createDirectories(HOME);
        try (Stream<Path> files = Files.list(SOURCES)) {
            for (Path f : files.filter(Files::isRegularFile).toList()) {
                Files.copy(f, HOME.resolve(f.getFileName()), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        byte[] lock = Files.readAllBytes(SOURCES.resolve("package-lock.json"));
        if (!Files.isRegularFile(INSTALLED_LOCK) || !Arrays.equals(lock, Files.readAllBytes(INSTALLED_LOCK))) {
            Result npm = exec(new ProcessBuilder(tool("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts"),
                    300, "npm ci");
            if (npm.exitCode() != 0) {
                fail("npm ci in " + HOME + " failed with exit code " + npm.exitCode() + " (it fetches the packages"
                        + " pinned in " + SOURCES.resolve("package-lock.json") + " from the npm registry):\n"
                        + tail(npm.err() + npm.out()));
            }
            Files.write(INSTALLED_LOCK, lock);
        }
        installed = true;
    }

    /** Node.js's major version; fails the test when node or npm is missing. */
    private static int nodeMajor() throws IOException, InterruptedException {
        tool("npm");
        Result version = exec(new ProcessBuilder(tool("node"), "--version"), 30, "node --version");
        String v = version.out().strip();
        if (version.exitCode() != 0 || !v.matches("v\\d+\\..*")) {
            fail("'node --version' answered '" + v + "' (exit code " + version.exitCode() + "): " + INSTALL_HINT);
        }
        return Integer.parseInt(v.substring(1, v.indexOf('.')));
    }

    /** The path of {@code name} on the PATH; fails the test naming what to install when there is none. */
    static String tool(String name) {
        String path = System.getenv("PATH");
        for (String dir : path == null ? new String[0] : path.split(File.pathSeparator)) {
            if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, name))) {
                return Path.of(dir, name).toString();
            }
        }
        fail("the client tests need Node.js " + MIN_NODE_MAJOR + " or newer and npm, and '" + name + "' is not on"
                + " the PATH: " + INSTALL_HINT);
        return null;
    }

    private static Result exec(ProcessBuilder pb, long timeoutSeconds, String what) throws IOException,
            InterruptedException {
        Files.createDirectories(HOME);
        pb.directory(HOME.toFile());
        Path out = Files.createTempFile(HOME, "out", ".txt");
        Path err = Files.createTempFile(HOME, "err", ".txt");
        try {
            pb.redirectOutput(out.toFile()).redirectError(err.toFile()).redirectInput(ProcessBuilder.Redirect.PIPE);
            Process p = pb.start();
            p.getOutputStream().close();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly().waitFor();
                fail(what + " ran past its limit of " + timeoutSeconds + " s; its error output so far:\n"
                        + tail(Files.readString(err)) + "\n" + tail(Files.readString(out)));
            }
            return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    /** The last 40 lines of a process's output. */
    private static String tail(String text) {
        List<String> lines = new ArrayList<>(List.of(text.split("\n")));
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 40), lines.size()));
    }
}
