package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
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
        Files.writeString(tmp.resolve("run.yaml"), """
                model:
                  d_model: 16
                  layers: [conv, linear, swa]
                  heads: 2
                  feature_dim: 4
                  window_size: 8
                  n_inner: 32
                data:
                  dir: shards
                  seq_len: 16
                train:
                  steps: 4
                  batch_size: 2
                  out: run
                  log_interval: 2
                optimizer:
                  lr: 1e-3
                eval:
                  interval: 2
                  batches: 1
                checkpoint:
                  interval: 2
                """);
        CliTest.Result r = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString());
        assertEquals(0, r.code(), r.err() + r.out());
        assertTrue(r.out().contains("validation loss"), r.out());
        Path ck = tmp.resolve("run/checkpoints/step-00000004");
        assertTrue(r.out().contains(ck.toString()), r.out());
        List<String> metrics = Files.readAllLines(tmp.resolve("run/metrics.jsonl"));
        assertTrue(metrics.stream().anyMatch(l -> l.contains("\"val_ppl\"")), metrics.toString());
        Map<String, Object> first = Json.parseObject(metrics.getFirst());
        assertTrue(first.keySet().containsAll(List.of("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s")),
                first.toString());

        CliTest.Result g = CliTest.run("generate", "--model", ck.toString(), "--prompt", "The sea", "-n", "4",
                "--temperature", "0");
        assertEquals(0, g.code(), g.err());
        assertTrue(g.out().startsWith("The sea"), g.out());

        CliTest.Result again = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString());
        assertEquals(1, again.code());
        assertTrue(again.err().contains("already holds checkpoints") && again.err().contains("--resume"), again.err());

        CliTest.Result resumed = CliTest.run("train", "--config", tmp.resolve("run.yaml").toString(), "--resume",
                tmp.resolve("run").toString(), "--steps", "6");
        assertEquals(0, resumed.code(), resumed.err());
        assertTrue(resumed.out().contains("resuming from") && resumed.out().contains("update 4"), resumed.out());
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
