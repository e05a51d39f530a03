package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TrainingBackend;
import io.based4j.config.ModelConfig;
import io.based4j.model.Initializer;
import io.based4j.tensor.Tensor;
import io.based4j.train.AdamW;
import io.based4j.train.ModelSpec;
import io.based4j.train.Param;
import io.based4j.train.TrainModel;
import io.based4j.train.cpu.CpuTrainBackend;
import java.lang.foreign.Arena;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Whole models trained through {@link TrainModel} on the CUDA backend against the same models on the float64
 * {@link CpuTrainBackend}: the same initial weights, the same batches. One pass's loss and every parameter's
 * gradient in float32; then 50 AdamW steps, whose loss curve on the GPU must follow the CPU's (float32 closely, bf16
 * more loosely).
 */
@GpuTest
class CudaTrainModelTest {
    static final int VOCAB = 37;
    static final int BATCH = 2;
    static final int SEQ_LEN = 19;

    static Stream<Arguments> models() {
        return Stream.of(
                Arguments.of("conv, linear and swa layers with MLP", List.of("conv", "linear", "swa"), 64L),
                Arguments.of("attention only", List.of("attn", "attn"), 64L));
    }

    /** d 32; 2 attention heads of 16, linear attention over 2 heads with feature dim 16; window 6. */
    static ModelConfig config(List<String> layers, long nInner) {
        return ModelSpec.parse("test", ModelSpec.configMap(32, layers, 2, 2, 16, 6, nInner, VOCAB, true, true, 1e-5));
    }

    /** The recipe's initial weights with norms moved off 1, so that every gradient term is exercised. */
    static Map<String, Tensor> state(ModelConfig config, long seed, Arena arena) {
        Map<String, Tensor> dict = Initializer.stateDict(config, seed, arena);
        SplittableRandom r = new SplittableRandom(seed);
        dict.replaceAll((k, t) -> {
            if (!k.contains("norm") && !k.contains("ln_f")) {
                return t;
            }
            float[] v = t.toFloatArray();
            for (int i = 0; i < v.length; i++) {
                v[i] += (float) ((r.nextDouble() * 2 - 1) * 0.3);
            }
            return Tensor.ofFloats(v, t.shape());
        });
        return dict;
    }

    /** Structured tokens (every other token repeats its predecessor) and next-token targets, some ignored. */
    static int[][] batch(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int n = BATCH * SEQ_LEN;
        int[] ids = new int[n];
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) {
            ids[i] = i % 2 == 1 ? ids[i - 1] : r.nextInt(VOCAB);
        }
        for (int i = 0; i < n; i++) {
            boolean last = i % SEQ_LEN == SEQ_LEN - 1;
            targets[i] = last || i % 7 == 3 ? TrainingBackend.IGNORE_INDEX : ids[i + 1];
        }
        return new int[][] {ids, targets};
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void gradientsMatchTheFloat64Reference(String name, List<String> layers, long nInner) {
        ModelConfig config = config(layers, nInner);
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            Map<String, Tensor> init = state(config, 5, arena);
            TrainModel ref = new TrainModel(config, init, new CpuTrainBackend(), name);
            TrainModel model = new TrainModel(config, init, gpu, name);
            int[][] b = batch(9);
            TrainModel.Pass want = ref.forward(b[0], b[1], BATCH, SEQ_LEN, true, 1.0 / 30);
            TrainModel.Pass got = model.forward(b[0], b[1], BATCH, SEQ_LEN, true, 1.0 / 30);
            // a sum of ~30 per-token losses, each after a few layers of float32 arithmetic
            assertEquals(want.lossSum(), got.lossSum(), 1e-5 * Math.abs(want.lossSum()), "summed loss");
            assertEquals(want.counted(), got.counted());
            for (Param p : ref.params()) {
                Param q = model.param(p.name());
                // float32 through every layer and back: each gradient element within 1e-4 of the largest element
                // of that gradient (rounding errors of the order of 100 operations of 2^-24 each, with cancellation)
                Near.normwise("gradient of " + p.name(), Near.toDouble(ref.backend().download(p.grad())),
                        gpu.download(q.grad()), 1e-4);
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void fiftyStepsFollowTheReferenceLossCurve(String name, List<String> layers, long nInner) {
        ModelConfig config = config(layers, nInner);
        double[] want = curve(config, name, new CpuTrainBackend());
        assertTrue(want[want.length - 1] < want[0] - 0.5, "the reference learns: " + want[0] + " -> "
                + want[want.length - 1]);
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32)) {
            double[] got = curve(config, name, gpu);
            // float32 rounding in every step compounds through AdamW's normalised updates; 50 steps stay within
            // 1e-3 of the reference (relative), far below the 0.5 the loss falls by
            for (int s = 0; s < want.length; s++) {
                assertEquals(want[s], got[s], 1e-3 * want[s], "f32 mean loss at step " + s);
            }
        }
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            double[] got = curve(config, name, gpu);
            // bf16 weights, activations and activation gradients carry 8 significant bits (relative error 2^-9 per
            // rounding, over some hundred roundings a pass), and the trajectories part a little more each step: the
            // curve is held to 10% of the reference at every step (the loss falls by more than 50% over the run)
            for (int s = 0; s < want.length; s++) {
                assertEquals(want[s], got[s], 0.10 * want[s], "bf16 mean loss at step " + s);
            }
        }
    }

    /** The mean loss of each of 50 AdamW steps (lr 3e-3, the recipe's other settings), a new batch each step. */
    static double[] curve(ModelConfig config, String name, TrainingBackend backend) {
        try (Arena arena = Arena.ofShared()) {
            TrainModel model = new TrainModel(config, state(config, 5, arena), backend, name);
            AdamW opt = new AdamW(model, AdamW.Settings.DEFAULTS);
            double[] losses = new double[50];
            for (int s = 0; s < losses.length; s++) {
                int[][] b = batch(100 + s % 4);
                model.zeroGrad();
                int counted = 0;
                for (int t : b[1]) {
                    counted += t == TrainingBackend.IGNORE_INDEX ? 0 : 1;
                }
                TrainModel.Pass pass = model.forward(b[0], b[1], BATCH, SEQ_LEN, true, 1.0 / counted);
                losses[s] = pass.meanLoss();
                opt.update(3e-3);
            }
            return losses;
        }
    }
}
