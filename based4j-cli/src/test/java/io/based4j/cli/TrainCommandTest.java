package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import io.based4j.train.data.DatasetWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code based4j train} and {@code based4j mqar train} end to end, and their errors. */
class TrainCommandTest {
    @TempDir
    Path tmp;

    @Test
    void trainTokenizeTrainAndGenerateFromTheCheckpoint() throws IOException {
        Path text = tmp.resolve("doc.txt");
        Files.writeString(text, "The sea was calm and the ship sailed on. ".repeat(20));
        CliTest.Result tok = CliTest.run("data", "tokenize", "--input", text.toString(), "--out",
                tmp.resolve("shards").toString(), "--val-fraction", "0.2");
        assertEquals(0, tok.code(), tok.err());
        // every token of the repeated sentence has one successor: a small model learns the text by heart
        Files.writeString(tmp.resolve("run.yaml"), """
                model:
                  d_model: 32
                  layers: [conv, swa]
                  heads: 2
                  window_size: 8
                  n_inner: 64
                data:
                  dir: shards
                  seq_len: 16
                train:
                  steps: 30
                  batch_size: 2
                  out: run
                  log_interval: 1
                optimizer:
                  lr: 2e-2
                  warmup_steps: 3
                eval:
                  interval: 15
                  batches: 1
                checkpoint:
                  interval: 15
                """);
        CliTest.Result r = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString());
        assertEquals(0, r.code(), r.err() + r.out());
        // progress and notes on standard error, without terminal codes (it is not a terminal); the summary on
        // standard output
        assertTrue(r.err().contains("update 15: validation loss") && r.err().contains("30/30 loss"), r.err());
        assertFalse(r.err().contains("\u001b"), r.err());
        Path ck = tmp.resolve("run/checkpoints/step-00000030");
        assertEquals(List.of("trained updates 1..30", "checkpoint: " + ck), r.out().lines()
                .map(l -> l.startsWith("trained") ? l.substring(0, l.indexOf(" in ")) : l.substring(0, l.indexOf("  ")))
                .toList(), r.out());
        List<String> metrics = Files.readAllLines(tmp.resolve("run/metrics.jsonl"));
        assertTrue(metrics.stream().anyMatch(l -> l.contains("\"val_ppl\"")), metrics.toString());
        Map<String, Object> first = Json.parseObject(metrics.getFirst());
        assertTrue(first.keySet().containsAll(List.of("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s")),
                first.toString());

        // greedy decoding recites the memorised sentence: 10 tokens, " was calm and the ship sailed on. The sea"
        CliTest.Result g = CliTest.run("generate", "--model", ck.toString(), "--prompt", "The sea", "-n", "10",
                "--temperature", "0");
        assertEquals(0, g.code(), g.err());
        assertEquals("The sea was calm and the ship sailed on. The sea", g.out().strip());

