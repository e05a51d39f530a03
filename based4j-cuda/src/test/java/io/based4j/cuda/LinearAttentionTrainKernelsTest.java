package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.train.cpu.LinearAttentionOps;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The Taylor linear-attention training kernels of {@link MixerTrainKernels} against
 * {@link LinearAttentionOps#forward} and {@link LinearAttentionOps#backward} in float64 (both chunked by 64, so
 * sequences of 130 tokens span three chunks, the last ragged), in both precisions: feature dims 8, 16 and 32
 * (E = 45, 153 and 561), head dims 64, 112 (not a multiple of 16) and 127 (the largest the chunked kernels take),
 * and 128 (a one-head MQAR model of width 128: the recurrent kernels, whose sums run token by token in chains of at
 * most L + E terms, within the same bound), sequences of 1, 5, 37, 70, 129 and 130 tokens, 1 to 3 per batch, 1 or 2
 * heads.
 *
 * <p>The inputs are the values the GPU holds; gradients start from random values (the kernels add into them).
 * Tolerances are normwise, against the largest element of the result. The GPU sums in float32, in chains of at most
 * L + E + 40 terms: an in-chunk sum runs over at most 64 tokens, a state element over the 64 tokens of a chunk and
 * then over the L / 64 chunks before it, a product with a state over E features, and the gradients add the value
 * columns (dh + 1 at most 128 here, split into 16-column strips summed by a butterfly) and the feature map's
 * transpose; so each result errs by about (L + E + 40) u of the sum of |terms| (u = 2^-24, at most 4.4e-5 here).
 * With q and k of unit variance the scores 1 + s + s^2/2 are positive and of order one, and the sums of |terms|
 * stay within a factor of about 10 of the largest result for the output; the gradients also sum through
 * {@code dS} and {@code J^T} with cancellation, allowed a further factor 4. In bf16 all arithmetic is float32 too
 * (the inputs are widened, nothing is rounded to bf16 before it is stored): only the stored results are rounded, by
 * at most {@link Near#U_BF16} of the largest value.
 */
@GpuTest
class LinearAttentionTrainKernelsTest {
    /** batch, seqLen, heads, featureDim, headDim. */
    private static final int[][] CASES = {{2, 1, 2, 16, 64}, {2, 5, 1, 16, 64}, {3, 37, 2, 32, 112},
        {2, 130, 1, 16, 112}, {2, 130, 2, 32, 64}, {1, 129, 1, 8, 127}, {2, 70, 1, 16, 128}};
    private static final double EPS = 1e-6;
    private static final int CHUNK = LinearAttentionOps.DEFAULT_CHUNK;

    private static double tolerance(Precision p, int len, int f, double amplification) {
        int e = 1 + f + f * (f + 1) / 2;
        return amplification * (len + e + 40) * U + (p == Precision.F32 ? 0 : U_BF16);
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void forwardMatchesTheReference(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], f = c[3], dh = c[4];
                int n = batch * len;
                float[] q = stored(p, gaussian(r, n * heads * f, 1));
                float[] k = stored(p, gaussian(r, n * heads * f, 1));
                float[] v = stored(p, gaussian(r, n * heads * dh, 1));
                double[] want = new double[n * heads * dh];
                LinearAttentionOps.forward(batch, len, heads, f, dh, EPS, CHUNK, toDouble(q), toDouble(k),
                        toDouble(v), want);
                long out = rig.zeros((long) n * heads * dh * p.bytes());
                mk.linearAttentionForward(p, rig.values(p, q), rig.values(p, k), rig.values(p, v), out, batch, len,
                        heads, f, dh, (float) EPS);
                Near.normwise(String.format("linear attention forward %s batch %d, seqLen %d, heads %d, f %d, dh %d",
                        p.suffix(), batch, len, heads, f, dh), want, rig.values(p, out, want.length),
                        tolerance(p, len, f, 10));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void backwardAddsIntoDqDkDv(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], f = c[3], dh = c[4];
                int n = batch * len;
                int qk = n * heads * f;
                int vs = n * heads * dh;
                float[] q = stored(p, gaussian(r, qk, 1));
                float[] k = stored(p, gaussian(r, qk, 1));
                float[] v = stored(p, gaussian(r, vs, 1));
                float[] dout = stored(p, gaussian(r, vs, 1));
                float[] dq0 = stored(p, gaussian(r, qk, 1));
                float[] dk0 = stored(p, gaussian(r, qk, 1));
                float[] dv0 = stored(p, gaussian(r, vs, 1));
                double[] wantDq = toDouble(dq0);
                double[] wantDk = toDouble(dk0);
                double[] wantDv = toDouble(dv0);
                LinearAttentionOps.backward(batch, len, heads, f, dh, EPS, CHUNK, toDouble(q), toDouble(k),
                        toDouble(v), toDouble(dout), wantDq, wantDk, wantDv);

                long qDev = rig.values(p, q);
                long kDev = rig.values(p, k);
                long vDev = rig.values(p, v);
                long doutDev = rig.values(p, dout);
                long dq = rig.values(p, dq0);
                long dk = rig.values(p, dk0);
                long dv = rig.values(p, dv0);
                mk.linearAttentionBackward(p, qDev, kDev, vDev, doutDev, dq, dk, dv, batch, len, heads, f, dh,
                        (float) EPS);
                String what = String.format("linear attention backward %s batch %d, seqLen %d, heads %d, f %d, dh %d",
                        p.suffix(), batch, len, heads, f, dh);
                double tol = tolerance(p, len, f, 40);
                float[] gotDq = rig.values(p, dq, qk);
                Near.normwise(what + ": dq", wantDq, gotDq, tol);
                Near.normwise(what + ": dk", wantDk, rig.values(p, dk, qk), tol);
                Near.normwise(what + ": dv", wantDv, rig.values(p, dv, vs), tol);

                // the caller's scratch gives the same numbers, bit for bit (every sum is in a fixed order)
                long dqAgain = rig.values(p, dq0);
                long scratch = rig.zeros(MixerTrainKernels.linearAttentionBackwardScratchBytes(batch, len, heads, f,
                        dh));
                mk.linearAttentionBackward(p, qDev, kDev, vDev, doutDev, dqAgain, rig.values(p, dk0),
                        rig.values(p, dv0), batch, len, heads, f, dh, (float) EPS, scratch);
                assertArrayEquals(gotDq, rig.values(p, dqAgain, qk), what + ": dq differs between two runs"
                        + " [-Dbased4j.seed=" + SEED + "]");
            }
        }
    }
}
