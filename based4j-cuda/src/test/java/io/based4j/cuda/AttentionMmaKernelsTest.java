package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.train.cpu.AttentionOps;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The tensor-core (bf16, mma.sync) attention kernels of {@link MixerTrainKernels} against {@link AttentionOps} in
 * float64: head dims 16 (padded to 64), 64, 112 (padded to 128) and 128; windows 0 (each query sees itself only),
 * 3, 64, 100, one past the sequence and {@link Integer#MAX_VALUE} (full causal); sequences of 1, 37, 65, 100, 129,
 * 130 and 200 tokens (query blocks of 64, the last ragged, down to one query); rotary on all, part or none of the
 * head; 1 to 3 sequences and 2 or 3 heads. Each check prints its largest error.
 *
 * <p><b>Tolerances</b>, with u = {@link Near#U_BF16} = 2^-8, the unit roundoff of bf16 (8 significant bits: each
 * rounding errs by at most u of the value), and the float32 sums allowed {@code (dh + L + 20) U} of their terms as in
 * {@link AttentionTrainKernelsTest}. The kernels round to bf16 the rotated q and k, the probabilities P (forward and
 * backward), the score gradients dS and every stored result; they sum and keep the softmax statistics in float32.
 * <ul>
 * <li>out: P's rounding moves out by at most u max|v - out| <= 2u max|v| (the rounded weights are also the ones
 * summed for the normaliser, so out stays a weighted mean of the v), the stored result by u |out| <= u max|v|:
 * 3u max|v| in all. The rounded q and k move each score by about u |scale| sqrt(sum_e q_e^2 k_e^2) (independent
 * signs; of order u here), which the worst case of the other two leaves room for.</li>
 * <li>lse: a log-sum-exp moves by at most the largest score error, and by Cauchy-Schwarz
 * {@code |d s| <= (2u + u^2) |scale| |q| |k|} (rotation keeps norms), plus u for the normaliser summed from the
 * rounded P: {@code (2u + u^2) |scale| max|q| max|k| + u}.</li>
 * <li>dqkv (added into random values of 0.25 standard deviation, so the stored sum's rounding, u of its largest
 * value, does not hide the gradient's errors), per part q, k and v against that part's largest gradient: each
 * gradient is a sum of products of two rounded factors (P or dS, and dout, k or q), dS itself the rounded product
 * of P and float32 dot products, with the scores' errors feeding P: 6u of the largest gradient.</li>
 * <li>With q = 0 every visible score is 0 and every P exactly 1, so out is the plain mean of the visible v and lse
 * the log of their count: out within u of each value (its rounding) and lse within float32 roundings. A key seen
 * or missed wrongly moves lse by at least log(131 / 130) = 0.0077: this checks the masks exactly.</li>
 * </ul>
 */
@GpuTest
class AttentionMmaKernelsTest {
    private static final int FULL = Integer.MAX_VALUE;
    /** batch, seqLen, heads, headDim, window, rotaryDim. */
    private static final int[][] CASES = {{2, 1, 2, 64, 3, 64}, {3, 37, 2, 112, 0, 56}, {2, 100, 3, 64, 3, 64},
        {2, 129, 2, 112, 3, 112}, {2, 130, 2, 64, FULL, 32}, {2, 129, 3, 112, 130, 0}, {2, 100, 2, 64, 64, 16},
        {1, 200, 2, 112, 100, 112}, {2, 70, 2, 16, FULL, 16}, {2, 65, 2, 128, FULL, 128}};
    private static final double BASE = 10000;
    private static final Precision P = Precision.BF16;

    /** The float32 allowance of a sum over the keys or head dims, relative to the size of its terms. */
    private static double float32(int len, int dh) {
        return 4 * (dh + len + 20) * U;
    }

    private static String describe(String op, int[] c) {
        return String.format(Locale.ROOT, "tensor-core attention %s batch %d, seqLen %d, heads %d, dh %d, window %s, "
                + "rotary %d", op, c[0], c[1], c[2], c[3], c[4] == FULL ? "full" : String.valueOf(c[4]), c[5]);
    }

    /** Prints the largest error in units of u, then checks {@code |got - want| <= bound} everywhere. */
    private static void check(String what, double[] want, float[] got, double bound, double unit) {
        double worst = 0;
        for (int i = 0; i < want.length; i++) {
            worst = Math.max(worst, Math.abs(got[i] - want[i]));
        }
        System.out.printf(Locale.ROOT, "%s: largest error %.3g = %.3g u of %.3g (allowed %.3g)%n", what, worst,
                worst / (U_BF16 * unit), unit, bound);
        double[] bounds = new double[want.length];
        Arrays.fill(bounds, bound);
        Near.within(what, want, got, bounds);
    }

    private static double maxAbs(double[] v) {
        double m = 0;
        for (double x : v) {
            m = Math.max(m, Math.abs(x));
        }
        return m;
    }

    /** Columns {@code [part d, (part + 1) d)} of every row of an {@code [n, 3d]} array. */
    private static double[] part(double[] v, int n, int d, int part) {
        double[] out = new double[n * d];
        for (int i = 0; i < n; i++) {
            System.arraycopy(v, i * 3 * d + part * d, out, i * d, d);
        }
        return out;
    }

    private static float[] part(float[] v, int n, int d, int part) {
        float[] out = new float[n * d];
        for (int i = 0; i < n; i++) {
            System.arraycopy(v, i * 3 * d + part * d, out, i * d, d);
        }
        return out;
    }

    /** The largest Euclidean norm of a head vector in part {@code part} of qkv. */
    private static double maxHeadNorm(float[] qkv, int n, int heads, int dh, int part) {
        double m = 0;
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < heads; h++) {
                double ss = 0;
                for (int e = 0; e < dh; e++) {
                    double x = qkv[i * 3 * heads * dh + part * heads * dh + h * dh + e];
                    ss += x * x;
                }
                m = Math.max(m, Math.sqrt(ss));
            }
        }
        return m;
    }

    private static float[] randomQkv(SplittableRandom r, int n, int d, boolean zeroQueries) {
        float[] qkv = stored(P, gaussian(r, n * 3 * d, 1));
        if (zeroQueries) {
            for (int i = 0; i < n; i++) {
                Arrays.fill(qkv, i * 3 * d, i * 3 * d + d, 0f);
            }
        }
        return qkv;
    }

    @Test
    void forwardMatchesTheReference() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], dh = c[3], window = c[4], rd = c[5];
                int n = batch * len;
                int d = heads * dh;
                float scale = (float) (1 / Math.sqrt(dh));
                float[] qkv = randomQkv(r, n, d, false);
                double[] wantOut = new double[n * d];
                double[] wantLse = new double[n * heads];
                AttentionOps.forward(batch, len, heads, dh, window, rd, BASE, scale, toDouble(qkv), wantOut, wantLse);
                long out = rig.zeros(2L * n * d);
                long lse = rig.zeros(4L * n * heads);
                mk.mmaAttentionForward(rig.values(P, qkv), out, lse, batch, len, heads, dh, window, rd, BASE, scale);

                double maxV = maxAbs(part(toDouble(qkv), n, d, 2));
                String what = describe("forward", c);
                check(what + ": output", wantOut, rig.values(P, out, n * d),
                        (3 * U_BF16 + float32(len, dh)) * maxV, maxV);
                double u2 = 2 * U_BF16 + U_BF16 * U_BF16;
                double scores = u2 * scale * maxHeadNorm(qkv, n, heads, dh, 0) * maxHeadNorm(qkv, n, heads, dh, 1);
                double maxLse = maxAbs(wantLse);
                check(what + ": log-sum-exp", wantLse, rig.floats(lse, n * heads),
                        scores + U_BF16 + float32(len, dh) * maxLse, Math.max(maxLse, 1));
            }
        }
    }

    @Test
    void forwardWithZeroQueriesAveragesExactlyTheVisibleKeys() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], dh = c[3], window = c[4], rd = c[5];
                int n = batch * len;
                int d = heads * dh;
                float scale = (float) (1 / Math.sqrt(dh));
                float[] qkv = randomQkv(r, n, d, true);
                double[] wantOut = new double[n * d];
                double[] wantLse = new double[n * heads];
                AttentionOps.forward(batch, len, heads, dh, window, rd, BASE, scale, toDouble(qkv), wantOut, wantLse);
                long out = rig.zeros(2L * n * d);
                long lse = rig.zeros(4L * n * heads);
                mk.mmaAttentionForward(rig.values(P, qkv), out, lse, batch, len, heads, dh, window, rd, BASE, scale);

                String what = describe("forward, q = 0", c);
                double maxV = maxAbs(part(toDouble(qkv), n, d, 2));
                float[] got = rig.values(P, out, n * d);
                double[] bounds = new double[n * d];
                for (int i = 0; i < bounds.length; i++) {
                    bounds[i] = U_BF16 * Math.abs(wantOut[i]) + 2 * float32(len, dh) * maxV;
                }
                Near.within(what + ": output (u of each value)", wantOut, got, bounds);
                double maxLse = Math.max(maxAbs(wantLse), 1);
                check(what + ": log-sum-exp", wantLse, rig.floats(lse, n * heads), 8 * U * maxLse, maxLse);
            }
        }
    }

    @Test
    void backwardMatchesTheReference() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : CASES) {
                for (boolean zeroQueries : new boolean[] {false, true}) {
                    backwardCase(rig, mk, r, c, zeroQueries);
                }
            }
        }
    }

    private static void backwardCase(KernelRig rig, MixerTrainKernels mk, SplittableRandom r, int[] c,
                                     boolean zeroQueries) {
        int batch = c[0], len = c[1], heads = c[2], dh = c[3], window = c[4], rd = c[5];
        int n = batch * len;
        int d = heads * dh;
        float scale = (float) (1 / Math.sqrt(dh));
        float[] qkv = randomQkv(r, n, d, zeroQueries);
        float[] dout = stored(P, gaussian(r, n * d, 1));
        float[] dqkv0 = stored(P, gaussian(r, n * 3 * d, 0.25));
        long qkvDev = rig.values(P, qkv);
        long out = rig.zeros(2L * n * d);
        long lse = rig.zeros(4L * n * heads);
        mk.mmaAttentionForward(qkvDev, out, lse, batch, len, heads, dh, window, rd, BASE, scale);
        long dqkv = rig.values(P, dqkv0);
        mk.mmaAttentionBackward(qkvDev, out, lse, rig.values(P, dout), dqkv, batch, len, heads, dh, window, rd, BASE,
                scale);

        double[] want = toDouble(dqkv0);
        AttentionOps.backward(batch, len, heads, dh, window, rd, BASE, scale, toDouble(qkv),
                toDouble(rig.values(P, out, n * d)), toDouble(rig.floats(lse, n * heads)), toDouble(dout), want);
        float[] got = rig.values(P, dqkv, n * 3 * d);
        double[] grad = want.clone();
        for (int i = 0; i < grad.length; i++) {
            grad[i] -= dqkv0[i];
        }
        double maxGrad = maxAbs(grad);
        String what = describe(zeroQueries ? "backward, q = 0" : "backward", c);
        String[] names = {"dq", "dk", "dv"};
        for (int part = 0; part < 3; part++) {
            double[] w = part(want, n, d, part);
            double partGrad = maxAbs(part(grad, n, d, part));
            double bound = U_BF16 * maxAbs(w) + 6 * U_BF16 * partGrad + 4 * float32(len, dh) * maxGrad;
            check(what + ": " + names[part], w, part(got, n, d, part), bound, Math.max(partGrad, Double.MIN_NORMAL));
        }
    }

    @Test
    void backwardIsDeterministic() {
        SplittableRandom r = new SplittableRandom(SEED);
        int batch = 2, len = 130, heads = 2, dh = 64, window = FULL, rd = 32;
        int n = batch * len;
        int d = heads * dh;
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            long qkv = rig.values(P, randomQkv(r, n, d, false));
            long dout = rig.values(P, stored(P, gaussian(r, n * d, 1)));
            long out = rig.zeros(2L * n * d);
            long lse = rig.zeros(4L * n * heads);
            mk.mmaAttentionForward(qkv, out, lse, batch, len, heads, dh, window, rd, BASE, 0.125f);
            float[][] runs = new float[2][];
            for (int i = 0; i < 2; i++) {
                long dqkv = rig.zeros(2L * n * 3 * d);
                mk.mmaAttentionBackward(qkv, out, lse, dout, dqkv, batch, len, heads, dh, window, rd, BASE, 0.125f);
                runs[i] = rig.values(P, dqkv, n * 3 * d);
            }
            assertArrayEquals(runs[0], runs[1], "two backward passes over the same inputs");
        }
    }

    @Test
    void bf16RunsOnTheTensorCoresWhereTheHeadDimAllows() {
        SplittableRandom r = new SplittableRandom(SEED);
        int batch = 2, len = 50, heads = 2, window = 7, rd = 16;
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int dh : new int[] {64, 40}) {  // 40 is no multiple of 16: the scalar kernels
                int n = batch * len;
                int d = heads * dh;
                long qkv = rig.values(P, randomQkv(r, n, d, false));
                long[] outs = {rig.zeros(2L * n * d), rig.zeros(2L * n * d)};
                long[] lses = {rig.zeros(4L * n * heads), rig.zeros(4L * n * heads)};
                mk.attentionForward(P, qkv, outs[0], lses[0], batch, len, heads, dh, window, rd, BASE, 0.125f);
                if (dh % MixerTrainKernels.ATTENTION_MMA_HEAD_DIM_STEP == 0) {
                    mk.mmaAttentionForward(qkv, outs[1], lses[1], batch, len, heads, dh, window, rd, BASE, 0.125f);
                } else {
                    mk.scalarAttentionForward(P, qkv, outs[1], lses[1], batch, len, heads, dh, window, rd, BASE,
                            0.125f);
                }
                assertArrayEquals(rig.values(P, outs[1], n * d), rig.values(P, outs[0], n * d), "dh " + dh);
                assertArrayEquals(rig.floats(lses[1], n * heads), rig.floats(lses[0], n * heads), "dh " + dh);
            }
        }
    }
}
