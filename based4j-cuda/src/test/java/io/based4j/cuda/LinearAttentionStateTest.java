package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TokenBatch;
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
            float[] w = rig.values(p, run.out, t * HEADS * dh);
            float[] g = rig.values(p, got, t * HEADS * dh);
            double largest = 0;
            for (float x : w) {
                largest = Math.max(largest, Math.abs(x));
            }
            for (int i = 0; i < w.length; i++) {
                double bound = 1e-5 * largest
                        + (p == Precision.F32 ? 0 : Near.bf16Ulp(Math.max(Math.abs(w[i]), Math.abs(g[i]))));
                assertTrue(Math.abs(w[i] - g[i]) <= bound, "output " + i + ": " + g[i] + ", recurrent " + w[i]);
            }
        }
    }

    static final int HEADS = 2;

    /**
     * Random q, k, v of a call of {@code batch}'s tokens on the device, a random state under way in each of 3 slots
     * twice over, and the recurrent kernels run on the first copy (its outputs in {@code out}): the second copy is the
     * kernel under test's.
     */
    private record Run(KernelRig rig, long q, long k, long v, long layout, long kvWant, long zWant, long kvGot,
                       long zGot, long out, int stateValues, int zValues) {
        static Run recurrent(KernelRig rig, Precision p, TokenBatch batch, int f, int dh, long seed) {
            int e = 1 + f + f * (f + 1) / 2;
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
