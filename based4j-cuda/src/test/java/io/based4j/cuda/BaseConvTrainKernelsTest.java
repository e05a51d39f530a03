package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.train.cpu.DenseOps;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The BaseConv training kernels of {@link MixerTrainKernels} against {@link DenseOps#baseConv} and
 * {@link DenseOps#baseConvBackward} in float64, in both precisions, on packed batches of 1 to 3 sequences of 1, 5,
 * 19, 37 and 130 tokens (a kernel longer than the sequence included), widths that are multiples of nothing. In bf16
 * the widths that are multiples of 8 with kernels up to 4 run the row kernels ({@link MixerTrainKernels#convByRows}):
 * runs of 16 rows that cross sequence boundaries (37, 19), runs cut short by the end (5), a second block of channels
 * with one lane in it (264), kernels 1 to 4, and more than one block of 128 rows (260).
 *
 * <p>The inputs are the values the GPU holds (bf16 values in bf16), the backward's reference reads the conv output
 * the GPU kept, and every gradient starts from random values (the kernels add into it). So every difference is the
 * rounding of the GPU's float32 arithmetic, plus in bf16 one rounding of each stored result (at most
 * {@link Near#U_BF16} of it). Bounds are a-priori: a float32 sum of K terms errs by at most about
 * {@code K u sum|terms|} (u = 2^-24); the test computes sum|terms| and names K.
 */
@GpuTest
class BaseConvTrainKernelsTest {
    /** batch, seqLen, inner, kernel. */
    private static final int[][] CASES = {{2, 1, 48, 3}, {3, 37, 100, 4}, {2, 130, 33, 3}, {1, 5, 20, 8},
        {3, 37, 64, 3}, {2, 130, 264, 4}, {1, 5, 16, 2}, {2, 19, 8, 1}};
    /** Roundings of exp, the sigmoid and silu (and of the products around them), relative. */
    private static final int ACTIVATION = 12;

    @ParameterizedTest
    @EnumSource(Precision.class)
    void forwardKeepsTheConvOutputAndMatchesTheReference(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], inner = c[2], k = c[3];
                int n = batch * len;
                float[] u = stored(p, gaussian(r, n * 2 * inner, 1));
                float[] w = stored(p, gaussian(r, inner * k, 0.5));
                double[] wantC = new double[n * inner];
                double[] wantOut = new double[n * inner];
                DenseOps.baseConv(toDouble(u), batch, len, inner, toDouble(w), k, wantC, wantOut);

                long convOut = rig.zeros((long) n * inner * p.bytes());
                long out = rig.zeros((long) n * inner * p.bytes());
                mk.baseConvForward(p, rig.values(p, u), rig.values(p, w), convOut, out, batch, len, inner, k);
                String what = String.format("baseConv forward %s batch %d, seqLen %d, inner %d, kernel %d",
                        p.suffix(), batch, len, inner, k);
                double store = p == Precision.F32 ? 0 : U_BF16;
                // c: k fused multiply-adds, K = k; out = silu(c) u2 with |silu'| <= 1.1, plus ACTIVATION roundings
                double[] cBound = new double[n * inner];
                double[] outBound = new double[n * inner];
                for (int row = 0; row < n; row++) {
                    int t = row % len;
                    for (int ch = 0; ch < inner; ch++) {
                        double mag = 0;
                        for (int j = Math.max(0, k - 1 - t); j < k; j++) {
                            mag += Math.abs(w[ch * k + j] * (double) u[(row - (k - 1) + j) * 2 * inner + ch]);
                        }
                        int i = row * inner + ch;
                        double cErr = (k + 1) * U * mag;
                        cBound[i] = cErr + store * Math.abs(wantC[i]) + Double.MIN_NORMAL;
                        outBound[i] = 1.1 * Math.abs(u[row * 2 * inner + inner + ch]) * cErr
                                + (ACTIVATION * U + store) * Math.abs(wantOut[i]) + Double.MIN_NORMAL;
                    }
                }
                Near.within(what + ": kept conv output", wantC, rig.values(p, convOut, n * inner), cBound);
                Near.within(what + ": output", wantOut, rig.values(p, out, n * inner), outBound);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void backwardAddsIntoDuAndDtaps(Precision p) {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], inner = c[2], k = c[3];
                int n = batch * len;
                float[] u = stored(p, gaussian(r, n * 2 * inner, 1));
                float[] w = stored(p, gaussian(r, inner * k, 0.5));
                float[] dout = stored(p, gaussian(r, n * inner, 1));
                float[] du0 = stored(p, gaussian(r, n * 2 * inner, 1));
                float[] dtaps0 = gaussian(r, inner * k, 1);
                long uDev = rig.values(p, u);
                long wDev = rig.values(p, w);
                long convOut = rig.zeros((long) n * inner * p.bytes());
                long out = rig.zeros((long) n * inner * p.bytes());
                mk.baseConvForward(p, uDev, wDev, convOut, out, batch, len, inner, k);
                float[] kept = rig.values(p, convOut, n * inner);  // the reference reads what the GPU kept
                long du = rig.values(p, du0);
                long dtaps = rig.floats(dtaps0);
                mk.baseConvBackward(p, uDev, wDev, convOut, rig.values(p, dout), du, dtaps, batch, len, inner, k);

                double[] wantDu = toDouble(du0);
                double[] wantDtaps = toDouble(dtaps0);
                DenseOps.baseConvBackward(toDouble(u), batch, len, inner, toDouble(w), k, toDouble(kept),
                        toDouble(dout), wantDu, wantDtaps);
                String what = String.format("baseConv backward %s batch %d, seqLen %d, inner %d, kernel %d",
                        p.suffix(), batch, len, inner, k);

                // |dc| per element, from the magnitudes of its terms: silu'(c) = s (1 + c (1 - s)) has a zero near
        // c = -1.28, where the roundings of s and of c (1 - s) do not shrink with it (dc itself is computed to
        // ACTIVATION roundings of its terms)
                double[] dcMag = new double[n * inner];
                for (int i = 0; i < n * inner; i++) {
                    int row = i / inner;
                    int ch = i % inner;
                    double cv = kept[i];
                    double s = 1 / (1 + Math.exp(-cv));
                    dcMag[i] = Math.abs(dout[i] * u[row * 2 * inner + inner + ch]) * s * (1 + Math.abs(cv) * (1 - s));
                }
                double store = p == Precision.F32 ? 0 : U_BF16;
                double[] duBound = new double[n * 2 * inner];
                for (int row = 0; row < n; row++) {
                    int t = row % len;
                    for (int ch = 0; ch < inner; ch++) {
                        // u2: one product (ACTIVATION roundings) and the addition
                        int g = row * 2 * inner + inner + ch;
                        double cv = kept[row * inner + ch];
                        double gate = Math.abs(dout[row * inner + ch] * cv / (1 + Math.exp(-cv)));
                        duBound[g] = (ACTIVATION + 1) * U * (Math.abs(du0[g]) + gate) + store * Math.abs(wantDu[g])
                                + Double.MIN_NORMAL;
                        // u1: a k-term sum of w dc (K = k + ACTIVATION), then the addition
                        double mag = 0;
                        for (int j = 0; j < k; j++) {
                            int to = t + (k - 1) - j;
                            if (to < len) {
                                mag += Math.abs(w[ch * k + j]) * dcMag[(row + to - t) * inner + ch];
                            }
                        }
                        int i1 = row * 2 * inner + ch;
                        duBound[i1] = (k + ACTIVATION + 1) * U * (mag + Math.abs(du0[i1]))
                                + store * Math.abs(wantDu[i1]) + Double.MIN_NORMAL;
                    }
                }
                Near.within(what + ": du", wantDu, rig.values(p, du, n * 2 * inner), duBound);

                // dtaps: additions in a chain (tapChain), and dc's own roundings
                int chain = tapChain(p, n, inner, k) + ACTIVATION;
                double[] tapBound = new double[inner * k];
                for (int ch = 0; ch < inner; ch++) {
                    for (int j = 0; j < k; j++) {
                        double mag = Math.abs(dtaps0[ch * k + j]);
                        for (int row = 0; row < n; row++) {
                            int src = row % len - (k - 1) + j;
                            if (src >= 0) {
                                mag += dcMag[row * inner + ch] * Math.abs(u[(row - (k - 1) + j) * 2 * inner + ch]);
                            }
                        }
                        tapBound[ch * k + j] = chain * U * mag + Double.MIN_NORMAL;
                    }
                }
                Near.within(what + ": dtaps", wantDtaps, rig.floats(dtaps, inner * k), tapBound);
            }
        }
    }

    /**
     * A fresh du (the caller's zero skipped) is written, its old values never read: over du filled with NaN it is bit
     * for bit the backward added into zeros, and dtaps is the same too; at the sizes the row kernels take.
     */
    @Test
    void aFreshDuIsWrittenNotReadAndEqualsAddingIntoZeros() {
        Precision p = Precision.BF16;
        SplittableRandom r = new SplittableRandom(SEED + 1);
        try (KernelRig rig = new KernelRig()) {
            MixerTrainKernels mk = new MixerTrainKernels(rig.kernels);
            int checked = 0;
            for (int[] c : CASES) {
                int batch = c[0], len = c[1], inner = c[2], k = c[3];
                int n = batch * len;
                if (!MixerTrainKernels.convByRows(p, n, inner, k)) {
                    continue;
                }
                long u = rig.values(p, stored(p, gaussian(r, n * 2 * inner, 1)));
                long w = rig.values(p, stored(p, gaussian(r, inner * k, 0.5)));
                long dout = rig.values(p, stored(p, gaussian(r, n * inner, 1)));
                long convOut = rig.zeros((long) n * inner * p.bytes());
                long out = rig.zeros((long) n * inner * p.bytes());
                mk.baseConvForward(p, u, w, convOut, out, batch, len, inner, k);
                float[] nan = new float[n * 2 * inner];
                Arrays.fill(nan, Float.NaN);
                long added = rig.zeros((long) n * 2 * inner * p.bytes());
                long fresh = rig.values(p, nan);
                long tapsAdded = rig.zeros(4L * inner * k);
                long tapsFresh = rig.zeros(4L * inner * k);
                mk.baseConvBackward(p, u, w, convOut, dout, added, tapsAdded, batch, len, inner, k, false);
                mk.baseConvBackward(p, u, w, convOut, dout, fresh, tapsFresh, batch, len, inner, k, true);
                String what = String.format("fresh baseConv backward batch %d, seqLen %d, inner %d, kernel %d", batch,
                        len, inner, k);
                assertArrayEquals(rig.values(p, added, n * 2 * inner),
                        rig.values(p, fresh, n * 2 * inner), what + ": du");
                assertArrayEquals(rig.floats(tapsAdded, inner * k),
                        rig.floats(tapsFresh, inner * k), what + ": dtaps");
                checked++;
            }
            assertTrue(checked >= 4, "cases on the row kernels: " + checked);
        }
    }

    /**
     * Additions in a chain of a tap gradient, with the one into dtaps: the scalar kernels sum n / 8 rows per row
     * group, then 8 groups, then the parts in order; the row kernels the rows of a run (at most 16), the block's runs
     * (at most 8), then the parts of 128 rows in (at most 32) groups and the groups. Zero terms add no error.
     */
    private static int tapChain(Precision p, int n, int inner, int k) {
        if (MixerTrainKernels.convByRows(p, n, inner, k)) {
            int parts = (n + 127) / 128;
            return Math.min(16, n) + Math.min(8, (n + 15) / 16) + (parts + 31) / 32 + Math.min(32, parts) + 1;
        }
        int rows = MixerTrainKernels.convTapRowsPerPart(n);
        return (n + 7) / 8 + 8 + (n + rows - 1) / rows + 1;
    }
}
