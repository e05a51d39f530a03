package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.checkpoint.Safetensors;
import io.based4j.config.ConfigParser;
import io.based4j.json.Json;
import io.based4j.model.Initializer;
import io.based4j.model.Presets;
import java.io.IOException;
import java.lang.foreign.Arena;
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
 * {@code bench serve} on the CPU: the golden tiny BASED model and a tiny attention model side by side at two rates
 * (table, JSON and throughput ratio), its percentiles, and bad options refused before any work.
 */
class BenchServeCommandTest {
    @TempDir
    static Path shared;
    /** A tiny attention-only model with random weights over the golden model's 1000-token vocabulary. */
    static Path attention;

    @BeforeAll
    static void attentionModel() throws IOException {
        attention = tinyAttention(shared.resolve("attn-tiny"));
    }

    /** Writes a tiny attention-only checkpoint into {@code dir}, over the golden model's vocabulary. */
    static Path tinyAttention(Path dir) throws IOException {
        Map<String, Object> config = new LinkedHashMap<>(Presets.configMap("attn-360m"));
        config.put("n_embd", 32L);
        config.put("n_layer", 2L);
        config.put("n_head", 2L);
        config.put("n_inner", 64L);
        config.put("vocab_size", 1000L);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), Json.writePretty(config));
        try (Arena arena = Arena.ofShared()) {
            Safetensors.write(dir.resolve("model.safetensors"),
                    Initializer.stateDict(ConfigParser.fromMap("test", config), 3, arena), Map.of());
        }
        return dir;
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> list(Object o) {
        return (List<Map<String, Object>>) o;
    }

    @Test
    void percentilesAreNearestRank() {
        double[] ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
        assertEquals(5, ServeLoadRun.percentile(ten, 50));
        assertEquals(9, ServeLoadRun.percentile(ten, 90));
        assertEquals(10, ServeLoadRun.percentile(ten, 99));
        assertEquals(1, ServeLoadRun.percentile(ten, 0));
        assertEquals(7, ServeLoadRun.percentile(new double[] {7}, 99));
        assertTrue(Double.isNaN(ServeLoadRun.percentile(new double[0], 50)));
    }

    @Test
    void twoModelsSideBySideAtTwoRates() throws IOException {
        Path json = shared.resolve("bench-serve.json");
        int requests = 6;
        int genLen = 5;
        CliTest.Result r = CliTest.run("bench", "serve", "--model", CliTest.GOLDEN + "," + attention, "--rate",
                "200,inf", "--requests", String.valueOf(requests), "--prompt-len", "8", "--gen-len",
                String.valueOf(genLen), "--slots", "4", "--warmup", "2", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        String[] lines = r.outLines();
        assertTrue(lines[0].startsWith("based4j bench serve on cpu: 6 requests per rate, prompt 8 + 5 generated"
                + " tokens, 4 slots"), r.out());
        assertTrue(lines[1].matches("model +rate/s +req/s +tokens/s +TTFT p50 +p90 +p99 +ITL p50 +p90 +p99"),
                lines[1]);
        // rows by rate, the models side by side
        String number = " +\\d+\\.\\d+";
        assertTrue(lines[2].matches("golden-tiny +200" + number.repeat(8)), lines[2]);
        assertTrue(lines[3].matches("attn-tiny +200" + number.repeat(8)), lines[3]);
        assertTrue(lines[4].matches("golden-tiny +inf" + number.repeat(8)), lines[4]);
        assertTrue(lines[5].matches("attn-tiny +inf" + number.repeat(8)), lines[5]);
        assertTrue(r.out().contains("generated tokens/s against golden-tiny:"), r.out());
        assertTrue(r.out().matches("(?s).*attn-tiny +at 200 requests/s: +\\d+\\.\\d\\dx.*"), r.out());

        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        assertEquals("serve", doc.get("benchmark"));
        assertEquals("cpu", doc.get("backend"));
        assertEquals(List.of("golden-tiny", "attn-tiny"), list(doc.get("models")).stream().map(m -> m.get("name"))
                .toList());
        List<Map<String, Object>> rows = list(doc.get("results"));
        assertEquals(4, rows.size());
        for (Map<String, Object> row : rows) {
            assertEquals((long) requests, row.get("requests"), row.toString());
            assertEquals((long) requests * genLen, row.get("generated_tokens"), row.toString());
            double seconds = (double) row.get("seconds");
            assertEquals(requests / seconds, (double) row.get("requests_per_s"), 1e-9 * requests / seconds);
            assertEquals(requests * genLen / seconds, (double) row.get("tokens_per_s"), 1e-9 * requests * genLen / seconds);
            for (String kind : List.of("ttft", "itl")) {
                double p50 = (double) row.get(kind + "_p50_s");
                double p90 = (double) row.get(kind + "_p90_s");
                double p99 = (double) row.get(kind + "_p99_s");
                assertTrue(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= seconds, kind + " " + row);
            }
        }
        // model by model, each at every rate
        assertEquals(List.of("golden-tiny 200.0", "golden-tiny inf", "attn-tiny 200.0", "attn-tiny inf"),
                rows.stream().map(row -> row.get("model") + " " + row.get("rate")).toList());
        List<Map<String, Object>> ratios = list(doc.get("throughput_ratios"));
        assertEquals(2, ratios.size());
        Map<String, Object> ratio = ratios.getFirst();
        assertEquals("attn-tiny", ratio.get("model"));
        assertEquals("golden-tiny", ratio.get("baseline"));
        assertEquals(200.0, ratio.get("rate"));
        assertEquals((double) rows.get(2).get("tokens_per_s") / (double) rows.get(0).get("tokens_per_s"),
                (double) ratio.get("tokens_per_s_ratio"), 1e-12);
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "--rate 0                      | --rate must be > 0",
        "--rate -2                     | --rate must be > 0",
        "--rate fast                   | --rate fast is not a number",
        "--requests 0                  | --requests must be >= 1",
        "--prompt-len 0                | --prompt-len must be >= 1",
        "--gen-len 0                   | --gen-len must be >= 1",
        "--slots 0                     | --slots must be >= 1",
        "--tokens-per-step 0           | --tokens-per-step must be >= 1",
        "--warmup -1                   | --warmup must be >= 0",
        "--prefix-cache-mib -1         | --prefix-cache-mib must be in 0..",
        "--temperature 3               | --temperature must be in [0, 2]",
        "--preset huge                 | --preset: unknown preset 'huge'",
        "--device tpu                  | --device tpu",
        "--device cuda:x               | --device cuda:x",
        "--precision f8                | --precision f8",
        "--model ../models/golden-tiny,../models/golden-tiny | the model golden-tiny is given twice",
    })
    void badOptionsAreUsageErrors(String options, String named) {
        Path json = shared.resolve("never.json");
        CliTest.Result r = CliTest.run(("bench serve --model ../models/golden-tiny --json " + json + " "
                + options.trim()).split(" +"));
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("based4j: error: ") && r.err().contains(named.trim()), r.err());
        assertEquals("", r.out(), "no work done");
        assertFalse(Files.exists(json));
    }

    @Test
    void aMissingModelIsOneLineBeforeAnyWork() {
        Path json = shared.resolve("never.json");
        CliTest.Result r = CliTest.run("bench", "serve", "--model", "../models/golden-tiny,no/such/model", "--json",
                json.toString());
        assertEquals(1, r.code(), r.err());
        assertEquals("based4j: error: --model no/such/model: no such directory", r.err().strip());
        assertEquals("", r.out());
        assertFalse(Files.exists(json));
    }
}
