package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * Hostile input through the command line: JSON nested a hundred thousand levels deep in every file the CLI reads,
 * absurd sizes in config.json, and errors of every kind; each gives one line {@code based4j: error: ...} and exit
 * code 1, with no stack trace and no Java class name.
 */
class HostileInputTest {
    @TempDir
    Path tmp;

    /** A Java exception or error class name, simple or qualified. */
    static final Pattern CLASS_NAME = Pattern.compile("[A-Z][A-Za-z]*(Exception|Error)\\b");

    static final String DEEP = "[".repeat(100_000);

    /** Exit code 1, one line on stderr that starts as errors do and mentions {@code parts}. */
    static void assertOneErrorLine(CliTest.Result r, String... parts) {
        assertEquals(1, r.code(), r.err());
        List<String> lines = r.err().lines().toList();
        assertEquals(1, lines.size(), r.err());
        String line = lines.getFirst();
        assertTrue(line.startsWith("based4j: error: "), line);
        for (String p : parts) {
            assertTrue(line.contains(p), "\"" + line + "\" should mention " + p);
        }
        assertFalse(CLASS_NAME.matcher(line).find(), "no class names: " + line);
    }

    /** A copy of the golden model in {@code name}, without its weights file. */
    private Path goldenConfigOnly(String name) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.copy(CliTest.GOLDEN.resolve("config.json"), dir.resolve("config.json"));
        return dir;
    }

    @Test
    void deepConfigJson() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("deep-config"));
        try (Stream<Path> files = Files.list(CliTest.GOLDEN)) {
            for (Path f : files.toList()) {
                Files.copy(f, dir.resolve(f.getFileName()));
            }
        }
        Files.writeString(dir.resolve("config.json"), DEEP);
        assertOneErrorLine(CliTest.run("info", "--model", dir.toString()), dir.resolve("config.json").toString(),
                "line 1, column 65", "deeper than the limit of 64 levels");
    }

    @Test
    void deepSafetensorsHeader() throws IOException {
        Path dir = goldenConfigOnly("deep-header");
        byte[] header = ("{\"w\": " + DEEP).getBytes(StandardCharsets.UTF_8);
        ByteBuffer file = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
        file.putLong(header.length).put(header);
        Files.write(dir.resolve("model.safetensors"), file.array());
        assertOneErrorLine(CliTest.run("info", "--model", dir.toString()), "model.safetensors", "header",
                "deeper than the limit of 64 levels");
    }

    @Test
    void deepShardedIndex() throws IOException {
        Path dir = goldenConfigOnly("deep-index");
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"weight_map\": " + DEEP);
        assertOneErrorLine(CliTest.run("info", "--model", dir.toString()), "model.safetensors.index.json",
                "deeper than the limit of 64 levels");
    }

    @Test
    void deepIdsJson() throws IOException {
        Path ids = Files.writeString(tmp.resolve("ids.json"), DEEP);
        assertOneErrorLine(CliTest.run("forward", "--model", CliTest.GOLDEN.toString(), "--ids", ids.toString(),
                "--out", tmp.resolve("logits.safetensors").toString()), "ids.json", "deeper than the limit of 64 levels");
        assertFalse(Files.exists(tmp.resolve("logits.safetensors")));
    }

    @Test
    void deepTrainingSettings() throws IOException {
        Path json = Files.writeString(tmp.resolve("run.json"), DEEP);
        assertOneErrorLine(CliTest.run("train", "--config", json.toString()), "run.json", "not valid JSON",
                "deeper than the limit of 64 levels");
        Path yaml = Files.writeString(tmp.resolve("run.yaml"), DEEP);
        assertOneErrorLine(CliTest.run("train", "--config", yaml.toString()), "run.yaml", "not valid YAML",
                "deeper than the limit of 64 levels");
    }

    @Test
    @SuppressWarnings("unchecked")
    void absurdSizesInConfigJson() throws IOException {
        Object[][] cases = {
                {"n_layer", (long) Integer.MAX_VALUE, "'n_layer' must be an integer in [1, 4096], found 2147483647"},
                {"n_embd", 1L << 20, "'n_embd' is 1048576"},
                {"n_inner", (long) Integer.MAX_VALUE, "'n_inner' is 2147483647"},
                {"vocab_size", (long) Integer.MAX_VALUE, "'vocab_size' is 2147483647"},
                {"alt_mixer_2.window_size", (long) Integer.MAX_VALUE, "'alt_mixer_2.window_size'"},
        };
        for (Object[] c : cases) {
            Path dir = goldenConfigOnly("absurd-" + c[0]);
            Map<String, Object> config = Json.parseObject(Files.readString(dir.resolve("config.json")));
            String field = (String) c[0];
            Map<String, Object> target = field.contains(".")
                    ? (Map<String, Object>) config.get(field.substring(0, field.indexOf('.'))) : config;
            target.put(field.substring(field.indexOf('.') + 1), c[1]);
            Files.writeString(dir.resolve("config.json"), Json.writePretty(config));
            // the weights are absent: the error must come from the configuration, before they are looked for
            assertOneErrorLine(CliTest.run("info", "--model", dir.toString()), "config.json", (String) c[2]);
        }
    }

    // ------------------------------------------------------------------ errors of every kind

    @Command(name = "fail")
    static final class Failing implements Callable<Integer> {
        final Throwable toThrow;

        Failing(Throwable toThrow) {
            this.toThrow = toThrow;
        }

        @Override
        public Integer call() throws Exception {
            if (toThrow instanceof Exception e) {
                throw e;
            }
            throw (Error) toThrow;
        }
    }

    @Command(name = "recurse")
    static final class Recursing implements Callable<Integer> {
        @Override
        public Integer call() {
            return depth(0);
        }

        private static int depth(int n) {
            return depth(n + 1) + 1;
        }
    }

    private static CliTest.Result runWith(Object command, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true),
                cl -> cl.addSubcommand(new CommandLine(command)));
        return new CliTest.Result(code, out.toString(), err.toString());
    }

    @Test
    void outOfMemoryIsOneLineWithAdvice() {
        assertOneErrorLine(runWith(new Failing(new OutOfMemoryError("Java heap space")), "fail"), "out of memory",
                "JAVA_OPTS=-Xmx");
    }

    @Test
    void stackOverflowIsOneLine() {
        assertOneErrorLine(runWith(new Recursing(), "recurse"), "stack", "nested too deeply");
    }

    @Test
    void otherErrorsAndMessagelessExceptionsAreOneLine() {
        assertOneErrorLine(runWith(new Failing(new InternalError()), "fail"), "internal error", "--debug");
        assertOneErrorLine(runWith(new Failing(new NullPointerException()), "fail"), "internal error", "--debug");
        assertOneErrorLine(runWith(new Failing(new IllegalStateException()), "fail"), "internal error");
    }

    @Test
    void debugAddsTheStackTrace() {
        CliTest.Result r = runWith(new Failing(new OutOfMemoryError("Java heap space")), "--debug", "fail");
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("based4j: error: out of memory"), r.err());
        assertTrue(r.err().contains("\tat "), r.err());
    }

    @Test
    void describeNeverShowsClassNames() {
        List<Throwable> cases = List.of(new RuntimeException(), new IllegalArgumentException(),
                new NumberFormatException("For input string: \"12x\""), new ArithmeticException("integer overflow"),
                new ClassCastException("class java.lang.Integer cannot be cast to class java.lang.String"),
                new RuntimeException(new NoSuchFileException("/data/x.bin")),
                new IllegalStateException("cannot read file: java.nio.file.AccessDeniedException: /data/y.bin"),
                new ExceptionInInitializerError(new IllegalStateException("no kernels")),
                new StackOverflowError(), new OutOfMemoryError(), new OutOfMemoryError("Direct buffer memory"),
                new OutOfMemoryError("Requested array size exceeds VM limit"), new IOException());
        for (Throwable t : cases) {
            String line = Errors.describe(t);
            assertFalse(line.isBlank(), t.toString());
            assertFalse(CLASS_NAME.matcher(line).find(), t + " -> " + line);
            assertEquals(1, line.lines().count(), line);
        }
        assertEquals("not a number: \"12x\"", Errors.describe(new NumberFormatException("For input string: \"12x\"")));
        assertEquals("cannot read file: permission denied: /data/y.bin",
                Errors.describe(new IllegalStateException("cannot read file: java.nio.file.AccessDeniedException: /data/y.bin")));
        assertEquals("no kernels", Errors.describe(new ExceptionInInitializerError(new IllegalStateException("no kernels"))));
    }

    @Test
    void ioErrorsNameTheirFiles() {
        assertEquals("/data/x.bin: no such file or directory",
                Errors.describe(new UncheckedIOException(new NoSuchFileException("/data/x.bin"))));
        assertEquals("/runs/a -> /runs/b: No space left on device",
                Errors.describe(new FileSystemException("/runs/a", "/runs/b", "No space left on device")));
        assertEquals("cannot write /runs/metrics.jsonl (permission denied)", Errors.describe(new UncheckedIOException(
                "cannot write /runs/metrics.jsonl", new AccessDeniedException("/runs/metrics.jsonl"))));
        assertEquals("I/O error: Broken pipe", Errors.describe(new IOException("Broken pipe")));
    }
}
