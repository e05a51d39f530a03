package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.json.Json;
import io.based4j.train.Settings;
import io.based4j.train.TrainConfig;
import io.based4j.train.Trainer;
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
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A training run on the GPU stopped after its checkpoint at update 8 and resumed there logs, update for update, the
 * losses of the run that was never interrupted: the checkpoint holds the float32 master weights and moments exactly,
 * and every training kernel is deterministic (no atomics whose order varies).
 */
@GpuTest
class CudaResumeTest {
    @TempDir
    Path tmp;

    @ParameterizedTest
    @EnumSource(Precision.class)
    void aResumedRunRepeatsTheUninterruptedLossesExactly(Precision precision) throws IOException {
        Path data = tmp.resolve("data");
        SplittableRandom r = new SplittableRandom(1);
        int[] tokens = new int[4000];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = i % 2 == 1 ? tokens[i - 1] : r.nextInt(64); // some structure, so the loss moves
        }
        DatasetWriter.writeAll(data, tokens, new int[0], Map.of("vocab_size", 64L, "eos_token_id", 0L));
        try (CudaBackend gpu = CudaBackend.open("cuda", precision)) {
            TrainConfig whole = config(data, tmp.resolve("whole"));
            new Trainer(whole, gpu, new PrintWriter(new StringWriter()), false).run(null, Long.MAX_VALUE);
            TrainConfig cut = config(data, tmp.resolve("cut"));
            new Trainer(cut, gpu, new PrintWriter(new StringWriter()), false).run(null, 8);
            new Trainer(cut, gpu, new PrintWriter(new StringWriter()), false).run(tmp.resolve("cut"), Long.MAX_VALUE);
            List<Double> expected = losses(tmp.resolve("whole"));
            assertEquals(12, expected.size());
            assertEquals(expected, losses(tmp.resolve("cut")), precision + ": losses of the resumed run");
        }
    }

    /** 12 updates of 2 x 16 tokens of a conv, linear, swa, conv model, a checkpoint every 4, logged every update. */
    private static TrainConfig config(Path data, Path out) {
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("model", new LinkedHashMap<>(Map.of("d_model", 32, "layers", List.of("conv", "linear", "swa", "conv"),
                "heads", 2, "feature_dim", 16, "window_size", 8, "vocab_size", 64)));
        s.put("data", new LinkedHashMap<>(Map.of("dir", data.toString(), "seq_len", 16)));
        s.put("train", new LinkedHashMap<>(Map.of("steps", 12, "batch_size", 2, "seed", 3, "out", out.toString(),
                "log_interval", 1)));
        s.put("optimizer", new LinkedHashMap<>(Map.of("lr", 1e-2, "warmup_steps", 2)));
        s.put("eval", new LinkedHashMap<>(Map.of("interval", 0)));
        s.put("checkpoint", new LinkedHashMap<>(Map.of("interval", 4)));
        return TrainConfig.from(new Settings("test settings", "", s), null);
    }

    private static List<Double> losses(Path run) throws IOException {
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
