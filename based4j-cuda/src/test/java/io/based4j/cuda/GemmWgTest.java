package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The decode step's wgmma product ({@link Kernels#gemmWg}, gemm_wgmma.cuh) against a float64 product, at every split
 * of the width it is compiled for (clusters of 1, 2, 4 and 8 blocks) and on awkward sizes: 1 to 300 rows of x (a
 * block's 128 filled and not, a second and a third block of rows), outputs of 1, 7, 129 and 1000 (the last tile of
 * 128 not filled), widths of 64 (one stage), 192 (fewer stages than blocks in a cluster of 4 or 8) and 1792, with and
 * without a bias, into bf16 and float32; and based-1b's MLP out-projection at 128 rows (56 stages of the width). The
 * allowance is gemmRows' (GemmRowsTest): float32 sums of the exact products of bf16 inputs, 2^-10 of the sum of |x w|
 * for the tensor cores' order and truncation, and one bf16 rounding of the value. Nothing past the output is written;
 * the same call again gives the same bits, and so does the call that requests its first weights before its wait. On
 * a device without the sm_90a binary's wgmma the launcher refuses, naming why. With -Dbased4j.cuda.gemmWg=true the
 * backend's products of up to 1,024 rows take it (with and without a bias, each within the same float64 bound), and
 * without it none does. All of it for both versions (-Dbased4j.cuda.gemmWgVersion: 1, the threads' 16-byte copies;
 * 2, tensor copies from a producer warpgroup, gemm_tma.cuh).
 */
