package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;

import io.based4j.train.cpu.AttentionOps;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The scalar softmax-attention training kernels of {@link MixerTrainKernels} (all of float32, and bf16 where the
 * tensor-core kernels do not apply: {@link AttentionMmaKernelsTest}) against {@link AttentionOps#forward} and
 * {@link AttentionOps#backward} in float64, in both precisions: head dims 64 and 112, windows 0 (each query sees
 * itself only), 3, one longer than the sequence and {@link Integer#MAX_VALUE} (full causal), rotary on all, part or
 * none of the head, sequences of 1, 37 and 130 tokens (more than one 32-key tile, the last ragged), 2 or 3 per batch.
 *
 * <p>The inputs are the values the GPU holds; the backward's reference reads the output and log-sum-exp the GPU's
 * forward kept, and dqkv starts from random values (the kernels add into it). Tolerances are normwise against the
 * largest element: a score is a dot of dh terms after a rotation (dh + 4 roundings), a softmax sums at most L terms
 * and exp errs by a few ulps, so with unit-variance inputs and scale 1/sqrt(dh) (scores of order one) each result
 * errs by at most about (dh + L + 20) u of a sum of |terms| within a small factor (4) of the largest result; the
 * gradients chain two such sums (p, then ds), allowed a factor 4 more. The rotary angles are computed on the GPU in
 * double from the same float32 numbers as RotaryAngles. In bf16 all arithmetic is float32 as well: only the stored
 * results are rounded, by at most {@link Near#U_BF16} of the largest value.
 */
@GpuTest
class AttentionTrainKernelsTest {
    /** batch, seqLen, heads, headDim, window, rotaryDim. */
    private static final int[][] CASES = {{2, 1, 2, 64, 3, 64}, {3, 37, 2, 112, 0, 56},
        {2, 130, 2, 64, Integer.MAX_VALUE, 32}, {2, 130, 1, 112, 3, 112}, {3, 37, 1, 64, 38, 0}};
    private static final double BASE = 10000;

    private static double tolerance(Precision p, int len, int dh, double amplification) {
        return amplification * (dh + len + 20) * U + (p == Precision.F32 ? 0 : U_BF16);
    }

    private static String describe(String op, Precision p, int[] c) {
        return String.format("attention %s %s batch %d, seqLen %d, heads %d, dh %d, window %s, rotary %d", op,
                p.suffix(), c[0], c[1], c[2], c[3], c[4] == Integer.MAX_VALUE ? "full" : String.valueOf(c[4]), c[5]);
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void forwardWritesOutputAndLogSumExp(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], dh = c[3], window = c[4], rd = c[5];
                int n = batch * len;
                int d = heads * dh;
                float scale = (float) (1 / Math.sqrt(dh));
                float[] qkv = stored(p, gaussian(r, n * 3 * d, 1));
                double[] wantOut = new double[n * d];
                double[] wantLse = new double[n * heads];
                AttentionOps.forward(batch, len, heads, dh, window, rd, BASE, scale, toDouble(qkv), wantOut, wantLse);
                long out = rig.zeros((long) n * d * p.bytes());
                long lse = rig.zeros(4L * n * heads);
                mk.scalarAttentionForward(p, rig.values(p, qkv), out, lse, batch, len, heads, dh, window, rd, BASE,
                        scale);
                String what = describe("forward", p, c);
                Near.normwise(what + ": output", wantOut, rig.values(p, out, n * d), tolerance(p, len, dh, 4));
                // lse is float32 in both precisions: log(L) + max score, errs as a score and a sum
                Near.normwise(what + ": log-sum-exp", wantLse, rig.floats(lse, n * heads),
                        tolerance(Precision.F32, len, dh, 4));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void backwardAddsIntoDqkv(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], heads = c[2], dh = c[3], window = c[4], rd = c[5];
                int n = batch * len;
                int d = heads * dh;
                float scale = (float) (1 / Math.sqrt(dh));
                float[] qkv = stored(p, gaussian(r, n * 3 * d, 1));
                float[] dout = stored(p, gaussian(r, n * d, 1));
                float[] dqkv0 = stored(p, gaussian(r, n * 3 * d, 1));
                long qkvDev = rig.values(p, qkv);
                long out = rig.zeros((long) n * d * p.bytes());
                long lse = rig.zeros(4L * n * heads);
                mk.scalarAttentionForward(p, qkvDev, out, lse, batch, len, heads, dh, window, rd, BASE, scale);
                long dqkv = rig.values(p, dqkv0);
                mk.scalarAttentionBackward(p, qkvDev, out, lse, rig.values(p, dout), dqkv, batch, len, heads, dh,
                        window, rd, BASE, scale);

                double[] want = toDouble(dqkv0);
                AttentionOps.backward(batch, len, heads, dh, window, rd, BASE, scale, toDouble(qkv),
                        toDouble(rig.values(p, out, n * d)), toDouble(rig.floats(lse, n * heads)), toDouble(dout),
                        want);
                Near.normwise(describe("backward", p, c) + ": dqkv", want, rig.values(p, dqkv, n * 3 * d),
                        tolerance(p, len, dh, 16));
            }
        }
    }
}
