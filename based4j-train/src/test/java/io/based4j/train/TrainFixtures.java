package io.based4j.train;

import io.based4j.json.Json;
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

/** Token folders, settings and runs for the trainer tests. */
final class TrainFixtures {
    private TrainFixtures() {
    }

    /**
     * Writes a token folder as {@code data tokenize} does: one train shard, one val shard when {@code val} is not
     * null, and the {@code data.json} manifest.
     */
    static Path tokens(Path dir, int[] train, int[] val, int vocab, int eos) {
        DatasetWriter.writeAll(dir, train, val == null ? new int[0] : val,
                Map.of("vocab_size", (long) vocab, "eos_token_id", (long) eos));
        return dir;
    }

    /** Random tokens below {@code vocab} with some structure (every other token repeats its predecessor). */
    static int[] structured(int vocab, int count, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] tokens = new int[count];
        for (int i = 0; i < count; i++) {
            tokens[i] = i % 2 == 1 ? tokens[i - 1] : r.nextInt(vocab);
        }
        return tokens;
    }

    /** A token folder {@code dir} of {@code count} structured training tokens below 64 and no validation split. */
    static Path randomData(Path dir, int count) {
        return tokens(dir, structured(64, count, 1), null, 64, 0);
    }

    static Map<String, Object> smallModel() {
        return new LinkedHashMap<>(Map.of("d_model", 16, "layers", List.of("conv", "linear", "swa", "conv"),
                "heads", 2, "feature_dim", 4, "window_size", 8, "vocab_size", 64));
    }

    /** Settings as a YAML file would give them (seed 3, log every update, no evaluation). */
    static Map<String, Object> settings(Map<String, Object> model, Path data, int seqLen, int steps, int batch,
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

    @SuppressWarnings("unchecked")
    static Map<String, Object> section(Map<String, Object> settings, String name) {
        return (Map<String, Object>) settings.get(name);
    }

    static TrainConfig config(Map<String, Object> settings) {
        return TrainConfig.from(new Settings("test settings", "", settings), null);
    }

    /** Runs the trainer, its notes into {@code notes}. */
    static Trainer.Result train(TrainConfig cfg, Path resume, long stopAt, StringWriter notes) {
        return new Trainer(cfg, new CpuTrainBackend(), new PrintWriter(notes, true), false).run(resume, stopAt);
    }

    static Trainer.Result train(TrainConfig cfg, Path resume, long stopAt) {
        return train(cfg, resume, stopAt, new StringWriter());
    }

    /** The training losses logged in {@code run/metrics.jsonl}. */
    static List<Double> metricLosses(Path run) throws IOException {
        List<Double> out = new ArrayList<>();
        for (String line : Files.readAllLines(run.resolve("metrics.jsonl"))) {
            Object loss = Json.parseObject(line).get("loss");
            if (loss != null) {
                out.add(((Number) loss).doubleValue());
            }
        }
        return out;
    }
}