@GpuTest
class GemmWgTest {
    @Test
    void everySplitIsTheProductAndRepeatsItself() {
        SplittableRandom r = new SplittableRandom(17);
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            if (!rig.kernels.wgmmaFits()) {
                long buf = rig.zeros(1 << 16);
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> rig.kernels.gemmWg(1, Precision.BF16, buf, buf, 0, buf, false, 1, 8, 64));
                assertTrue(e.getMessage().contains("sm_90a"), e.getMessage());
                return;
            }
            int[] ks = {64, 192, 1792};
            for (int version = 1; version <= Kernels.GEMM_WG_VERSIONS; version++) {
                rig.kernels.gemmWgVersion(version);
                for (int split : Kernels.GEMM_WG_SPLITS) {
                    for (int m : new int[] {1, 3, 64, 100, 128, 129, 300}) {
                        for (int n : new int[] {1, 7, 129, 1000}) {
                            int k = m > 128 && n == 1000 ? 64 : ks[r.nextInt(ks.length)];
                            check(rig, version, split, m, n, k, r.nextBoolean(), r.nextBoolean(), r);
                        }
                    }
                    for (int k : ks) {
                        check(rig, version, split, 100, 129, k, true, false, r);
                    }
                    if (split == 2 || split == 8) {
                        check(rig, version, split, 128, 1792, 3584, true, false, r);
                    }
                }
            }
        }
    }

    /**
     * The paired form of version 2 (gemmTmaSwiglu: the MLP's in-projection and its SwiGLU in one kernel) gives the
     * bits of version 2's product written in bf16 and swiglu after it, at every split, with the first weights asked
     * for before the wait and not, on awkward sizes: 1 to 200 rows, 1 to 3,584 pairs (the last tile of 64 not filled),
     * widths of 64 to 1,792.
     */
    @Test
    void theSwigluFormIsTheProductThenSwiglu() {
        SplittableRandom r = new SplittableRandom(23);
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            if (!rig.kernels.wgmmaFits() || !rig.cu.tensorMaps()) {
                long buf = rig.zeros(1 << 16);
                assertThrows(IllegalArgumentException.class,
                        () -> rig.kernels.gemmTmaSwiglu(1, Precision.BF16, buf, buf, buf, 1, 64, 64));
                return;
            }
            rig.kernels.gemmWgVersion(2);
            int[][] shapes = {{1, 64, 64}, {100, 100, 192}, {128, 3584, 1792}, {200, 37, 128}, {3, 1, 64}};
            for (int[] shape : shapes) {
                int m = shape[0];
                int h = shape[1];
                int k = shape[2];
                long x = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, m * k));
                long w = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, 2 * h * k));
                for (int split : Kernels.GEMM_WG_SPLITS) {
                    for (boolean early : new boolean[] {false, true}) {
                        rig.kernels.weightsFixed(early);
                        try {
                            long product = rig.zeros(2L * m * 2 * h);
                            long want = rig.zeros(2L * m * h);
                            rig.kernels.gemmWg(split, Precision.BF16, x, w, 0, product, false, m, 2 * h, k);
                            rig.kernels.swiglu(Precision.BF16, product, want, m, h);
                            long got = rig.zeros(2L * (m * h + PAST));
                            rig.kernels.gemmTmaSwiglu(split, Precision.BF16, x, w, got, m, h, k);
                            nothingPast(rig, got, m * h);
                            String what = m + " rows, " + h + " pairs, width " + k + ", split " + split
                                    + (early ? ", weights asked for early" : "");
                            sameBits(rig.values(Precision.BF16, want, m * h), rig.values(Precision.BF16, got, m * h),
                                    what + ": output");
                        } finally {
                            rig.kernels.weightsFixed(false);
                        }
                    }
                }
            }
        }
    }

    /**
     * The conv form of version 2 (gemmTmaConv: BaseConv's in-projection with its bias and its decode step in one
     * kernel) gives the bits of version 2's product written in bf16 and baseConvStep after it, the output and the
     * history alike, at every split, on sequences in slots out of order: 1 to 128 tokens, 1 to 3,584 channels, 2 to 4
     * taps.
     */
    @Test
    void theConvFormIsTheProductThenTheStep() {
        SplittableRandom r = new SplittableRandom(29);
        try (KernelRig rig = new KernelRig()) {
            deviceOf(rig);
            if (!rig.kernels.wgmmaFits() || !rig.cu.tensorMaps()) {
                long buf = rig.zeros(1 << 16);
                assertThrows(IllegalArgumentException.class, () -> rig.kernels.gemmTmaConv(1, Precision.BF16, buf,
                        buf, 0, buf, buf, buf, buf, 1, 64, 64, 3));
                return;
            }
            rig.kernels.gemmWgVersion(2);
            int[][] shapes = {{5, 100, 192, 3}, {128, 3584, 1792, 3}, {37, 64, 64, 4}, {1, 1, 64, 2}};
            for (int[] shape : shapes) {
                int m = shape[0];
                int h = shape[1];
                int k = shape[2];
                int kern = shape[3];
                int taps = kern - 1;
                int slotCount = m + 2;
                int[] slots = new int[m];
                int[] positions = new int[m];
                int[] lengths = new int[m];
                for (int i = 0; i < m; i++) {
                    slots[i] = m + 1 - i;  // out of order, slots 0 and 1 nobody's
                    positions[i] = 5 + i;
                    lengths[i] = 1;
                }
                long layout = rig.ints(CudaBackend.layoutOf(new io.based4j.backend.TokenBatch(slots, positions,
                        lengths)));
                long x = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, m * k));
                long w = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, 2 * h * k));
                long bias = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, 2 * h));
                long convW = rig.values(Precision.BF16, RowProducts.rounded(Precision.BF16, r, h * kern));
                float[] history = RowProducts.rounded(Precision.BF16, r, slotCount * taps * h);
                for (int split : Kernels.GEMM_WG_SPLITS) {
                    for (boolean early : new boolean[] {false, true}) {
                        rig.kernels.weightsFixed(early);
                        long u = rig.zeros(2L * m * 2 * h);
                        long histWant = rig.values(Precision.BF16, history);
                        long want = rig.zeros(2L * m * h);
                        rig.kernels.gemmWg(split, Precision.BF16, x, w, bias, u, false, m, 2 * h, k);
                        rig.kernels.baseConvStep(Precision.BF16, u, convW, histWant, layout, want, m, h, kern);
                        long histGot = rig.values(Precision.BF16, history);
                        long got = rig.zeros(2L * (m * h + PAST));
                        rig.kernels.gemmTmaConv(split, Precision.BF16, x, w, bias, convW, histGot, layout, got, m, h,
                                k, kern);
                        String what = m + " tokens, " + h + " channels, width " + k + ", " + kern + " taps, split "
                                + split + (early ? ", weights asked for early" : "");
                        sameBits(rig.values(Precision.BF16, want, m * h), rig.values(Precision.BF16, got, m * h),
                                what + ": output");
                        nothingPast(rig, got, m * h);
                        sameBits(rig.values(Precision.BF16, histWant, slotCount * taps * h),
                                rig.values(Precision.BF16, histGot, slotCount * taps * h), what + ": history");
                        rig.kernels.weightsFixed(false);
                    }
                }
            }
        }
    }

    /** Tells the rig's kernels the device's compute capability and multiprocessors. */
    private static void deviceOf(KernelRig rig) {
        int major = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        int minor = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
        rig.kernels.computeCapability(major, minor);
        rig.kernels.multiprocessors(rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
    }

    /** Values after an output that the tests leave zero and check still are. */
    private static final int PAST = 256;

    /** The {@value #PAST} bf16 values after the first {@code count} at {@code out} are still zero. */
    private static void nothingPast(KernelRig rig, long out, int count) {
        float[] all = rig.values(Precision.BF16, out, count + PAST);
        for (int i = count; i < all.length; i++) {
            assertEquals(0, Float.floatToRawIntBits(all[i]), "written past the output, at " + i);
        }
    }

    private static void sameBits(float[] want, float[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]), what + " " + i);
        }
    }

    private static void check(KernelRig rig, int version, int split, int m, int n, int k, boolean withBias,
                              boolean outF32, SplittableRandom r) {
        RowProducts.Launch launch = (x, w, bias, out, f32, rows, outputs, width) ->
                rig.kernels.gemmWg(split, Precision.BF16, x, w, bias, out, f32, rows, outputs, width);
        RowProducts.checkTiled(rig, "version " + version + ", split " + split, launch, m, n, k, withBias, outF32, r);
    }

    @Test
    void theBackendTakesItWhereAskedOnly() {
        String[] properties = {Kernels.GEMM_WG_PROPERTY, Kernels.GEMM_WG_VERSION_PROPERTY,
            Kernels.GEMM_TMA_PAIRED_PROPERTY};
        String[] before = new String[properties.length];
        for (int i = 0; i < properties.length; i++) {
            before[i] = System.getProperty(properties[i]);
        }
        try {
            // gemmWg, its version, the paired forms alone
            for (String form : new String[] {"true 1 false", "true 2 false", "false 1 false", "false 1 true"}) {
                String[] values = form.split(" ");
                boolean on = values[0].equals("true");
                String what = "gemmWg, version, paired: " + form;
                for (int i = 0; i < properties.length; i++) {
                    System.setProperty(properties[i], values[i]);
                }
                try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
                    boolean takes = on && gpu.kernels().wgmmaFits();
                    SplittableRandom r = new SplittableRandom(19);
                    int m = 100;
                    int n = 300;
                    int k = 256;
                    float[] x = RowProducts.rounded(Precision.BF16, r, m * k);
                    float[] w = RowProducts.rounded(Precision.BF16, r, n * k);
                    float[] b = RowProducts.rounded(Precision.BF16, r, n);
                    Backend.Buffer xb = gpu.upload(x, m, k);
                    Backend.Weight wb = gpu.weight(Tensor.ofFloats(w, n, k));
                    Backend.Weight bb = gpu.weight(Tensor.ofFloats(b, n));
                    Backend.Buffer withBias = gpu.allocate(m, n);
                    Backend.Buffer without = gpu.allocate(m, n);
                    GemmRoutes routesBefore = gpu.gemmRoutes().copy();
                    gpu.matmul(xb, wb, bb, withBias);
                    gpu.matmul(xb, wb, null, without);
                    GemmRoutes after = gpu.gemmRoutes();
                    assertEquals(takes ? 2 : 0, after.gemmWg - routesBefore.gemmWg, what);
                    assertEquals(takes ? 1 : 0, after.gemmWgBias - routesBefore.gemmWgBias, what);
                    float[] got = gpu.download(withBias);
                    RowProducts.within("backend + bias, " + what, x, w, b, m, n, k, got, Precision.BF16,
                            0x1p-10);
                    RowProducts.within("backend, " + what, x, w, null, m, n, k, gpu.download(without),
                            Precision.BF16, 0x1p-10);
                    // the MLP's in-projection and its SwiGLU: in one kernel with version 2, the same bits as the
                    // product and swiglu apart
                    Backend.Buffer product = gpu.allocate(m, n);
                    Backend.Buffer fused = gpu.allocate(m, n / 2);
                    Backend.Buffer apart = gpu.allocate(m, n / 2);
                    GemmRoutes beforeSwiglu = gpu.gemmRoutes().copy();
                    gpu.matmulSwiglu(xb, wb, product, fused);
                    boolean paired = gpu.kernels().wgmmaFits()
                            && (on && values[1].equals("2") || values[2].equals("true"));
                    assertEquals(paired ? 1 : 0, gpu.gemmRoutes().gemmWgSwiglu - beforeSwiglu.gemmWgSwiglu,
                            what + ", SwiGLU");
                    if (paired && !(on && values[1].equals("2"))) {
                        // the paired form alone: the bits of version 2's product, not of the product's own route
                        Kernels kn = gpu.kernels();
                        int version = kn.gemmWgVersion();
                        kn.gemmWgVersion(2);
                        try {
                            kn.gemmWg(Precision.BF16, CudaBuffer.of(xb).ptr, CudaWeight.of(wb).ptr, 0,
                                    CudaBuffer.of(product).ptr, false, m, n, k);
                        } finally {
                            kn.gemmWgVersion(version);
                        }
                    } else {
                        gpu.matmul(xb, wb, null, product);
                    }
                    gpu.swiglu(product, apart);
                    sameBits(gpu.download(apart), gpu.download(fused), what + ", SwiGLU output");

                }
            }
        } finally {
            for (int i = 0; i < properties.length; i++) {
                if (before[i] == null) {
                    System.clearProperty(properties[i]);
                } else {
                    System.setProperty(properties[i], before[i]);
                }
            }
        }
    }
}
