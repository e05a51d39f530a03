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
            int major = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
            int minor = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
            rig.kernels.computeCapability(major, minor);
            rig.kernels.multiprocessors(rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
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

    private static void check(KernelRig rig, int version, int split, int m, int n, int k, boolean withBias,
                              boolean outF32, SplittableRandom r) {
        RowProducts.Launch launch = (x, w, bias, out, f32, rows, outputs, width) ->
                rig.kernels.gemmWg(split, Precision.BF16, x, w, bias, out, f32, rows, outputs, width);
        RowProducts.checkTiled(rig, "version " + version + ", split " + split, launch, m, n, k, withBias, outF32, r);
    }

    @Test
    void theBackendTakesItWhereAskedOnly() {
        String before = System.getProperty(Kernels.GEMM_WG_PROPERTY);
        String versionBefore = System.getProperty(Kernels.GEMM_WG_VERSION_PROPERTY);
        try {
            for (String form : new String[] {"true 1", "true 2", "false 1"}) {
                boolean on = form.startsWith("true");
                System.setProperty(Kernels.GEMM_WG_PROPERTY, Boolean.toString(on));
                System.setProperty(Kernels.GEMM_WG_VERSION_PROPERTY, form.substring(form.length() - 1));
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
                    assertEquals(takes ? 2 : 0, after.gemmWg - routesBefore.gemmWg, "gemmWg=" + form);
                    assertEquals(takes ? 1 : 0, after.gemmWgBias - routesBefore.gemmWgBias, "gemmWg=" + form);
                    float[] got = gpu.download(withBias);
                    RowProducts.within("backend + bias, gemmWg=" + form, x, w, b, m, n, k, got, Precision.BF16,
                            0x1p-10);
                    RowProducts.within("backend, gemmWg=" + form, x, w, null, m, n, k, gpu.download(without),
                            Precision.BF16, 0x1p-10);

                }
            }
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.GEMM_WG_PROPERTY);
            } else {
                System.setProperty(Kernels.GEMM_WG_PROPERTY, before);
            }
            if (versionBefore == null) {
                System.clearProperty(Kernels.GEMM_WG_VERSION_PROPERTY);
            } else {
                System.setProperty(Kernels.GEMM_WG_VERSION_PROPERTY, versionBefore);
            }
        }
    }
}
