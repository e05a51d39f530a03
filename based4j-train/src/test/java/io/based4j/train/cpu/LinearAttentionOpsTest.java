package io.based4j.train.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.MixerConfig;
import io.based4j.train.GradCheck;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class LinearAttentionOpsTest {

    /** One problem: sizes and random inputs (q, k, v uniform in [-1, 1), so s = q.k / sqrt(f) is O(1)). */
    private record Problem(int batch, int seqLen, int heads, int f, int dh, double eps,
                           double[] q, double[] k, double[] v) {
        static Problem random(long seed, int batch, int seqLen, int heads, int f, int dh, double eps) {
            SplittableRandom r = new SplittableRandom(seed);
            int n = batch * seqLen;
            return new Problem(batch, seqLen, heads, f, dh, eps, GradCheck.random(r, n * heads * f, 1.0),
                    GradCheck.random(r, n * heads * f, 1.0), GradCheck.random(r, n * heads * dh, 1.0));
        }

        int rows() {
            return batch * seqLen;
        }

        double[] forward(int chunk) {
            double[] out = new double[rows() * heads * dh];
            LinearAttentionOps.forward(batch, seqLen, heads, f, dh, eps, chunk, q, k, v, out);
            return out;
        }

        /** {dq, dk, dv} of sum(out * dout), accumulated into zeroed arrays. */
        double[][] backward(int chunk, double[] dout) {
            double[] dq = new double[q.length];
            double[] dk = new double[k.length];
            double[] dv = new double[v.length];
            LinearAttentionOps.backward(batch, seqLen, heads, f, dh, eps, chunk, q, k, v, dout, dq, dk, dv);
            return new double[][] {dq, dk, dv};
        }
    }

    /** The definition, O(L^2): y_t = sum_{s<=t} a_ts v_s / (sum_{s<=t} a_ts + eps), a_ts = 1 + s + s^2/2. */
    private static double[] quadraticReference(Problem p) {
        int qkCols = p.heads * p.f;
        int vCols = p.heads * p.dh;
        double[] out = new double[p.rows() * vCols];
        for (int b = 0; b < p.batch; b++) {
            for (int h = 0; h < p.heads; h++) {
                for (int t = 0; t < p.seqLen; t++) {
                    int rt = b * p.seqLen + t;
                    double[] num = new double[p.dh];
                    double den = 0;
                    for (int s = 0; s <= t; s++) {
                        int rs = b * p.seqLen + s;
                        double qk = 0;
                        for (int i = 0; i < p.f; i++) {
                            qk += p.q[rt * qkCols + h * p.f + i] * p.k[rs * qkCols + h * p.f + i];
                        }
                        double x = qk / Math.sqrt(p.f);
                        double a = 1 + x + x * x / 2;
                        den += a;
                        for (int e = 0; e < p.dh; e++) {
                            num[e] += a * p.v[rs * vCols + h * p.dh + e];
                        }
                    }
                    for (int e = 0; e < p.dh; e++) {
                        out[rt * vCols + h * p.dh + e] = num[e] / (den + p.eps);
                    }
                }
            }
        }
        return out;
    }


    // ------------------------------------------------------------------ gradients

    /**
     * Loss sum(out * R); q, k and v are checked element by element against central differences. batch 2 x seqLen 13
     * with chunks of 4 leaves a ragged last chunk (13 = 4 + 4 + 4 + 1); chunk 1 puts every key in the state, chunk 64
     * none. eps = 0.5 makes the eps term visible in the denominator.
     */
    @Test
    void gradientsMatchFiniteDifferences() {
        for (int chunk : new int[] {4, 1, 5, 64}) {
            for (double eps : new double[] {1e-12, 0.5}) {
                Problem p = Problem.random(17 + chunk, 2, 13, 2, 3, 5, eps);
                double[] weights = GradCheck.random(new SplittableRandom(99), p.rows() * p.heads * p.dh, 1.0);
                double[][] grads = p.backward(chunk, weights);
                String at = " (chunk " + chunk + ", eps " + eps + ")";
                GradCheck.check("dq" + at, () -> GradCheck.dot(p.forward(chunk), weights), p.q, grads[0], 1000);
                GradCheck.check("dk" + at, () -> GradCheck.dot(p.forward(chunk), weights), p.k, grads[1], 1000);
                GradCheck.check("dv" + at, () -> GradCheck.dot(p.forward(chunk), weights), p.v, grads[2], 1000);
            }
        }
    }

    /** A larger feature dim (f = 6: 28 merged features, all off-diagonal kinds) and a single head. */
    @Test
    void gradientsWithWiderFeatures() {
        Problem p = Problem.random(5, 1, 21, 1, 6, 3, 1e-12);
        double[] weights = GradCheck.random(new SplittableRandom(7), p.rows() * p.dh, 1.0);
        double[][] grads = p.backward(8, weights);
        GradCheck.check("dq", () -> GradCheck.dot(p.forward(8), weights), p.q, grads[0], 1000);
        GradCheck.check("dk", () -> GradCheck.dot(p.forward(8), weights), p.k, grads[1], 1000);
        GradCheck.check("dv", () -> GradCheck.dot(p.forward(8), weights), p.v, grads[2], 1000);
    }

    /** The backward does not depend on the chunk length beyond rounding (float64: 1e-12 relative is ample). */
    @Test
    void backwardIsIndependentOfChunk() {
        Problem p = Problem.random(3, 2, 13, 2, 3, 5, 1e-12);
        double[] dout = GradCheck.random(new SplittableRandom(4), p.rows() * p.heads * p.dh, 1.0);
        double[][] want = p.backward(13, dout);
        for (int chunk : new int[] {1, 2, 4, 7, 64}) {
            double[][] got = p.backward(chunk, dout);
            for (int g = 0; g < 3; g++) {
                GradCheck.assertClose("d" + "qkv".charAt(g) + " chunk " + chunk, want[g], got[g], 1e-12, GradCheck.maxAbs(want[g]));
            }
        }
    }

    /** The backward adds into its outputs: a second call on the same arrays doubles them. */
    @Test
    void backwardAccumulates() {
        Problem p = Problem.random(8, 2, 9, 1, 2, 3, 1e-12);
        double[] dout = GradCheck.random(new SplittableRandom(2), p.rows() * p.dh, 1.0);
        double[][] once = p.backward(4, dout);
        double[] dq = new double[p.q.length];
        double[] dk = new double[p.k.length];
        double[] dv = new double[p.v.length];
        for (int rep = 0; rep < 2; rep++) {
            LinearAttentionOps.backward(p.batch, p.seqLen, p.heads, p.f, p.dh, p.eps, 4, p.q, p.k, p.v, dout,
                    dq, dk, dv);
        }
        double[][] twice = {dq, dk, dv};
        for (int g = 0; g < 3; g++) {
            double[] doubled = Arrays.stream(once[g]).map(x -> 2 * x).toArray();
            GradCheck.assertClose("twice d" + "qkv".charAt(g), doubled, twice[g], 1e-13, GradCheck.maxAbs(doubled));
        }
    }

    // ------------------------------------------------------------------ forward

    /**
     * The chunked forward equals the quadratic definition. Both are float64 sums of at most 13 terms of size O(1), so
     * they agree to a few 1e-16; 1e-12 relative (floor: the output's overall scale) leaves a wide margin while any
     * missed or doubled key changes outputs by O(0.1).
     */
    @Test
    void forwardMatchesQuadraticDefinition() {
        for (double eps : new double[] {1e-12, 0.5}) {
            Problem p = Problem.random(11, 2, 13, 2, 3, 5, eps);
            double[] want = quadraticReference(p);
            for (int chunk : new int[] {1, 4, 5, 13, 64}) {
                GradCheck.assertClose("chunk " + chunk + " eps " + eps, want, p.forward(chunk), 1e-12, GradCheck.maxAbs(want));
            }
        }
        Problem wide = Problem.random(12, 3, 30, 1, 16, 4, 1e-12);
        double[] want = quadraticReference(wide);
        for (int chunk : new int[] {1, 8, 64}) {
            GradCheck.assertClose("f=16 chunk " + chunk, want, wide.forward(chunk), 1e-12, GradCheck.maxAbs(want));
        }
    }

    /**
     * The same inputs (rounded to float32 first, so both sides see identical values) through the inference engine's
     * scalar reference. The reference accumulates the state S and z in float32, one rounding (unit roundoff
     * u = 2^-24) per token, over the unmerged feature map. After t tokens a state entry carries an error of at most
     * about t * u * sum_s |phi_a(k_s) v_s|, and the output y_t = phi(q).S / (phi(q).z + eps) inherits it relative to
     * sum_s sum_a |phi_a(q) phi_a(k_s)| |v_s|, which for |q|, |k|, |v| <= 1 is at most ~3 times the denominator.
     * Numerator and denominator together: |dy| <~ 2 * 3 * L * u * max|v| = 6 * 37 * 6e-8 ~ 1.3e-5 as a worst case
     * (rounding errors add up like sqrt(L) in practice); the final float rounding of y adds u. Bound: 2e-5 absolute
     * (observed: below 1e-7, little more than the final rounding). A wrong feature scale, chunk boundary or head
     * offset shows up as errors of 1e-2 and more.
     */
    @Test
    void forwardMatchesInferenceEngine() {
        for (int[] shape : new int[][] {{2, 37, 2, 4, 6}, {1, 70, 1, 16, 8}, {3, 5, 3, 1, 2}}) {
            int batch = shape[0];
            int len = shape[1];
            int heads = shape[2];
            int f = shape[3];
            int dh = shape[4];
            Problem p = Problem.random(31 + len, batch, len, heads, f, dh, 1e-12);
            float[] qf = toFloat(p.q);
            float[] kf = toFloat(p.k);
            float[] vf = toFloat(p.v);
            Problem rounded = new Problem(batch, len, heads, f, dh, p.eps, toDouble(qf), toDouble(kf), toDouble(vf));
            int d = heads * dh;
            MixerConfig.LinearAttention cfg = new MixerConfig.LinearAttention(d, heads, f, dh, p.eps);
            float[] engine;
            try (Backend backend = new ReferenceBackend()) {
                int[] slots = new int[batch];
                int[] lengths = new int[batch];
                for (int b = 0; b < batch; b++) {
                    slots[b] = b;
                    lengths[b] = len;
                }
                TokenBatch tokens = new TokenBatch(slots, new int[batch], lengths);
                Backend.MixerState state = backend.allocateState(cfg, batch, len);
                Backend.Buffer out = backend.allocate(batch * len, d);
                backend.linearAttention(cfg, backend.upload(qf, batch * len, heads * f),
                        backend.upload(kf, batch * len, heads * f), backend.upload(vf, batch * len, d), tokens,
                        state, out);
                engine = backend.download(out);
            }
            for (int chunk : new int[] {4, LinearAttentionOps.DEFAULT_CHUNK}) {
                double[] ours = rounded.forward(chunk);
                for (int i = 0; i < ours.length; i++) {
                    if (!(Math.abs(ours[i] - engine[i]) <= 2e-5)) {
                        fail("shape " + Arrays.toString(shape) + " chunk " + chunk + ": element " + i + ": engine "
                                + engine[i] + ", training kernel " + ours[i]);
                    }
                }
            }
        }
    }

    private static float[] toFloat(double[] x) {
        float[] y = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = (float) x[i];
        }
        return y;
    }

    private static double[] toDouble(float[] x) {
        double[] y = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            y[i] = x[i];
        }
        return y;
    }

    /**
     * Tasks own disjoint outputs, so repeated calls (whatever the scheduling) give bit-identical results. Many
     * repetitions, so that the calls run both before and after the JIT compiles the loops.
     */
    @Test
    void repeatedCallsAreIdentical() {
        Problem p = Problem.random(21, 6, 40, 3, 4, 7, 1e-12);
        double[] dout = GradCheck.random(new SplittableRandom(5), p.rows() * p.heads * p.dh, 1.0);
        double[] first = p.forward(16);
        double[][] firstGrads = p.backward(16, dout);
        for (int rep = 0; rep < 200; rep++) {
            assertArrayEquals(first, p.forward(16), "out, repetition " + rep);
            double[][] again = p.backward(16, dout);
            for (int g = 0; g < 3; g++) {
                assertArrayEquals(firstGrads[g], again[g], "d" + "qkv".charAt(g) + ", repetition " + rep);
            }
        }
    }

    /**
     * L = 4096 in chunks of 32 and 128: memory stays linear (no L x L anywhere) and the results agree. The outputs
     * are means over up to 4096 values and the gradients sums of as many terms, all float64; 1e-10 relative to each
     * array's scale is far above their rounding differences (~1e-14) and far below any real discrepancy.
     */
    @Test
    void longSequenceIsChunkIndependent() {
        Problem p = Problem.random(40, 1, 4096, 1, 4, 4, 1e-12);
        double[] dout = GradCheck.random(new SplittableRandom(41), p.rows() * p.dh, 1.0);
        double[] y32 = p.forward(32);
        double[] y128 = p.forward(128);
        GradCheck.assertClose("out", y32, y128, 1e-10, GradCheck.maxAbs(y32));
        double[][] g32 = p.backward(32, dout);
        double[][] g128 = p.backward(128, dout);
        for (int g = 0; g < 3; g++) {
            assertTrue(GradCheck.maxAbs(g32[g]) > 0);
            GradCheck.assertClose("d" + "qkv".charAt(g), g32[g], g128[g], 1e-10, GradCheck.maxAbs(g32[g]));
        }
    }

    // ------------------------------------------------------------------ arguments

    @Test
    void wrongSizesNameTheArray() {
        int batch = 2;
        int len = 5;
        int heads = 2;
        int f = 3;
        int dh = 4;
        int n = batch * len;
        String[] names = {"q", "k", "v", "out", "dout", "dq", "dk", "dv"};
        int[] sizes = {n * heads * f, n * heads * f, n * heads * dh, n * heads * dh, n * heads * dh,
                n * heads * f, n * heads * f, n * heads * dh};
        for (int wrong = 0; wrong < names.length; wrong++) {
            double[][] a = new double[names.length][];
            for (int i = 0; i < names.length; i++) {
                a[i] = new double[i == wrong ? sizes[i] + 1 : sizes[i]];
            }
            IllegalArgumentException e;
            if (names[wrong].equals("out")) {
                e = assertThrows(IllegalArgumentException.class, () -> LinearAttentionOps.forward(batch, len, heads,
                        f, dh, 1e-12, 4, a[0], a[1], a[2], a[3]));
            } else if (wrong < 3) {
                // q, k, v are checked by both calls
                assertThrows(IllegalArgumentException.class, () -> LinearAttentionOps.forward(batch, len, heads,
                        f, dh, 1e-12, 4, a[0], a[1], a[2], a[3]));
                e = assertThrows(IllegalArgumentException.class, () -> LinearAttentionOps.backward(batch, len, heads,
                        f, dh, 1e-12, 4, a[0], a[1], a[2], a[4], a[5], a[6], a[7]));
            } else {
                e = assertThrows(IllegalArgumentException.class, () -> LinearAttentionOps.backward(batch, len, heads,
                        f, dh, 1e-12, 4, a[0], a[1], a[2], a[4], a[5], a[6], a[7]));
            }
            assertTrue(e.getMessage().startsWith(names[wrong] + " "), e.getMessage());
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LinearAttentionOps.forward(
                batch, len, heads, f, dh, 1e-12, 0, new double[n * heads * f], new double[n * heads * f],
                new double[n * heads * dh], new double[n * heads * dh]));
        assertTrue(e.getMessage().startsWith("chunk "), e.getMessage());
    }
}
