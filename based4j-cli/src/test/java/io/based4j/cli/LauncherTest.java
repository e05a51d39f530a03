package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The scripts a user starts based4j with, run as processes: the kernel step of the build on a machine without nvcc,
 * and the JVM start-up of the launchers (scripts/launch.sh) with the classes under test. The launcher's build on first
 * use is checked by scripts/launcher-test.sh, which ./build test runs after Maven (it runs Maven itself, which must
 * not happen here against the same build folders).
 */
class LauncherTest {
    static final Path REPO = Path.of("..").toAbsolutePath().normalize();
    static final String WARNING = "WARNING: Using incubator modules: jdk.incubator.vector";
    /** Generous: a JVM start and a tiny model; only a hang comes near it. */
    static final long TIMEOUT_SECONDS = 120;

    record Outcome(int code, String out, String err) {
    }

    static Outcome exec(List<String> command, Map<String, String> env, boolean oneStream) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(command).directory(REPO.toFile()).redirectErrorStream(oneStream);
        for (String unset : List.of("CUDA_HOME", "NVCC", "JAVA_OPTS")) {
            pb.environment().remove(unset);
        }
        pb.environment().putAll(env);
        Process p = pb.start();
        p.getOutputStream().close();
        // standard error is read on its own thread so that neither pipe fills up while the other is read
        var err = new java.util.concurrent.CompletableFuture<String>();
        Thread reader = Thread.ofPlatform().start(() -> {
            try {
                err.complete(new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8));
            } catch (IOException e) {
                err.completeExceptionally(e);
            }
        });
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS), "timed out: " + command);
        reader.join();
        return new Outcome(p.exitValue(), out, err.get());
    }

    /** A PATH without nvcc: folders holding one are replaced by a folder of links to everything else in them. */
    static String pathWithoutNvcc(Path tmp) throws IOException {
        List<String> dirs = new ArrayList<>();
        int i = 0;
        for (String dir : System.getenv("PATH").split(File.pathSeparator)) {
            Path d = Path.of(dir);
            if (Files.exists(d.resolve("nvcc"))) {
                Path shadow = Files.createDirectories(tmp.resolve("path" + i++));
                try (Stream<Path> entries = Files.list(d)) {
                    for (Path e : entries.toList()) {
                        if (!e.getFileName().toString().equals("nvcc")) {
                            Files.createSymbolicLink(shadow.resolve(e.getFileName()), e);
                        }
                    }
                }
                d = shadow;
            }
            dirs.add(d.toString());
        }
        return String.join(File.pathSeparator, dirs);
    }

    /** Runs scripts/nvcc-fatbin.sh as the build does, with {@code env} making a machine without the CUDA toolkit. */
    static Outcome fatbin(Map<String, String> env, Path src, Path out) throws Exception {
        return exec(List.of("bash", REPO.resolve("scripts/nvcc-fatbin.sh").toString(), src.toString(), out.toString()),
                env, false);
    }

    @Test
    void withoutNvccTheBuildGoesOnWithoutKernelsAndSaysSoInOneLine(@TempDir Path tmp) throws Exception {
        // no nvcc on the PATH, no CUDA_HOME, and an empty folder in place of /usr/local/cuda
        Map<String, String> noToolkit = Map.of("PATH", pathWithoutNvcc(tmp), "BASED4J_CUDA_DEFAULT_HOME",
                Files.createDirectories(tmp.resolve("no-cuda")).toString());
        Path src = Files.createDirectories(tmp.resolve("cuda"));
        Files.writeString(src.resolve("based4j_kernels.cu"), "// kernels\n");
        Path out = Files.createDirectories(tmp.resolve("classes")).resolve("based4j-kernels.fatbin");

        Outcome r = fatbin(noToolkit, src, out);
        assertEquals(0, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, r.err());
        assertTrue(lines[0].contains("no nvcc") && lines[0].contains("building without GPU kernels")
                && lines[0].contains("CUDA toolkit 13"), lines[0]);
        assertFalse(Files.exists(out));

        // kernels of older sources are not packed with newer code
        Files.writeString(out, "old kernels");
        Files.setLastModifiedTime(out, FileTime.fromMillis(System.currentTimeMillis() - 60_000));
        r = fatbin(noToolkit, src, out);
        assertEquals(0, r.code(), r.err());
        assertFalse(Files.exists(out), "a fatbin older than its sources is removed");

        // kernels newer than every source need no compiler: kept, and nothing said
        Files.writeString(out, "current kernels");
        Files.setLastModifiedTime(src.resolve("based4j_kernels.cu"),
                FileTime.fromMillis(System.currentTimeMillis() - 60_000));
        r = fatbin(noToolkit, src, out);
        assertEquals(0, r.code(), r.err());
        assertEquals("", r.err());
        assertEquals("current kernels", Files.readString(out));
    }

    /** Runs the CLI as the launchers start it (scripts/launch.sh), on the classes under test. */
    static Outcome launch(Map<String, String> env, boolean oneStream, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("bash", "-c", ". scripts/launch.sh && based4j_exec \"$@\"",
                "launch.sh", Path.of(System.getProperty("java.home"), "bin", "java").toString(), REPO.toString(),
                System.getProperty("java.class.path")));
        command.addAll(List.of(args));
        return exec(command, env, oneStream);
    }

    @Test
    void standardErrorHasNoIncubatorWarningAndStaysInOrderWithTheOutput() throws Exception {
        // the test checkpoint's continuation of these ids holds no line break, so the lines can be counted
        Outcome r = launch(Map.of(), true, "generate", "--model", CliTest.GOLDEN.toAbsolutePath().toString(),
                "--prompt-ids", "1,2,3", "-n", "4", "-t", "0");
        assertEquals(0, r.code(), r.out());
        assertFalse(r.out().contains(WARNING), r.out());
        String[] lines = r.out().strip().split("\n");
        // on one stream: the note on the model, the text, the timing note; the JVM's warning is gone
        assertEquals(3, lines.length, r.out());
        assertTrue(lines[0].startsWith("[based4j] loaded "), r.out());
        assertFalse(lines[1].startsWith("[based4j]"), r.out());
        assertTrue(lines[2].startsWith("[based4j] 4 tokens in "), r.out());
        assertFalse(r.out().contains("\u001b"), "no terminal escape codes: " + r.out());
    }

    @Test
    void exitCodesAndErrorsPassThrough() throws Exception {
        Outcome r = launch(Map.of(), false, "generate", "--prompt", "x", "--top-p", "1.5");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("based4j: error: "), r.err());
        assertEquals("", r.out());

        r = launch(Map.of(), false, "tokenize", "--text", "Hello world");
        assertEquals(0, r.code(), r.err());
        assertEquals("15496 995\n", r.out());
        assertEquals("", r.err());
    }

    @Test
    void anErrorOfTheJvmBeforeTheCliStartsIsStillShown() throws Exception {
        Outcome r = launch(Map.of("JAVA_OPTS", "-Xmx1x"), false, "tokenize", "--text", "x");
        assertEquals(1, r.code(), r.err());
        assertTrue(r.err().contains("Invalid maximum heap size: -Xmx1x"), r.err());
        assertFalse(r.err().contains(WARNING), r.err());
    }
}
