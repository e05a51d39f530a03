package io.based4j.train.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.backend.cpu.RotaryAngles;
import io.based4j.config.MixerConfig;
import io.based4j.train.GradCheck;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class AttentionOpsTest {
    private static final int FULL = Integer.MAX_VALUE;

    /** One problem: sizes, rotary settings and a random qkv (uniform in [-1, 1)). */
    private record Problem(int batch, int seqLen, int heads, int dh, int window, int rotaryDim, double base,
                           double scale, double[] qkv) {
        static Problem random(long seed, int batch, int seqLen, int heads, int dh, int window, int rotaryDim,
                              double base) {
            SplittableRandom r = new SplittableRandom(seed);
            return new Problem(batch, seqLen, heads, dh, window, rotaryDim, base, 1 / Math.sqrt(dh),
                    GradCheck.random(r, batch * seqLen * 3 * heads * dh, 1.0));
        }

        int rows() {
            return batch * seqLen;
        }

        int d() {
            return heads * dh;
        }

        /** {out, lse}. */
        double[][] forward() {
            double[] out = new double[rows() * d()];
            double[] lse = new double[rows() * heads];
            AttentionOps.forward(batch, seqLen, heads, dh, window, rotaryDim, base, scale, qkv, out, lse);
            return new double[][] {out, lse};
        }

        double[] backward(double[] dout) {
            double[][] fwd = forward();
            double[] dqkv = new double[qkv.length];
            AttentionOps.backward(batch, seqLen, heads, dh, window, rotaryDim, base, scale, qkv, fwd[0], fwd[1],
                    dout, dqkv);
            return dqkv;
        }

        String describe() {
            return "seqLen " + seqLen + " heads " + heads + " dh " + dh + " window "
                    + (window == FULL ? "full" : window) + " rotary " + rotaryDim + " base " + base;
        }
    }

    /**
     * The definition with the whole L x L score matrix: rotate q and k of every position, mask keys outside
     * {@code [i - window, i]}, softmax, weighted sum of v. Returns {out, lse}.
     */
    private static double[][] quadraticReference(Problem p) {
        int d = p.d();
        int dh = p.dh;
        int len = p.seqLen;
        int half = p.rotaryDim / 2;
        double[] out = new double[p.rows() * d];
        double[] lse = new double[p.rows() * p.heads];
        for (int b = 0; b < p.batch; b++) {
            for (int h = 0; h < p.heads; h++) {
                double[][] q = new double[len][dh];
                double[][] k = new double[len][dh];
                for (int t = 0; t < len; t++) {
                    int row = (b * len + t) * 3 * d;
                    for (int e = 0; e < dh; e++) {
                        q[t][e] = p.qkv[row + h * dh + e];
                        k[t][e] = p.qkv[row + d + h * dh + e];
                    }
                    // the reference's rotary: float32 angles, their cos and sin rounded to float32
                    float[] cos = new float[half];
                    float[] sin = new float[half];
                    RotaryAngles.at(t, p.rotaryDim, p.base, cos, sin);
                    for (double[] x : new double[][] {q[t], k[t]}) {
                        for (int i = 0; i < half; i++) {
                            double x1 = x[i];
                            double x2 = x[i + half];
                            x[i] = x1 * cos[i] - x2 * sin[i];
                            x[i + half] = x2 * cos[i] + x1 * sin[i];
                        }
                    }
                }
                double[][] scores = new double[len][len];
                for (int i = 0; i < len; i++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j < len; j++) {
                        boolean visible = j <= i && (long) i - j <= p.window;
                        double s = 0;
                        for (int e = 0; e < dh; e++) {
                            s += q[i][e] * k[j][e];
                        }
                        scores[i][j] = visible ? s * p.scale : Double.NEGATIVE_INFINITY;
                        max = Math.max(max, scores[i][j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < len; j++) {
                        scores[i][j] = Math.exp(scores[i][j] - max);
                        sum += scores[i][j];
                    }
                    lse[(b * len + i) * p.heads + h] = max + Math.log(sum);
                    for (int e = 0; e < dh; e++) {
                        double acc = 0;
                        for (int j = 0; j < len; j++) {
                            acc += scores[i][j] / sum * p.qkv[(b * len + j) * 3 * d + 2 * d + h * dh + e];
                        }
                        out[(b * len + i) * d + h * dh + e] = acc;
                    }
                }
            }
        }
        return new double[][] {out, lse};
    }


    // ------------------------------------------------------------------ gradients

    /**
     * Loss sum(out * R), every element of qkv (q, k and v of both sequences and heads) checked against central
     * differences: windows 0, 3 and full, rotary on part of the head (4 of 6), all of it, or none, and two bases
     * (50 turns the higher pairs fast enough for their rotation to matter within 11 positions).
     */
    @Test
    void gradientsMatchFiniteDifferences() {
        for (int window : new int[] {3, FULL, 0}) {
            for (int rotaryDim : new int[] {4, 6, 0}) {
                for (double base : rotaryDim == 0 ? new double[] {10000} : new double[] {10000, 50}) {
                    Problem p = Problem.random(window * 31L + rotaryDim, 2, 11, 2, 6, window, rotaryDim, base);
                    double[] weights = GradCheck.random(new SplittableRandom(3), p.rows() * p.d(), 1.0);
                    double[] before = p.qkv.clone();
                    double[] grad = p.backward(weights);
                    assertArrayEquals(before, p.qkv, "qkv must not be modified");
                    GradCheck.check("dqkv " + p.describe(), () -> GradCheck.dot(p.forward()[0], weights), p.qkv,
                            grad, p.qkv.length);
                }
            }
        }
    }

    /** A non-default softmax scale and an odd head dim with partial rotary. */
    @Test
    void gradientsWithOtherScaleAndOddHeadDim() {
        SplittableRandom r = new SplittableRandom(77);
        Problem p = new Problem(1, 9, 3, 5, 4, 2, 100, 0.7, GradCheck.random(r, 9 * 3 * 15, 1.5));
        double[] weights = GradCheck.random(r, 9 * 15, 1.0);
        double[] grad = p.backward(weights);
        GradCheck.check("dqkv", () -> GradCheck.dot(p.forward()[0], weights), p.qkv, grad, p.qkv.length);
    }

    /** The backward adds into dqkv: a second call on the same array doubles it. */
    @Test
    void backwardAccumulates() {
        Problem p = Problem.random(5, 2, 7, 2, 4, 2, 4, 10000);
        double[] dout = GradCheck.random(new SplittableRandom(6), p.rows() * p.d(), 1.0);
        double[] once = p.backward(dout);
        double[][] fwd = p.forward();
        double[] twice = new double[p.qkv.length];
        for (int rep = 0; rep < 2; rep++) {
            AttentionOps.backward(p.batch, p.seqLen, p.heads, p.dh, p.window, p.rotaryDim, p.base, p.scale, p.qkv,
                    fwd[0], fwd[1], dout, twice);
        }
        double[] doubled = Arrays.stream(once).map(x -> 2 * x).toArray();
        GradCheck.assertClose("twice", doubled, twice, 1e-13, GradCheck.maxAbs(doubled));
    }

    // ------------------------------------------------------------------ forward

    /**
     * Forward (out and lse) equals the L x L definition. Both are float64 over at most 11 keys of O(1) scores:
     * they agree to a few 1e-16; 1e-12 relative (floor: the array's scale) is a wide margin, while a key too many or
     * too few, or a wrong rotation, changes outputs by O(0.01) or more.
     */
    @Test
    void forwardMatchesQuadraticDefinition() {
        for (int window : new int[] {0, 1, 3, 8, 10, 11, 100, FULL}) {
            for (int rotaryDim : new int[] {0, 4, 6}) {
                Problem p = Problem.random(window + 7L * rotaryDim, 2, 11, 2, 6, window, rotaryDim, 50);
                double[][] want = quadraticReference(p);
                double[][] got = p.forward();
                GradCheck.assertClose("out " + p.describe(), want[0], got[0], 1e-12, GradCheck.maxAbs(want[0]));
                GradCheck.assertClose("lse " + p.describe(), want[1], got[1], 1e-12, GradCheck.maxAbs(want[1]));
            }
        }
    }

    /**
     * The same inputs (rounded to float32 first) through the inference engine's scalar reference, which rotates by
     * the same float32 angles but computes in float32 and keeps the rotated keys in float32: each rotated coordinate
     * moves by a few u |x| (u = 6e-8); with |x| <= 1 a score scale * q.k of dh = 8 terms moves by at most
     * ~ scale * 2 * 8 * 4e-7, and the output, a convex combination of v (|v| <= 1), by at most twice the largest
     * score change plus its own rounding. Bound: 1e-4 absolute, far above that (observed: below 1e-7). A wrong
     * window, position or rotation pair changes outputs by O(0.01) or more.
     */
    @Test
    void forwardMatchesInferenceEngine() {
        int len = 19;
        int batch = 2;
        int heads = 2;
        int dh = 8;
        int d = heads * dh;
        for (int window : new int[] {0, 3, 8, FULL}) {
            for (int rotaryDim : new int[] {0, 4, 8}) {
                Problem p = Problem.random(window * 13L + rotaryDim, batch, len, heads, dh, window, rotaryDim,
                        10000);
                float[] qkvf = new float[p.qkv.length];
                for (int i = 0; i < qkvf.length; i++) {
                    qkvf[i] = (float) p.qkv[i];
                    p.qkv[i] = qkvf[i];
                }
                MixerConfig.Attention cfg = new MixerConfig.Attention(d, heads, dh, window, rotaryDim, p.base, false,
                        p.scale, false, false);
                float[] engine;
                try (Backend backend = new ReferenceBackend()) {
                    TokenBatch tokens = new TokenBatch(new int[] {0, 1}, new int[] {0, 0}, new int[] {len, len});
                    Backend.MixerState state = backend.allocateState(cfg, batch, len);
                    Backend.Buffer out = backend.allocate(batch * len, d);
                    backend.attention(cfg, backend.upload(qkvf, batch * len, 3 * d), tokens, state, out, null);
                    engine = backend.download(out);
                }
                double[] ours = p.forward()[0];
                for (int i = 0; i < ours.length; i++) {
                    if (!(Math.abs(ours[i] - engine[i]) <= 1e-4)) {
                        fail(p.describe() + ": element " + i + ": engine " + engine[i] + ", training kernel "
                                + ours[i]);
                    }
                }
            }
        }
    }

    /**
     * Tasks own disjoint outputs, so repeated calls (whatever the scheduling) give bit-identical results. Many
     * repetitions, so that the calls run both before and after the JIT compiles the loops.
     */
    @Test
    void repeatedCallsAreIdentical() {
        Problem p = Problem.random(9, 5, 33, 4, 8, 10, 8, 10000);
        double[] dout = GradCheck.random(new SplittableRandom(1), p.rows() * p.d(), 1.0);
        double[][] first = p.forward();
        double[] firstGrad = p.backward(dout);
        for (int rep = 0; rep < 200; rep++) {
            double[][] again = p.forward();
            assertArrayEquals(first[0], again[0], "out, repetition " + rep);
            assertArrayEquals(first[1], again[1], "lse, repetition " + rep);
            assertArrayEquals(firstGrad, p.backward(dout), "dqkv, repetition " + rep);
        }
    }

    // ------------------------------------------------------------------ arguments

    @Test
    void wrongSizesNameTheArray() {
        int batch = 2;
        int len = 5;
        int heads = 2;
        int dh = 4;
        int n = batch * len;
        int d = heads * dh;
        String[] names = {"qkv", "out", "lse", "dout", "dqkv"};
        int[] sizes = {n * 3 * d, n * d, n * heads, n * d, n * 3 * d};
        for (int wrong = 0; wrong < names.length; wrong++) {
            double[][] a = new double[names.length][];
            for (int i = 0; i < names.length; i++) {
                a[i] = new double[i == wrong ? sizes[i] - 1 : sizes[i]];
            }
            if (wrong < 3) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AttentionOps.forward(
                        batch, len, heads, dh, 3, 4, 10000, 0.5, a[0], a[1], a[2]));
                assertTrue(e.getMessage().startsWith(names[wrong] + " "), e.getMessage());
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AttentionOps.backward(
                    batch, len, heads, dh, 3, 4, 10000, 0.5, a[0], a[1], a[2], a[3], a[4]));
            assertTrue(e.getMessage().startsWith(names[wrong] + " "), e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> AttentionOps.forward(
                batch, len, heads, dh, 3, 3, 10000, 0.5, new double[sizes[0]], new double[sizes[1]],
                new double[sizes[2]]));
        assertTrue(e.getMessage().startsWith("rotaryDim "), e.getMessage());
    }
}
