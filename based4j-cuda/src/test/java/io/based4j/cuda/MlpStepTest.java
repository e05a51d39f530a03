package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.config.ModelConfig;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.model.ModelWeights;
import io.based4j.model.Session;
import io.based4j.tensor.Tensor;
import io.based4j.train.ModelSpec;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaBackend#mlpBranch} against the ops it joins ({@code addRmsNorm}, {@code matmulSwiglu}, {@code matmul}),
 * run apart on the same backend: the residual and the branch's output bit for bit, at one row, for based-1b's and
 * based-360m's widths and awkward ones (fewer pairs and rows than multiprocessors, widths not a multiple of the
 * blocks, a width whose rows gemv cuts in two parts, and 8), each three times in a row on the same grid barrier;
 * {@link Kernels#mlpStep} taken where it runs (bf16, compute capability 9 or more) and counted, not at two rows, not
 * where a part of a row would not fit its slot, and not with {@code -Dbased4j.cuda.mlpStep=false} (a fresh backend).
 */
@GpuTest
class MlpStepTest {
    private static final int[][] SHAPES = {{1792, 3584}, {1024, 2048}, {64, 40}, {200, 136}, {4096, 1000}, {8, 8},
        {1536, 4104}};

    @Test
    void oneKernelIsTheOpsApart() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            boolean runs = gpu.kernels().mlpStepRuns(Precision.BF16, 1792, 3584, 0, 0, 0);
            assertEquals(gpu.kernels().clustersFit(), runs, "mlpStep runs on every device of compute capability 9+");
            SplittableRandom r = new SplittableRandom(12);
            for (int[] shape : SHAPES) {
                // every shape here fits where based-1b's does
                assertEquals(runs, gpu.kernels().mlpStepRuns(Precision.BF16, shape[0], shape[1], 0, 0, 0));
                long before = gpu.gemmRoutes().mlpStep;
                for (int round = 0; round < 3; round++) {
                    check(gpu, 1, shape[0], shape[1], r);
                }
                assertEquals(before + (runs ? 6 : 0), gpu.gemmRoutes().mlpStep, shape[0] + " x " + shape[1]
                        + ": mlpStep " + (runs ? "taken" : "not taken on this device"));
            }
            long before = gpu.gemmRoutes().mlpStep;
            check(gpu, 2, 1792, 3584, r);
            assertEquals(before, gpu.gemmRoutes().mlpStep, "two rows: the ops apart");
            // a width of 32,768: version 3 cuts a row into 8 parts of 512 pieces, past a slot of 256
            assertEquals(0, Kernels.mlpStepParts(2 * 64, 32768));
            assertFalse(gpu.kernels().mlpStepRuns(Precision.BF16, 32768, 64, 0, 0, 0));
            assertFalse(gpu.kernels().mlpStepRuns(Precision.BF16, 1792, 3584, 0, 8, 0), "a misaligned weight");
        }
    }

    @Test
    void theSwitchRunsTheOpsApart() {
        String before = System.getProperty(Kernels.MLP_STEP_PROPERTY);
        System.setProperty(Kernels.MLP_STEP_PROPERTY, "false");
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            assertFalse(gpu.kernels().mlpStepRuns(Precision.BF16, 1792, 3584, 0, 0, 0));
            check(gpu, 1, 1792, 3584, new SplittableRandom(5));
            assertEquals(0, gpu.gemmRoutes().mlpStep);
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.MLP_STEP_PROPERTY);
            } else {
                System.setProperty(Kernels.MLP_STEP_PROPERTY, before);
            }
        }
    }

    @Test
    void sharedMemoryOfBased1bFitsAHopperBlock() {
        int p1 = Kernels.mlpStepParts(2 * 3584, 1792);
        int p2 = Kernels.mlpStepParts(1792, 3584);
        assertEquals(1, p1, "gemv version 3's parts of the in-projection");
        assertEquals(2, p2, "of the out-projection");
        int bytes = Kernels.mlpStepSmem(1792, 3584, p1, p2, 132);
        assertTrue(bytes <= 227 * 1024, bytes + " bytes");
    }

    /** One branch of m rows of width d into h pairs both ways, from the same residual: equal bit for bit. */
    private static void check(CudaBackend gpu, int m, int d, int h, SplittableRandom r) {
        float[] r0 = gaussian(r, m * d, 1);
        float[] g = new float[d];
        for (int i = 0; i < d; i++) {
            g[i] = (float) r.nextDouble(0.6, 1.4);
        }
        Buffer start = gpu.upload(r0, m, d);
        Buffer branch = gpu.upload(gaussian(r, m * d, 0.5), m, d);
        Weight norm = gpu.weight(Tensor.ofFloats(g, d));
        Weight fc1 = gpu.weight(Tensor.ofFloats(gaussian(r, 2 * h * d, 1 / Math.sqrt(d)), 2 * h, d));
        Weight fc2 = gpu.weight(Tensor.ofFloats(gaussian(r, d * h, 1 / Math.sqrt(h)), d, h));
        Buffer apart = gpu.allocateF32(m, d);
        Buffer fused = gpu.allocateF32(m, d);
        gpu.addInPlace(apart, start);
        gpu.addInPlace(fused, start);
        Buffer normed = gpu.allocate(m, d);
        Buffer product = gpu.allocate(m, 2 * h);
        Buffer act = gpu.allocate(m, h);
        Buffer outApart = gpu.allocate(m, d);
        gpu.addRmsNorm(apart, branch, norm, 1e-5, normed);
        gpu.matmulSwiglu(normed, fc1, product, act);
        gpu.matmul(act, fc2, null, outApart);
        Buffer outFused = gpu.allocate(m, d);
        gpu.mlpBranch(fused, branch, norm, 1e-5, gpu.allocate(m, d), fc1, gpu.allocate(m, 2 * h),
                gpu.allocate(m, h), fc2, outFused);
        String what = m + " rows, width " + d + ", " + h + " pairs";
        assertArrayEquals(gpu.download(apart), gpu.download(fused), what + ": the residual");
        assertArrayEquals(gpu.download(outApart), gpu.download(outFused), what + ": the branch's output");
        // out in the branch's own buffer, as the decode step's buffers have it
        Buffer aliased = gpu.allocateF32(m, d);
        gpu.addInPlace(aliased, start);
        Buffer inPlace = gpu.allocate(m, d);
        gpu.addInPlace(inPlace, branch);  // a copy of the branch (0 + x, exact)
        gpu.mlpBranch(aliased, inPlace, norm, 1e-5, gpu.allocate(m, d), fc1, gpu.allocate(m, 2 * h),
                gpu.allocate(m, h), fc2, inPlace);
        assertArrayEquals(gpu.download(apart), gpu.download(aliased), what + ", out the branch: the residual");
        assertArrayEquals(gpu.download(outApart), gpu.download(inPlace), what + ", out the branch: the output");
    }

    @Test
    void decodeStepsGiveTheLogitsOfTheOpsApart() {
        ModelConfig config = ModelSpec.parse("mlpStep test", ModelSpec.configMap(64, List.of("conv", "linear", "swa",
                "conv"), 4, 2, 16, 8, 256, 97, true, true, 1e-5));
        try (Arena arena = Arena.ofConfined()) {
            ModelWeights weights = Initializer.weights(config, 7, arena);
            float[] fused = decode(weights, true);
            float[] apart = decode(weights, false);
            assertArrayEquals(apart, fused, "the logits of 20 decode steps");
        }
    }

    /** The logits of 20 decode steps of one sequence, with mlpStep on or off (the property, a fresh backend). */
    private static float[] decode(ModelWeights weights, boolean on) {
        String before = System.getProperty(Kernels.MLP_STEP_PROPERTY);
        System.setProperty(Kernels.MLP_STEP_PROPERTY, Boolean.toString(on));
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16);
             BasedModel model = BasedModel.of(weights, gpu)) {
            int[] ids = new SplittableRandom(3).ints(20, 0, 97).toArray();
            List<float[]> steps = new ArrayList<>();
            try (Session session = model.newSession(1, ids.length)) {
                for (int id : ids) {
                    steps.add(gpu.download(model.forward(session, session.batch(new int[] {0}, new int[] {1}),
                            new int[] {id}, false, null)));
                }
            }
            // counted as the ops are queued (a replayed step queues none): every layer's MLP where it runs
            long taken = gpu.gemmRoutes().mlpStep;
            if (on && gpu.kernels().clustersFit()) {
                assertTrue(taken >= 4 && taken % 4 == 0, taken + " branches in mlpStep");
            } else {
                assertEquals(0, taken, "mlpStep off, or a device it does not run on");
            }
            float[] all = new float[steps.size() * steps.get(0).length];
            for (int i = 0; i < steps.size(); i++) {
                System.arraycopy(steps.get(i), 0, all, i * steps.get(0).length, steps.get(0).length);
            }
            return all;
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.MLP_STEP_PROPERTY);
            } else {
                System.setProperty(Kernels.MLP_STEP_PROPERTY, before);
            }
        }
    }

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
