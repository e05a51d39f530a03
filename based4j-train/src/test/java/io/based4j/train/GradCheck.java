package io.based4j.train;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

/**
 * Gradient checks against central finite differences in float64.
 *
 * <p>The function under test is a scalar {@code loss} recomputed from the current contents of its input arrays
 * (usually {@code sum(out * R)} for a fixed random {@code R}, so that every output element matters). Each checked
 * element {@code x_i} is nudged by {@code +-h} and {@code (loss(x + h e_i) - loss(x - h e_i)) / 2h} is compared with
 * the analytic gradient. In float64 with {@code h = 1e-5} the truncation error is about {@code h^2 |f'''|} ~ 1e-10
 * and the rounding error about {@code n eps |loss| / h} where {@code n eps} is the relative rounding error of the loss
 * itself (a few ulps for one op, more for a whole model summed over many terms). So an element passes when
 * {@code |numeric - analytic| <= 1e-6 max(|numeric|, |analytic|) + 1e-15 |loss| / h}: the second term (about 5 ulps
 * of the loss, divided by h) only matters for elements whose gradient is tiny next to the loss. A wrong gradient
 * term is off by O(1) relative.
 */
public final class GradCheck {
    public static final double H = 1e-5;
    public static final double TOLERANCE = 1e-6;

    private GradCheck() {
    }

    /** Random values in {@code [-scale, scale)}. */
    public static double[] random(SplittableRandom r, int n, double scale) {
        double[] x = new double[n];
        for (int i = 0; i < n; i++) {
            x[i] = (r.nextDouble() * 2 - 1) * scale;
        }
        return x;
    }

    /** {@code sum(out * weights)}. */
    public static double dot(double[] out, double[] weights) {
        double s = 0;
        for (int i = 0; i < out.length; i++) {
            s += out[i] * weights[i];
        }
        return s;
    }

    /** Checks every element of {@code input} (or {@code maxChecks} random ones when it is larger). */
    public static void check(String name, DoubleSupplier loss, double[] input, double[] analytic, int maxChecks) {
        if (input.length != analytic.length) {
            fail(name + ": gradient has " + analytic.length + " elements for an input of " + input.length);
        }
        double scale = 0;
        for (double g : analytic) {
            scale = Math.max(scale, Math.abs(g));
        }
        SplittableRandom r = new SplittableRandom(input.length * 31L + name.hashCode());
        int checks = Math.min(input.length, maxChecks);
        double worst = 0;
        String worstAt = "";
        for (int c = 0; c < checks; c++) {
            int i = checks == input.length ? c : r.nextInt(input.length);
            double saved = input[i];
            input[i] = saved + H;
            double plus = loss.getAsDouble();
            input[i] = saved - H;
            double minus = loss.getAsDouble();
            input[i] = saved;
            double numeric = (plus - minus) / (2 * H);
            double noise = 1e-15 * Math.max(Math.abs(plus), Math.abs(minus)) / H;
            // relative to the element's own size, with the gradient's overall scale as the floor for tiny entries
            double denom = Math.max(Math.max(Math.abs(numeric), Math.abs(analytic[i])), 1e-3 * scale + 1e-12);
            double err = Math.max(0, Math.abs(numeric - analytic[i]) - noise) / denom;
            if (err > worst) {
                worst = err;
                worstAt = "element " + i + ": numeric " + numeric + ", analytic " + analytic[i];
            }
        }
        if (scale == 0) {
            fail(name + ": analytic gradient is identically zero, so the check would assert nothing");
        }
        if (worst > TOLERANCE) {
            fail(name + ": relative gradient error " + worst + " > " + TOLERANCE + " at " + worstAt);
        }
    }

    /** {@link #check} with every element checked up to 400. */
    public static void check(String name, DoubleSupplier loss, double[] input, double[] analytic) {
        check(name, loss, input, analytic, 400);
    }

    /** Fails unless every |got - want| <= tol * max(|want_i|, floor): relative, with a floor for near-zero entries. */
    public static void assertClose(String what, double[] want, double[] got, double tol, double floor) {
        if (want.length != got.length) {
            fail(what + ": length " + got.length + " instead of " + want.length);
        }
        for (int i = 0; i < want.length; i++) {
            double bound = tol * Math.max(Math.abs(want[i]), floor);
            if (!(Math.abs(got[i] - want[i]) <= bound)) {
                fail(what + ": element " + i + ": expected " + want[i] + ", got " + got[i] + ", |diff| "
                        + Math.abs(got[i] - want[i]) + " > " + bound);
            }
        }
    }

    /** The largest |x_i|. */
    public static double maxAbs(double[] x) {
        double m = 0;
        for (double e : x) {
            m = Math.max(m, Math.abs(e));
        }
        return m;
    }
}
