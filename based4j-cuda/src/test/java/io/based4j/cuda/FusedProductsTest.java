package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaBackend#matmulSwiglu} and {@link CudaBackend#matmulBaseConv} against the ops they join, run apart on
 * the same backend: the same numbers bit for bit at every number of rows (one kernel where gemv takes one or two
 * rows, the two ops otherwise), at based-1b's shapes of the MLP's and BaseConv's in-projections, three decode steps
 * of the conv (its history filled, then shifted); the fused
 * kernels taken at one row and not at three (gemmRows or the library then), and not at all with
 * {@code -Dbased4j.cuda.fusedProducts=false}.
 */
@GpuTest
class FusedProductsTest {
    private static final int D = 1792;
    private static final int HIDDEN = 3584;
    /** Decode steps of the conv checked: its history (2 taps) filled, then shifted. */
    private static final int CONV_STEPS = 3;

    @Test
    void theFusedOpsAreTheOpsApart() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            for (int m : new int[] {1, 2, 3}) {
                GemmRoutes before = gpu.gemmRoutes().copy();
                check(gpu, m, new SplittableRandom(m));
                GemmRoutes after = gpu.gemmRoutes();
                if (m == 1) {
                    assertEquals(before.gemvSwiglu + 1, after.gemvSwiglu, "one row: the MLP in-projection's kernel");
                    assertEquals(before.gemvConv + CONV_STEPS, after.gemvConv,
                            "one row: BaseConv's in-projection's kernel, each step");
                }
                if (m == 2) {
                    // BaseConv's in-projection (3,584 outputs) stays on gemv at two rows; the MLP's goes to gemmRows
                    assertEquals(before.gemvConv + CONV_STEPS, after.gemvConv, "two rows: BaseConv's kernel");
                }
                if (m == 3) {
                    assertEquals(before.gemvSwiglu, after.gemvSwiglu, "three rows: no fused kernel");
                    assertEquals(before.gemvConv, after.gemvConv, "three rows: no fused kernel");
                }
            }
        }
    }

    @Test
    void theSwitchRunsTheOpsApart() {
        String before = System.getProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY);
        System.setProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY, "false");
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            check(gpu, 1, new SplittableRandom(1));
            assertEquals(0, gpu.gemmRoutes().gemvSwiglu);
            assertEquals(0, gpu.gemmRoutes().gemvConv);
        } finally {
            if (before == null) {
                System.clearProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY);
            } else {
                System.setProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY, before);
            }
        }
    }

    private static void check(CudaBackend gpu, int m, SplittableRandom r) {
        // the MLP's in-projection and SwiGLU
        Backend.Buffer x = gpu.upload(gaussian(r, m * D, 1), m, D);
        Backend.Weight fc1 = gpu.weight(Tensor.ofFloats(gaussian(r, 2 * HIDDEN * D, 1 / Math.sqrt(D)), 2 * HIDDEN, D));
        Backend.Buffer product = gpu.allocate(m, 2 * HIDDEN);
        Backend.Buffer apart = gpu.allocate(m, HIDDEN);
        Backend.Buffer fused = gpu.allocate(m, HIDDEN);
        gpu.matmul(x, fc1, null, product);
        gpu.swiglu(product, apart);
        gpu.matmulSwiglu(x, fc1, gpu.allocate(m, 2 * HIDDEN), fused);
        assertArrayEquals(gpu.download(apart), gpu.download(fused), m + " rows: matmulSwiglu");

        // BaseConv's in-projection (with its bias) and its decode step, sequences in slots 1 and 0 of 3
        MixerConfig.BaseConv conv = new MixerConfig.BaseConv(D / 2, 3, true);
        int inner = conv.innerWidth();
        TokenBatch batch = TokenBatch.step(java.util.Arrays.copyOf(new int[] {1, 0, 2}, m),
                java.util.Arrays.copyOf(new int[] {4, 9, 2}, m));
        Backend.Weight in = gpu.weight(Tensor.ofFloats(gaussian(r, 2 * inner * D, 1 / Math.sqrt(D)), 2 * inner, D));
        Backend.Weight bias = gpu.weight(Tensor.ofFloats(gaussian(r, 2 * inner, 1), 2 * inner));
        Backend.Weight taps = gpu.weight(Tensor.ofFloats(gaussian(r, inner * 3, 1), inner, 1, 3));
        Backend.MixerState stateApart = gpu.allocateState(conv, 3, 64);
        Backend.MixerState stateFused = gpu.allocateState(conv, 3, 64);
        Backend.Buffer u = gpu.allocate(m, 2 * inner);
        Backend.Buffer convApart = gpu.allocate(m, inner);
        Backend.Buffer convFused = gpu.allocate(m, inner);
        for (int step = 0; step < CONV_STEPS; step++) {  // the history filled by the steps, then shifted
            Backend.Buffer xs = gpu.upload(gaussian(r, m * D, 1), m, D);
            gpu.matmul(xs, in, bias, u);
            gpu.baseConv(conv, u, taps, batch, stateApart, convApart, null);
            gpu.matmulBaseConv(conv, xs, in, bias, gpu.allocate(m, 2 * inner), taps, batch, stateFused, convFused);
            assertArrayEquals(gpu.download(convApart), gpu.download(convFused), m + " rows, step " + step
                    + ": matmulBaseConv");
        }
    }

    private static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (scale * r.nextGaussian());
        }
        return out;
    }
}
