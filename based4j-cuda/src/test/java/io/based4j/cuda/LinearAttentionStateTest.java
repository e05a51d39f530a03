package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
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
        int heads = 2;
        int e = 1 + f + f * (f + 1) / 2;
        // slots 2, 0 and 1: prompts of 1, 37 and 90 tokens, the last one going on from position 5
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 1}, new int[] {0, 0, 5}, new int[] {1, 37, 90});
        int t = batch.totalTokens();
        int slots = 3;
        SplittableRandom r = new SplittableRandom(17 + f + dh);
        float[] q = gaussian(r, t * heads * f, 0.5);
        float[] k = gaussian(r, t * heads * f, 0.5);
        float[] v = gaussian(r, t * heads * dh, 1);
        float[] kv0 = gaussian(r, slots * heads * e * dh, 1);
        float[] z0 = new float[slots * heads * e];
        for (int i = 0; i < z0.length; i++) {
            z0[i] = (float) r.nextDouble(1, 3);
        }
        try (KernelRig rig = new KernelRig()) {
            long qd = rig.values(p, q);
            long kd = rig.values(p, k);
            long vd = rig.values(p, v);
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long kvWant = rig.floats(kv0);
            long zWant = rig.floats(z0);
            long out = rig.zeros((long) t * heads * dh * p.bytes());
            rig.kernels.linearAttention(p, qd, kd, vd, kvWant, zWant, layout, out, t, batch.size(), heads, f, dh,
                    1e-6f);
            long kvGot = rig.floats(kv0);
            long zGot = rig.floats(z0);
            rig.kernels.linearAttentionState(p, kd, vd, kvGot, zGot, layout, t, batch.size(), heads, f, dh);
            assertArrayEquals(rig.floats(kvWant, kv0.length), rig.floats(kvGot, kv0.length), "S");
            assertArrayEquals(rig.floats(zWant, z0.length), rig.floats(zGot, z0.length), "z");
        }
    }

    /**
     * {@link Kernels#linearAttentionDecode}, a decode step (one token a sequence), against the recurrent kernel on the
     * same state: the state bit for bit (the same float operations a value), the output within the reordering of its
     * two sums (E terms each, float32: well under 1e-5 of the largest output; in bf16 the two results may round to
     * neighbouring bf16 values, one {@link Near#bf16Ulp} apart).
     */
    @ParameterizedTest(name = "{0}, f {1}, dh {2}")
    @MethodSource("shapes")
    void aDecodeStepIsTheRecurrentKernels(Precision p, int f, int dh) {
        int heads = 2;
        int e = 1 + f + f * (f + 1) / 2;
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 1}, new int[] {7, 0, 90}, new int[] {1, 1, 1});
        int t = batch.totalTokens();
        int slots = 3;
        SplittableRandom r = new SplittableRandom(29 + f + dh);
        float[] q = gaussian(r, t * heads * f, 0.5);
        float[] k = gaussian(r, t * heads * f, 0.5);
        float[] v = gaussian(r, t * heads * dh, 1);
        float[] kv0 = gaussian(r, slots * heads * e * dh, 1);
        float[] z0 = new float[slots * heads * e];
        for (int i = 0; i < z0.length; i++) {
            z0[i] = (float) r.nextDouble(1, 3);
        }
        try (KernelRig rig = new KernelRig()) {
            long qd = rig.values(p, q);
            long kd = rig.values(p, k);
            long vd = rig.values(p, v);
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long kvWant = rig.floats(kv0);
            long zWant = rig.floats(z0);
            long want = rig.zeros((long) t * heads * dh * p.bytes());
            rig.kernels.linearAttention(p, qd, kd, vd, kvWant, zWant, layout, want, t, batch.size(), heads, f, dh,
                    1e-6f);
            long kvGot = rig.floats(kv0);
            long zGot = rig.floats(z0);
            long got = rig.zeros((long) t * heads * dh * p.bytes());
            rig.kernels.linearAttentionDecode(p, qd, kd, vd, kvGot, zGot, layout, got, batch.size(), heads, f, dh,
                    1e-6f);
            assertArrayEquals(rig.floats(kvWant, kv0.length), rig.floats(kvGot, kv0.length), "S");
            assertArrayEquals(rig.floats(zWant, z0.length), rig.floats(zGot, z0.length), "z");
            float[] w = rig.values(p, want, t * heads * dh);
            float[] g = rig.values(p, got, t * heads * dh);
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

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
