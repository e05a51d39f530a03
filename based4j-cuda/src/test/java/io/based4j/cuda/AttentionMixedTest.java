package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link CudaBackend#attention} on a call that holds prompts from their first tokens beside a decode token and a later
 * piece of a prompt (a serving engine's steps): each such prompt is fed as if alone (the tensor-core kernels of fresh
 * prompts) and the other sequences together on the token-by-token kernel, so the call's outputs and key/value caches
 * are, bit for bit, those of the prompts' own calls and one call of the others. bf16, full attention (a sliding
 * window keeps the token-by-token kernel for every row), rotary embeddings; slots out of order, two sequences already
 * under way.
 */
@GpuTest
class AttentionMixedTest {
    static final int HEADS = 2;
    static final int DH = 64;
    static final int D = HEADS * DH;
    static final int SLOTS = 4;

    @ParameterizedTest(name = "window {0}")
    @ValueSource(ints = {Integer.MAX_VALUE})
    void promptsBesideOtherSequencesAreFedAsIfAlone(int window) {
        MixerConfig.Attention cfg = new MixerConfig.Attention(D, HEADS, DH, window, 32, 10000.0, false,
                1 / Math.sqrt(DH), false, false);
        // slots 0 and 2 start prompts of 100 and 64 tokens; slot 1 decodes a token, slot 3 feeds 17 more of its prompt
        TokenBatch mixed = new TokenBatch(new int[] {0, 1, 3, 2}, new int[] {0, 20, 20, 0}, new int[] {100, 1, 17, 64});
        int[][] groups = {{0}, {3}, {1, 2}};
        SplittableRandom r = new SplittableRandom(59 + Math.min(window, 1000));
        int t = mixed.totalTokens();
        float[] qkv = gaussian(r, t * 3 * D);
        float[] qkv0 = gaussian(r, 40 * 3 * D);
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            CudaStates.KeyValue together = (CudaStates.KeyValue) gpu.allocateState(cfg, SLOTS, 256);
            CudaStates.KeyValue apart = (CudaStates.KeyValue) gpu.allocateState(cfg, SLOTS, 256);
            // slots 1 and 3 are 20 tokens into their sequences in both caches
            TokenBatch start = new TokenBatch(new int[] {1, 3}, new int[] {0, 0}, new int[] {20, 20});
            for (CudaStates.KeyValue st : new CudaStates.KeyValue[] {together, apart}) {
                gpu.attention(cfg, gpu.upload(qkv0, 40, 3 * D), start, st, gpu.allocate(40, D), null);
            }
            Backend.Buffer out = gpu.allocate(t, D);
            gpu.attention(cfg, gpu.upload(qkv, t, 3 * D), mixed, together, out, null);
            float[] got = gpu.download(out);

            float[] want = new float[t * D];
            for (int[] group : groups) {
                TokenBatch part = CallParts.batch(mixed, group);
                int rows = part.totalTokens();
                Backend.Buffer partOut = gpu.allocate(rows, D);
                gpu.attention(cfg, gpu.upload(CallParts.rows(mixed, group, qkv, 3 * D), rows, 3 * D), part, apart,
                        partOut, null);
                CallParts.scatter(mixed, group, gpu.download(partOut), D, want);
            }
            String what = "window " + window;
            assertArrayEquals(want, got, what + ": outputs");
            long cells = (long) SLOTS * together.capacity * D;
            assertArrayEquals(shorts(gpu, apart.keys(), cells), shorts(gpu, together.keys(), cells), what + ": keys");
            assertArrayEquals(shorts(gpu, apart.values(), cells), shorts(gpu, together.values(), cells),
                    what + ": values");
        }
    }

    private static short[] shorts(CudaBackend gpu, long ptr, long count) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment host = arena.allocate(2 * count, 16);
            gpu.driver().synchronize(gpu.stream());
            gpu.driver().copyDtoH(host, ptr, 2 * count);
            return host.toArray(ValueLayout.JAVA_SHORT);
        }
    }

    private static float[] gaussian(SplittableRandom r, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) r.nextGaussian();
        }
        return out;
    }
}
