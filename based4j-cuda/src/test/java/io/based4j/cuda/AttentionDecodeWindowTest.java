package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Kernels#attentionDecodeWindow}, a short window's decode step that appends the token to the ring itself,
 * against {@link Kernels#attention} followed by {@link Kernels#attentionAppend} on copies of the same caches: the
 * caches afterwards bit for bit (the same rotated keys, rounded the same way, in the same cells; a slot no sequence
 * has untouched), the outputs within the bound of {@link AttentionDecodeTest} (the same function summed in another
 * order: a few times sqrt(n) float32 units over up to 513 keys, well under 1e-5 of the largest output; in bf16 one unit
 * of the output's rounding more). Sequences at positions before the ring is full, at its turn and far past it, in
 * slots out of order; head dims 16 to 128 (lane groups of 2 to 16, some lanes idle), windows up to the most one block
 * holds for its head dim (64 keys at 112, 128 at 64, 512 at 16) and a window of one, rotate-half, interleaved and no
 * rotary, both precisions; with a block an item, with one block that takes every item in turn (its two stages of
 * shared memory alternating) and with five blocks that take 2 or 3 items each; a window whose stages are under 48 KiB
 * alone and over it with the kernel's static shared memory (the launch opts in to the sum). Then the heads' form (a
 * block a sequence with all its heads, 2 to 16 heads: lane groups that leave a warp part-filled), asked for, and at
 * 130 sequences of based-1b's window as the launcher takes it by default; and the heads' form asking the L2 cache for
 * each next chunk of keys and values: the same output and caches bit for bit.
 */
@GpuTest
class AttentionDecodeWindowTest {
    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of(Precision.BF16, 112, 64, 112, false, 2, 6),
                Arguments.of(Precision.F32, 112, 64, 32, true, 2, 6),
                Arguments.of(Precision.BF16, 64, 128, 64, false, 2, 6),
                Arguments.of(Precision.F32, 64, 100, 0, false, 2, 6),
                Arguments.of(Precision.BF16, 16, 512, 16, false, 2, 6),
                Arguments.of(Precision.BF16, 128, 7, 64, true, 2, 6),
                Arguments.of(Precision.F32, 48, 1, 48, false, 2, 6),
                Arguments.of(Precision.BF16, 96, 64, 96, false, 2, 6),
                Arguments.of(Precision.BF16, 112, 45, 112, false, 2, 6),  // under 48 KiB of stages, over it with the rest
                Arguments.of(Precision.BF16, 112, 64, 112, false, 16, 6),  // based-1b's heads: blocks of 8 warps
                Arguments.of(Precision.F32, 64, 128, 64, true, 5, 6),  // a warp and a part-filled one
                Arguments.of(Precision.BF16, 112, 64, 112, false, 5, 6),  // 16 lanes a head: a part-filled warp
                // based-1b's window at 130 sequences: the heads' form by default
                Arguments.of(Precision.BF16, 112, 64, 112, false, 16, 130));
    }

    @ParameterizedTest(name = "{0}, head dim {1}, window {2}, rotary {3}, interleaved {4}, heads {5}, {6} sequences")
    @MethodSource("cases")
    void oneKernelIsTheAttentionAndTheAppend(Precision p, int dh, int window, int rotaryDim, boolean interleaved,
                                             int heads, int sequences) {
        int d = heads * dh;
        int maxPos = 1200;
        int capacity = window;
        MixerConfig.Attention cfg = new MixerConfig.Attention(d, heads, dh, window, rotaryDim, 10000.0, interleaved,
                1 / Math.sqrt(dh), false, false);
        // six sequences around the ring's turn in slots out of order, then any more at positions spread over the table
        int[] first = {0, 3, window - 1, window, window + 1, 1100};
        int[] firstSlots = {4, 1, 5, 0, 3, 2};
        int b = sequences;
        int[] positions = new int[b];
        int[] slots = new int[b];
        for (int i = 0; i < b; i++) {
            positions[i] = i < first.length ? first[i] : (int) (i * 211L % 1150);
            slots[i] = i < first.length ? firstSlots[i] : i;
        }
        int slotCount = b + 1;  // the last slot is nobody's
        int[] lengths = new int[b];
        java.util.Arrays.fill(lengths, 1);
        TokenBatch batch = new TokenBatch(slots, positions, lengths);
        SplittableRandom r = new SplittableRandom(Near.SEED + 31L * dh + window);
        float[] qkv = Near.gaussian(r, b * 3 * d, 1);
        float[] keys = Near.gaussian(r, slotCount * capacity * d, 1);
        float[] values = Near.gaussian(r, slotCount * capacity * d, 1);
        try (KernelRig rig = new KernelRig()) {
            long qkvD = rig.values(p, qkv);
            long kcWant = rig.values(p, keys);
            long vcWant = rig.values(p, values);
            long rotary = rig.floats(Kernels.rotaryTable(cfg, maxPos));
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long want = rig.zeros((long) b * d * p.bytes());
            float scale = (float) cfg.softmaxScale();
            rig.kernels.attention(p, qkvD, kcWant, vcWant, rotary, layout, want, b, b, heads, dh, capacity, window,
                    rotaryDim, maxPos, interleaved, scale);
            rig.kernels.attentionAppend(p, qkvD, kcWant, vcWant, rotary, layout, b, b, heads, dh, capacity, rotaryDim,
                    maxPos, interleaved, 1);
            int cacheValues = slotCount * capacity * d;
            float[] keysWant = rig.values(p, kcWant, cacheValues);
            float[] valuesWant = rig.values(p, vcWant, cacheValues);
            float[] w = rig.values(p, want, b * d);
            // the items' form: a block an item, then a single block that takes every item in turn through both of
            // its stages
            rig.kernels.windowHeads(false);
            rig.kernels.windowEarly(true);  // the first item's cached keys asked for before the wait, then after: below
            int shared = Kernels.windowDecodeShared(window, dh, p);
            int oneBlock = shared + Kernels.WINDOW_DECODE_STATIC_SHARED + Kernels.SHARED_RESERVED_A_BLOCK;
            for (int grid : new int[] {b * heads, 1, 5}) {
                if (grid < b * heads) {
                    rig.kernels.multiprocessors(grid);
                    rig.kernels.sharedPerMultiprocessor(oneBlock);
                }
                assertEquals(grid, Kernels.windowDecodeGrid(b * heads, shared, grid < b * heads ? grid : 0,
                        oneBlock));
                long kcGot = rig.values(p, keys);
                long vcGot = rig.values(p, values);
                long got = rig.zeros((long) b * d * p.bytes());
                assertTrue(rig.kernels.windowDecodeFits(p, dh, window, capacity, qkvD, kcGot, vcGot), "it takes it");
                rig.kernels.attentionDecodeWindow(p, qkvD, kcGot, vcGot, rotary, layout, got, b, heads, dh, capacity,
                        window, rotaryDim, maxPos, interleaved, scale);
                assertArrayEquals(keysWant, rig.values(p, kcGot, cacheValues), "key cache, grid " + grid);
                assertArrayEquals(valuesWant, rig.values(p, vcGot, cacheValues), "value cache, grid " + grid);
                float[] g = rig.values(p, got, b * d);
                Near.sameAttention(p, w, g, i -> String.format(Locale.ROOT, "grid %d, output %d (sequence at %d,"
                        + " head %d)", grid, i, positions[i / d], (i % d) / dh), "window kernel", "attention");
                // the first item's cached keys asked for before the kernel's wait (the default) or after: the same
                // numbers, output and caches bit for bit
                rig.kernels.windowEarly(false);
                try {
                    long kcLate = rig.values(p, keys);
                    long vcLate = rig.values(p, values);
                    long late = rig.zeros((long) b * d * p.bytes());
                    rig.kernels.attentionDecodeWindow(p, qkvD, kcLate, vcLate, rotary, layout, late, b, heads, dh,
                            capacity, window, rotaryDim, maxPos, interleaved, scale);
                    assertArrayEquals(g, rig.values(p, late, b * d), "the keys asked for after the wait, grid " + grid);
                    assertArrayEquals(keysWant, rig.values(p, kcLate, cacheValues), "key cache, after the wait");
                    assertArrayEquals(valuesWant, rig.values(p, vcLate, cacheValues), "value cache, after the wait");
                } finally {
                    rig.kernels.windowEarly(true);
                }
            }
            // the heads' form (a block a sequence with all its heads), where one split of 256 keys holds the window:
            // asked for, or by default from WINDOW_HEADS_MIN_BATCH sequences on
            rig.kernels.windowHeads(b >= Kernels.WINDOW_HEADS_MIN_BATCH ? null : Boolean.TRUE);
            rig.kernels.windowPrefetch(false);
            try {
                assertEquals(window < Kernels.DECODE_KEYS, rig.kernels.windowHeadsRuns(b, heads, dh, window));
                long kcGot = rig.values(p, keys);
                long vcGot = rig.values(p, values);
                long got = rig.zeros((long) b * d * p.bytes());
                rig.kernels.attentionDecodeWindow(p, qkvD, kcGot, vcGot, rotary, layout, got, b, heads, dh, capacity,
                        window, rotaryDim, maxPos, interleaved, scale);
                assertArrayEquals(keysWant, rig.values(p, kcGot, cacheValues), "key cache, the heads' form");
                assertArrayEquals(valuesWant, rig.values(p, vcGot, cacheValues), "value cache, the heads' form");
                float[] g = rig.values(p, got, b * d);
                Near.sameAttention(p, w, g, i -> String.format(Locale.ROOT, "the heads' form, output %d (sequence at"
                        + " %d, head %d)", i, positions[i / d], (i % d) / dh), "window kernel", "attention");
                // asking the L2 cache for each next chunk changes no value: the same output and caches bit for bit
                rig.kernels.windowPrefetch(true);
                long kcPre = rig.values(p, keys);
                long vcPre = rig.values(p, values);
                long pre = rig.zeros((long) b * d * p.bytes());
                rig.kernels.attentionDecodeWindow(p, qkvD, kcPre, vcPre, rotary, layout, pre, b, heads, dh, capacity,
                        window, rotaryDim, maxPos, interleaved, scale);
                assertArrayEquals(g, rig.values(p, pre, b * d), "the heads' form with the next chunks asked for");
                assertArrayEquals(keysWant, rig.values(p, kcPre, cacheValues), "key cache, next chunks asked for");
                assertArrayEquals(valuesWant, rig.values(p, vcPre, cacheValues), "value cache, next chunks asked for");
            } finally {
                rig.kernels.windowHeads(null);
                rig.kernels.windowPrefetch(null);
            }
        }
    }
}
