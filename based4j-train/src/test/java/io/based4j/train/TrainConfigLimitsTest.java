package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Hostile training settings files (JSON and YAML): one line naming the file, never a stack overflow. */
class TrainConfigLimitsTest {
    @TempDir
    Path tmp;

    private static final String MODEL = "model:\n  d_model: 16\n  layers: [conv]\n  vocab_size: 64\n"
            + "data:\n  dir: shards\n";

    private Path write(String name, String text) throws IOException {
        Path file = tmp.resolve(name);
        Files.writeString(file, text);
        return file;
    }

    private static Settings.SettingsException refused(Path file, String... parts) {
        Settings.SettingsException e = assertThrows(Settings.SettingsException.class, () -> TrainConfig.read(file));
        assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "\"" + e.getMessage() + "\" should mention " + p);
        }
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
        return e;
    }

    @Test
    void deeplyNestedJsonSettings() throws IOException {
        refused(write("run.json", "[".repeat(100_000)), "not valid JSON", "line 1, column 65",
                "deeper than the limit of 64 levels");
    }

    @Test
    void deeplyNestedYamlSettings() throws IOException {
        refused(write("flow.yaml", "[".repeat(100_000)), "not valid YAML", "deeper than the limit of 64 levels");
        StringBuilder block = new StringBuilder();
        for (int i = 0; i < 200; i++) {
            block.append(" ".repeat(i)).append("a:\n");
        }
        refused(write("block.yaml", block.toString()), "not valid YAML", "deeper than the limit of 64 levels");
    }

    @Test
    void yamlAliasesAreLimited() throws IOException {
        // "billion laughs": each level refers to the one before twice
        StringBuilder bomb = new StringBuilder("l0: &l0 [lol, lol]\n");
        for (int i = 1; i <= 30; i++) {
            bomb.append("l").append(i).append(": &l").append(i).append(" [*l").append(i - 1).append(", *l")
                    .append(i - 1).append("]\n");
        }
        refused(write("bomb.yaml", bomb.toString()), "not valid YAML", "aliases");

        // a few anchors are fine
        Path ok = write("anchors.yaml", "model: &m\n  d_model: 16\n  layers: &kinds [conv, linear]\n  vocab_size: 64\n"
                + "data:\n  dir: shards\n  seq_len: 8\n");
        assertEquals(16, TrainConfig.read(ok).model().dModel());
    }

    @Test
    void recursiveYamlIsRefused() throws IOException {
        refused(write("loop.yaml", "model: &m\n  d_model: 16\n  inner: *m\n"), "contain itself");
        refused(write("key.yaml", "? &k [*k]\n: 1\n"), "not valid YAML");
    }

    @Test
    void aFieldWithNoValueIsRefusedNotDefaulted() throws IOException {
        refused(write("empty.yaml", MODEL + "train:\n  steps:\n  batch_size: 2\n"), "train.steps has no value");
        refused(write("null.json", "{\"model\": {\"d_model\": 16, \"layers\": [\"conv\"], \"vocab_size\": 64},"
                + " \"data\": {\"dir\": \"shards\", \"seq_len\": null}}"), "data.seq_len has no value");
    }

    @Test
    void yamlKeysAreUniqueText() throws IOException {
        refused(write("dup.yaml", MODEL + "train:\n  steps: 3\n  steps: 4\n"), "not valid YAML", "duplicate", "line");
        refused(write("num.yaml", MODEL + "train:\n  1: 3\n"), "setting names must be text", "'1'");
    }

    @Test
    void oversizedSettingsFileIsRefusedUnread() throws IOException {
        Path file = tmp.resolve("huge.yaml");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(TrainConfig.MAX_FILE_BYTES + 1); // sparse: nothing is written
        }
        refused(file, String.valueOf(TrainConfig.MAX_FILE_BYTES + 1), "limit of " + TrainConfig.MAX_FILE_BYTES);
    }

    @Test
    void modelConfigFileIsReadWithLimits() throws IOException {
        write("config.json", "{\"n_embd\": " + "[".repeat(100_000));
        Settings.SettingsException e = assertThrows(Settings.SettingsException.class, () -> TrainConfig.read(
                write("cfg.yaml", "model:\n  config: config.json\ndata:\n  dir: shards\n")));
        assertTrue(e.getMessage().contains("config.json: invalid JSON at line 1")
                && e.getMessage().contains("deeper than the limit"), e.getMessage());
    }

    @Test
    void aMicroBatchMustFitAnArray() throws IOException {
        // 2^20 sequences of 2^20 tokens: 2^40 token ids, which no int-indexed array can hold
        refused(write("tokens.yaml", "model:\n  d_model: 16\n  layers: [conv]\n  vocab_size: 64\n"
                + "data:\n  dir: shards\n  seq_len: 1048576\ntrain:\n  batch_size: 1048576\n"),
                "train.batch_size 1048576", "data.seq_len 1048576", "tokens per micro-batch");
        // 64 x 2^20 tokens fit, but a conv layer's in_proj output (4 x 16 values per token; no MLP) does not
        refused(write("widths.yaml", "model:\n  d_model: 16\n  layers: [conv]\n  vocab_size: 64\n  n_inner: 0\n"
                + "data:\n  dir: shards\n  seq_len: 1048576\ntrain:\n  batch_size: 64\n"),
                "67108864 tokens per micro-batch", "64 values per token");
    }

    @Test
    void integersAreExactBeyondDoublePrecision() throws IOException {
        long seed = (1L << 53) + 1; // the first integer a double cannot hold
        Path file = write("seed.yaml", MODEL + "train:\n  seed: " + seed + "\n");
        assertEquals(seed, TrainConfig.read(file).seed());
        Path json = write("seed.json", "{\"model\": {\"d_model\": 16, \"layers\": [\"conv\"], \"vocab_size\": 64},"
                + " \"data\": {\"dir\": \"shards\"}, \"train\": {\"seed\": " + seed + "}}");
        assertEquals(seed, TrainConfig.read(json).seed());
        assertEquals(64, Json.MAX_DEPTH, "the YAML nesting limit is the JSON one");
    }
}
