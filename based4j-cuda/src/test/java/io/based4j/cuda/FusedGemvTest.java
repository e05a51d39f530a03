package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The fused forms of gemv version 3 against the kernels they replace, run apart on the same inputs: bit for bit, as
 * they promise (the same sums in the same order, the same roundings). {@link Kernels#gemvSwiglu} against
 * {@link Kernels#gemv} then {@link Kernels#swiglu}; {@link Kernels#gemvAddNorm} against gemv into a branch then
 * {@link Kernels#addRmsNorm}: the residual after and the normed rows. One and two rows of x; based-1b's and
 * based-360m's shapes and awkward ones (a block's pairs or rows not filled, a single output, widths of one piece
 * of 8 values, rows wider than the norm keeps in registers, parts of 1 to 4); with and without a bias; W's first
 * loads before the wait and after; both precisions. The norm's ticket counter is reused launch after launch, so
 * each case runs its fused kernel three times over fresh inputs (a counter left wrong would normalise too early).
 */
@GpuTest
class FusedGemvTest {
    static Stream<Arguments> precisions() {
        return Stream.of(Arguments.of(Precision.BF16), Arguments.of(Precision.F32));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("precisions")
    void swigluInTheProductIsTheTwoKernels(Precision p) {
        SplittableRandom r = new SplittableRandom(5);
        int[][] shapes = {{3584, 1792}, {2048, 1024}, {100, 72}, {1, 8}, {37, 1000}, {600, 2056}, {300, 1024}};
        try (KernelRig rig = new KernelRig()) {
            int checked = 0;
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int h = s[0];
                    int k = s[1];
                    boolean bias = r.nextBoolean();
                    rig.kernels.weightsFixed(r.nextBoolean());
                    float[] x = gaussian(r, m * k);
                    float[] w = gaussian(r, 2 * h * k, 1.0 / Math.sqrt(k));
                    float[] b = gaussian(r, 2 * h);
                    long xd = rig.values(p, x);
                    long wd = rig.values(p, w);
                    long bd = bias ? rig.values(p, b) : 0;
                    if (Kernels.gemvFusedParts(p, m, 2 * h, k, xd, wd) == 0) {
                        continue;
                    }
                    long product = rig.zeros((long) m * 2 * h * p.bytes());
                    long apart = rig.zeros((long) m * h * p.bytes());
                    long fused = rig.zeros((long) m * h * p.bytes());
                    rig.kernels.gemv(3, p, xd, wd, bd, product, false, m, 2 * h, k);
                    rig.kernels.swiglu(p, product, apart, m, h);
                    rig.kernels.gemvSwiglu(p, xd, wd, bd, fused, m, h, k);
                    String what = p + " " + m + "x" + k + " . " + k + "x" + 2 * h + (bias ? " + bias" : "");
                    assertArrayEquals(rig.values(p, apart, m * h), rig.values(p, fused, m * h), what);
                    checked++;
                }
            }
            assertEquals(2 * shapes.length, checked, "every shape takes the fused kernel");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("precisions")
    void residualAndNormInTheProductAreTheTwoKernels(Precision p) {
        SplittableRandom r = new SplittableRandom(9);
        int[][] shapes = {{1792, 3584}, {1024, 2048}, {100, 56}, {1, 8}, {33, 1000}, {2304, 64}, {500, 1024}};
        float eps = 1e-5f;
        try (KernelRig rig = new KernelRig()) {
            rig.kernels.tickets(rig.zeros(256));
            int checked = 0;
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int n = s[0];
                    int k = s[1];
                    for (int round = 0; round < 3; round++) {
                        boolean bias = r.nextBoolean();
                        rig.kernels.weightsFixed(r.nextBoolean());
                        float[] x = gaussian(r, m * k);
                        float[] w = gaussian(r, n * k, 1.0 / Math.sqrt(k));
                        float[] b = gaussian(r, n);
                        float[] g = gaussian(r, n);
                        float[] res = gaussian(r, m * n, 3.0);
                        long xd = rig.values(p, x);
                        long wd = rig.values(p, w);
                        long bd = bias ? rig.values(p, b) : 0;
                        long gd = rig.values(p, g);
                        if (Kernels.gemvFusedParts(p, m, n, k, xd, wd) == 0) {
                            continue;
                        }
                        long branch = rig.zeros((long) m * n * p.bytes());
                        long resApart = rig.floats(res);
                        long resFused = rig.floats(res);
                        long normedApart = rig.zeros((long) m * n * p.bytes());
                        long normedFused = rig.zeros((long) m * n * p.bytes());
                        rig.kernels.gemv(3, p, xd, wd, bd, branch, false, m, n, k);
                        rig.kernels.addRmsNorm(p, resApart, branch, gd, normedApart, m, n, eps);
                        rig.kernels.gemvAddNorm(p, xd, wd, bd, resFused, gd, normedFused, m, n, k, eps);
                        String what = p + " " + m + "x" + k + " . " + k + "x" + n + (bias ? " + bias" : "")
                                + ", launch " + (round + 1);
                        assertArrayEquals(rig.floats(resApart, m * n), rig.floats(resFused, m * n),
                                what + ": residual");
                        assertArrayEquals(rig.values(p, normedApart, m * n), rig.values(p, normedFused, m * n),
                                what + ": normed");
                        checked++;
                    }
                }
            }
            assertEquals(3 * 2 * shapes.length, checked, "every shape takes the fused kernel");
        }
    }

    private static float[] gaussian(SplittableRandom r, int n) {
        return gaussian(r, n, 1.0);
    }

    private static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (scale * r.nextGaussian());
        }
        return out;
    }
}
