package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The stripe kernel ({@link Kernels#gemmStripe}, gemm_stripe.cuh: a block a stripe of 64 outputs over the whole
 * width) against a float64 product on awkward sizes: 1 to 128 rows of x (wgmma's 128 filled and not: the rows past
 * x's last read as zeros and never written), 1, 3 and 10 stripes, widths of one stage (64), of fewer stages than the
 * block keeps in flight (192) and of more (1,792, 3,584: its stages reused), with and without a bias, and based-1b's
 * MLP in-projection and the window's q, k and v at 128 rows. The allowance is gemmWg's and gemmRows' (RowProducts):
 * float32 sums of the exact products of bf16 inputs, 2^-10 of the sum of |x w| for the tensor cores' order and
 * truncation, and one bf16 rounding of the value. Nothing past the output is written; the same call again gives the
 * same bits, and so does the call that asks for its first weights before its wait. Shapes it does not take and
 * devices without the sm_90a binary are refused, naming why. The backend sends a decode step's wide products of 33 to
 * 128 rows to it by default, and none where -Dbased4j.cuda.gemmStripe=false.
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
            int[] ks = {64, 192, 1792};
            for (int m : new int[] {1, 3, 33, 64, 100, 127, 128}) {
                for (int n : new int[] {64, 192, 640}) {
                    check(rig, m, n, ks[r.nextInt(ks.length)], r.nextBoolean(), r);
                }
            }
            for (int k : new int[] {64, 192, 3584}) {
                check(rig, 77, 128, k, true, r);
            }
            check(rig, 128, 7168, 1792, true, r);
            check(rig, 128, 5376, 1792, false, r);
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

    private static void check(KernelRig rig, int m, int n, int k, boolean withBias, SplittableRandom r) {
        RowProducts.Launch launch = (x, w, bias, out, f32, rows, outputs, width) ->
                rig.kernels.gemmStripe(Precision.BF16, x, w, bias, out, rows, outputs, width);
        RowProducts.checkTiled(rig, "gemmStripe", launch, m, n, k, withBias, false, r);
    }

    /** Tells the rig's kernels the device's compute capability and multiprocessors. */
    private static void deviceOf(KernelRig rig) {
        int major = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        int minor = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        rig.kernels.computeCapability(major, minor);
        rig.kernels.multiprocessors(rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
    }

    @Test
    void theBackendTakesItForADecodeStepsWideProductsUnlessSwitchedOff() {
        String property = Kernels.GEMM_STRIPE_PROPERTY;
        String before = System.getProperty(property);
        try {
            for (String value : new String[] {null, "false"}) {
                if (value == null) {
                    System.clearProperty(property);
                } else {
                    System.setProperty(property, value);
                }
                try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
                    boolean runs = value == null && gpu.kernels().wgmmaFits();
                    SplittableRandom r = new SplittableRandom(37);
                    int n = 4096;  // 64 stripes: the fewest it takes
                    int k = 256;
                    float[] w = RowProducts.rounded(Precision.BF16, r, n * k);
                    float[] b = RowProducts.rounded(Precision.BF16, r, n);
                    Backend.Weight wb = gpu.weight(Tensor.ofFloats(w, n, k));
                    Backend.Weight bb = gpu.weight(Tensor.ofFloats(b, n));
                    for (int m : new int[] {32, 33, 128, 129}) {
                        String what = (value == null ? "default" : property + "=" + value) + ", " + m + " rows";
                        boolean takes = runs && m >= 33 && m <= 128;
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
