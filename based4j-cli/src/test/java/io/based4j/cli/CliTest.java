package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.checkpoint.Safetensors;
import io.based4j.json.Json;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code based4j} command end to end on the built-in golden model, and its errors. */
class CliTest {
    static final Path GOLDEN = Path.of("../models/golden-tiny");

    record Result(int code, String out, String err) {
        String[] outLines() {
            return out.strip().split("\n");
        }
    }

    static Result run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Result(code, out.toString(), err.toString());
    }

    static int[] ids(Object list) {
        return ((List<?>) list).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
    }

    static String csv(int[] ids) {
        return Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(","));
    }

    @Test
    void greedyGenerationReproducesTheReference() throws IOException {
        Map<String, Object> g = Json.parseObject(Files.readString(GOLDEN.resolve("greedy.json")));
        int[] prompt = ids(g.get("prompt_ids"));
        int[] want = ids(g.get("greedy_ids"));
        Result r = run("generate", "--model", GOLDEN.toString(), "--prompt-ids", csv(prompt), "-n",
                String.valueOf(want.length), "--temperature", "0", "--print-ids");
        assertEquals(0, r.code(), r.err());
        String[] lines = r.outLines();
        int[] got = Arrays.stream(lines[lines.length - 1].trim().split(" ")).mapToInt(Integer::parseInt).toArray();
        assertArrayEquals(want, got);
    }

    @Test
    void batchedGenerationEqualsOnePromptAtATime() {
        String[] prompts = {"5,6,7", "100,200,300,400,500,600,700,800,900,10,11,12,13,14,15,16,17,18,19,20", "42"};
        Result batched = run("generate", "--model", GOLDEN.toString(), "--prompt-ids", prompts[0], "--prompt-ids",
                prompts[1], "--prompt-ids", prompts[2], "-n", "12", "-t", "0", "--print-ids");
        assertEquals(0, batched.code(), batched.err());
        String[] lines = batched.outLines();
        for (int i = 0; i < prompts.length; i++) {
            Result single = run("generate", "--model", GOLDEN.toString(), "--prompt-ids", prompts[i], "-n", "12",
                    "-t", "0", "--print-ids");
            String[] s = single.outLines();
            assertEquals(s[s.length - 1], lines[lines.length - prompts.length + i], "prompt " + i);
        }
    }

    @Test
    void seededSamplingIsReproducible() {
        Result a = run("generate", "--prompt", "The", "-n", "10", "--seed", "3", "--print-ids", "--top-k", "50");
        Result b = run("generate", "--prompt", "The", "-n", "10", "--seed", "3", "--print-ids", "--top-k", "50");
        assertEquals(0, a.code(), a.err());
        assertEquals(a.out(), b.out());
    }

    @Test
    void forwardWritesTheReferenceLogits(@TempDir Path tmp) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> expected = Safetensors.read(GOLDEN.resolve("expected.safetensors"), arena);
            long[] flat = expected.get("input_ids").toLongArray();
            int len = 64;
            String json = "[" + csvRow(flat, 0, len) + "," + csvRow(flat, len, len) + "]";
            Path idsFile = tmp.resolve("ids.json");
            Files.writeString(idsFile, json);
            Path out = tmp.resolve("logits.safetensors");
            Result r = run("forward", "--model", GOLDEN.toString(), "--ids", idsFile.toString(), "--out", out.toString());
            assertEquals(0, r.code(), r.err());
            Tensor logits = Safetensors.read(out, arena).get("logits");
            assertArrayEquals(new long[] {2, 64, 1000}, logits.shape());
            float[] got = logits.toFloatArray();
            float[] want = expected.get("logits").toFloatArray();
            double max = 0;
            for (int i = 0; i < want.length; i++) {
                max = Math.max(max, Math.abs(got[i] - want[i]));
            }
            // the same bound as the golden model test: float32 agreement with the reference
            assertTrue(max < 2e-4, "max error " + max);
        }
    }

    private static String csvRow(long[] flat, int from, int len) {
        return "[" + Arrays.stream(flat, from, from + len).mapToObj(Long::toString).collect(Collectors.joining(",")) + "]";
    }

    @Test
    void forwardRefusesBadIdsAndLeavesNoFile(@TempDir Path tmp) throws IOException {
        Path out = tmp.resolve("logits.safetensors");
        for (String bad : List.of("[[1,2],[3]]", "[[1,2],[3,\"x\"]]", "{\"a\":1}", "[[1, 2", "[]", "[[1,5000]]", "[[-1]]")) {
            Path ids = tmp.resolve("ids.json");
            Files.writeString(ids, bad);
            Result r = run("forward", "--model", GOLDEN.toString(), "--ids", ids.toString(), "--out", out.toString());
            assertEquals(1, r.code(), bad);
            String err = r.err().strip();
            assertTrue(err.startsWith("based4j: error: "), err);
            assertFalse(err.contains("\tat "), "no stack trace: " + err);
            assertTrue(err.contains("ids.json"), "names the file: " + err);
            try (Stream<Path> files = Files.list(tmp)) {
                assertEquals(List.of(ids), files.toList(), "nothing written for " + bad);
            }
        }
    }

    @Test
    void unknownMixerIsNamed(@TempDir Path tmp) throws IOException {
        Path dir = copyGolden(tmp);
        String cfg = Files.readString(dir.resolve("config.json"))
                .replace("based.models.mixers.convolution.BaseConv", "based.models.mixers.mamba.Mamba");
        Files.writeString(dir.resolve("config.json"), cfg);
        Result r = run("generate", "--model", dir.toString(), "--prompt", "The", "-n", "2");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("based.models.mixers.mamba.Mamba"), r.err());
        assertTrue(r.err().contains("mixer._target_"), r.err());
    }

    @Test
    void truncatedCheckpointIsNamed(@TempDir Path tmp) throws IOException {
        Path dir = copyGolden(tmp);
        Path weights = dir.resolve("model.safetensors");
        byte[] bytes = Files.readAllBytes(weights);
        Files.write(weights, Arrays.copyOf(bytes, bytes.length / 2));
        Result r = run("info", "--model", dir.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("model.safetensors"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
    }

    @Test
    void debugShowsTheStackTrace(@TempDir Path tmp) throws IOException {
        Path dir = copyGolden(tmp);
        Files.writeString(dir.resolve("config.json"), "{\"n_embd\": \"wide\"}");
        Result r = run("info", "--model", dir.toString(), "--debug");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("n_embd"), r.err());
        assertTrue(r.err().contains("\tat "), r.err());
    }

    @Test
    void badArgumentsAreNamed() {
        Result r = run("generate", "--prompt", "x", "--top-p", "1.5");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--top-p"), r.err());
        r = run("generate", "--prompt", "x", "-n", "many");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("many"), r.err());
        r = run("generate", "--model", "/no/such/dir", "--prompt", "x");
        assertEquals(1, r.code());
        assertTrue(r.err().contains("/no/such/dir"), r.err());
        r = run("generate", "--model", GOLDEN.toString(), "--prompt", "Hello");  // its vocabulary: 1000 tokens
        assertEquals(1, r.code());
        assertTrue(r.err().contains("15496") && r.err().contains("1000"), r.err());
        r = run("generate", "--prompt", "x", "--device", "tpu");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("tpu"), r.err());
    }

    @Test
    void tokenizeMatchesTheTestVector() {
        Result r = run("tokenize", "--text", "Hello world! BASED linear attention models use the GPT-2 tokenizer.\n"
                + "  Numbers 12345 and ünïcödé 😀.");
        assertEquals(0, r.code(), r.err());
        assertEquals("15496 995 0 29809 1961 14174 3241 4981 779 262 402 11571 12 17 11241 7509 13 198 220 27797 "
                + "17031 2231 290 6184 120 77 26884 66 9101 67 2634 30325 222 13", r.out().strip());
    }

    @Test
    void infoReportsLayoutAndState() {
        Result r = run("info", "--preset", "based-360m");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("362,620,928"), r.out());
        assertTrue(r.out().contains("linear-attn"), r.out());
        assertTrue(r.out().contains("6,082,368 bytes"), r.out());
    }

    static Path copyGolden(Path tmp) throws IOException {
        Path dir = tmp.resolve("model");
        Files.createDirectories(dir);
        for (String f : List.of("config.json", "model.safetensors")) {
            Files.copy(GOLDEN.resolve(f), dir.resolve(f));
        }
        return dir;
    }

    /** True where no CUDA GPU can be opened (as on CI machines). */
    static boolean noGpu() {
        try {
            return io.based4j.cuda.CudaDriver.get().deviceCount() == 0;
        } catch (RuntimeException | LinkageError e) {
            return true;
        }
    }

    @Test
    void cudaWithoutAGpuFailsWithOneClearLine() {
        org.junit.jupiter.api.Assumptions.assumeTrue(noGpu(), "a GPU is present here; this checks a machine without");
        Result r = run("generate", "--model", GOLDEN.toString(), "--device", "cuda", "--prompt-ids", "1,2", "-n", "2");
        assertEquals(1, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, r.err());
        assertTrue(lines[0].startsWith("based4j: error: ") && (lines[0].contains("libcuda") || lines[0].contains("GPU")
                || lines[0].contains("no CUDA kernels")), r.err());
        assertFalse(r.err().contains("at io.based4j"), "no stack trace: " + r.err());
    }

    @Test
    void cudaOnABuildWithoutKernelsSaysHowToGetThem() {
        org.junit.jupiter.api.Assumptions.assumeTrue(
                io.based4j.cuda.CudaBackend.class.getResource("/io/based4j/cuda/based4j-kernels.fatbin") == null,
                "this build has the kernels (nvcc was there); scripts/launcher-test.sh checks a build without");
        Result r = run("generate", "--model", GOLDEN.toString(), "--device", "cuda", "--prompt-ids", "1,2", "-n", "2");
        assertEquals(1, r.code(), r.err());
        String[] lines = r.err().strip().split("\n");
        assertEquals(1, lines.length, r.err());
        assertTrue(lines[0].contains("no CUDA kernels")
                && lines[0].contains("install the CUDA toolkit 13 and rebuild with ./build package")
                && lines[0].contains("scripts/bundle.sh"), r.err());
    }

    @Test
    void unknownDeviceAndPrecisionAreNamed() {
        Result r = run("generate", "--model", GOLDEN.toString(), "--device", "tpu", "--prompt-ids", "1", "-n", "1");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--device tpu"), r.err());
        r = run("generate", "--model", GOLDEN.toString(), "--precision", "f8", "--prompt-ids", "1", "-n", "1");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--precision f8"), r.err());
    }
}
