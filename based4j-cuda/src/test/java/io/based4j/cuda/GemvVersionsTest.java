package io.based4j.cuda;

import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every version of the gemv kernel ({@link Kernels#GEMV_VERSIONS}) against a float64 product on awkward sizes: 1 to
 * 8 rows of x (each number of rows a warp of version 2 takes 1, 2 or 4 rows of w for), outputs of 1, 7, 33 and 1000
 * (a block's rows not filled; parts of width 1, 2, 4 and 8), widths of 8 (one piece of 8 values), 24, 1000 and
 * 4104, with and without a bias, the output in the compute type and in float32. Allowance: float32 sums of the exact
 * products of rounded inputs differ from the float64 sum by a few float32 units of the sum of |x w| (k terms: k
 * 2^-24 of it at most, bounded here by 2^-12 for k up to 4104), and a bf16 output adds one bf16 rounding of the value
 * (2^-8 of it at most: 8 significant bits).
 */
@GpuTest
class GemvVersionsTest {
    @ParameterizedTest
    @EnumSource(Precision.class)
    void everyVersionIsTheProduct(Precision p) {
        SplittableRandom r = new SplittableRandom(11);
        try (KernelRig rig = new KernelRig()) {
            for (int version = 1; version <= Kernels.GEMV_VERSIONS; version++) {
                for (int m : new int[] {1, 2, 3, 5, 8}) {
                    for (int n : new int[] {1, 7, 33, 1000}) {
                        for (int k : new int[] {8, 24, 1000, 4104}) {
                            check(rig, p, version, m, n, k, r.nextBoolean(), r.nextBoolean(), r);
                        }
                    }
                }
            }
        }
    }

    private static void check(KernelRig rig, Precision p, int version, int m, int n, int k, boolean withBias,
                              boolean outF32, SplittableRandom r) {
        RowProducts.Inputs in = RowProducts.inputs(rig, p, r, m, n, k, withBias, outF32);
        rig.kernels.gemv(version, p, in.xd(), in.wd(), in.bd(), in.out(), outF32, m, n, k);
        float[] got = rig.values(in.outType(), in.out(), m * n);
        String what = p + " v" + version + " " + m + "x" + k + " . " + k + "x" + n + (withBias ? " + bias" : "")
                + (outF32 ? " -> f32" : "");
        RowProducts.within(what, in.x(), in.w(), in.usedBias(), m, n, k, got, in.outType(), 0x1p-12);
    }
}
