package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.Backend;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaBackend#matmulSwiglu} and {@link CudaBackend#matmulAddRmsNorm} against the ops they join, run apart on
 * the same backend: the same numbers bit for bit at every number of rows (one kernel where gemv takes one or two
 * rows, the two ops otherwise), at based-1b's shapes of the MLP's in-projection and the out-projections; the fused
 * kernels taken at one row and not at three (gemmRows or the library then), and not at all with
 * {@code -Dbased4j.cuda.fusedProducts=false}.
 */
@GpuTest
class FusedProductsTest {
    private static final int D = 1792;
    private static final int HIDDEN = 3584;

    @Test
    void theFusedOpsAreTheOpsApart() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            for (int m : new int[] {1, 2, 3}) {
                GemmRoutes before = gpu.gemmRoutes().copy();
                check(gpu, m, new SplittableRandom(m));
                GemmRoutes after = gpu.gemmRoutes();
                if (m == 1) {
                    assertEquals(before.gemvSwiglu + 1, after.gemvSwiglu, "one row: the MLP in-projection's kernel");
                    assertEquals(before.gemvAddNorm + 1, after.gemvAddNorm, "one row: the out-projection's kernel");
                }
                if (m == 3) {
                    assertEquals(before.gemvSwiglu, after.gemvSwiglu, "three rows: no fused kernel");
                    assertEquals(before.gemvAddNorm, after.gemvAddNorm, "three rows: no fused kernel");
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
            assertEquals(0, gpu.gemmRoutes().gemvAddNorm);
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

        // an out-projection with a bias, the residual's add and the next norm
        Backend.Weight fc2 = gpu.weight(Tensor.ofFloats(gaussian(r, D * HIDDEN, 1 / Math.sqrt(HIDDEN)), D, HIDDEN));
        Backend.Weight bias = gpu.weight(Tensor.ofFloats(gaussian(r, D, 1), D));
        Backend.Weight norm = gpu.weight(Tensor.ofFloats(gaussian(r, D, 1), D));
        Backend.Buffer stream = gpu.upload(gaussian(r, m * D, 3), m, D);
        Backend.Buffer residualApart = gpu.allocateF32(m, D);
        Backend.Buffer residualFused = gpu.allocateF32(m, D);
        gpu.addInPlace(residualApart, stream);
        gpu.addInPlace(residualFused, stream);
        Backend.Buffer branch = gpu.allocate(m, D);
        Backend.Buffer normedApart = gpu.allocate(m, D);
        Backend.Buffer normedFused = gpu.allocate(m, D);
        gpu.matmul(fused, fc2, bias, branch);
        gpu.addRmsNorm(residualApart, branch, norm, 1e-5, normedApart);
        gpu.matmulAddRmsNorm(fused, fc2, bias, gpu.allocate(m, D), residualFused, norm, 1e-5, normedFused);
        assertArrayEquals(gpu.download(residualApart), gpu.download(residualFused), m + " rows: the residual");
        assertArrayEquals(gpu.download(normedApart), gpu.download(normedFused), m + " rows: the normed rows");
    }

    private static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (scale * r.nextGaussian());
        }
        return out;
    }
}
