package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;

/**
 * What the tests of the decode step's product kernels (gemv, gemmRows, gemmWg) share: inputs, the float64 check, and
 * the tensor-core products' whole check ({@link #checkTiled}).
 */
final class RowProducts {
    private RowProducts() {
    }

    /**
     * A product's random inputs on the host and the device: x {@code [m, k]}, w {@code [n, k]}, bias {@code [n]} (its
     * device copy 0 where none is used), and a zeroed output of {@code [m, n]} in outType.
     */
    record Inputs(float[] x, float[] w, float[] bias, long xd, long wd, long bd, Precision outType, long out) {
        /** The bias the product adds (null for none). */
        float[] usedBias() {
            return bd != 0 ? bias : null;
        }
    }

    /** {@link Inputs} of the precision's values, uniform in [-1, 1). */
    static Inputs inputs(KernelRig rig, Precision p, SplittableRandom r, int m, int n, int k, boolean withBias,
                         boolean outF32) {
        float[] x = rounded(p, r, m * k);
        float[] w = rounded(p, r, n * k);
        float[] bias = rounded(p, r, n);
        Precision outType = outF32 ? Precision.F32 : p;
        return new Inputs(x, w, bias, rig.values(p, x), rig.values(p, w), withBias ? rig.values(p, bias) : 0, outType,
                rig.zeros((long) m * n * outType.bytes()));
    }

    /** Values uniform in [-1, 1), rounded to the precision's type. */
    static float[] rounded(Precision p, SplittableRandom r, int count) {
        float[] v = new float[count];
        for (int i = 0; i < count; i++) {
            float f = (float) r.nextDouble(-1, 1);
            v[i] = p == Precision.F32 ? f : Tensor.bf16ToFloat(Tensor.floatToBf16(f));
        }
        return v;
    }

    /**
     * Checks {@code got} ({@code [m, n]}) against x {@code [m, k]} @ w{@code [n, k]}^T (+ bias where not null) in
     * float64: each output within {@code sumBound} times the sum of its terms' magnitudes (the float32 sums' error),
     * plus one bf16 rounding of the value (2^-8 of it) where the output is bf16.
     */
    static void within(String what, float[] x, float[] w, float[] bias, int m, int n, int k, float[] got,
                       Precision outType, double sumBound) {
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = bias != null ? bias[j] : 0;
                double abs = bias != null ? Math.abs(bias[j]) : 0;
                for (int t = 0; t < k; t++) {
                    sum += (double) x[i * k + t] * w[j * k + t];
                    abs += Math.abs((double) x[i * k + t] * w[j * k + t]);
                }
                double bound = sumBound * abs + (outType == Precision.BF16 ? 0x1p-8 * Math.abs(sum) : 0) + 1e-30;
                double g = got[i * n + j];
                assertTrue(Math.abs(g - sum) <= bound, what + ", out[" + i + ", " + j + "] = " + g + ", want " + sum
                        + " (bound " + bound + ")");
            }
        }
    }

    /** A tensor-core product kernel's launch: out = x @ w^T (+ bias) for m rows of width k into n outputs. */
    interface Launch {
        void run(long x, long w, long bias, long out, boolean outF32, int m, int n, int k);
    }

    /**
     * Checks a bf16 tensor-core product (gemmRows, gemmWg) of random inputs against float64 ({@link #within}, 2^-10 of
     * the sum of |x w| for the tensor cores' order and truncation), that nothing past the output is written, that the
     * same call again gives the same bits, and that the call which requests its first weights before its wait (a
     * recorded decode step's) does too.
     */
    static void checkTiled(KernelRig rig, String name, Launch launch, int m, int n, int k, boolean withBias,
                           boolean outF32, SplittableRandom r) {
        Inputs in = inputs(rig, Precision.BF16, r, m, n, k, withBias, outF32);
        int guard = 64;  // values past the output, which must stay zero
        long out = rig.zeros((long) (m * n + guard) * in.outType().bytes());
        launch.run(in.xd(), in.wd(), in.bd(), out, outF32, m, n, k);
        float[] all = rig.values(in.outType(), out, m * n + guard);
        String what = name + ", " + m + "x" + k + " . " + k + "x" + n + (withBias ? " + bias" : "")
                + (outF32 ? " -> f32" : "");
        for (int i = m * n; i < all.length; i++) {
            assertEquals(0f, all[i], what + ": a value past the output written");
        }
        float[] got = java.util.Arrays.copyOf(all, m * n);
        within(what, in.x(), in.w(), in.usedBias(), m, n, k, got, in.outType(), 0x1p-10);
        long again = rig.zeros((long) m * n * in.outType().bytes());
        launch.run(in.xd(), in.wd(), in.bd(), again, outF32, m, n, k);
        assertArrayEquals(got, rig.values(in.outType(), again, m * n), what + ": the same bits again");
        rig.kernels.weightsFixed(true);
        try {
            long early = rig.zeros((long) m * n * in.outType().bytes());
            launch.run(in.xd(), in.wd(), in.bd(), early, outF32, m, n, k);
            assertArrayEquals(got, rig.values(in.outType(), early, m * n), what + ": the same bits, weights early");
        } finally {
            rig.kernels.weightsFixed(false);
        }
    }
}
