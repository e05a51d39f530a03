package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Kernels#linearAttentionDecodeDeferred}, S written every few steps with the tokens since waiting beside it,
 * against version 4 of {@link Kernels#linearAttentionDecode} (S written every step) over many decode steps on the same
 * inputs: three sequences at other positions in slots out of order (so their writes fall on other steps), feature dims
 * 16 and 32, head dims 64 and 112, bf16 and float32, 2 to 16 steps between writes. Checked at every step: the output
 * (the same sums in another order), and how many tokens wait in each slot; once the waiting tokens are added in
 * ({@link Kernels#linearAttentionFold}, midway and at the end): S and z bit for bit, and the steps after a fold.
 */
@GpuTest
class LinearAttentionDeferredTest {
    static final int HEADS = 2;
    static final int SLOTS = 3;

    static Stream<Arguments> shapes() {
        Stream.Builder<Arguments> all = Stream.builder();
        for (int version = 1; version <= Kernels.LINEAR_DEFER_VERSIONS; version++) {
            all.add(Arguments.of(version, Precision.BF16, 16, 112, 8, 0));
            all.add(Arguments.of(version, Precision.BF16, 16, 64, 2, 0));
            all.add(Arguments.of(version, Precision.BF16, 32, 64, 5, 0));
            all.add(Arguments.of(version, Precision.F32, 16, 112, 16, 0));
            all.add(Arguments.of(version, Precision.F32, 32, 64, 8, 0));
        }
        // versions 6 and 7's blocks each take a run of the 6 (sequence, head)s: all of them in one block (each buffer
        // of its ring filled three times), three each in two blocks (a run ending on its first buffer after a
        // refill), or one or two each in four blocks; and 325 features (f 24), more than the block's threads
        for (int version = 6; version <= 7; version++) {
            for (int blocks : new int[] {1, 2, 4}) {
                all.add(Arguments.of(version, Precision.BF16, 16, 112, 8, blocks));
                all.add(Arguments.of(version, Precision.F32, 16, 64, 2, blocks));
            }
            all.add(Arguments.of(version, Precision.BF16, 24, 64, 2, 2));
        }
        // version 8's warps: 325 features (f 24), more than 8 rows a lane over 10 of each lane's; head dim 16, 8
        // lane groups of 4 lanes (their pieces summed over the groups)
        all.add(Arguments.of(8, Precision.BF16, 24, 64, 4, 0));
        all.add(Arguments.of(8, Precision.F32, 4, 16, 3, 0));
        // versions 9, 11 and 12's second kernel (10's is 9's): 325 features over 9 row groups (two rounds of 17
        // rows a thread); head dim 16; versions 10 to 12's first kernel: 325 features (f 24) on its wide
        // form, 11 of a lane's 18 places; f 4 (15 features, lanes without one); 16 steps (15 tokens waiting, every
        // lane of x's rows a key's or a constant's); and f 40 (861 features), where version 9 runs in their place
        for (int version = 9; version <= 12; version++) {
            all.add(Arguments.of(version, Precision.BF16, 24, 64, 4, 0));
            all.add(Arguments.of(version, Precision.F32, 4, 16, 3, 0));
            all.add(Arguments.of(version, Precision.BF16, 16, 112, 16, 0));
        }
        all.add(Arguments.of(10, Precision.F32, 40, 16, 2, 0));
        all.add(Arguments.of(12, Precision.BF16, 40, 16, 2, 0));
        return all.build();
    }

    /**
     * The output of a step against version 4's: the numerator's and denominator's sums of E terms (and of at most K
     * more) in another order, in float32: well under 1e-5 of the largest output (as {@link LinearAttentionStateTest}
     * holds the versions to each other); in bf16 the two may round to neighbouring values, one bf16 ulp apart.
     */
    @ParameterizedTest(name = "version {0}, {1}, f {2}, dh {3}, every {4} steps, blocks {5}")
    @MethodSource("shapes")
    void deferredStepsAreTheStepByStepUpdate(int version, Precision p, int f, int dh, int steps, int blocks) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int[] slots = {2, 0, 1};
        int[] starts = {7, 0, 90};
        int b = slots.length;
        int total = 2 * steps + 5;
        int foldAt = steps / 2 + 1;  // a fold midway, as a call of several tokens a sequence makes first
        SplittableRandom r = new SplittableRandom(97L * f + dh + steps);
        try (KernelRig rig = new KernelRig()) {
            assertTrue(Kernels.linearDeferFits(f, dh, steps, 0), "the deferred form takes f " + f + ", dh " + dh);
            CudaDriver cu = CudaDriver.get();
            int major = cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
            int minor = cu.attribute(0, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
            // as a backend says them, so that versions 5 to 7 run where they can
            rig.kernels.computeCapability(major, minor);
            rig.kernels.sharedOptInLimit(cu.attribute(0,
                    CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN));
            rig.kernels.linearDeferBlocks(blocks);
            int runs = rig.kernels.linearDeferRuns(version, f, dh, steps);
            // versions 5 to 7 on compute capability 9.0 (its 227 KiB of shared memory a block): version 5's one S
            // fits at f 16 and 32 (68.5 and 143.6 KB), the two of versions 6 and 7 at f 16 and at f 24 with head dim
            // 64 (2 x 83.2 KB), not at f 32; version 1 in their place; version 8 (head dims up to 128) and 9
            // everywhere; versions 10 to 12 up to 576 features, version 9 in their place
            boolean hopper = major == 9 && minor == 0;
            int expected = version >= 10 && e > Kernels.LINEAR_PREP10_WIDE_FEATURES ? 9
                    : version < 5 || version >= 8 || hopper && (version == 5 || f < 32) ? version : 1;
            assertEquals(expected, runs, "the version that runs");
            float[] kv0 = gaussian(r, SLOTS * HEADS * e * dh, 1);
            float[] z0 = new float[SLOTS * HEADS * e];
            for (int i = 0; i < z0.length; i++) {
                z0[i] = (float) r.nextDouble(1, 3);
            }
            long kvWant = rig.floats(kv0);
            long zWant = rig.floats(z0);
            long kvGot = rig.floats(kv0);
            long zGot = rig.floats(z0);
            long pend = rig.zeros(4L * SLOTS * HEADS * (steps - 1) * (f + dh));
            long counts = rig.zeros(4L * SLOTS * HEADS);
            long work = rig.zeros(4L * SLOTS * HEADS * Kernels.linearDeferWorkFloats(f, dh));
            int[] waiting = new int[SLOTS];
            for (int step = 0; step < total; step++) {
                int[] at = new int[b];
                for (int i = 0; i < b; i++) {
                    at[i] = starts[i] + step;
                }
                TokenBatch batch = new TokenBatch(slots, at, new int[] {1, 1, 1});
                long layout = rig.ints(CudaBackend.layoutOf(batch));
                long q = rig.values(p, gaussian(r, b * HEADS * f, 0.5));
                long k = rig.values(p, gaussian(r, b * HEADS * f, 0.5));
                long v = rig.values(p, gaussian(r, b * HEADS * dh, 1));
                long want = rig.zeros((long) b * HEADS * dh * p.bytes());
                long got = rig.zeros((long) b * HEADS * dh * p.bytes());
                rig.kernels.linearAttentionDecode(4, p, q, k, v, kvWant, zWant, layout, want, b, HEADS, f, dh, 1e-6f);
                rig.kernels.linearAttentionDecodeDeferred(version, p, q, k, v, kvGot, zGot, pend, counts, work, layout,
                        got, b, HEADS, f, dh, 1e-6f, steps);
                String what = "version " + version + ", " + p + " step " + step;
                Near.sameSumsReordered(rig.values(p, want, b * HEADS * dh), rig.values(p, got, b * HEADS * dh), p,
                        what + ", against version 4");
                for (int i = 0; i < b; i++) {
                    boolean writes = waiting[slots[i]] + 1 == steps || (at[i] + slots[i]) % steps == steps - 1;
                    waiting[slots[i]] = writes ? 0 : waiting[slots[i]] + 1;
                }
                int[] c = ints(rig, counts, SLOTS * HEADS);
                for (int s = 0; s < SLOTS; s++) {
                    for (int h = 0; h < HEADS; h++) {
                        assertEquals(waiting[s], c[s * HEADS + h], what + ": tokens waiting in slot " + s);
                    }
                }
                if (step == foldAt || step == total - 1) {
                    rig.kernels.linearAttentionFold(p, kvGot, zGot, pend, counts, layout, b, HEADS, f, dh, steps);
                    java.util.Arrays.fill(waiting, 0);
                    assertArrayEquals(rig.floats(kvWant, kv0.length), rig.floats(kvGot, kv0.length), what + ": S");
                    assertArrayEquals(rig.floats(zWant, z0.length), rig.floats(zGot, z0.length), what + ": z");
                    assertArrayEquals(new int[SLOTS * HEADS], ints(rig, counts, SLOTS * HEADS), what + ": counts");
                }
            }
        }
    }

    static Stream<Arguments> firstKernels() {
        Stream.Builder<Arguments> all = Stream.builder();
        // the first kernel's small form (f 16 and 4, head dims up to 128), its narrow form (231 features at f 20; f
        // 16's with head dim 144, past the small form's 128) and its wide form (f 24 and 32)
        for (int version : new int[] {10, 12}) {
            all.add(Arguments.of(version, Precision.BF16, 16, 112, 8));
            all.add(Arguments.of(version, Precision.F32, 24, 64, 4));
            all.add(Arguments.of(version, Precision.BF16, 4, 16, 3));
            all.add(Arguments.of(version, Precision.F32, 32, 64, 16));
            all.add(Arguments.of(version, Precision.BF16, 20, 112, 8));
            all.add(Arguments.of(version, Precision.F32, 16, 144, 16));
        }
        return all.build();
    }

    /**
     * Versions 10 and 12 leave what version 9 leaves, bit for bit, step after step on the same inputs: the work
     * area (phi(q), the denominator's total, the numerator's part or the step's key and value, the kind), the
     * waiting tokens, their counts, S, z and the outputs (version 12's second kernel asks for its loads at once and
     * reads S as streamed data: the same float operations).
     */
    @ParameterizedTest(name = "version {0}, {1}, f {2}, dh {3}, every {4} steps")
    @MethodSource("firstKernels")
    void firstKernelsLeaveVersion9sState(int version, Precision p, int f, int dh, int steps) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int[] slots = {2, 0, 1};
        int[] starts = {3, 0, 41};
        int b = slots.length;
        SplittableRandom r = new SplittableRandom(31L * f + dh + steps);
        try (KernelRig rig = new KernelRig()) {
            assertEquals(version, rig.kernels.linearDeferRuns(version, f, dh, steps), "the version that runs");
            // the small form unless the run turned it off for comparison
            boolean small = Kernels.onOff(Kernels.LINEAR_PREP_SMALL_PROPERTY,
                    System.getProperty(Kernels.LINEAR_PREP_SMALL_PROPERTY)) != Boolean.FALSE;
            assertEquals(small && e <= 160 && dh <= 128 ? "Small" : e <= 256 ? "" : "Wide",
                    rig.kernels.linearPrep10Form(f, dh), "the first kernel's form");
            float[] kv0 = gaussian(r, SLOTS * HEADS * e * dh, 1);
            float[] z0 = new float[SLOTS * HEADS * e];
            for (int i = 0; i < z0.length; i++) {
                z0[i] = (float) r.nextDouble(1, 3);
            }
            long workFloats = (long) SLOTS * HEADS * Kernels.linearDeferWorkFloats(f, dh);
            int pendFloats = SLOTS * HEADS * (steps - 1) * (f + dh);
            long[][] state = new long[2][];
            for (int side = 0; side < 2; side++) {
                state[side] = new long[] {rig.floats(kv0), rig.floats(z0), rig.zeros(4L * pendFloats),
                    rig.zeros(4L * SLOTS * HEADS), rig.zeros(4 * workFloats)};
            }
            String[] names = {"S", "z", "the waiting tokens", "their counts", "the work area"};
            int[] sizes = {kv0.length, z0.length, pendFloats, SLOTS * HEADS, (int) workFloats};
            for (int step = 0; step < 2 * steps + 3; step++) {
                int[] at = new int[b];
                for (int i = 0; i < b; i++) {
                    at[i] = starts[i] + step;
                }
                long layout = rig.ints(CudaBackend.layoutOf(new TokenBatch(slots, at, new int[] {1, 1, 1})));
                long q = rig.values(p, gaussian(r, b * HEADS * f, 0.5));
                long k = rig.values(p, gaussian(r, b * HEADS * f, 0.5));
                long v = rig.values(p, gaussian(r, b * HEADS * dh, 1));
                long[] out = new long[2];
                for (int side = 0; side < 2; side++) {
                    long[] st = state[side];
                    out[side] = rig.zeros((long) b * HEADS * dh * p.bytes());
                    rig.kernels.linearAttentionDecodeDeferred(side == 0 ? 9 : version, p, q, k, v, st[0], st[1],
                            st[2], st[3], st[4], layout, out[side], b, HEADS, f, dh, 1e-6f, steps);
                }
                String what = "version " + version + ", " + p + " step " + step;
                int outValues = b * HEADS * dh * p.bytes() / 4;
                assertArrayEquals(ints(rig, out[0], outValues), ints(rig, out[1], outValues), what + ": the output");
                for (int i = 0; i < names.length; i++) {
                    assertArrayEquals(ints(rig, state[0][i], sizes[i]), ints(rig, state[1][i], sizes[i]),
                            what + ": " + names[i]);
                }
            }
        }
    }

    /** Where the form cannot run: head dims not a multiple of 4, 1 or more than 16 steps between writes. */
    @Test
    void theFormsLimits() {
        assertTrue(Kernels.linearDeferFits(16, 112, 8, 0));
        assertFalse(Kernels.linearDeferFits(16, 110, 8, 0), "head dim 110");
        assertFalse(Kernels.linearDeferFits(16, 112, 1, 0), "every step");
        assertFalse(Kernels.linearDeferFits(16, 112, Kernels.LINEAR_DEFER_MAX + 1, 0), "17 steps");
        assertFalse(Kernels.linearDeferFits(16, 112, 8, 8), "S not 16-byte aligned");
        assertFalse(Kernels.linearDeferFits(18, 112, 8, 0), "keys and values of 130 floats");
        assertEquals(Kernels.LINEAR_DEFER_DEFAULT, Kernels.linearDefer(null));
        assertEquals(1, Kernels.linearDefer(" 1 "));
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> Kernels.linearDefer("17"));
        assertTrue(bad.getMessage().contains(Kernels.LINEAR_DEFER_PROPERTY), bad.getMessage());
    }

    private static int[] ints(KernelRig rig, long ptr, int count) {
        float[] raw = rig.floats(ptr, count);
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
            out[i] = Float.floatToRawIntBits(raw[i]);
        }
        return out;
    }

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
