package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.Backend;
import io.based4j.backend.Normed;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * A decode step's fused ops on {@link CudaBackend} against the ops they join, run apart on the same backend, as the
 * layer stack calls them: a branch's last product added into the residual ({@link CudaBackend#matmulAddInto}, else
 * written and left pending), then the next norm's rows read by the products after it ({@link Normed}:
 * {@link CudaBackend#normedMatmul}, {@link CudaBackend#matmulSwiglu}, {@link CudaBackend#matmulBaseConv}), against
 * {@code matmul} into a branch, {@code addRmsNorm}, then the products, SwiGLU and BaseConv's step apart. The same
 * numbers bit for bit (outputs, the residual, the conv history over three steps) at one, two and three rows, at
 * based-1b's shapes; the fused kernels taken at one row and not at three (gemmRows or the library then), and none
 * with {@code -Dbased4j.cuda.fusedProducts=false}.
 */
@GpuTest
class FusedProductsTest {
    private static final int D = 1792;
    private static final int HIDDEN = 3584;
    /** Decode steps of the conv checked: its history (2 taps) filled, then shifted. */
    private static final int CONV_STEPS = 3;
    private static final double EPS = 1e-5;

    @Test
    void theFusedOpsAreTheOpsApart() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            for (int m : new int[] {1, 2, 3}) {
                GemmRoutes before = gpu.gemmRoutes().copy();
                check(gpu, m, new SplittableRandom(m));
                GemmRoutes after = gpu.gemmRoutes();
                if (m == 1) {
                    // per step: the MLP's in-projection, BaseConv's, a plain product; the branch's end each time
                    assertEquals(before.gemvSwiglu + CONV_STEPS, after.gemvSwiglu, "one row: gemvSwiglu");
                    assertEquals(before.gemvConv + CONV_STEPS, after.gemvConv, "one row: gemvConv");
                    assertEquals(before.gemvNormed + 3 * CONV_STEPS, after.gemvNormed, "one row: norms taken in");
                    assertEquals(before.gemvAdd + 3 * CONV_STEPS, after.gemvAdd, "one row: gemvAdd");
                }
                if (m == 2) {
                    // BaseConv's in-projection (3,584 outputs) and the plain product stay on gemv at two rows
                    assertEquals(before.gemvConv + CONV_STEPS, after.gemvConv, "two rows: gemvConv");
                    assertEquals(before.gemvAdd + 3 * CONV_STEPS, after.gemvAdd, "two rows: gemvAdd");
                }
                if (m == 3) {
                    assertEquals(before.gemvSwiglu + before.gemvConv + before.gemvNormed + before.gemvAdd,
                            after.gemvSwiglu + after.gemvConv + after.gemvNormed + after.gemvAdd,
                            "three rows: no fused kernel");
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
            GemmRoutes r = gpu.gemmRoutes();
            assertEquals(0, r.gemvSwiglu + r.gemvConv + r.gemvNormed + r.gemvAdd, r.toString());
        } finally {
            if (before == null) {
                System.clearProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY);
            } else {
                System.setProperty(CudaBackend.FUSED_PRODUCTS_PROPERTY, before);
            }
        }
    }

    /** The residual streams and conv states of the two pipelines, which must stay equal. */
    private record Side(Backend.Buffer residual, Backend.MixerState conv) {
    }

    private static void check(CudaBackend gpu, int m, SplittableRandom r) {
        MixerConfig.BaseConv conv = new MixerConfig.BaseConv(D / 2, 3, true);
        int inner = conv.innerWidth();
        Backend.Weight out = weight(gpu, r, D, HIDDEN);  // a branch's last product (an MLP's out-projection)
        Backend.Weight outBias = gpu.weight(Tensor.ofFloats(gaussian(r, D, 1), D));
        Backend.Weight norm = gpu.weight(Tensor.ofFloats(gaussian(r, D, 1), D));
        Backend.Weight fc1 = weight(gpu, r, 2 * HIDDEN, D);
        Backend.Weight in = weight(gpu, r, 2 * inner, D);
        Backend.Weight inBias = gpu.weight(Tensor.ofFloats(gaussian(r, 2 * inner, 1), 2 * inner));
        Backend.Weight taps = gpu.weight(Tensor.ofFloats(gaussian(r, inner * 3, 1), inner, 1, 3));
        Backend.Weight q = weight(gpu, r, 256, D);
        TokenBatch batch = TokenBatch.step(Arrays.copyOf(new int[] {1, 0, 2}, m), Arrays.copyOf(new int[] {4, 9, 2}, m));
        Backend.Buffer stream = gpu.upload(gaussian(r, m * D, 3), m, D);
        Side apart = new Side(gpu.allocateF32(m, D), gpu.allocateState(conv, 3, 64));
        Side fused = new Side(gpu.allocateF32(m, D), gpu.allocateState(conv, 3, 64));
        gpu.addInPlace(apart.residual(), stream);
        gpu.addInPlace(fused.residual(), stream);
        for (int step = 0; step < CONV_STEPS; step++) {
            String at = m + " rows, step " + step;
            Backend.Buffer x = gpu.upload(gaussian(r, m * HIDDEN, 1), m, HIDDEN);
            // apart: the branch written, then addRmsNorm, then each product, SwiGLU and the conv's step
            Backend.Buffer branch = gpu.allocate(m, D);
            Backend.Buffer normed = gpu.allocate(m, D);
            gpu.matmul(x, out, outBias, branch);
            gpu.addRmsNorm(apart.residual(), branch, norm, EPS, normed);
            Backend.Buffer product = gpu.allocate(m, 2 * HIDDEN);
            Backend.Buffer gateApart = gpu.allocate(m, HIDDEN);
            gpu.matmul(normed, fc1, null, product);
            gpu.swiglu(product, gateApart);
            Backend.Buffer u = gpu.allocate(m, 2 * inner);
            Backend.Buffer convApart = gpu.allocate(m, inner);
            gpu.matmul(normed, in, inBias, u);
            gpu.baseConv(conv, u, taps, batch, apart.conv(), convApart, null);
            Backend.Buffer qApart = gpu.allocate(m, 256);
            gpu.matmul(normed, q, null, qApart);

            // fused, as the layer stack asks: the branch's end, then the norm read by the three products
            Backend.Buffer pending = null;
            if (!gpu.matmulAddInto(x, out, outBias, fused.residual())) {
                pending = gpu.allocate(m, D);
                gpu.matmul(x, out, outBias, pending);
            }
            Normed n = Normed.of(fused.residual(), pending, norm, EPS, gpu.allocate(m, D));
            Backend.Buffer gateFused = gpu.allocate(m, HIDDEN);
            gpu.matmulSwiglu(n, fc1, gpu.allocate(m, 2 * HIDDEN), gateFused);
            Backend.Buffer convFused = gpu.allocate(m, inner);
            gpu.matmulBaseConv(conv, n, in, inBias, gpu.allocate(m, 2 * inner), taps, batch, fused.conv(), convFused);
            Backend.Buffer qFused = gpu.allocate(m, 256);
            gpu.normedMatmul(n, q, null, qFused);

            assertArrayEquals(gpu.download(gateApart), gpu.download(gateFused), at + ": matmulSwiglu");
            assertArrayEquals(gpu.download(convApart), gpu.download(convFused), at + ": matmulBaseConv");
            assertArrayEquals(gpu.download(qApart), gpu.download(qFused), at + ": normedMatmul");
            assertArrayEquals(gpu.download(apart.residual()), gpu.download(fused.residual()), at + ": the residual");
        }
    }

    private static Backend.Weight weight(CudaBackend gpu, SplittableRandom r, int rows, int cols) {
        return gpu.weight(Tensor.ofFloats(gaussian(r, rows * cols, 1 / Math.sqrt(cols)), rows, cols));
    }

    private static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (scale * r.nextGaussian());
        }
        return out;
    }
}
