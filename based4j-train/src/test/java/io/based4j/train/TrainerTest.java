package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.cpu.CpuBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.Generator;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.cpu.CpuTrainBackend;
import io.based4j.train.data.DatasetWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TrainerTest {
    @TempDir
    Path tmp;

    private static final String TEXT = "Call me Ishmael. Some years ago, never mind how long precisely, having little or"
            + " no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a"
            + " little and see the watery part of the world.";

    /** Settings as a YAML file would give them. */
    private Map<String, Object> settings(Map<String, Object> model, Path data, int seqLen, int steps, int batch,
                                         int ckpt, double lr, Path out) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("model", model);
        s.put("data", new LinkedHashMap<>(Map.of("dir", data.toString(), "seq_len", seqLen)));
        s.put("train", new LinkedHashMap<>(Map.of("steps", steps, "batch_size", batch, "seed", 3, "out", out.toString(),
                "log_interval", 1)));
        s.put("optimizer", new LinkedHashMap<>(Map.of("lr", lr, "warmup_steps", 5)));
        s.put("eval", new LinkedHashMap<>(Map.of("interval", 0)));
        s.put("checkpoint", new LinkedHashMap<>(Map.of("interval", ckpt)));
        return s;
    }

    private static TrainConfig config(Map<String, Object> settings) {
        return TrainConfig.from(new Settings("test settings", "", settings), null);
    }

    private Trainer.Result train(TrainConfig cfg, Path resume, long stopAt) {
        return new Trainer(cfg, new CpuTrainBackend(), new PrintWriter(new StringWriter()), false).run(resume, stopAt);
    }

    @Test
    void tinyModelMemorisesAShortTextAndGenerateLoadsTheCheckpoint() {
        Gpt2Tokenizer tok = Gpt2Tokenizer.load();
        int[] text = tok.encode(TEXT);
        int[] tokens = java.util.Arrays.copyOf(text, text.length + 1);
        tokens[text.length] = tok.eosId();
        Path data = tmp.resolve("data");
        DatasetWriter.writeAll(data, tokens, new int[0]);
        Map<String, Object> model = new LinkedHashMap<>(Map.of("d_model", 64, "layers", List.of("conv", "linear", "swa"),
                "heads", 2, "feature_dim", 8, "window_size", 16));
        TrainConfig cfg = config(settings(model, data, 32, 120, 4, 0, 3e-3, tmp.resolve("run")));
        Trainer.Result r = train(cfg, null, Long.MAX_VALUE);
        double last = r.losses().getLast();
        assertTrue(last < 0.1, "final training loss " + last + " is not below 0.1; losses " + r.losses());

        // the checkpoint is an HF-layout model directory: inference loads it and recites the text greedily
        try (BasedModel m = BasedModel.load(r.checkpoint(), new CpuBackend())) {
            var result = new Generator(m, tok).generate(List.of(new GenerationRequest(
                    java.util.Arrays.copyOf(text, 4), 12, SamplingParams.greedy(), List.of(), true)), null);
            int[] got = result.getFirst().tokens();
            assertArrayEquals(java.util.Arrays.copyOfRange(text, 4, 16), got, "greedy continuation of the memorised text");
        }
    }

    /** Random tokens below a small vocabulary, as a training split without validation. */
    private Path randomData(int vocab, int count) {
        Path data = tmp.resolve("random");
        SplittableRandom r = new SplittableRandom(1);
        int[] tokens = new int[count];
        for (int i = 0; i < count; i++) {
            // some structure so that the loss moves: every other token repeats its predecessor
            tokens[i] = i % 2 == 1 ? tokens[i - 1] : r.nextInt(vocab);
        }
        DatasetWriter.writeAll(data, tokens, new int[0]);
        return data;
    }

    private static Map<String, Object> smallModel() {
        return new LinkedHashMap<>(Map.of("d_model", 16, "layers", List.of("conv", "linear", "swa", "conv"),
                "heads", 2, "feature_dim", 4, "window_size", 8, "vocab_size", 64));
    }

    private static List<Double> metricLosses(Path run) throws IOException {
        List<Double> out = new ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            Object loss = Json.parseObject(line).get("loss");
            if (loss != null) {
                out.add(((Number) loss).doubleValue());
            }
        }
        return out;
    }

    @Test
    void resumingAfterAnInterruptionGivesTheUninterruptedLossesExactly() throws IOException {
        Path data = randomData(64, 5000);
        TrainConfig full = config(settings(smallModel(), data, 16, 12, 3, 5, 1e-2, tmp.resolve("full")));
        List<Double> expected = train(full, null, Long.MAX_VALUE).losses();
        assertEquals(12, expected.size());

        Path cut = tmp.resolve("cut");
        TrainConfig cfg = config(settings(smallModel(), data, 16, 12, 3, 5, 1e-2, cut));
        // runs updates 1..8, checkpoints at 5, and stops as if killed after update 8
        Trainer.Result first = train(cfg, null, 8);
        assertEquals(expected.subList(0, 8), first.losses());
        assertTrue(Files.isDirectory(cut.resolve("checkpoints/step-00000005")));
        assertFalse(Files.exists(cut.resolve("checkpoints/step-00000008")));

        // a checkpoint whose writing was cut short stays a temporary directory, which resuming passes over
        Path partial = Files.createDirectories(cut.resolve("checkpoints/step-00000008.tmp"));
        Files.writeString(partial.resolve(Checkpoint.CONFIG), "{\"n_embd\": ");

        Trainer.Result resumed = train(cfg, cut, Long.MAX_VALUE);
        assertEquals(5, resumed.firstStep());
        assertEquals(expected.subList(5, 12), resumed.losses(), "losses after resuming from update 5");
        // the metrics log of the interrupted run is cut back to the checkpoint and continued: it reads as one run
        assertEquals(expected, metricLosses(cut));
        assertEquals(metricLosses(tmp.resolve("full")), metricLosses(cut));
    }

    @Test
    void corruptOrIncompleteCheckpointsAreNamed() throws IOException {
        Path data = randomData(64, 2000);
        Path run = tmp.resolve("run");
        TrainConfig cfg = config(settings(smallModel(), data, 8, 2, 2, 1, 1e-3, run));
        Path ck = train(cfg, null, Long.MAX_VALUE).checkpoint();

        Path opt = ck.resolve(Checkpoint.OPTIMIZER);
        byte[] bytes = Files.readAllBytes(opt);
        Files.write(opt, java.util.Arrays.copyOf(bytes, bytes.length - 100));
        RuntimeException e = assertThrows(RuntimeException.class, () -> train(cfg, ck, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains(Checkpoint.OPTIMIZER) && e.getMessage().contains("past the end"),
                e.getMessage());

        Files.delete(ck.resolve(Checkpoint.TRAINER));
        Files.delete(opt);
        e = assertThrows(IllegalArgumentException.class, () -> train(cfg, ck, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("not a complete training checkpoint"), e.getMessage());

        e = assertThrows(IllegalArgumentException.class, () -> train(cfg, tmp.resolve("nowhere"), Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void resumingWithADifferentModelIsRefused() {
        Path data = randomData(64, 2000);
        Path run = tmp.resolve("run");
        Path ck = train(config(settings(smallModel(), data, 8, 2, 2, 1, 1e-3, run)), null, Long.MAX_VALUE).checkpoint();
        Map<String, Object> other = smallModel();
        other.put("d_model", 32);
        TrainConfig cfg = config(settings(other, data, 8, 2, 2, 1, 1e-3, run));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(cfg, ck, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("different model"), e.getMessage());
    }

    @Test
    void tokensOutsideTheModelVocabularyAreNamed() {
        Path data = randomData(64, 2000);
        Map<String, Object> model = smallModel();
        model.put("vocab_size", 16);
        TrainConfig cfg = config(settings(model, data, 8, 2, 2, 0, 1e-3, tmp.resolve("run")));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> train(cfg, null, Long.MAX_VALUE));
        assertTrue(e.getMessage().contains("outside the vocabulary"), e.getMessage());
    }

    @Test
    void settingsErrorsNameTheField() throws IOException {
        Map<String, Object> s = settings(smallModel(), tmp, 8, 2, 2, 0, 1e-3, tmp.resolve("run"));
        ((Map<String, Object>) s.get("optimizer")).put("learning_rate", 1e-3);
        Exception e = assertThrows(Settings.SettingsException.class, () -> config(s));
        assertTrue(e.getMessage().contains("unknown setting optimizer.learning_rate"), e.getMessage());

        Map<String, Object> s2 = settings(smallModel(), tmp, 8, 2, 2, 0, 1e-3, tmp.resolve("run"));
        ((Map<String, Object>) s2.get("train")).put("steps", "many");
        e = assertThrows(Settings.SettingsException.class, () -> config(s2));
        assertTrue(e.getMessage().contains("train.steps must be an integer"), e.getMessage());

        Map<String, Object> s3 = settings(smallModel(), tmp, 8, 2, 2, 0, 1e-3, tmp.resolve("run"));
        ((Map<String, Object>) s3.get("model")).put("layers", List.of("conv", "mamba"));
        e = assertThrows(Settings.SettingsException.class, () -> config(s3));
        assertTrue(e.getMessage().contains("unknown layer kind 'mamba'"), e.getMessage());

        Path yaml = tmp.resolve("run.yaml");
        Files.writeString(yaml, "model:\n  d_model: 16\n  layers: [conv, linear]\n  vocab_size: 64\n"
                + "data:\n  dir: shards\n  seq_len: 8\noptimizer:\n  lr: 1e-3\n  betas: [0.9, 0.99]\n");
        TrainConfig c = TrainConfig.read(yaml);
        assertEquals(1e-3, c.lr());
        assertEquals(0.99, c.optimizer().beta2());
        assertEquals(tmp.resolve("shards"), c.data());
        Files.writeString(yaml, "model: [unclosed\n");
        e = assertThrows(Settings.SettingsException.class, () -> TrainConfig.read(yaml));
        assertTrue(e.getMessage().contains("is not valid YAML"), e.getMessage());
    }
}
