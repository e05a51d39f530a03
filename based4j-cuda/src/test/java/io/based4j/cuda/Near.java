package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.tensor.Tensor;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.IntFunction;

/**
 * Comparisons of GPU results (float32) with the float64 reference, each failing with one message that names the
 * quantity, the worst element, both values, the error against its allowance and the seed that reproduces the data.
 * The allowances are stated per test in units of {@link #U}.
 */
final class Near {
    /** Unit roundoff of float32 (round to nearest): every float32 operation errs by at most this, relatively. */
    static final double U = 0x1p-24;
    /** Unit roundoff of bfloat16 (8 significant bits). */
    static final double U_BF16 = 0x1p-8;

    /**
     * The gap between neighbouring bf16 values at {@code x} (8 significant bits: 2^(e - 7) for |x| in [2^e, 2^(e+1))):
     * how far apart two results that round to neighbouring bf16 values can be.
     */
    static double bf16Ulp(double x) {
        float f = (float) Math.abs(x);
        return f == 0 || !Float.isFinite(f) ? Math.scalb(1.0, -133) : Math.scalb(1.0, Math.getExponent(f) - 7);
    }

    /**
     * Two linear-attention decode outputs that sum the same terms in other orders (E of them, float32): each within
     * 1e-5 of the largest {@code want}, and in bf16 one bf16 unit more (the two may round to neighbouring values).
     */
    static void sameSumsReordered(float[] want, float[] got, Precision p, String what) {
        double largest = 0;
        for (float x : want) {
            largest = Math.max(largest, Math.abs(x));
        }
        for (int i = 0; i < want.length; i++) {
            double bound = 1e-5 * largest
                    + (p == Precision.F32 ? 0 : bf16Ulp(Math.max(Math.abs(want[i]), Math.abs(got[i]))));
            org.junit.jupiter.api.Assertions.assertTrue(Math.abs(want[i] - got[i]) <= bound, what + ": output " + i
                    + " is " + got[i] + ", expected " + want[i]);
        }
    }

    /** Seed of the random data ({@code -Dbased4j.seed=N} repeats a run). */
    static final long SEED = Long.getLong("based4j.seed", System.nanoTime());

    private Near() {
    }

    /** {@code |got[i] - want[i]| <= bound[i]} for every i. */
    static void within(String what, double[] want, float[] got, double[] bound) {
        int worst = -1;
        double worstRatio = 0;
        for (int i = 0; i < want.length; i++) {
            double err = Math.abs(got[i] - want[i]);
            double ratio = err / bound[i];
            if (!(err <= bound[i]) && (worst < 0 || !(ratio <= worstRatio))) {
                worst = i;
                worstRatio = ratio;
            }
        }
        if (worst >= 0) {
            fail(String.format(Locale.ROOT, "%s: element %d is %s on the GPU, %s in the float64 reference: off by %.3g,"
                    + " allowed %.3g (%.1fx) [-Dbased4j.seed=%d]", what, worst, got[worst], want[worst],
                    Math.abs(got[worst] - want[worst]), bound[worst], worstRatio, SEED));
        }
    }

    /** {@code |got[i] - want[i]| <= tol * |want[i]|} for every i (for results with no cancellation). */
    static void relative(String what, double[] want, float[] got, double tol) {
        double[] bound = new double[want.length];
        for (int i = 0; i < want.length; i++) {
            bound[i] = tol * Math.abs(want[i]) + Double.MIN_NORMAL;
        }
        within(what + " (relative tolerance " + tol + ")", want, got, bound);
    }

    /** {@code max |got - want| <= tol * max |want|} (errors measured against the size of the whole result). */
    static void normwise(String what, double[] want, float[] got, double tol) {
        double scale = 0;
        for (double w : want) {
            scale = Math.max(scale, Math.abs(w));
        }
        double[] bound = new double[want.length];
        java.util.Arrays.fill(bound, tol * scale);
        within(what + " (tolerance " + tol + " of the largest value " + scale + ")", want, got, bound);
    }

    /** {@code max |got - want| / max |want|}: the error {@link #normwise} measures (NaN when got has a NaN). */
    static double normwiseError(double[] want, float[] got) {
        double scale = 0;
        double err = 0;
        for (int i = 0; i < want.length; i++) {
            scale = Math.max(scale, Math.abs(want[i]));
            double e = Math.abs(got[i] - want[i]);
            err = e > err || Double.isNaN(e) ? e : err;
        }
        return err / scale;
    }

    /** {@code |got - want| / |want|} in the 2-norm: the root-mean-square error against the result's own size. */
    static double rmsError(double[] want, float[] got) {
        double err = 0;
        double size = 0;
        for (int i = 0; i < want.length; i++) {
            double e = got[i] - want[i];
            err += e * e;
            size += want[i] * want[i];
        }
        return Math.sqrt(err / size);
    }

    /** {@code |got - want| <= tol |want|} in the 2-norm (for errors expected everywhere, not only at the largest). */
    static void rms(String what, double[] want, float[] got, double tol) {
        double err = rmsError(want, got);
        if (!(err <= tol)) {
            fail(String.format(Locale.ROOT, "%s: the root-mean-square error is %.3g of the result's, allowed %.3g"
                    + " [-Dbased4j.seed=%d]", what, err, tol, SEED));
        }
    }

    /**
     * Two attention outputs that compute the same function in different orders of summation: within 1e-5 of the
     * largest wanted output in float32 (each a few times sqrt(n) units of float32 off over n keys), in bf16 one unit of
     * the larger value's rounding more (results that differ by the float32 amount may round to neighbouring bf16
     * values). {@code where} names output i; {@code names} the two results ("split", "unsplit").
     */
    static void sameAttention(Precision p, float[] want, float[] got, IntFunction<String> where, String gotName,
                              String wantName) {
        double largest = 0;
        for (float v : want) {
            largest = Math.max(largest, Math.abs(v));
        }
        double f32 = 1e-5 * largest;
        for (int i = 0; i < want.length; i++) {
            double bound = p == Precision.F32 ? f32 : bf16Ulp(Math.max(Math.abs(want[i]), Math.abs(got[i]))) + f32;
            if (!(Math.abs(want[i] - got[i]) <= bound)) {
                fail(String.format(Locale.ROOT, "%s: %s %s, %s %s, allowed %.3g [-Dbased4j.seed=%d]", where.apply(i),
                        gotName, got[i], wantName, want[i], bound, SEED));
            }
        }
    }

    /** Gaussian floats of standard deviation {@code sigma}. */
    static float[] gaussian(SplittableRandom r, int n, double sigma) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextGaussian() * sigma);
        }
        return v;
    }

    /** The values a GPU of precision {@code p} holds for {@code v} (bf16: rounded to nearest even). */
    static float[] stored(Precision p, float[] v) {
        if (p == Precision.F32) {
            return v.clone();
        }
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Tensor.bf16ToFloat(Tensor.floatToBf16(v[i]));
        }
        return out;
    }

    static double[] toDouble(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    static double[] abs(double[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Math.abs(v[i]);
        }
        return out;
    }
}