        CliTest.Result again = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString());
        assertEquals(1, again.code());
        assertTrue(again.err().contains("already holds checkpoints") && again.err().contains("--resume"), again.err());

        CliTest.Result resumed = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString(), "--resume",
                tmp.resolve("run").toString(), "--steps", "32");
        assertEquals(0, resumed.code(), resumed.err());
        assertTrue(resumed.err().contains("resuming from") && resumed.err().contains("update 30"), resumed.err());
        assertTrue(resumed.out().startsWith("trained updates 31..32"), resumed.out());

        CliTest.Result both = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString(), "--resume",
                tmp.resolve("run").toString(), "--overwrite");
        assertEquals(2, both.code(), both.err());
    }

    /** A token folder of {@code count} tokens below 64 (each even token repeated), with its manifest. */
    private static Path smallVocabularyData(Path dir, int count) {
        int[] tokens = new int[count];
        java.util.SplittableRandom r = new java.util.SplittableRandom(5);
        for (int i = 0; i < count; i++) {
            tokens[i] = i % 2 == 1 ? tokens[i - 1] : r.nextInt(64);
        }
        DatasetWriter.writeAll(dir, tokens, new int[0], Map.of("vocab_size", 64L, "eos_token_id", 0L));
        return dir;
    }

    @Test
    void aSecondProcessOnALiveRunDirectoryIsRefusedNamingTheHolder() throws Exception {
        smallVocabularyData(tmp.resolve("tokens"), 4000);
        Path yaml = tmp.resolve("run.yaml");
        // far more updates than the test waits for: the run is killed while it is live
        Files.writeString(yaml, """
                model: {d_model: 16, layers: [conv, swa], heads: 2, window_size: 8, n_inner: 32, vocab_size: 64}
                data: {dir: tokens, seq_len: 16}
                train: {steps: 100000000, batch_size: 2, out: run, log_interval: 100}
                optimizer: {lr: 1e-3}
                eval: {interval: 0}
                checkpoint: {interval: 20}
                """);
        Path run = tmp.resolve("run");
        Path firstCheckpoint = run.resolve("checkpoints/step-00000020");
        ProcessBuilder pb = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx512m",
                "-cp", System.getProperty("java.class.path"), "io.based4j.cli.Main", "train", "--config",
                yaml.toString());
        pb.redirectOutput(tmp.resolve("first.out").toFile());
        pb.redirectError(tmp.resolve("first.err").toFile());
        Process first = pb.start();
        try {
            // a JVM start and 20 tiny updates take a few seconds; two minutes leaves room for a loaded machine
            long deadline = System.nanoTime() + 120_000_000_000L;
            while (!Files.isDirectory(firstCheckpoint)) {
                assertTrue(first.isAlive(), "the first run ended early: " + Files.readString(tmp.resolve("first.err")));
                assertTrue(System.nanoTime() < deadline, "no first checkpoint after two minutes");
                Thread.sleep(50);
            }
            String holder = "is in use by another training run (pid " + first.pid() + " on ";

            CliTest.Result second = CliTest.run("train", "--config", yaml.toString());
            assertEquals(1, second.code(), second.err());
            assertTrue(second.err().contains(run + " " + holder), second.err());
            assertEquals(1, second.err().strip().lines().count(), second.err());

            CliTest.Result overwrite = CliTest.run("train", "--config", yaml.toString(), "--overwrite");
            assertEquals(1, overwrite.code(), overwrite.err());
            assertTrue(overwrite.err().contains("--overwrite refused: " + run + " " + holder), overwrite.err());
            assertTrue(Files.isDirectory(firstCheckpoint), "the live run's checkpoints are kept");

            CliTest.Result resume = CliTest.run("train", "--config", yaml.toString(), "--resume", run.toString());
            assertEquals(1, resume.code(), resume.err());
            assertTrue(resume.err().contains(holder), resume.err());
        } finally {
            first.destroyForcibly();
            first.waitFor();
        }
        // killed: its lock went with it, its lock file stays and blocks nobody; the run resumes where it stopped
        assertTrue(Files.readString(run.resolve("run.lock")).startsWith("pid " + first.pid()));
        CliTest.Result resumed = CliTest.run("train", "--config", yaml.toString(), "--resume", run.toString(),
                "--steps", "100000000", "--stop-at", String.valueOf(lastCheckpointStep(run) + 1));
        assertEquals(0, resumed.code(), resumed.err());
        assertTrue(resumed.err().contains("resuming from"), resumed.err());
    }

    private static long lastCheckpointStep(Path run) throws IOException {
        try (var s = Files.list(run.resolve("checkpoints"))) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.matches("step-\\d+"))
                    .mapToLong(n -> Long.parseLong(n.substring(5))).max().orElseThrow();
        }
    }

    @Test
    void badSettingsGiveOneLineErrors() throws IOException {
        CliTest.Result r = CliTest.run("train", "--config", tmp.resolve("missing.yaml").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().startsWith("based4j: error: cannot read training settings"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());

        Files.writeString(tmp.resolve("bad.yaml"), "model:\n  d_model: 16\n  layers: [conv]\n  widht: 3\n");
        r = CliTest.run("train", "--config", tmp.resolve("bad.yaml").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("unknown setting model.widht"), r.err());

        Files.writeString(tmp.resolve("nodata.yaml"), "model:\n  d_model: 16\n  layers: [conv]\ndata:\n  dir: none\n");
        r = CliTest.run("train", "--config", tmp.resolve("nodata.yaml").toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains("none: no such directory"), r.err());
    }

    @Test
    void mqarTrainPrintsSliceAccuracyAndStateBytes() throws IOException {
        Path json = tmp.resolve("mqar.json");
        CliTest.Result r = CliTest.run("mqar", "train", "--mixer", "based", "--d-model", "16", "--feature-dim", "4",
                "--train", "16:2:64", "--test", "16:2:32,32:4:16", "--epochs", "1", "--batch", "32", "--json",
                json.toString());
        assertEquals(0, r.code(), r.err() + r.out());
        assertTrue(r.out().contains("L 16, kv 2") && r.out().contains("L 32, kv 4"), r.out());
        // MQAR-SPEC: 4 (d + 1) E with E = 1 + f + f(f+1)/2 = 15 at f = 4
        assertTrue(r.out().contains("state: 1,020 bytes"), r.out());
        Map<String, Object> m = Json.parseObject(Files.readString(json));
        assertEquals(1020L, m.get("state_bytes"));
        assertEquals(2, ((List<?>) m.get("slices")).size());
    }

    @Test
    void mqarBaselinesAreBuiltFromTheSameLayers() {
        // sliding window: 4 * 2 * d * w = 4 * 2 * 16 * 4 bytes; attention: the KV cache at 1024 tokens
        CliTest.Result r = CliTest.run("mqar", "train", "--mixer", "sliding", "--d-model", "16", "--window", "4",
                "--train", "16:2:32", "--test", "16:2:16", "--epochs", "1", "--batch", "16");
        assertEquals(0, r.code(), r.err() + r.out());
        assertTrue(r.out().contains("state: 512 bytes"), r.out());
        r = CliTest.run("mqar", "train", "--mixer", "attention", "--d-model", "16", "--train", "16:2:32", "--test",
                "16:2:16", "--epochs", "1", "--batch", "16");
        assertEquals(0, r.code(), r.err() + r.out());
        assertTrue(r.out().contains("state: 131,072 bytes"), r.out());
    }

    @Test
    void mqarArgumentErrorsAreNamed() {
        CliTest.Result r = CliTest.run("mqar", "train", "--mixer", "mamba");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("unknown MQAR mixer 'mamba'"), r.err());
        r = CliTest.run("mqar", "train", "--train", "64:4");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--train: '64:4' is not L:KV:COUNT"), r.err());
        r = CliTest.run("mqar", "train", "--test", "63:4:10");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--test:"), r.err());
    }
}
