package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Kernels#linearAttentionState}, the state after a prompt whose outputs other kernels make, leaves exactly the
 * state the recurrent kernels ({@link Kernels#linearAttention}, which includes linearAttentionZ) leave: the same float
 * operations in the same order, read in chunks. Ragged sequences, one continuing a state already under way, feature
 * dims 16 and 32 (chunks of fewer tokens), head dims 64 and 112 (a last column tile that is not full).
 */
@GpuTest
class LinearAttentionStateTest {
    static Stream<Arguments> shapes() {
        return Stream.of(Arguments.of(Precision.BF16, 16, 64), Arguments.of(Precision.BF16, 32, 112),
                Arguments.of(Precision.F32, 16, 112), Arguments.of(Precision.F32, 32, 64));
    }

    @ParameterizedTest(name = "{0}, f {1}, dh {2}")
    @MethodSource("shapes")
    void theStateIsTheRecurrentKernelsBitForBit(Precision p, int f, int dh) {
        // slots 2, 0 and 1: prompts of 1, 37 and 90 tokens, the last one going on from position 5
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 1}, new int[] {0, 0, 5}, new int[] {1, 37, 90});
        try (KernelRig rig = new KernelRig()) {
            Run run = Run.recurrent(rig, p, batch, f, dh, 17);
            rig.kernels.linearAttentionState(p, run.k, run.v, run.kvGot, run.zGot, run.layout, batch.totalTokens(),
                    batch.size(), HEADS, f, dh);
            run.sameState();
        }
    }

    static Stream<Arguments> versionsAndShapes() {
        Stream.Builder<Arguments> all = Stream.builder();
        for (int version = 1; version <= Kernels.LINEAR_DECODE_VERSIONS; version++) {
            int v = version;
            shapes().forEach(a -> all.add(Arguments.of(v, a.get()[0], a.get()[1], a.get()[2])));
        }
        return all.build();
    }

    /**
     * {@link Kernels#linearAttentionDecode}, a decode step (one token a sequence), in each of its versions, against the
     * recurrent kernel on the same state: the state bit for bit (the same float operations a value), the output within
     * the reordering of its two sums (E terms each, float32: well under 1e-5 of the largest output; in bf16 the two
     * results may round to neighbouring bf16 values, one {@link Near#bf16Ulp} apart).
     */
    @ParameterizedTest(name = "version {0}, {1}, f {2}, dh {3}")
    @MethodSource("versionsAndShapes")
    void aDecodeStepIsTheRecurrentKernels(int version, Precision p, int f, int dh) {
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 1}, new int[] {7, 0, 90}, new int[] {1, 1, 1});
        int t = batch.totalTokens();
        try (KernelRig rig = new KernelRig()) {
            Run run = Run.recurrent(rig, p, batch, f, dh, 29);
            long got = rig.zeros((long) t * HEADS * dh * p.bytes());
            assertEquals(version == 1 ? "linearAttentionDecode" : "linearAttentionDecode" + version,
                    Kernels.linearDecodeKernel(version, dh, run.kvGot), "the kernel of version " + version);
            rig.kernels.linearAttentionDecode(version, p, run.q, run.k, run.v, run.kvGot, run.zGot, run.layout, got,
                    batch.size(), HEADS, f, dh, 1e-6f);
            run.sameState();
            Near.sameSumsReordered(rig.values(p, run.out, t * HEADS * dh), rig.values(p, got, t * HEADS * dh), p,
                    "version " + version + " against the recurrent kernel");
        }
    }

    static final int HEADS = 2;

    static Stream<Arguments> prefillShapes() {
        // dh 112 the wider compiled tiles, 128 split into two virtual heads of 64, f 32 the widest feature dim; the
        // scan kernel (its state on chip) where it serves (f 16, heads of 64, 112 split into two of 56 for it), at
        // these few sequences too
        return Stream.of(Arguments.of(16, 64, false), Arguments.of(16, 112, false), Arguments.of(16, 128, false),
                Arguments.of(32, 64, false), Arguments.of(16, 64, true), Arguments.of(16, 112, true),
                Arguments.of(16, 128, true));
    }

    /**
     * A prompt's forward on the tensor-core chunk kernels or the scan kernel (bf16,
     * {@link MixerTrainKernels#linearAttentionForward} with a final state) leaves each sequence's whole state in its
     * slot: the recurrent kernels' state from zero within the
     * rounding of phi to bf16 that the tensor-core products take (2^-9 of each term, so 2^-8 of the sum of the terms'
     * magnitudes covers it and the float32 sums' reordering), in runs of sequences of one length (ragged last chunks:
     * 100 = 64 + 36, 37), slots out of order; the slots no sequence has stay as they were.
     */
    @ParameterizedTest(name = "f {0}, dh {1}, scan {2}")
    @MethodSource("prefillShapes")
    void aPromptsChunkStatesLeaveTheWholeState(int f, int dh, boolean scan) {
        Precision p = Precision.BF16;
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int slots = 4;
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 3}, new int[] {0, 0, 0}, new int[] {100, 100, 37});
        int t = batch.totalTokens();
        SplittableRandom r = new SplittableRandom(41 + f + dh);
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            mk.scanForwardMinBlocks(scan ? 1 : Integer.MAX_VALUE);
            mk.scanForwardShort(scan ? MixerTrainKernels.SCAN_FORWARD_SHORT : 0);  // short prompts: the scan too
            if (scan) {
                assertTrue(MixerTrainKernels.linearScan(p, f, Math.min(dh, 64)), "the scan serves f " + f);
            }
            long q = rig.values(p, gaussian(r, t * HEADS * f, 0.5));
            long k = rig.values(p, gaussian(r, t * HEADS * f, 0.5));
            long v = rig.values(p, gaussian(r, t * HEADS * dh, 1));
            float[] kvMark = new float[slots * HEADS * e * dh];
            java.util.Arrays.fill(kvMark, 7f);  // slot 1 has no sequence: its 7s must stay
            float[] zMark = new float[slots * HEADS * e];
            java.util.Arrays.fill(zMark, 7f);
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long kvWant = rig.zeros(4L * kvMark.length);
            long zWant = rig.zeros(4L * zMark.length);
            rig.kernels.linearAttention(p, q, k, v, kvWant, zWant, layout, rig.zeros((long) t * HEADS * dh * 2), t,
                    batch.size(), HEADS, f, dh, 1e-6f);
            long kvGot = rig.floats(kvMark);
            long zGot = rig.floats(zMark);
            long out = rig.zeros((long) t * HEADS * dh * 2);
            long qkRow = 2L * HEADS * f;
            long vRow = 2L * HEADS * dh;
            int[][] runs = {{0, 0, 2, 100}, {200, 2, 1, 37}};  // first row, first sequence, sequences, length
            for (int[] run : runs) {
                long row = run[0];
                assertTrue(mk.leavesFinalState(p, q + row * qkRow, k + row * qkRow, v + row * vRow, out + row * vRow,
                        run[2], run[3], HEADS, f, dh), (scan ? "the scan" : "the chunk kernels") + " take f " + f
                        + ", dh " + dh);
                mk.linearAttentionForward(p, q + row * qkRow, k + row * qkRow, v + row * vRow, out + row * vRow,
                        run[2], run[3], HEADS, f, dh, 1e-6f,
                        new MixerTrainKernels.FinalState(kvGot, zGot, layout + 4L * run[1]));
            }
            float[] kv = rig.floats(kvGot, kvMark.length);
            float[] z = rig.floats(zGot, zMark.length);
            float[] kvW = rig.floats(kvWant, kvMark.length);
            float[] zW = rig.floats(zWant, zMark.length);
            float[] kh = rig.values(p, k, t * HEADS * f);
            float[] vh = rig.values(p, v, t * HEADS * dh);
            double c = Math.pow(f, -0.25);
            for (int seq = 0; seq < batch.size(); seq++) {
                int slot = batch.slot(seq);
                for (int h = 0; h < HEADS; h++) {
                    double[] magS = new double[e * dh];
                    double[] magZ = new double[e];
                    for (int tok = batch.offset(seq); tok < batch.offset(seq) + batch.length(seq); tok++) {
                        double[] phi = phi(kh, (tok * HEADS + h) * f, f, c);
                        for (int a = 0; a < e; a++) {
                            magZ[a] += Math.abs(phi[a]);
                            for (int j = 0; j < dh; j++) {
                                magS[a * dh + j] += Math.abs(phi[a] * vh[(tok * HEADS + h) * dh + j]);
                            }
                        }
                    }
                    int base = (slot * HEADS + h) * e;
                    for (int a = 0; a < e; a++) {
                        assertNear(zW[base + a], z[base + a], magZ[a], "z slot " + slot + " head " + h + " " + a);
                        for (int j = 0; j < dh; j++) {
                            int i = (base + a) * dh + j;
                            assertNear(kvW[i], kv[i], magS[a * dh + j], "S slot " + slot + " head " + h + " " + a
                                    + "," + j);
                        }
                    }
                }
            }
            for (int i = 1 * HEADS * e; i < 2 * HEADS * e; i++) {
                assertEquals(7f, z[i], "slot 1's z is left as it was");
            }
            for (int i = 1 * HEADS * e * dh; i < 2 * HEADS * e * dh; i++) {
                assertEquals(7f, kv[i], "slot 1's S is left as it was");
            }
        }
    }

    private static void assertNear(float want, float got, double magnitude, String what) {
        double bound = 0x1p-8 * magnitude + 1e-30;
        assertTrue(Math.abs(want - got) <= bound, what + ": " + got + ", recurrent " + want + " (allowed " + bound
                + ")");
    }

    /** The Taylor features of one key (1, x_i f^-1/4, then x_i x_j / sqrt(2 f) for i = j or / sqrt(f), i < j). */
    private static double[] phi(float[] x, int at, int f, double lin) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        double[] p = new double[e];
        p[0] = 1;
        int a = 1 + f;
        for (int i = 0; i < f; i++) {
            p[1 + i] = x[at + i] * lin;
        }
        for (int i = 0; i < f; i++) {
            for (int j = i; j < f; j++) {
                p[a++] = (double) x[at + i] * x[at + j] / Math.sqrt(i == j ? 2.0 * f : f);
            }
        }
        return p;
    }

    /**
     * Random q, k, v of a call of {@code batch}'s tokens on the device, a random state under way in each of 3 slots
     * twice over, and the recurrent kernels run on the first copy (its outputs in {@code out}): the second copy is the
     * kernel under test's.
     */
    private record Run(KernelRig rig, long q, long k, long v, long layout, long kvWant, long zWant, long kvGot,
                       long zGot, long out, int stateValues, int zValues) {
        static Run recurrent(KernelRig rig, Precision p, TokenBatch batch, int f, int dh, long seed) {
            int e = MixerConfig.LinearAttention.expandedDim(f);
            int t = batch.totalTokens();
            int slots = 3;
            SplittableRandom r = new SplittableRandom(seed + f + dh);
            long q = rig.values(p, gaussian(r, t * HEADS * f, 0.5));
            long k = rig.values(p, gaussian(r, t * HEADS * f, 0.5));
            long v = rig.values(p, gaussian(r, t * HEADS * dh, 1));
            float[] kv0 = gaussian(r, slots * HEADS * e * dh, 1);
            float[] z0 = new float[slots * HEADS * e];
            for (int i = 0; i < z0.length; i++) {
                z0[i] = (float) r.nextDouble(1, 3);
            }
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            Run run = new Run(rig, q, k, v, layout, rig.floats(kv0), rig.floats(z0), rig.floats(kv0), rig.floats(z0),
                    rig.zeros((long) t * HEADS * dh * p.bytes()), kv0.length, z0.length);
            rig.kernels.linearAttention(p, q, k, v, run.kvWant, run.zWant, layout, run.out, t, batch.size(), HEADS, f,
                    dh, 1e-6f);
            return run;
        }

        /** The state under test is the recurrent kernels', bit for bit. */
        void sameState() {
            assertArrayEquals(rig.floats(kvWant, stateValues), rig.floats(kvGot, stateValues), "S");
            assertArrayEquals(rig.floats(zWant, zValues), rig.floats(zGot, zValues), "z");
        }
    }

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
