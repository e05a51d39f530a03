package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.model.Presets;
import io.based4j.train.ModelSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code bench train}: the FLOPs it counts, and a short run of the MQAR shape on the float64 CPU trainer. */
class BenchTrainCommandTest {

    @Test
    void keysSeenAreCountedPerPosition() {
        // positions 0..3 see 1, 2, 3, 4 keys under full attention; a window of 1 caps them at 2
        assertEquals(2.5, BenchTrainCommand.meanKeys(Integer.MAX_VALUE, 4), 0);
        assertEquals(1.75, BenchTrainCommand.meanKeys(1, 4), 0);
        assertEquals(1.0, BenchTrainCommand.meanKeys(0, 7), 0);
    }

    @Test
    void flopsPerTokenFollowTheStatedConvention() {
        // one full-attention layer, no MLP, d 8, vocab 11: forward = head 2*8*11 + projections 2*4*8*8
        // + scores and values 4*8*(mean keys); training = 3 x forward
        ModelConfig c = ModelSpec.parse("t", ModelSpec.configMap(8, List.of("attn"), 2, 2, 4, 0, 0, 11, true, true,
                1e-5));
        double forward = 2.0 * 8 * 11 + 2.0 * 4 * 8 * 8 + 4.0 * 8 * 2.5;
        assertEquals(3 * forward, BenchTrainCommand.flopsPerToken(c, 4), 1e-9);
        // the released BASED shape is dominated by its weights: 6 x (non-embedding parameters + head) within 10%
        ModelConfig based = Presets.get("based-360m");
        double sixN = 6.0 * (ModelWeightsCount.nonEmbedding(based) + (double) based.dModel() * based.vocabSize());
        double flops = BenchTrainCommand.flopsPerToken(based, 2048);
        assertTrue(flops > sixN && flops < 1.1 * sixN, flops + " vs 6N " + sixN);
    }

    /** Parameters of the projections (everything but the embedding, the norms and the conv taps). */
    private static final class ModelWeightsCount {
        static double nonEmbedding(ModelConfig c) {
            double n = 0;
            for (var w : io.based4j.model.ModelWeights.freshSpecs(c)) {
                if (w.kind() == io.based4j.model.WeightSpec.Kind.MATRIX
                        || w.kind() == io.based4j.model.WeightSpec.Kind.RESIDUAL_MATRIX) {
                    n += io.based4j.tensor.Tensor.numel(w.shape());
                }
            }
            return n;
        }
    }

    @Test
    void theMqarShapeTrainsAndReportsThroughputAndUtilisation(@TempDir Path tmp) throws IOException {
        Path json = tmp.resolve("bench.json");
        CliTest.Result r = CliTest.run("bench", "train", "--preset", "mqar", "--tokens", "512", "--steps", "1",
                "--warmup", "0", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("mqar") && r.out().contains("MFU"), r.out());
        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        assertEquals("cpu", doc.get("device"));
        assertTrue((double) doc.get("matmul_flops_per_s") > 1e8, doc.toString());
        @SuppressWarnings("unchecked")
        Map<String, Object> row = ((List<Map<String, Object>>) doc.get("results")).getFirst();
        assertEquals(2L, row.get("batch"));
        assertEquals(256L, row.get("seq_len"));
        double mfu = (double) row.get("mfu");
        // a whole step cannot beat its own matrix products by much (the head's are most of its FLOPs)
        assertTrue(mfu > 0 && mfu < 1.5, "mfu " + mfu);
        assertTrue((double) row.get("tokens_per_s") > 0);
    }

    @Test
    void theMqarShapesTrainOnMqarExamplesWithAQuarterOfTheRowsScored(@TempDir Path tmp) throws IOException {
        Path json = tmp.resolve("bench.json");
        CliTest.Result r = CliTest.run("bench", "train", "--preset", "mqar-sliding,mqar-attention", "--tokens", "512",
                "--steps", "1", "--warmup", "0", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> rows = (List<Map<String, Object>>) doc.get("results");
        assertEquals(List.of("mqar-sliding", "mqar-attention"), rows.stream().map(x -> x.get("shape")).toList());
        for (Map<String, Object> row : rows) {
            // two examples of the (256, 64) slice: 64 queries each
            assertEquals(128L, row.get("scored_targets"), row.toString());
            assertTrue((double) row.get("tokens_per_s") > 0, row.toString());
        }
        // the head counted over the scored quarter of the rows: 2 d V / 4 of the forward's FLOPs a token
        ModelConfig sliding = ModelSpec.parse("t", io.based4j.train.mqar.MqarModel.sliding(128, 64).configMap(1));
        assertEquals(BenchTrainCommand.flopsPerToken(sliding, 256, 0.25), (double) rows.getFirst().get("flops_per_token"),
                1e-6);
        assertEquals(BenchTrainCommand.flopsPerToken(sliding, 256) - 3 * 0.75 * 2.0 * 128 * sliding.vocabSize(),
                BenchTrainCommand.flopsPerToken(sliding, 256, 0.25), 1e-3);
    }

    @Test
    void theProfileTimesEveryOpOfOneStep(@TempDir Path tmp) throws IOException {
        Path json = tmp.resolve("bench.json");
        CliTest.Result r = CliTest.run("bench", "train", "--preset", "mqar", "--tokens", "512", "--steps", "1",
                "--warmup", "0", "--profile", "--json", json.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("one step op by op") && r.out().contains("matmulBackward"), r.out());
        Map<String, Object> doc = Json.parseObject(Files.readString(json));
        @SuppressWarnings("unchecked")
        Map<String, Object> row = ((List<Map<String, Object>>) doc.get("results")).getFirst();
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> ops = (List<Map<String, Object>>) row.get("profile");
        double total = 0;
        long forward = 0;
        long backward = 0;
        for (Map<String, Object> op : ops) {
            double ms = (double) op.get("ms");
            assertTrue(ms >= 0, op.toString());
            total += ms;
            if (op.get("op").equals("matmul") || op.get("op").equals("matmulAdd")) {
                forward += (long) op.get("calls");
            } else if (op.get("op").equals("matmulBackward")) {
                backward += (long) op.get("calls");
            }
        }
        // every projection that runs forward (matmulAdd: those that end a residual branch) runs backward once in the
        // step (the head's products are in the loss)
        assertTrue(forward > 0 && forward == backward, "matmul " + forward + ", matmulBackward " + backward);
        // the ops of one step cannot take longer than a few steps' time (they are part of one)
        assertTrue(total > 0 && total / 1e3 < 20 * (double) row.get("seconds_per_step"), "ops " + total + " ms");
        assertTrue(ops.stream().anyMatch(o -> o.get("shapes").toString().contains("512x128")), ops.toString());
    }

    @Test
    void badValuesAreUsageErrors() {
        assertEquals(2, CliTest.run("bench", "train", "--steps", "0").code());
        assertEquals(2, CliTest.run("bench", "train", "--preset", "huge").code());
        assertEquals(2, CliTest.run("bench", "train", "--device", "tpu").code());
    }
}
