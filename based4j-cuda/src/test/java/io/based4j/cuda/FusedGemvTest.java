package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.TokenBatch;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The fused forms of gemv version 3 against the kernels they replace, run apart on the same inputs: bit for bit, as
 * they promise (the same sums in the same order, the same roundings). {@link Kernels#gemvSwiglu} against
 * {@link Kernels#gemv} then {@link Kernels#swiglu}; {@link Kernels#gemvConv} against gemv then
 * {@link Kernels#baseConvStep}: the outputs and the conv history after. One and two rows of x (sequences in slots
 * out of order, a slot left alone); based-1b's and based-360m's shapes and awkward ones (a block's pairs not filled,
 * a single output, widths of one piece of 8 values, parts of 1 to 4, conv kernels of 1 to 6 taps); with and without
 * a bias; W's first loads before the wait and after; both precisions.
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
    void baseConvsStepInTheProductIsTheTwoKernels(Precision p) {
        SplittableRandom r = new SplittableRandom(9);
        // inner width, width of x, conv kernel
        int[][] shapes = {{3584, 1792, 3}, {2048, 1024, 3}, {100, 56, 4}, {1, 8, 1}, {33, 1000, 6}, {500, 1024, 2}};
        int slots = 3;
        try (KernelRig rig = new KernelRig()) {
            int checked = 0;
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int inner = s[0];
                    int k = s[1];
                    int kernel = s[2];
                    // one token each: sequence 0 in slot 2 (and sequence 1 in slot 0), slot 1 left alone
                    TokenBatch batch = m == 1 ? new TokenBatch(new int[] {2}, new int[] {7}, new int[] {1})
                            : new TokenBatch(new int[] {2, 0}, new int[] {7, 0}, new int[] {1, 1});
                    boolean bias = r.nextBoolean();
                    rig.kernels.weightsFixed(r.nextBoolean());
                    float[] x = gaussian(r, m * k);
                    float[] w = gaussian(r, 2 * inner * k, 1.0 / Math.sqrt(k));
                    float[] b = gaussian(r, 2 * inner);
                    float[] taps = gaussian(r, inner * kernel);
                    float[] hist = gaussian(r, slots * Math.max(1, kernel - 1) * inner);
                    long xd = rig.values(p, x);
                    long wd = rig.values(p, w);
                    long bd = bias ? rig.values(p, b) : 0;
                    long td = rig.values(p, taps);
                    long layout = rig.ints(CudaBackend.layoutOf(batch));
                    long histApart = rig.values(p, hist);
                    long histFused = rig.values(p, hist);
                    long u = rig.zeros((long) m * 2 * inner * p.bytes());
                    long apart = rig.zeros((long) m * inner * p.bytes());
                    long fused = rig.zeros((long) m * inner * p.bytes());
                    rig.kernels.gemv(3, p, xd, wd, bd, u, false, m, 2 * inner, k);
                    rig.kernels.baseConvStep(p, u, td, histApart, layout, apart, m, inner, kernel);
                    rig.kernels.gemvConv(p, xd, wd, bd, td, histFused, layout, fused, m, inner, k, kernel);
                    String what = p + " " + m + "x" + k + " . " + k + "x" + 2 * inner + (bias ? " + bias" : "")
                            + ", kernel " + kernel;
                    assertArrayEquals(rig.values(p, apart, m * inner), rig.values(p, fused, m * inner),
                            what + ": outputs");
                    assertArrayEquals(rig.values(p, histApart, hist.length), rig.values(p, histFused, hist.length),
                            what + ": history");
                    checked++;
                }
            }
            assertEquals(2 * shapes.length, checked, "every shape takes the fused kernel");
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
