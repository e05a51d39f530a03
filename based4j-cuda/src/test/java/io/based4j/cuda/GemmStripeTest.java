package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The stripe kernel ({@link Kernels#gemmStripe}, gemm_stripe.cuh: a block a stripe of 64 outputs) against a float64
 * product on awkward sizes, at each split of the width it is compiled for (1 block a stripe, and clusters of 2 and 4
 * that add their float32 tiles through distributed shared memory): 1 to 128 rows of x (wgmma's 128 filled and not:
 * the rows past x's last read as zeros and never written), 1, 3 and 10 stripes, widths of one stage a block (64 S),
 * of fewer stages than the block keeps in flight and of more (1,792, 3,584: its stages reused), with and without a
 * bias, and based-1b's MLP in-projection, the window's q, k and v and the out-projection at 128 rows. The allowance is
 * gemmWg's and gemmRows' (RowProducts): float32 sums of the exact products of bf16 inputs, 2^-10 of the sum of |x w|
 * for the tensor cores' order and truncation, and one bf16 rounding of the value. Nothing past the output is written;
 * the same call again gives the same bits, and so does the call that asks for its first weights before its wait.
 * The paired form (the MLP's in-projection and its SwiGLU) gives the bits of split 1's product and swiglu after it.
 * Shapes it does not take and devices without the sm_90a binary are refused, naming why. The backend sends a decode
 * step's products of 33 to 128 rows to the forms -Dbased4j.cuda.gemmStripe names, and to none where it names none.
 */
@GpuTest
class GemmStripeTest {
    @Test
    void everyShapeIsTheProductAndRepeatsItself() {
        SplittableRandom r = new SplittableRandom(31);
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            if (!rig.kernels.wgmmaFits() || !rig.cu.tensorMaps()) {
                long buf = rig.zeros(1 << 16);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> rig.kernels.gemmStripe(Precision.BF16, buf, buf, 0, buf, 1, 64, 64));
                assertTrue(e.getMessage().contains("sm_90a") || e.getMessage().contains("tensor maps"),
                        e.getMessage());
                return;
            }
            for (int split : Kernels.GEMM_STRIPE_SPLITS) {
                int[] ks = {64 * split, 192 * split, 1792};
                for (int m : new int[] {1, 3, 33, 64, 100, 127, 128}) {
                    for (int n : new int[] {64, 192, 640}) {
                        check(rig, split, m, n, ks[r.nextInt(ks.length)], r.nextBoolean(), r);
                    }
                }
                for (int k : new int[] {64 * split, 3584}) {
                    check(rig, split, 77, 128, k, true, r);
                }
            }
            check(rig, 1, 128, 7168, 1792, true, r);
            check(rig, 1, 128, 5376, 1792, false, r);
            check(rig, 4, 128, 1792, 3584, true, r);
            check(rig, 2, 64, 2304, 1792, false, r);
        }
    }

    @Test
    void shapesItDoesNotTakeAreRefusedByName() {
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            long buf = rig.zeros(1 << 20);
            for (int[] shape : new int[][] {{129, 64, 64}, {0, 64, 64}, {8, 96, 64}, {8, 64, 96}}) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> rig.kernels.gemmStripe(Precision.BF16, buf, buf, 0, buf, shape[0], shape[1], shape[2]));
                assertTrue(e.getMessage().contains("gemmStripe"), e.getMessage());
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> rig.kernels.gemmStripe(Precision.F32, buf, buf, 0, buf, 8, 64, 64));
            assertTrue(e.getMessage().contains("bf16"), e.getMessage());
        }
    }

    private static void check(KernelRig rig, int split, int m, int n, int k, boolean withBias, SplittableRandom r) {
        RowProducts.Launch launch = (x, w, bias, out, f32, rows, outputs, width) ->
                rig.kernels.gemmStripe(split, Precision.BF16, x, w, bias, out, rows, outputs, width);
        RowProducts.checkTiled(rig, "gemmStripe split " + split, launch, m, n, k, withBias, false, r);
    }

    @Test
    void theSwigluFormIsTheProductThenSwiglu() {
        SplittableRandom r = new SplittableRandom(41);
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            if (!rig.kernels.wgmmaFits() || !rig.cu.tensorMaps()) {
                long buf = rig.zeros(1 << 16);
                assertThrows(IllegalArgumentException.class,
                        () -> rig.kernels.gemmStripeSwiglu(Precision.BF16, buf, buf, buf, 1, 32, 64));
                return;
            }
            int[][] shapes = {{1, 32, 64}, {37, 96, 192}, {128, 3584, 1792}, {100, 2048, 1024}, {128, 32, 3584}};
            for (int[] shape : shapes) {
                int m = shape[0];
                int h = shape[1];
                int k = shape[2];
                long x = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, m * k));
                long w = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, 2 * h * k));
                for (boolean early : new boolean[] {false, true}) {
                    rig.kernels.weightsFixed(early);
                    try {
                        long product = rig.zeros(2L * m * 2 * h);
                        long want = rig.zeros(2L * m * h);
                        rig.kernels.gemmStripe(1, Precision.BF16, x, w, 0, product, m, 2 * h, k);
                        rig.kernels.swiglu(Precision.BF16, product, want, m, h);
                        long got = rig.zeros(2L * (m * h + PAST));
                        rig.kernels.gemmStripeSwiglu(Precision.BF16, x, w, got, m, h, k);
                        String what = m + " rows, " + h + " pairs, width " + k + (early ? ", weights early" : "");
                        float[] all = rig.values(Precision.BF16, got, m * h + PAST);
                        for (int i = m * h; i < all.length; i++) {
                            assertEquals(0, Float.floatToRawIntBits(all[i]), what + ": written past, at " + i);
                        }
                        float[] wantValues = rig.values(Precision.BF16, want, m * h);
                        for (int i = 0; i < m * h; i++) {
                            assertEquals(Float.floatToRawIntBits(wantValues[i]), Float.floatToRawIntBits(all[i]),
                                    what + ": output " + i);
                        }
                    } finally {
                        rig.kernels.weightsFixed(false);
                    }
                }
            }
            assertThrows(IllegalArgumentException.class,
                    () -> rig.kernels.gemmStripeSwiglu(Precision.BF16, x0(rig), x0(rig), x0(rig), 8, 48, 64));
        }
    }

    /** Values after an output that the tests leave zero and check still are. */
    private static final int PAST = 256;

    private static long x0(KernelRig rig) {
        return rig.zeros(1 << 16);
    }

    /** Tells the rig's kernels the device's compute capability and multiprocessors. */
    private static void deviceOf(KernelRig rig) {
        int major = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        int minor = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        rig.kernels.computeCapability(major, minor);
        rig.kernels.multiprocessors(rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
    }

    @Test
    void theBackendTakesTheFormsAskedFor() {
        String property = Kernels.GEMM_STRIPE_PROPERTY;
        String before = System.getProperty(property);
        try {
            for (String value : new String[] {"all", "none", "narrow", "wide,swiglu"}) {
                System.setProperty(property, value);
                java.util.Set<String> forms = Kernels.stripeForms(value);
                try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
                    boolean runs = gpu.kernels().wgmmaFits();
                    SplittableRandom r = new SplittableRandom(37);
                    int k = 256;
                    // 4,096 outputs: 64 stripes, the wide form; 1,024: 16 stripes, narrow (4 blocks a stripe)
                    for (int n : new int[] {4096, 1024}) {
                        boolean formAsked = forms.contains(n == 4096 ? "wide" : "narrow");
                        float[] w = RowProducts.rounded(Precision.BF16, r, n * k);
                        float[] b = RowProducts.rounded(Precision.BF16, r, n);
                        Backend.Weight wb = gpu.weight(Tensor.ofFloats(w, n, k));
                        Backend.Weight bb = gpu.weight(Tensor.ofFloats(b, n));
                        for (int m : new int[] {32, 33, 128, 129}) {
                            String what = property + "=" + value + ", " + m + " rows into " + n;
                            boolean takes = runs && formAsked && m >= 33 && m <= 128;
                            float[] x = RowProducts.rounded(Precision.BF16, r, m * k);
                            Backend.Buffer xb = gpu.upload(x, m, k);
                            Backend.Buffer withBias = gpu.allocate(m, n);
                            Backend.Buffer without = gpu.allocate(m, n);
                            GemmRoutes routesBefore = gpu.gemmRoutes().copy();
                            gpu.matmul(xb, wb, bb, withBias);
                            gpu.matmul(xb, wb, null, without);
                            GemmRoutes after = gpu.gemmRoutes();
                            assertEquals(takes ? 2 : 0, after.gemmStripe - routesBefore.gemmStripe, what);
                            assertEquals(takes ? 1 : 0, after.gemmStripeBias - routesBefore.gemmStripeBias, what);
                            RowProducts.within("backend + bias, " + what, x, w, b, m, n, k, gpu.download(withBias),
                                    Precision.BF16, 0x1p-10);
                            RowProducts.within("backend, " + what, x, w, null, m, n, k, gpu.download(without),
                                    Precision.BF16, 0x1p-10);
                        }
                    }
                    // the MLP's in-projection and its SwiGLU at 128 rows, 2,048 pairs (64 stripes of 32)
                    int m = 128;
                    int h = 2048;
                    float[] x = RowProducts.rounded(Precision.BF16, r, m * k);
                    float[] w = RowProducts.rounded(Precision.BF16, r, 2 * h * k);
                    Backend.Buffer xb = gpu.upload(x, m, k);
                    Backend.Weight wb = gpu.weight(Tensor.ofFloats(w, 2 * h, k));
                    Backend.Buffer product = gpu.allocate(m, 2 * h);
                    Backend.Buffer fused = gpu.allocate(m, h);
                    Backend.Buffer apart = gpu.allocate(m, h);
                    GemmRoutes beforeSwiglu = gpu.gemmRoutes().copy();
                    gpu.matmulSwiglu(xb, wb, product, fused);
                    boolean paired = runs && forms.contains("swiglu");
                    assertEquals(paired ? 1 : 0, gpu.gemmRoutes().gemmStripeSwiglu - beforeSwiglu.gemmStripeSwiglu,
                            value + ", SwiGLU");
                    if (paired) {
                        gpu.kernels().gemmStripe(1, Precision.BF16, CudaBuffer.of(xb).ptr, CudaWeight.of(wb).ptr, 0,
                                CudaBuffer.of(product).ptr, m, 2 * h, k);
                    } else {
                        gpu.matmul(xb, wb, null, product);
                    }
                    gpu.swiglu(product, apart);
                    float[] a = gpu.download(apart);
                    float[] f = gpu.download(fused);
                    for (int i = 0; i < a.length; i++) {
                        assertEquals(Float.floatToRawIntBits(a[i]), Float.floatToRawIntBits(f[i]),
                                value + ", SwiGLU output " + i);
                    }
                }
            }
        } finally {
            if (before == null) {
                System.clearProperty(property);
            } else {
                System.setProperty(property, before);
            }
        }
    }
}
