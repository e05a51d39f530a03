package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link CudaBackend#linearAttention} on a call that holds prompts from their first tokens beside decode tokens and
 * later pieces of prompts (a serving engine's steps): each such prompt is fed as if alone (the chunked kernels of
 * fresh prompts) and the other sequences together, so the call's outputs and states are, bit for bit, those of the
 * prompts' own calls and one call of the others (the decode kernel where each of them has one token, the
 * token-by-token kernel otherwise). bf16, feature dim 16, head dims 64 and 112; slots out of order, two sequences
 * already under way.
 */
@GpuTest
class LinearAttentionMixedTest {
    static final int HEADS = 2;
    static final int F = 16;
    static final int SLOTS = 4;

    @ParameterizedTest(name = "head dim {0}")
    @ValueSource(ints = {64, 112})
    void promptsBesideOtherSequencesAreFedAsIfAlone(int dh) {
        // slots 0 and 2 start prompts of 100 and 64 tokens; slot 1 decodes a token, slot 3 feeds 17 more of its prompt
        check(dh, new TokenBatch(new int[] {0, 1, 3, 2}, new int[] {0, 20, 20, 0}, new int[] {100, 1, 17, 64}),
                new int[][] {{0}, {3}, {1, 2}});
        // the others all decode tokens: the decode kernel
        check(dh, new TokenBatch(new int[] {1, 0, 3}, new int[] {20, 0, 20}, new int[] {1, 50, 1}),
                new int[][] {{1}, {0, 2}});
    }

    /** The mixed call against the calls of the groups of its sequences given (places in the call). */
    private static void check(int dh, TokenBatch mixed, int[][] groups) {
        MixerConfig.LinearAttention cfg = new MixerConfig.LinearAttention(HEADS * dh, HEADS, F, dh, 1e-6);
        SplittableRandom r = new SplittableRandom(53 + dh + mixed.size());
        int t = mixed.totalTokens();
        float[] q = gaussian(r, t * HEADS * F, 0.5);
        float[] k = gaussian(r, t * HEADS * F, 0.5);
        float[] v = gaussian(r, t * HEADS * dh, 1);
        float[] q0 = gaussian(r, 40 * HEADS * F, 0.5);
        float[] k0 = gaussian(r, 40 * HEADS * F, 0.5);
        float[] v0 = gaussian(r, 40 * HEADS * dh, 1);
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            CudaStates.Linear together = (CudaStates.Linear) gpu.allocateState(cfg, SLOTS, 256);
            CudaStates.Linear apart = (CudaStates.Linear) gpu.allocateState(cfg, SLOTS, 256);
            // slots 1 and 3 are 20 tokens into their sequences in both states
            TokenBatch start = new TokenBatch(new int[] {1, 3}, new int[] {0, 0}, new int[] {20, 20});
            for (CudaStates.Linear st : new CudaStates.Linear[] {together, apart}) {
                gpu.linearAttention(cfg, gpu.upload(q0, 40, HEADS * F), gpu.upload(k0, 40, HEADS * F),
                        gpu.upload(v0, 40, HEADS * dh), start, st, gpu.allocate(40, HEADS * dh));
            }
            Backend.Buffer out = gpu.allocate(t, HEADS * dh);
            gpu.linearAttention(cfg, gpu.upload(q, t, HEADS * F), gpu.upload(k, t, HEADS * F),
                    gpu.upload(v, t, HEADS * dh), mixed, together, out);
            float[] got = gpu.download(out);

            float[] want = new float[t * HEADS * dh];
            for (int[] group : groups) {
                TokenBatch part = CallParts.batch(mixed, group);
                int rows = part.totalTokens();
                Backend.Buffer partOut = gpu.allocate(rows, HEADS * dh);
                gpu.linearAttention(cfg, gpu.upload(CallParts.rows(mixed, group, q, HEADS * F), rows, HEADS * F),
                        gpu.upload(CallParts.rows(mixed, group, k, HEADS * F), rows, HEADS * F),
                        gpu.upload(CallParts.rows(mixed, group, v, HEADS * dh), rows, HEADS * dh), part, apart, partOut);
                CallParts.scatter(mixed, group, gpu.download(partOut), HEADS * dh, want);
            }
            String what = "head dim " + dh + ", " + Arrays.deepToString(groups);
            assertArrayEquals(want, got, what + ": outputs");
            int e = 1 + F + F * (F + 1) / 2;
            assertArrayEquals(floats(gpu, apart.kv(), SLOTS * HEADS * e * dh),
                    floats(gpu, together.kv(), SLOTS * HEADS * e * dh), what + ": S");
            assertArrayEquals(floats(gpu, apart.k(), SLOTS * HEADS * e), floats(gpu, together.k(), SLOTS * HEADS * e),
                    what + ": z");
        }
    }

    private static float[] floats(CudaBackend gpu, long ptr, int count) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(4L * count, 16);
            gpu.driver().synchronize(gpu.stream());
            gpu.driver().copyDtoH(host, ptr, 4L * count);
            return host.toArray(ValueLayout.JAVA_FLOAT);
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
