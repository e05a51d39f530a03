package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
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
                assertEquals(before + (runs ? 3 : 0), gpu.gemmRoutes().mlpStep, shape[0] + " x " + shape[1]
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
    }

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
