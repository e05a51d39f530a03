package io.based4j.cuda;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The decode step's tensor-core product ({@link Kernels#gemmRows}, gemm_rows.cuh) against a float64 product, at every
 * split of the width it is compiled for (clusters of 1, 2, 4 and 8 blocks on an sm_90 device; 1 elsewhere) and on
 * awkward sizes: 1 to 128 rows of x (each block size of 8, 16, 32, 64 and 128 rows, filled and not), outputs of 1, 7,
 * 129 and 1000 (the last tile of 128 not filled), widths of 64 (one stage), 192 (fewer stages than blocks in a
 * cluster of 4 or 8), 1792 and 3584 (based-1b's), with and without a bias, into bf16 and float32. Allowance: float32
 * sums of the exact products of bf16 inputs differ from the float64 sum by at most k 2^-24 of the sum of |x w| in any
 * order (tensor cores may truncate, twice that: bounded here by 2^-10 for k up to 3584), and a bf16 output adds one
 * rounding of the value (2^-8 of it at most). Nothing past the output is written; the same call again gives the
 * same bits (the clusters add their parts in a fixed order), and so does the call that requests its first weights
 * before its wait (a recorded decode step's).
 */
@GpuTest
class GemmRowsTest {
    @Test
    void everySplitIsTheProductAndRepeatsItself() {
        SplittableRandom r = new SplittableRandom(13);
        try (KernelRig rig = new KernelRig()) {
            int major = rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
            rig.kernels.computeCapability(major);
            rig.kernels.multiprocessors(rig.cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
            int[] splits = rig.kernels.clustersFit() ? Kernels.GEMM_ROWS_SPLITS : new int[] {1};
            for (int split : splits) {
                for (int m : new int[] {1, 3, 8, 9, 16, 31, 64, 100, 128}) {
                    for (int n : new int[] {1, 7, 129, 1000}) {
                        for (int k : new int[] {64, 192, 1792}) {
                            check(rig, split, m, n, k, r.nextBoolean(), r.nextBoolean(), r);
                        }
                    }
                }
                // based-1b's MLP out-projection at 128 rows: 56 stages of the width
                check(rig, split, 128, 1792, 3584, true, false, r);
            }
        }
    }

    private static void check(KernelRig rig, int split, int m, int n, int k, boolean withBias, boolean outF32,
                              SplittableRandom r) {
        RowProducts.Launch launch = (x, w, bias, out, f32, rows, outputs, width) ->
                rig.kernels.gemmRows(split, Precision.BF16, x, w, bias, out, f32, rows, outputs, width);
        RowProducts.checkTiled(rig, "split " + split, launch, m, n, k, withBias, outF32, r);
    }
}
