package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.LinearAttentionOps;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The Taylor linear-attention training kernels of {@link MixerTrainKernels} against
 * {@link LinearAttentionOps#forward} and {@link LinearAttentionOps#backward} in float64 (both chunked by 64, so
 * sequences of 130 tokens span three chunks, the last ragged), in both precisions: feature dims 8, 16 and 32
 * (E = 45, 153 and 561), head dims 64, 112 (not a multiple of 16) and 127 (the largest the chunked kernels take),
 * and 128 (a one-head MQAR model of width 128: in float32 the recurrent kernels, whose sums run token by token in
 * chains of at most L + E terms, within the same bound; in bf16 the head split onto the tensor cores, below),
 * sequences of 1, 5, 37, 70, 129 and 130 tokens, 1 to 3 per batch, 1 or 2 heads.
 *
 * <p>The inputs are the values the GPU holds; gradients start from random values (the kernels add into them).
 * Tolerances are normwise, against the largest element of the result. The GPU sums in float32, in chains of at most
 * L + E + 40 terms: an in-chunk sum runs over at most 64 tokens, a state element over the 64 tokens of a chunk and
 * then over the L / 64 chunks before it, a product with a state over E features, and the gradients add the value
 * columns (dh + 1 at most 128 here, split into 16-column strips summed by a butterfly) and the feature map's
 * transpose; so each result errs by about (L + E + 40) u of the sum of |terms| (u = 2^-24, at most 4.4e-5 here).
 * With q and k of unit variance the scores 1 + s + s^2/2 are positive and of order one, and the sums of |terms|
 * stay within a factor of about 10 of the largest result for the output; the gradients also sum through
 * {@code dS} and {@code J^T} with cancellation, allowed a further factor 4. In bf16 on the CUDA-core kernels
 * (feature dim 8 with head dim 127 below) all arithmetic is float32 too (the inputs are widened, nothing is rounded
 * to bf16 before it is stored): only the stored results are rounded, by at most {@link Near#U_BF16} of the largest
 * value.
 *
 * <p>bf16 with feature dims 8 to 32 and head dims 16 to 120 in multiples of 8 runs the tensor-core kernels
 * ({@link MixerTrainKernels#linearTensorCores}), which round the operands of their products to bf16: phi(q) and
 * phi(k), the in-chunk scores, the chunk-state tiles, {@code G' = [dout / D, -dout.y / D]} and the score gradients,
 * each by at most b = 2^-8 relatively (bf16's unit roundoff; v and dout are bf16 already: exact); the sums stay
 * float32. A product term carries at most three such roundings (phi(q), phi(k) and the state tile that sums
 * phi(k) v). The roundings are to nearest, independent and unbiased, so they add in quadrature: a sum of n terms
 * errs by about b sqrt(n) times its typical term, not b n times its largest. The outputs are weighted means of the
 * values (the first token's is one value, rounded), so an output errs by about b of the largest value and its
 * stored rounding adds b: the forward is allowed 3b of the largest value. The gradients sum through G' and the
 * score gradients as well and cancel in {@code da = g.v + r} (zero where a value equals the output), where the
 * rounding of g leaves b of the uncancelled terms; the largest of some thousand errors can meet a few such
 * cancellations: 8b. Errors everywhere are held tighter, in the root-mean-square: the stored rounding alone is at
 * most b of each element, and the operands' roundings, independent of it and averaging out over the sums, add a
 * fraction of b in quadrature: 1.5b. An emulation of the kernels on the host (the bf16 roundings and the fragment
 * layouts of the mma and ldmatrix instructions: {@code src/test/cuda/linear-mma-emulator}), over some 75 runs of
 * these shapes with random inputs, erred by at most 0.9b (out) and 2.9b (dq) in the largest element and 0.6b in the
 * root-mean-square; kernels that dropped the factor 2 of the squares in the feature map's transpose erred by 7-10b
 * and 3-4b, and every index error tried by more than 40b in some result. Where the scan kernels serve the shape
 * ({@link MixerTrainKernels#linearScan}: f 8 or 16, dh up to 72) they run by default, and must give the chunk
 * kernels' numbers bit for bit (the emulator runs both and compares).
 *
 * <p>bf16 heads wider than 120 that split into tensor-core heads ({@link MixerTrainKernels#linearHeadSplit}: a head
 * of 128 runs as 2 heads of 64 sharing q and k) are held to the same allowances. Their out and dv are the tensor-core
 * kernels' results for the virtual heads, each an ordinary tensor-core problem (q, k and its dh / s columns of v and
 * dout) whose reference is those columns of the whole head's. Their dq and dk are the sums of the s virtual heads'
 * gradients, each rounded to bf16 once more before the float32 sum (at most b of that part) and each erring
 * independently, so the errors add in quadrature as the terms within one head's sums do, against a result that
 * grows as the parts add: the largest error stays within 8b, and in the root-mean-square the extra roundings add a
 * fraction of b in quadrature to the whole heads' 0.6b, within 1.5b. The emulator's split mode (which runs the
 * repeat and the sum kernels too), over 27 runs of the shapes of {@code SPLIT_CASES} (3 seeds), erred by at most
 * 0.9b (out), 2.1b (dq), 2.5b (dk) and 1.0b (dv) in the largest element and 0.8b in the root-mean-square; a repeat
 * that took the wrong head, or a sum that took the wrong copies, by more than 100b.
 */
@GpuTest
class LinearAttentionTrainKernelsTest {
    /** batch, seqLen, heads, featureDim, headDim. */
    private static final int[][] CASES = {{2, 1, 2, 16, 64}, {2, 5, 1, 16, 64}, {3, 37, 2, 32, 112},
        {2, 130, 1, 16, 112}, {2, 130, 2, 32, 64}, {1, 129, 1, 8, 127}, {2, 70, 1, 16, 128}};
    private static final double EPS = 1e-6;
    private static final int CHUNK = LinearAttentionOps.DEFAULT_CHUNK;

    /**
     * batch, seqLen, heads, featureDim, headDim of bf16 on tensor cores: ragged last chunks (100 = 64 + 36,
     * 129 = 2 x 64 + 1), feature dims 16 and 32, head dims 64 and 112, and a sequence of 11 chunks.
     */
    private static final int[][] TENSOR_CORE_CASES = {{2, 100, 2, 16, 64}, {2, 129, 1, 16, 64}, {2, 100, 1, 16, 112},
        {2, 129, 2, 16, 112}, {2, 100, 1, 32, 64}, {2, 129, 1, 32, 64}, {2, 100, 2, 32, 112}, {2, 129, 1, 32, 112},
        {1, 700, 1, 16, 64}};
    /** Allowances of the tensor-core kernels (see above): of the largest value, and in the root-mean-square. */
    private static final double TENSOR_CORE_FORWARD = 3 * U_BF16;
    private static final double TENSOR_CORE_BACKWARD = 8 * U_BF16;
    private static final double TENSOR_CORE_RMS = 1.5 * U_BF16;
    /** Values a result needs for its root-mean-square error to be held to {@link #TENSOR_CORE_RMS}. */
    private static final int RMS_MIN_VALUES = 256;

    private static double tolerance(Precision p, int len, int f, double amplification) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return amplification * (len + e + 40) * U + (p == Precision.F32 ? 0 : U_BF16);
    }

    /** Whether the tensor-core kernels serve the shape: whole heads, or heads split into virtual heads. */
    private static boolean onTensorCores(Precision p, int heads, int f, int dh) {
        return MixerTrainKernels.linearTensorCores(p, f, dh) || MixerTrainKernels.linearHeadSplit(p, f, dh, heads) != 0;
    }

    private static double forwardTolerance(Precision p, int len, int heads, int f, int dh) {
        return onTensorCores(p, heads, f, dh) ? TENSOR_CORE_FORWARD : tolerance(p, len, f, 10);
    }

    private static double backwardTolerance(Precision p, int len, int heads, int f, int dh) {
        return onTensorCores(p, heads, f, dh) ? TENSOR_CORE_BACKWARD : tolerance(p, len, f, 40);
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
                        forwardTolerance(p, len, heads, f, dh));
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
                double tol = backwardTolerance(p, len, heads, f, dh);
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

    @Test
    void tensorCoresFollowTheReferenceOnRaggedChunks() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : TENSOR_CORE_CASES) {
                Problem pr = Problem.of(r, c);
                assertTrue(MixerTrainKernels.linearTensorCores(BF16, pr.f, pr.dh), pr.describe("tensor cores"));
                float[][] got = pr.runOn(rig, mk, 0);
                String what = pr.describe("linear attention on tensor cores");
                pr.printErrors(what, got);
                pr.assertNear(what, got);
            }
        }
    }

    /**
     * One bf16 problem of the tensor-core cases: the inputs as bf16 holds them, the starting gradients (the backward
     * adds into them), and the float64 reference's output and gradients.
     */
    private record Problem(int batch, int len, int heads, int f, int dh, float[] q, float[] k, float[] v, float[] dout,
                           float[] dq0, float[] dk0, float[] dv0, double[] out, double[] dq, double[] dk,
                           double[] dv) {
        /** c: batch, seqLen, heads, featureDim, headDim. */
        static Problem of(SplittableRandom r, int[] c) {
            int batch = c[0], len = c[1], heads = c[2], f = c[3], dh = c[4];
            int n = batch * len;
            int qk = n * heads * f;
            int vs = n * heads * dh;
            float[] q = stored(BF16, gaussian(r, qk, 1));
            float[] k = stored(BF16, gaussian(r, qk, 1));
            float[] v = stored(BF16, gaussian(r, vs, 1));
            float[] dout = stored(BF16, gaussian(r, vs, 1));
            float[] dq0 = stored(BF16, gaussian(r, qk, 1));
            float[] dk0 = stored(BF16, gaussian(r, qk, 1));
            float[] dv0 = stored(BF16, gaussian(r, vs, 1));
            double[] out = new double[vs];
            LinearAttentionOps.forward(batch, len, heads, f, dh, EPS, CHUNK, toDouble(q), toDouble(k), toDouble(v),
                    out);
            double[] dq = toDouble(dq0);
            double[] dk = toDouble(dk0);
            double[] dv = toDouble(dv0);
            LinearAttentionOps.backward(batch, len, heads, f, dh, EPS, CHUNK, toDouble(q), toDouble(k), toDouble(v),
                    toDouble(dout), dq, dk, dv);
            return new Problem(batch, len, heads, f, dh, q, k, v, dout, dq0, dk0, dv0, out, dq, dk, dv);
        }

        String describe(String kernels) {
            return String.format(Locale.ROOT, "%s, batch %d, seqLen %d, heads %d, f %d, dh %d", kernels, batch, len,
                    heads, f, dh);
        }

        /**
         * The forward and the backward on the device as mk is set: {out, dq, dk, dv}; the backward with the caller's
         * scratch where {@code scratch} is not 0.
         */
        float[][] runOn(KernelRig rig, MixerTrainKernels mk, long scratch) {
            int qk = q.length;
            int vs = v.length;
            long qDev = rig.values(BF16, q);
            long kDev = rig.values(BF16, k);
            long vDev = rig.values(BF16, v);
            long outDev = rig.zeros((long) vs * BF16.bytes());
            mk.linearAttentionForward(BF16, qDev, kDev, vDev, outDev, batch, len, heads, f, dh, (float) EPS);
            long dqDev = rig.values(BF16, dq0);
            long dkDev = rig.values(BF16, dk0);
            long dvDev = rig.values(BF16, dv0);
            long doutDev = rig.values(BF16, dout);
            if (scratch == 0) {
                mk.linearAttentionBackward(BF16, qDev, kDev, vDev, doutDev, dqDev, dkDev, dvDev, batch, len, heads, f,
                        dh, (float) EPS);
            } else {
                mk.linearAttentionBackward(BF16, qDev, kDev, vDev, doutDev, dqDev, dkDev, dvDev, batch, len, heads, f,
                        dh, (float) EPS, scratch);
            }
            return new float[][] {rig.values(BF16, outDev, vs), rig.values(BF16, dqDev, qk),
                rig.values(BF16, dkDev, qk), rig.values(BF16, dvDev, vs)};
        }

        /** Prints got's errors ({out, dq, dk, dv}) against the reference in units of 2^-8, largest and rms. */
        void printErrors(String what, float[][] got) {
            System.out.printf(Locale.ROOT, "%s, in units of 2^-8: largest errors (of the largest value) out %.2f,"
                    + " dq %.2f, dk %.2f, dv %.2f; root-mean-square out %.2f, dq %.2f, dk %.2f, dv %.2f%n", what,
                    Near.normwiseError(out, got[0]) / U_BF16, Near.normwiseError(dq, got[1]) / U_BF16,
                    Near.normwiseError(dk, got[2]) / U_BF16, Near.normwiseError(dv, got[3]) / U_BF16,
                    Near.rmsError(out, got[0]) / U_BF16, Near.rmsError(dq, got[1]) / U_BF16,
                    Near.rmsError(dk, got[2]) / U_BF16, Near.rmsError(dv, got[3]) / U_BF16);
        }

        /** got ({out, dq, dk, dv}) within the tensor-core kernels' allowances of the reference, largest and rms. */
        void assertNear(String what, float[][] got) {
            double[][] want = {out, dq, dk, dv};
            for (int i = 0; i < NAMES.length; i++) {
                Near.normwise(what + ": " + NAMES[i], want[i], got[i], i == 0 ? TENSOR_CORE_FORWARD
                        : TENSOR_CORE_BACKWARD);
                // the root-mean-square bound is one over many elements, whose roundings average out; over a result
                // of a few dozen values (a sequence of one token: 2 x 16 values of dq) it is a handful of
                // elements' errors, held by the largest-element bound above (a run of seqLen 1 met 1.6b)
                if (want[i].length >= RMS_MIN_VALUES) {
                    Near.rms(what + ": " + NAMES[i], want[i], got[i], TENSOR_CORE_RMS);
                }
            }
        }
    }

    private static final Precision BF16 = Precision.BF16;
    private static final String[] NAMES = {"out", "dq", "dk", "dv"};

    /** got equal to the chunk kernels' results, bit for bit, result by result ({out, dq, dk, dv}). */
    private static void assertSame(String what, float[][] chunked, float[][] got) {
        assertSame(what, "the chunk kernels'", chunked, got);
    }

    /** got equal to want (whose source is named by {@code against}), bit for bit, result by result. */
    private static void assertSame(String what, String against, float[][] want, float[][] got) {
        for (int i = 0; i < NAMES.length; i++) {
            assertArrayEquals(want[i], got[i], what + ": " + NAMES[i] + " differs from " + against
                    + " [-Dbased4j.seed=" + SEED + "]");
        }
    }

    /**
     * batch, seqLen, heads, featureDim, headDim of the scan kernels ({@link MixerTrainKernels#linearScan}): a ragged
     * last chunk (100 = 64 + 36, 129 = 2 x 64 + 1, 65 = 64 + 1), a single token, feature dims 8 and 16, head dims 16,
     * 24, 64 and 72 (the largest they take), a batch of 3, and a sequence of 11 chunks.
     */
    private static final int[][] SCAN_CASES = {{2, 100, 2, 16, 64}, {2, 129, 1, 16, 64}, {3, 65, 1, 16, 72},
        {2, 1, 1, 16, 64}, {2, 37, 2, 16, 16}, {1, 70, 1, 8, 24}, {1, 700, 1, 16, 64}};

    /**
     * The scan kernels keep the running state on chip but take the same products in the same order as the chunk
     * kernels (the float32 state of the scan is the states kernel's, rounded to bf16 as the chunk kernels round it):
     * their results are those of the chunk kernels bit for bit, and so within the chunk kernels' allowances of the
     * reference. At feature dim 16 and head dim 64 both variants (compiled for those sizes, and taking them as
     * arguments) are checked.
     */
    @Test
    void scanKernelsGiveTheChunkKernelsNumbers() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            mk.scanForwardMinBlocks(1);  // the scan forward for these few (sequence, head) pairs too
            for (int[] c : SCAN_CASES) {
                Problem pr = Problem.of(r, c);
                assertTrue(MixerTrainKernels.linearScan(BF16, pr.f, pr.dh), pr.describe("scan kernels"));
                mk.scan(false);
                float[][] chunked = pr.runOn(rig, mk, 0);
                mk.scan(true);
                float[][] got = pr.runOn(rig, mk, 0);
                String what = pr.describe("linear attention scan kernels");
                assertSame(what, chunked, got);
                pr.assertNear(what, got);
                if (MixerTrainKernels.linearScanFixedSizes(pr.f, pr.dh)) {
                    // the variant compiled for these sizes ran above; the one that takes them as arguments too
                    mk.scanFixedSizes(false);
                    assertSame(what + " (sizes as arguments)", chunked, pr.runOn(rig, mk, 0));
                    mk.scanFixedSizes(true);
                }
            }
        }
    }

    /**
     * batch, seqLen, heads, featureDim, headDim of heads too wide for the scan kernels that the forward splits into
     * ones they take ({@link MixerTrainKernels#linearScanSplit}): based-1b's 112 (two of 56, a variant compiled for
     * those sizes), 96 (two of 48), feature dims 16 and 8, ragged last chunks, a sequence of 11 chunks.
     */
    private static final int[][] SCAN_SPLIT_CASES = {{2, 100, 2, 16, 112}, {1, 700, 1, 16, 112}, {3, 65, 1, 16, 96},
        {2, 129, 1, 8, 112}};

    /**
     * Each value column of the output is summed alone, so heads split for the scan kernels give the whole heads'
     * forward (the chunk kernels') bit for bit; the backward is the whole heads' in both runs.
     */
    @Test
    void headsSplitForTheScanGiveTheWholeHeadsNumbers() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            mk.scanForwardMinBlocks(1);
            for (int[] c : SCAN_SPLIT_CASES) {
                Problem pr = Problem.of(r, c);
                assertTrue(MixerTrainKernels.linearScanSplit(BF16, pr.f, pr.dh, pr.heads) == 2,
                        pr.describe("split for the scan"));
                mk.scanSplit(false);
                float[][] whole = pr.runOn(rig, mk, 0);
                mk.scanSplit(true);
                float[][] got = pr.runOn(rig, mk, 0);
                String what = pr.describe("linear attention on heads split for the scan");
                assertSame(what, "the whole heads'", whole, got);
                pr.assertNear(what, got);
            }
        }
    }

    /**
     * batch, seqLen, heads, featureDim, headDim of the rounded-state backward ({@link
     * MixerTrainKernels#linearRoundedStates}): ragged last chunks (100 = 64 + 36, 129 = 2 x 64 + 1, 65 = 64 + 1), a
     * single token, a single chunk, feature dims 8 and 16, head dims 16, 64, 72 and 112 (both compiled widths), a
     * batch of 3 and a sequence of 11 chunks.
     */
    private static final int[][] ROUNDED_CASES = {{2, 100, 2, 16, 64}, {3, 129, 1, 16, 72}, {3, 65, 2, 8, 16},
        {2, 1, 1, 16, 64}, {2, 37, 1, 16, 112}, {1, 130, 1, 8, 64}, {2, 100, 1, 16, 16}, {1, 700, 1, 16, 64}};

    /**
     * The rounded-state backward writes the states rounded to bf16 and stages each chunk's whole state in shared
     * memory, but the chunk kernels round the same float32 sums to bf16 as they read them and take the same products
     * in the same order: its gradients are the chunk kernels' bit for bit (the emulator compares them too), and so
     * within the chunk kernels' allowances of the reference.
     */
    @Test
    void roundedStatesGiveTheChunkKernelsNumbers() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            mk.scan(false);
            for (int[] c : ROUNDED_CASES) {
                Problem pr = Problem.of(r, c);
                assertTrue(MixerTrainKernels.linearRoundedStates(BF16, pr.f, pr.dh), pr.describe("rounded states"));
                float[][] chunked = null;
                float[][] got = null;
                for (boolean rounded : new boolean[] {false, true}) {
                    mk.roundedStates(rounded);
                    // the caller's scratch, NaN (all ones) where the kernels do not write: a read of such a place shows
                    long scratch = rig.values(BF16, nans(MixerTrainKernels.linearAttentionBackwardScratchBytes(
                            pr.batch, pr.len, pr.heads, pr.f, pr.dh) / BF16.bytes()));
                    float[][] results = pr.runOn(rig, mk, scratch);
                    if (rounded) {
                        got = results;
                    } else {
                        chunked = results;
                    }
                }
                String what = pr.describe("linear attention rounded-state backward");
                assertSame(what, chunked, got);
                pr.assertNear(what, got);
            }
        }
    }

    /**
     * batch, seqLen, heads, featureDim, headDim of heads split into virtual tensor-core heads
     * ({@link MixerTrainKernels#linearHeadSplit}): one head of 128 (the MQAR models of the recall study) and two, at
     * feature dims 8, 16 (the scan forward on the virtual heads of 64), 24 and 32 (the chunk kernels), ragged last
     * chunks (100 = 64 + 36, 130 = 2 x 64 + 2); 192 (2 heads of 96: the wider compiled variant) and 256 (4 of 64).
     */
    private static final int[][] SPLIT_CASES = {{2, 100, 1, 8, 128}, {2, 130, 2, 8, 128}, {2, 130, 1, 16, 128},
        {2, 100, 2, 16, 128}, {2, 100, 1, 24, 128}, {2, 130, 2, 24, 128}, {2, 130, 1, 32, 128},
        {2, 100, 1, 16, 192}, {1, 130, 1, 16, 256}};

    /**
     * Heads split into virtual heads follow the reference within the tensor-core allowances (see above), with the
     * owned scratch and with the caller's ({@link MixerTrainKernels#linearAttentionBackwardScratchBytes}, NaN where
     * nothing is written: a read of such a place shows), which give the same numbers bit for bit.
     */
    @Test
    void splitHeadsFollowTheReference() {
        SplittableRandom r = new SplittableRandom(SEED);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            mk.scanForwardMinBlocks(1);  // the scan forward where it serves, however few the (sequence, head) pairs
            for (int[] c : SPLIT_CASES) {
                Problem pr = Problem.of(r, c);
                assertTrue(MixerTrainKernels.linearHeadSplit(BF16, pr.f, pr.dh, pr.heads) != 0,
                        pr.describe("head split"));
                float[][] got = pr.runOn(rig, mk, 0);
                String what = pr.describe("linear attention on split heads");
                pr.printErrors(what, got);
                pr.assertNear(what, got);
                long scratch = rig.values(BF16, nans(MixerTrainKernels.linearAttentionBackwardScratchBytes(pr.batch,
                        pr.len, pr.heads, pr.f, pr.dh) / BF16.bytes()));
                assertSame(what + ", the caller's scratch", "the owned scratch's", got, pr.runOn(rig, mk, scratch));
            }
        }
    }

    /**
     * The split is the tensor-core kernels on H s heads of dh / s whose q and k are the heads' repeated: its out
     * and dv are theirs bit for bit, and its dq and dk their q and k gradients (started from zero) summed over the
     * copies in float32 in order, added to the starting dq and dk and rounded to bf16 once.
     */
    @Test
    void splitHeadsAreTheKernelsOnRepeatedInputs() {
        SplittableRandom r = new SplittableRandom(SEED);
        int[][] cases = {{2, 100, 2, 16, 128}, {2, 130, 1, 24, 128}, {1, 130, 1, 8, 256}};
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int[] c : cases) {
                Problem pr = Problem.of(r, c);
                int s = MixerTrainKernels.linearHeadSplit(BF16, pr.f, pr.dh, pr.heads);
                assertTrue(s != 0, pr.describe("head split"));
                float[][] got = pr.runOn(rig, mk, 0);

                int n = pr.batch * pr.len;
                int virtualHeads = pr.heads * s;
                int virtualDim = pr.dh / s;
                int copies = n * virtualHeads * pr.f;
                long qq = rig.values(BF16, repeated(pr.q, n, pr.heads, s, pr.f));
                long kk = rig.values(BF16, repeated(pr.k, n, pr.heads, s, pr.f));
                long v = rig.values(BF16, pr.v);
                long out = rig.zeros((long) pr.v.length * BF16.bytes());
                mk.linearAttentionForward(BF16, qq, kk, v, out, pr.batch, pr.len, virtualHeads, pr.f, virtualDim,
                        (float) EPS);
                long dqq = rig.zeros((long) copies * BF16.bytes());
                long dkk = rig.zeros((long) copies * BF16.bytes());
                long dv = rig.values(BF16, pr.dv0);
                mk.linearAttentionBackward(BF16, qq, kk, v, rig.values(BF16, pr.dout), dqq, dkk, dv, pr.batch, pr.len,
                        virtualHeads, pr.f, virtualDim, (float) EPS);
                float[][] want = {rig.values(BF16, out, pr.v.length),
                    summed(pr.dq0, rig.values(BF16, dqq, copies), n, pr.heads, s, pr.f),
                    summed(pr.dk0, rig.values(BF16, dkk, copies), n, pr.heads, s, pr.f),
                    rig.values(BF16, dv, pr.v.length)};
                assertSame(pr.describe("linear attention on split heads"), String.format(Locale.ROOT,
                        "%d heads of %d on repeated q and k", virtualHeads, virtualDim), want, got);
            }
        }
    }

    /** x {@code [n, H f]} repeated s times per head: {@code [n, H s f]}, copy j of head h at {@code (h s + j) f}. */
    private static float[] repeated(float[] x, int n, int heads, int s, int f) {
        float[] out = new float[n * heads * s * f];
        for (int row = 0; row < n; row++) {
            for (int h = 0; h < heads; h++) {
                for (int j = 0; j < s; j++) {
                    System.arraycopy(x, (row * heads + h) * f, out, ((row * heads + h) * s + j) * f, f);
                }
            }
        }
        return out;
    }

    /**
     * What the split's sum makes of the copies' gradients: {@code bf16(start + (copy_0 + ... + copy_{s-1}))}, the
     * copies summed in float32 in order.
     */
    private static float[] summed(float[] start, float[] copies, int n, int heads, int s, int f) {
        float[] out = new float[start.length];
        for (int row = 0; row < n; row++) {
            for (int h = 0; h < heads; h++) {
                for (int c = 0; c < f; c++) {
                    float sum = 0;
                    for (int j = 0; j < s; j++) {
                        sum += copies[((row * heads + h) * s + j) * f + c];
                    }
                    int i = (row * heads + h) * f + c;
                    out[i] = Tensor.bf16ToFloat(Tensor.floatToBf16(start[i] + sum));
                }
            }
        }
        return out;
    }

    /** n NaNs. */
    private static float[] nans(long n) {
        float[] a = new float[Math.toIntExact(n)];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    @Test
    void forwardTakesArraysOffSixteenByteAlignment() {
        // q, k and v one bf16 element past a 16-byte boundary: the tensor-core kernels copy rows in 16-byte pieces,
        // so these take the CUDA-core kernels (float32 products, within the bound of the float32 sums)
        SplittableRandom r = new SplittableRandom(SEED);
        Precision p = Precision.BF16;
        int batch = 2, len = 100, heads = 1, f = 16, dh = 64;
        int qk = batch * len * heads * f;
        int vs = batch * len * heads * dh;
        float[] q = stored(p, gaussian(r, qk, 1));
        float[] k = stored(p, gaussian(r, qk, 1));
        float[] v = stored(p, gaussian(r, vs, 1));
        double[] want = new double[vs];
        LinearAttentionOps.forward(batch, len, heads, f, dh, EPS, CHUNK, toDouble(q), toDouble(k), toDouble(v), want);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            long out = rig.zeros((long) vs * p.bytes());
            mk.linearAttentionForward(p, rig.values(p, shifted(q)) + p.bytes(), rig.values(p, shifted(k)) + p.bytes(),
                    rig.values(p, shifted(v)) + p.bytes(), out, batch, len, heads, f, dh, (float) EPS);
            Near.normwise("linear attention forward, arrays off 16-byte alignment", want, rig.values(p, out, vs),
                    tolerance(p, len, f, 10));
        }
    }

    /** v behind one leading zero. */
    private static float[] shifted(float[] v) {
        float[] out = new float[v.length + 1];
        System.arraycopy(v, 0, out, 1, v.length);
        return out;
    }
}
