package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.train.cpu.CpuTrainBackend;
import io.based4j.train.data.DatasetWriter;
import io.based4j.train.data.TokenManifest;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The data a training run reads: a token folder with a valid manifest, and a validation split that is sound. */
class TrainerDataTest {
    private static final int SEQ_LEN = 8;

    @TempDir
    Path tmp;

    private final StringWriter printed = new StringWriter();

    /** A one-update run of a tiny model on {@code data}, evaluating every update when {@code evalInterval} > 0. */
    private Trainer.Result train(Path data, int evalInterval) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("model", new LinkedHashMap<>(Map.of("d_model", 16, "layers", List.of("conv", "swa"), "heads", 2,
                "window_size", 4, "vocab_size", 32)));
        s.put("data", new LinkedHashMap<>(Map.of("dir", data.toString(), "seq_len", SEQ_LEN)));
        s.put("train", new LinkedHashMap<>(Map.of("steps", 1, "batch_size", 2, "seed", 1, "out",
                tmp.resolve("run").toString())));
        s.put("eval", new LinkedHashMap<>(Map.of("interval", evalInterval, "batches", 1)));
        TrainConfig cfg = TrainConfig.from(new Settings("test settings", "", s), null);
        return new Trainer(cfg, new CpuTrainBackend(), new PrintWriter(printed, true), false).run(null, Long.MAX_VALUE);
    }

    private static int[] tokens(int n) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = i % 32;
        }
        return t;
    }

    /** The run stopped before its first update: it wrote no metrics. */
    private void assertNoTrainingHappened() {
        assertFalse(Files.exists(tmp.resolve("run/metrics.jsonl")));
    }

    @Test
    void aCorruptValidationShardIsAnErrorNamingIt() throws IOException {
        Path data = tmp.resolve("data");
        TokenManifest m = DatasetWriter.writeAll(data, tokens(200), tokens(50));
        Path val = data.resolve(m.shards("val").getFirst().file());
        byte[] bytes = Files.readAllBytes(val);
        bytes[0] = 'X'; // the magic
        Files.write(val, bytes);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(data, 1));
        assertTrue(e.getMessage().contains(val.toString()) && e.getMessage().contains("not a based4j token shard"),
                e.getMessage());
        // also when evaluation is off: the split is declared, so a broken one is an error, never silently dropped
        e = assertThrows(IllegalArgumentException.class, () -> train(data, 0));
        assertTrue(e.getMessage().contains(val.toString()), e.getMessage());
        Files.delete(val);
        e = assertThrows(IllegalArgumentException.class, () -> train(data, 1));
        assertTrue(e.getMessage().contains(val.toString()) && e.getMessage().contains("no such file"), e.getMessage());
        assertNoTrainingHappened();
        assertFalse(printed.toString().contains("validation is skipped"), printed.toString());
    }

    @Test
    void anEmptyValidationSplitIsSkippedWithOneNote() {
        Path data = tmp.resolve("data");
        DatasetWriter.writeAll(data, tokens(200), new int[0]);
        Trainer.Result r = train(data, 1);
        assertEquals(1, r.losses().size());
        List<String> notes = printed.toString().lines().filter(l -> l.contains("validation is skipped")).toList();
        assertEquals(1, notes.size(), printed.toString());
        assertTrue(notes.getFirst().contains(data.toString()), notes.getFirst());
    }

    @Test
    void aValidationSplitShorterThanOneWindowIsAnErrorBeforeTraining() {
        Path data = tmp.resolve("data");
        DatasetWriter.writeAll(data, tokens(200), tokens(SEQ_LEN)); // one token short of seq_len + 1
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(data, 1));
        assertTrue(e.getMessage().contains("holds " + SEQ_LEN + " tokens")
                && e.getMessage().contains("window of " + (SEQ_LEN + 1)), e.getMessage());
        assertNoTrainingHappened();
    }

    @Test
    void aShardFolderWithoutManifestIsRefused() throws IOException {
        Path data = tmp.resolve("data");
        DatasetWriter.writeAll(data, tokens(200), tokens(50));
        Files.delete(data.resolve(TokenManifest.FILE));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(data, 1));
        assertTrue(e.getMessage().contains(data.resolve(TokenManifest.FILE).toString())
                && e.getMessage().contains("not a token folder"), e.getMessage());
        assertNoTrainingHappened();
    }
}
