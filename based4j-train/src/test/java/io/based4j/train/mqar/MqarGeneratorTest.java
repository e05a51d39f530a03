package io.based4j.train.mqar;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.IntBuffer;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class MqarGeneratorTest {
    static final int V = MqarGenerator.DEFAULT_VOCAB;
    static final int IGNORE = MqarGenerator.IGNORE;

    /** Checks every invariant of one example; returns the chosen slot indices (0-based) in key order. */
    static int[] checkExample(int L, int kv, int vocab, int[] in, int[] tg, int off) {
        int half = vocab / 2;
        int ctx = 2 * kv;
        Map<Integer, Integer> valueOf = new HashMap<>();
        for (int j = 0; j < kv; j++) {
            int k = in[off + 2 * j];
            int v = in[off + 2 * j + 1];
            assertTrue(k >= 1 && k < half, "key " + k);
            assertTrue(v >= half && v < vocab, "value " + v);
            assertEquals(null, valueOf.put(k, v), "keys distinct in the context");
            assertEquals(IGNORE, tg[off + 2 * j], "context targets are ignored");
            assertEquals(IGNORE, tg[off + 2 * j + 1], "context targets are ignored");
        }
        int scored = 0;
        Set<Integer> queried = new HashSet<>();
        int[] slotOfKey = new int[kv];
        for (int p = ctx; p < L; p++) {
            int x = in[off + p];
            assertTrue(x >= 0 && x < vocab, "noise " + x);
            int t = tg[off + p];
            if (t != IGNORE) {
                scored++;
                assertEquals(0, (p - ctx) % 2, "queries sit at even offsets of the query region");
                assertTrue(valueOf.containsKey(x), "a scored position holds a key");
                assertEquals(valueOf.get(x), t, "the target is the value paired with the key");
                assertTrue(queried.add(x), "each key is queried once");
                for (int j = 0; j < kv; j++) {
                    if (in[off + 2 * j] == x) {
                        slotOfKey[j] = (p - ctx) / 2;
                    }
                }
            }
        }
        assertEquals(kv, scored, "kv scored targets per example");
        assertEquals(valueOf.keySet(), queried, "every key is queried");
        return slotOfKey;
    }

    @Test
    void invariantsHoldOverManyExamplesOfSeveralSlices() {
        List<MqarSlice> slices = List.of(new MqarSlice(64, 4, 2000), new MqarSlice(64, 16, 500),
                new MqarSlice(128, 32, 300), new MqarSlice(256, 64, 200), new MqarSlice(1024, 256, 20),
                new MqarSlice(8, 2, 500));
        for (int s = 0; s < slices.size(); s++) {
            MqarSlice sl = slices.get(s);
            MqarSet set = MqarGenerator.generate(sl, V, 1234, true, s);
            assertEquals(sl, set.slice());
            assertEquals(sl.count() * sl.seqLen(), set.inputs().length);
            for (int e = 0; e < sl.count(); e++) {
                checkExample(sl.seqLen(), sl.numKv(), V, set.inputs(), set.targets(), e * sl.seqLen());
            }
        }
        // a small vocabulary where noise often collides with keys still keeps the scored positions right
        MqarSet small = MqarGenerator.generate(new MqarSlice(16, 4, 3000), 18, 5, false, 0);
        for (int e = 0; e < 3000; e++) {
            checkExample(16, 4, 18, small.inputs(), small.targets(), e * 16);
        }
        // tiny vocabularies (only a few keys available)
        MqarSet all = MqarGenerator.generate(new MqarSlice(16, 3, 50), 8 + 10, 5, false, 1);
        assertEquals(50 * 16, all.inputs().length);
        MqarSet full = MqarGenerator.generate(new MqarSlice(40, 9, 50), 20 + 22, 5, false, 2);
        assertEquals(50 * 40, full.inputs().length);
        int[] in = new int[24];
        int[] tg = new int[24];
        MqarGenerator.example(24, 6, 26, new SplittableRandom(3), in, 0, tg, 0);
        checkExample(24, 6, 26, in, tg, 0);
    }

    @Test
    void exampleWritesAtTheGivenOffsets() {
        int[] in = new int[3 + 64];
        int[] tg = new int[5 + 64];
        Arrays.fill(in, -7);
        Arrays.fill(tg, -7);
        MqarGenerator.example(64, 8, V, new SplittableRandom(9), in, 3, tg, 5);
        assertEquals(-7, in[0]);
        assertEquals(-7, in[2]);
        assertEquals(-7, tg[4]);
        int[] tin = Arrays.copyOfRange(tg, 5, 69);
        checkExample(64, 8, V, Arrays.copyOfRange(in, 3, 67), tin, 0);
        // same random stream, same example
        int[] in2 = new int[64];
        int[] tg2 = new int[64];
        MqarGenerator.example(64, 8, V, new SplittableRandom(9), in2, 0, tg2, 0);
        assertArrayEquals(Arrays.copyOfRange(in, 3, 67), in2);
        assertArrayEquals(tin, tg2);
    }

    @Test
    void generationIsDeterministicBySeed() {
        MqarSlice sl = new MqarSlice(128, 8, 3000);
        MqarSet a = MqarGenerator.generate(sl, V, 77, true, 1);
        MqarSet b = MqarGenerator.generate(sl, V, 77, true, 1);
        assertArrayEquals(a.inputs(), b.inputs());
        assertArrayEquals(a.targets(), b.targets());
        assertFalse(Arrays.equals(a.inputs(), MqarGenerator.generate(sl, V, 78, true, 1).inputs()));
        assertFalse(Arrays.equals(a.inputs(), MqarGenerator.generate(sl, V, 77, false, 1).inputs()));
        assertFalse(Arrays.equals(a.inputs(), MqarGenerator.generate(sl, V, 77, true, 2).inputs()));
        // example e equals a direct draw from exampleSeed(seed, train, slice, e)
        int[] in = new int[128];
        int[] tg = new int[128];
        for (int e : new int[] {0, 1, 1234, 2999}) {
            MqarGenerator.example(128, 8, V, new SplittableRandom(MqarGenerator.exampleSeed(77, true, 1, e)), in, 0,
                    tg, 0);
            assertArrayEquals(Arrays.copyOfRange(a.inputs(), e * 128, e * 128 + 128), in);
            assertArrayEquals(Arrays.copyOfRange(a.targets(), e * 128, e * 128 + 128), tg);
        }
        // a prefix of a larger slice equals the smaller slice
        MqarSet prefix = MqarGenerator.generate(new MqarSlice(128, 8, 100), V, 77, true, 1);
        assertArrayEquals(prefix.inputs(), Arrays.copyOf(a.inputs(), 100 * 128));
    }

    @Test
    void trainAndTestSeedsAreDisjoint() {
        for (long seed : new long[] {0, 1, 42, -1, Long.MIN_VALUE}) {
            Set<Long> train = new HashSet<>();
            List<MqarSlice> tr = MqarGenerator.paperTrain();
            for (int s = 0; s < tr.size(); s++) {
                for (int e = 0; e < tr.get(s).count(); e++) {
                    assertTrue(train.add(MqarGenerator.exampleSeed(seed, true, s, e)), "train seeds distinct");
                }
            }
            assertEquals(180_000, train.size());
            Set<Long> test = new HashSet<>();
            List<MqarSlice> te = MqarGenerator.paperTest();
            for (int s = 0; s < te.size(); s++) {
                for (int e = 0; e < te.get(s).count(); e++) {
                    long x = MqarGenerator.exampleSeed(seed, false, s, e);
                    assertTrue(test.add(x), "test seeds distinct");
                    assertFalse(train.contains(x), "test seed also used for training");
                }
            }
            assertEquals(7000, test.size());
        }
        // the injective packing: flipping any input changes the seed
        assertNotEquals(MqarGenerator.exampleSeed(5, true, 0, 0), MqarGenerator.exampleSeed(5, false, 0, 0));
        assertNotEquals(MqarGenerator.exampleSeed(5, true, 1, 0), MqarGenerator.exampleSeed(5, true, 0, 1L << 39));
    }

    @Test
    void noTestExampleEqualsATrainExampleOfTheSameShape() {
        long seed = 2024;
        List<MqarSlice> tr = MqarGenerator.paperTrain();
        List<MqarSlice> te = MqarGenerator.paperTest();
        Map<String, Set<IntBuffer>> trainByShape = new HashMap<>();
        for (int s = 0; s < tr.size(); s++) {
            MqarSlice sl = tr.get(s);
            String shape = sl.seqLen() + "/" + sl.numKv();
            boolean inTest = te.stream().anyMatch(t -> t.seqLen() == sl.seqLen() && t.numKv() == sl.numKv());
            if (!inTest) {
                continue;
            }
            MqarSet set = MqarGenerator.generate(sl, V, seed, true, s);
            Set<IntBuffer> seen = trainByShape.computeIfAbsent(shape, k -> new HashSet<>());
            for (int e = 0; e < sl.count(); e++) {
                seen.add(IntBuffer.wrap(set.inputs(), e * sl.seqLen(), sl.seqLen()).slice());
            }
        }
        assertEquals(Set.of("64/4", "256/64"), trainByShape.keySet());
        int compared = 0;
        for (int s = 0; s < te.size(); s++) {
            MqarSlice sl = te.get(s);
            Set<IntBuffer> seen = trainByShape.get(sl.seqLen() + "/" + sl.numKv());
            if (seen == null) {
                continue;
            }
            MqarSet set = MqarGenerator.generate(sl, V, seed, false, s);
            for (int e = 0; e < sl.count(); e++) {
                IntBuffer x = IntBuffer.wrap(set.inputs(), e * sl.seqLen(), sl.seqLen()).slice();
                assertFalse(seen.contains(x), "test example " + e + " of " + sl + " also in the training set");
                compared++;
            }
        }
        assertEquals(2000, compared);
    }

    @Test
    void queriesPreferShortGaps() {
        // (256, 16): 112 slots; with weights (g+1)^(-0.99) the chosen slots concentrate near the context
        MqarSlice sl = new MqarSlice(256, 16, 4000);
        MqarSet set = MqarGenerator.generate(sl, V, 3, true, 0);
        int space = (256 - 32) / 2;
        double sum = 0;
        long[] hist = new long[space];
        for (int e = 0; e < sl.count(); e++) {
            int[] slots = checkExample(256, 16, V, set.inputs(), set.targets(), e * 256);
            for (int g : slots) {
                sum += g;
                hist[g]++;
            }
        }
        double mean = sum / (sl.count() * 16.0);
        assertTrue(mean < space / 2.0 * 0.8, "mean slot " + mean + " of " + space);
        // slot 0 is chosen much more often than the last slot
        assertTrue(hist[0] > 3 * hist[space - 1], hist[0] + " vs " + hist[space - 1]);
        // expected first-draw probability of slot 0: 1 / sum_i i^(-0.99)
        double z = 0;
        for (int i = 1; i <= space; i++) {
            z += Math.pow(i, -0.99);
        }
        assertTrue(hist[0] / (double) sl.count() > 1 / z, "slot 0 is picked at least as often as by one draw");
    }

    @Test
    void badArgumentsThrow() {
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.check(63, 4, V)); // odd L
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.check(64, 17, V)); // 4 kv > L
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.check(64, 4, 64)); // V <= L
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.check(64, 4, 8191)); // odd V
        // (kv <= V/2 - 1 is implied by 4 kv <= L < V, so it cannot fail on its own)
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.check(64, 0, V));
        MqarGenerator.check(64, 16, 68);
        assertThrows(IllegalArgumentException.class, () -> new MqarSlice(0, 4, 10));
        assertThrows(IllegalArgumentException.class, () -> new MqarSlice(64, 0, 10));
        assertThrows(IllegalArgumentException.class, () -> new MqarSlice(64, 4, -1));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> MqarGenerator.generate(new MqarSlice(64, 17, 10), V, 1, true, 0));
        assertTrue(e.getMessage().contains("4 * num_kv"), e.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> MqarGenerator.generate(new MqarSlice(64, 4, 10), V, 1, true, -1));
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.exampleSeed(1, true, 1 << 23, 0));
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.exampleSeed(1, true, 0, 1L << 40));
        assertThrows(IndexOutOfBoundsException.class,
                () -> MqarGenerator.example(64, 4, V, new SplittableRandom(1), new int[63], 0, new int[64], 0));
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.stateBytes("mamba", 64, 8, 0));
        assertThrows(IllegalArgumentException.class, () -> MqarGenerator.stateBytes("based", 0, 8, 0));
    }

    @Test
    void paperSlicesAndStateSizes() {
        assertEquals(List.of(new MqarSlice(64, 4, 100_000), new MqarSlice(128, 8, 20_000),
                new MqarSlice(256, 16, 20_000), new MqarSlice(256, 32, 20_000), new MqarSlice(256, 64, 20_000)),
                MqarGenerator.paperTrain());
        assertEquals(7, MqarGenerator.paperTest().size());
        assertEquals(new MqarSlice(1024, 256, 1000), MqarGenerator.paperTest().get(6));
        for (MqarSlice s : MqarGenerator.paperTest()) {
            MqarGenerator.check(s.seqLen(), s.numKv(), V);
        }
        // E = 45, 153, 325 for f = 8, 16, 24
        assertEquals(4L * 65 * 45, MqarGenerator.stateBytes("based", 64, 8, 0));
        assertEquals(4L * 129 * 153, MqarGenerator.stateBytes("based", 128, 16, 0));
        assertEquals(4L * 129 * 325, MqarGenerator.stateBytes("based", 128, 24, 0));
        assertEquals(13.5, Math.log(MqarGenerator.stateBytes("based", 64, 8, 0)) / Math.log(2), 0.05);
        assertEquals(4L * 2 * 128 * 8, MqarGenerator.stateBytes("sliding", 128, 0, 8));
        assertEquals(1L << 13, MqarGenerator.stateBytes("sliding", 128, 0, 8));
        assertEquals(1L << 20, MqarGenerator.stateBytes("sliding", 128, 0, 1024));
        assertEquals(1L << 19, MqarGenerator.stateBytes("attention", 64, 0, 0));
    }
}
