package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code bench gpu} driven on the CPU backend with tiny models: one model as before, two side by side with
 * {@code --compare} (both tables, the ratio of the two rows, the JSON), end-to-end {@code --generate}, a configuration
 * that fits one model only, and bad options refused before any work.
 */
class BenchGpuCommandTest {
    @TempDir
    static Path shared;
    static Path attention;

    @BeforeAll
    static void attentionModel() throws IOException {
        attention = BenchServeCommandTest.tinyAttention(shared.resolve("attn-tiny"));
    }

    private static List<Map<String, Object>> list(Object o) {
        return BenchServeCommandTest.list(o);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> map(Object o) {
        return (Map<String, Object>) o;
    }

    @Test
    void oneModelOnTheCpuKeepsTheSingleModelLayout() throws IOException {
        Path json = shared.resolve("one.json");
        // a based4j setting given as a system property (as JAVA_OPTS gives them) is recorded with the figures
        String setting = "based4j.test.benchSetting";
        System.setProperty(setting, "on");
        CliTest.Result r;
        try {
            r = CliTest.run("bench", "gpu", "--device", "cpu", "--model", CliTest.GOLDEN.toString(),
                    "--batch", "1,2", "--prompt-len", "8", "--decode-steps", "2", "--json", json.toString());
        } finally {
            System.clearProperty(setting);
        }
        assertEquals(0, r.code(), r.err());
        String[] lines = r.outLines();
        assertTrue(lines[0].startsWith("based4j bench gpu: ../models/golden-tiny on cpu ("), lines[0]);
        assertTrue(lines[1].endsWith("device copy bandwidth (read + write) not measured"), lines[1]);
        assertTrue(lines[3].matches(" *prompt +batch +state B/seq +prefill tok/s +decode tok/s +ms/step +decode GB/s"
                + " +of copy bw +peak GPU mem"), lines[3]);
        // nothing measured on the CPU for the memory columns: "-", not a made-up number
        assertTrue(lines[4].matches(" +8 +1 +[\\d,]+ +\\d+ +[\\d.]+ +[\\d.]+ +- +- +-"), lines[4]);
        assertTrue(lines[5].matches(" +8 +2 +[\\d,]+ +\\d+ +[\\d.]+ +[\\d.]+ +- +- +-"), lines[5]);
        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        assertEquals("gpu", doc.get("benchmark"));
        assertEquals("../models/golden-tiny", doc.get("model"));
        assertEquals("cpu", doc.get("backend"));
        assertEquals(Runtime.version().toString(), doc.get("java"));
        assertEquals(Main.Version.commit(), doc.get("commit"));
        assertEquals("on", map(doc.get("settings")).get(setting), doc.toString());
        assertFalse(map(doc.get("settings")).containsKey(BenchRun.HOME_PROPERTY), doc.toString());
        assertFalse(doc.containsKey("mode") || doc.containsKey("models") || doc.containsKey("ratios"), doc.toString());
        List<Map<String, Object>> rows = list(doc.get("results"));
        assertEquals(2, rows.size());
        for (Map<String, Object> row : rows) {
            double msPerStep = (double) row.get("decode_ms_per_step");
            long batch = (long) row.get("batch");
            // tokens/s and ms/step are one measurement written two ways
            assertEquals(batch * 1e3 / msPerStep, (double) row.get("decode_tokens_per_s"), 1e-9 * batch * 1e3 / msPerStep);
            assertTrue((double) row.get("prefill_tokens_per_s") > 0, row.toString());
            assertTrue((double) row.get("prefill_first_call_tokens_per_s") > 0, row.toString());
            // the forward's own time (here the host's clock around it), taken on steps after the timed ones
            assertTrue((double) row.get("decode_graph_ms_per_step") > 0, row.toString());
            assertTrue((double) row.get("decode_sampling_ms_per_step") > 0, row.toString());
            assertTrue((double) row.get("decode_between_steps_ms") >= 0, row.toString());
            // the parts of a step, taken on steps after the timed ones, add up to about a step (a loose bound: marks
            // paired wrongly would give a step's parts several steps long, or negative)
            double parts = (double) row.get("decode_graph_ms_per_step") + (double) row.get("decode_sampling_ms_per_step")
                    + (double) row.get("decode_between_steps_ms");
            assertTrue(parts <= 10 * msPerStep + 50, parts + " ms of parts against " + msPerStep + " ms a step");
            assertNull(row.get("peak_gpu_bytes"));
        }
    }

    @Test
    void repeatedRunsReportTheMedianRunAndEveryRun() throws IOException {
        Path json = shared.resolve("repeat.json");
        CliTest.Result r = CliTest.run("bench", "gpu", "--device", "cpu", "--model", CliTest.GOLDEN.toString(),
                "--batch", "2", "--prompt-len", "8", "--decode-steps", "2", "--repeat", "3", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        assertEquals(3L, doc.get("repeat"));
        Map<String, Object> row = list(doc.get("results")).getFirst();
        assertEquals(3L, row.get("runs"));
        List<Double> decode = doubles(row.get("decode_tokens_per_s_runs"));
        List<Double> prefill = doubles(row.get("prefill_tokens_per_s_runs"));
        assertEquals(3, decode.size());
        assertEquals(3, prefill.size());
        // the middle run of each, and the decode row's other figures from that same run
        assertEquals(decode.stream().sorted().toList().get(1), (double) row.get("decode_tokens_per_s"), 0);
        assertEquals(prefill.stream().sorted().toList().get(1), (double) row.get("prefill_tokens_per_s"), 0);
        assertEquals(2e3 / (double) row.get("decode_ms_per_step"), (double) row.get("decode_tokens_per_s"),
                1e-9 * (double) row.get("decode_tokens_per_s"));
        String range = String.format(java.util.Locale.ROOT, "  prompt 8, batch 2, median of 3 runs; prefill tok/s"
                + " %,.1f to %,.1f, decode tok/s %,.1f to %,.1f", prefill.stream().min(Double::compare).orElseThrow(),
                prefill.stream().max(Double::compare).orElseThrow(), decode.stream().min(Double::compare)
                        .orElseThrow(), decode.stream().max(Double::compare).orElseThrow());
        assertTrue(r.out().contains(range + "\n"), r.out() + "\nwanted: " + range);
    }

    @Test
    void repeatedGenerationsReportTheSlowerMiddleRunOfTwo() throws IOException {
        Path json = shared.resolve("repeat-generate.json");
        CliTest.Result r = CliTest.run("bench", "gpu", "--device", "cpu", "--model", CliTest.GOLDEN.toString(),
                "--generate", "3", "--batch", "2", "--prompt-len", "8", "--repeat", "2", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        Map<String, Object> row = list(Json.parseObject(Files.readString(json)).get("results")).getFirst();
        List<Double> runs = doubles(row.get("tokens_per_s_runs"));
        assertEquals(2, runs.size());
        assertEquals(Math.min(runs.get(0), runs.get(1)), (double) row.get("tokens_per_s"), 0);
        assertEquals(2.0 * 3 / (double) row.get("seconds"), (double) row.get("tokens_per_s"),
                1e-9 * (double) row.get("tokens_per_s"));
        assertTrue(r.out().contains("  prompt 8, batch 2, median of 2 runs; tokens/s "), r.out());
    }

    private static List<Double> doubles(Object o) {
        return ((List<?>) o).stream().map(x -> ((Number) x).doubleValue()).toList();
    }

    @Test
    void compareMeasuresBothModelsAndTheirRatio() throws IOException {
        Path json = shared.resolve("compare.json");
        CliTest.Result r = CliTest.run("bench", "gpu", "--device", "cpu", "--compare", CliTest.GOLDEN + "," + attention,
                "--batch", "1,2", "--prompt-len", "8,16", "--decode-steps", "2", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("based4j bench gpu: ../models/golden-tiny on cpu"), r.out());
        assertTrue(r.out().contains("based4j bench gpu: " + attention + " on cpu"), r.out());
        assertTrue(r.out().contains("tokens/s of attn-tiny against golden-tiny (attn-tiny / golden-tiny):"), r.out());
        assertTrue(r.out().matches("(?s).*\n +prompt +batch +prefill +decode\n +8 +1 +\\d+\\.\\d\\dx +\\d+\\.\\d\\dx\n"
                + ".*\n +16 +2 +\\d+\\.\\d\\dx +\\d+\\.\\d\\dx\n.*"), r.out());

        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        List<Map<String, Object>> models = list(doc.get("models"));
        assertEquals(List.of("golden-tiny", "attn-tiny"), models.stream().map(m -> m.get("name")).toList());
        List<Map<String, Object>> a = list(models.get(0).get("results"));
        List<Map<String, Object>> b = list(models.get(1).get("results"));
        assertEquals(4, a.size());
        assertEquals(4, b.size());
        List<Map<String, Object>> ratios = list(doc.get("ratios"));
        assertEquals(4, ratios.size());
        for (int i = 0; i < 4; i++) {
            Map<String, Object> ratio = ratios.get(i);
            assertEquals(a.get(i).get("prompt_len"), ratio.get("prompt_len"));
            assertEquals(a.get(i).get("batch"), ratio.get("batch"));
            assertEquals("attn-tiny", ratio.get("model"));
            assertEquals("golden-tiny", ratio.get("baseline"));
            for (String key : List.of("prefill_tokens_per_s", "decode_tokens_per_s")) {
                assertEquals((double) b.get(i).get(key) / (double) a.get(i).get(key),
                        (double) ratio.get(key + "_ratio"), 1e-12, key);
            }
        }
        // plot bench draws both models of the file, named, with their table rows
        Path png = shared.resolve("compare.png");
        CliTest.Result plot = CliTest.run("plot", "bench", json.toString(), "--out", png.toString());
        assertEquals(0, plot.code(), plot.err());
        assertTrue(Files.size(png) > 1000, "a PNG was written");
        assertTrue(plot.out().lines().anyMatch(l -> l.matches("prompt \\d+, batch \\d+ .*  golden-tiny")), plot.out());
        assertTrue(plot.out().lines().anyMatch(l -> l.matches("prompt \\d+, batch \\d+ .*  attn-tiny")), plot.out());
    }

    @Test
    void generateTimesWholeGenerationsOfBothModels() throws IOException {
        Path json = shared.resolve("generate.json");
        int generated = 4;
        CliTest.Result r = CliTest.run("bench", "gpu", "--device", "cpu", "--compare", CliTest.GOLDEN + "," + attention,
                "--generate", String.valueOf(generated), "--batch", "3", "--prompt-len", "8", "--json",
                json.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().startsWith("based4j bench gpu --generate 4: ../models/golden-tiny on cpu"), r.out());
        assertTrue(r.out().matches("(?s).*\n +prompt +batch +generated +state B/seq +seconds +tokens/s +prefill"
                + " +peak GPU mem\n +8 +3 +4 +[\\d,]+ +\\d+\\.\\d\\d +\\d+\\.\\d +\\d+\\.\\d% +-\n.*"), r.out());
        assertTrue(r.out().matches("(?s).*\n +prompt +batch +generate\n +8 +3 +\\d+\\.\\d\\dx\n.*"), r.out());

        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        assertEquals("generate", doc.get("mode"));
        assertEquals((long) generated, doc.get("generated_tokens"));
        List<Map<String, Object>> models = list(doc.get("models"));
        double[] tokensPerS = new double[2];
        for (int k = 0; k < 2; k++) {
            Map<String, Object> row = list(models.get(k).get("results")).getFirst();
            double seconds = (double) row.get("seconds");
            double prefill = (double) row.get("prefill_seconds");
            assertTrue(prefill > 0 && prefill < seconds, row.toString());
            assertEquals(prefill / seconds, (double) row.get("prefill_share"), 1e-12);
            // batch x generated tokens over the whole time, prefill included
            assertEquals(3.0 * generated / seconds, (double) row.get("tokens_per_s"), 1e-9 * 3 * generated / seconds);
            tokensPerS[k] = (double) row.get("tokens_per_s");
        }
        assertEquals(tokensPerS[1] / tokensPerS[0],
                (double) list(doc.get("ratios")).getFirst().get("tokens_per_s_ratio"), 1e-12);
        // plot bench reads the generation rows: tokens/s with the prefill's share, one series per model
        Path png = shared.resolve("generate.png");
        CliTest.Result plot = CliTest.run("plot", "bench", json.toString(), "--out", png.toString());
        assertEquals(0, plot.code(), plot.err());
        assertTrue(plot.out().lines().findFirst().orElseThrow().contains("generated tokens/s (prefill included)"),
                plot.out());
        assertEquals(1 + 2, plot.out().lines().count(), plot.out());
    }

    private static Map<String, Object> row(int prompt, int batch, Object... keysAndValues) {
        Map<String, Object> row = new LinkedHashMap<>();
        row.put("prompt_len", prompt);
        row.put("batch", batch);
        row.put("state_bytes_per_sequence", 1000L);
        for (int i = 0; i < keysAndValues.length; i += 2) {
            row.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return row;
    }

    @Test
    void aConfigurationThatDoesNotFitOneModelIsShownAsSuch() {
        String oom = "out of GPU memory: a session of 256 sequences needs 90 GiB, 60 GiB free";
        List<Map<String, Object>> based = List.of(row(2048, 64, "prefill_tokens_per_s", 1000.0,
                "decode_tokens_per_s", 400.0), row(2048, 256, "prefill_tokens_per_s", 1200.0,
                "decode_tokens_per_s", 900.0));
        List<Map<String, Object>> attn = List.of(row(2048, 64, "prefill_tokens_per_s", 1500.0,
                "decode_tokens_per_s", 100.0), row(2048, 256, "error", oom));
        List<Map<String, Object>> ratios = BenchGpuReport.ratios("based-1b", based, "attn-1b", attn,
                BenchGpuReport.DECODE_RATES);
        assertEquals(1.5, (double) ratios.get(0).get("prefill_tokens_per_s_ratio"), 1e-12);
        assertEquals(0.25, (double) ratios.get(0).get("decode_tokens_per_s_ratio"), 1e-12);
        assertEquals(List.of("attn-1b"), ratios.get(1).get("does_not_fit"));
        assertFalse(ratios.get(1).containsKey("decode_tokens_per_s_ratio"));

        StringWriter text = new StringWriter();
        try (PrintWriter out = new PrintWriter(text)) {
            BenchGpuReport.printDecode(out, attn);
            BenchGpuReport.printRatios(out, ratios, BenchGpuReport.DECODE_RATES);
        }
        String[] lines = text.toString().split("\n");
        assertTrue(lines[2].matches(" +2048 +256 +1,000  does not fit: " + oom), lines[2]);
        assertEquals("tokens/s of attn-1b against based-1b (attn-1b / based-1b):", lines[4]);
        assertTrue(lines[6].matches(" +2048 +64 +1\\.50x +0\\.25x"), lines[6]);
        assertTrue(lines[7].matches(" +2048 +256  does not fit: attn-1b"), lines[7]);

        List<Map<String, Object>> neither = BenchGpuReport.ratios("based-1b", List.of(row(512, 1, "error", oom)),
                "attn-1b", List.of(row(512, 1, "error", oom)), BenchGpuReport.GENERATE_RATES);
        assertEquals(List.of("based-1b", "attn-1b"), neither.getFirst().get("does_not_fit"));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "--compare based-1b                    | --compare takes two models, A,B; got 1",
        "--compare based-1b,attn-1b,attn-360m  | --compare takes two models, A,B; got 3",
        "--compare based-1b,nope               | --compare nope is neither a preset",
        "--compare based-1b,based-1b           | --compare names based-1b twice",
        "--compare based-1b,attn-1b --preset based-1b | give either --compare or --model/--preset",
        "--generate 0                          | --generate must be >= 1",
        "--repeat 0                            | --repeat must be from 1 to 100 runs, got 0",
        "--repeat 1000                         | --repeat must be from 1 to 100 runs, got 1000",
        "--generate -3                         | --generate must be >= 1",
        "--batch 0                             | --batch, --prompt-len",
        "--prompt-len 0 --generate 8           | --batch, --prompt-len",
        "--device tpu                          | not --device tpu",
        "--device cpu --profile                | --profile times prefill and decode steps on a GPU",
        "--profile --generate 8                | not with --generate or --device cpu",
        "--profiler-range steps                | --profiler-range is prefill or decode, got steps",
        "--device cpu --profiler-range decode  | --profiler-range marks a timed prefill or timed decode steps on a GPU",
        "--profiler-range prefill --generate 8 | not with --generate or --device cpu",
    })
    void badOptionsAreUsageErrors(String options, String named) {
        Path json = shared.resolve("never.json");
        CliTest.Result r = CliTest.run(("bench gpu --json " + json + " " + options.trim()).split(" +"));
        assertEquals(2, r.code(), r.err());
        // one line naming what is wrong, then the usual pointer to --help
        List<String> err = r.err().strip().lines().toList();
        assertEquals(List.of("Try 'based4j bench gpu --help' for usage."), err.subList(1, err.size()), r.err());
        assertTrue(r.err().startsWith("based4j: error: ") && r.err().contains(named.trim()), r.err());
        assertEquals("", r.out(), "no work done");
        assertFalse(Files.exists(json));
    }
}
