package io.based4j.sampling;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Comparator;
import java.util.Random;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

class SamplerTest {
    private static final int GPT2_VOCAB = 50257;
    private static final int PADDED_VOCAB = 50304;
    /**
     * Chi-square bound used for frequency checks with 1 to 4 degrees of freedom: the probability that a correct
     * sampler exceeds 40 is e^-20 * (1 + 20) ~ 4e-8 for 4 degrees of freedom and smaller for fewer, so the
     * test cannot fail by chance (and is deterministic anyway, as the seeds are fixed), while a wrong
     * distribution (e.g. temperature ignored, wrong renormalization) gives values in the hundreds or more
     * at these sample sizes.
     */
    private static final double CHI_SQUARE_BOUND = 40;

    @Test
    void greedyPicksArgmaxAndIgnoresPadding() {
        float[] logits = randomLogits(PADDED_VOCAB, 1);
        for (int i = GPT2_VOCAB; i < PADDED_VOCAB; i++) {
            logits[i] = 1000f; // padded rows of the output layer must never be chosen
        }
        var sampler = new Sampler(SamplingParams.greedy());
        int expected = 0;
        for (int i = 1; i < GPT2_VOCAB; i++) {
            if (logits[i] > logits[expected]) {
                expected = i;
            }
        }
        assertEquals(expected, sampler.sample(logits, 0, GPT2_VOCAB));
    }

    @Test
    void greedyTakesLowestIndexOnTiesAndUsesOffset() {
        float[] batch = {9, 9, 9, /* row 1: */ 1, 3, 2, 3, /* row 2: */ -5, -4, -4, -9};
        var sampler = new Sampler(SamplingParams.greedy());
        assertEquals(1, sampler.sample(batch, 3, 4));
        assertEquals(1, sampler.sample(batch, 7, 4));
        assertEquals(1, sampler.sample(new float[] {Float.NEGATIVE_INFINITY, -0f, 0f}, 0, 3)); // -0 == +0
        // a row without any possible token is an error, greedy or not (as on the GPU)
        var e = assertThrows(IllegalStateException.class,
                () -> sampler.sample(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, 0, 2));
        assertTrue(e.getMessage().contains("-Infinity"), e.getMessage());
    }

    @Test
    void nanLogitsAreRejected() {
        float[] logits = {1, Float.NaN, 2};
        var e = assertThrows(IllegalStateException.class, () -> new Sampler(SamplingParams.greedy()).sample(logits, 0, 3));
        assertTrue(e.getMessage().contains("NaN"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> new Sampler(new SamplingParams(1f, 0, 1f, 1)).sample(logits, 0, 3));
        assertThrows(IllegalStateException.class, () -> new Sampler(new SamplingParams(1f, 0, 0.9f, 1)).sample(logits, 0, 3));
    }

    @Test
    void samplingNeverReturnsPaddedIds() {
        float[] logits = randomLogits(2 * PADDED_VOCAB, 2);
        for (int row = 0; row < 2; row++) {
            for (int i = GPT2_VOCAB; i < PADDED_VOCAB; i++) {
                logits[row * PADDED_VOCAB + i] = 1000f;
            }
        }
        for (var params : new SamplingParams[] {new SamplingParams(1f, 0, 1f, 3), new SamplingParams(2f, 50, 1f, 3),
                new SamplingParams(1.5f, 0, 0.95f, 3), new SamplingParams(0.7f, 40, 0.9f, 3)}) {
            var sampler = new Sampler(params);
            for (int draw = 0; draw < 200; draw++) {
                int id = sampler.sample(logits, (draw % 2) * PADDED_VOCAB, GPT2_VOCAB);
                assertTrue(id >= 0 && id < GPT2_VOCAB, () -> params + " drew " + id);
            }
        }
    }

    @Test
    void topKOneEqualsGreedyAtAnyTemperature() {
        float[] logits = randomLogits(1000, 4);
        logits[700] = logits[300] = 100f; // tie at the top: the lower index wins
        for (float t : new float[] {0.01f, 1f, 100f}) {
            var sampler = new Sampler(new SamplingParams(t, 1, 0.9f, 5));
            for (int draw = 0; draw < 50; draw++) {
                assertEquals(300, sampler.sample(logits, 0, 1000));
            }
        }
    }

    @Test
    void sameSeedSameSequenceDifferentSeedDifferent() {
        float[] logits = randomLogits(GPT2_VOCAB, 6);
        var params = new SamplingParams(1.2f, 0, 0.95f, 42);
        int[] a = draws(new Sampler(params), logits, 200);
        int[] b = draws(new Sampler(params), logits, 200);
        int[] c = draws(new Sampler(new SamplingParams(1.2f, 0, 0.95f, 43)), logits, 200);
        assertArrayEquals(a, b);
        assertFalse(Arrays.equals(a, c));
    }

    @Test
    void frequenciesMatchSoftmax() {
        float[] logits = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
        float t = 0.8f;
        double[] expected = softmax(logits, t);
        int[] counts = histogram(new Sampler(new SamplingParams(t, 0, 1f, 7)), logits, 200_000);
        assertChiSquare(expected, counts);
    }

    @Test
    void topKRenormalizesOverTheKBest() {
        float[] logits = {0.3f, 2.0f, -0.5f, 1.1f, 1.7f, 0.9f};
        // The 3 best are ids 1, 4, 3.
        double[] expected = softmax(new float[] {2.0f, 1.7f, 1.1f}, 1.3f);
        int[] counts = histogram(new Sampler(new SamplingParams(1.3f, 3, 1f, 8)), logits, 100_000);
        assertEquals(0, counts[0] + counts[2] + counts[5], "tokens outside the top 3 were drawn");
        assertChiSquare(expected, new int[] {counts[1], counts[4], counts[3]});
    }

    @Test
    void topPKeepsExactlyTheNucleus() {
        float[] logits = logOf(0.5, 0.25, 0.15, 0.07, 0.03);
        // Cumulative: 0.5, 0.75, 0.90, 0.97, 1.0 -> top-p 0.8 keeps ids 0, 1, 2.
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.8f, 9)), logits, 100_000);
        assertEquals(0, counts[3] + counts[4], "tokens outside the nucleus were drawn");
        assertChiSquare(new double[] {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9}, Arrays.copyOf(counts, 3));

        counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.45f, 9)), logits, 1000);
        assertEquals(1000, counts[0], "top-p below the top probability keeps only the top token");

        counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.55f, 9)), logits, 10_000);
        assertEquals(10_000, counts[0] + counts[1]);
        assertTrue(counts[0] > 0 && counts[1] > 0);
    }

    @Test
    void topPOnLargeVocabularyMatchesFullSort() {
        // Log-normal weights (sigma 3): about 4% of the vocabulary carries 90% of the probability.
        var random = new Random(10);
        float[] logits = new float[GPT2_VOCAB];
        for (int i = 0; i < GPT2_VOCAB; i++) {
            logits[i] = (float) (3 * random.nextGaussian());
        }
        float t = 1f;
        float topP = 0.9f;
        boolean[] inNucleus = referenceNucleus(logits, t, topP);
        int size = 0;
        for (boolean b : inNucleus) {
            size += b ? 1 : 0;
        }
        assertTrue(size > 10 && size < GPT2_VOCAB / 2, "test logits should give a non-trivial nucleus: " + size);
        var sampler = new Sampler(new SamplingParams(t, 0, topP, 11));
        boolean[] seen = new boolean[GPT2_VOCAB];
        for (int draw = 0; draw < 2000; draw++) {
            int id = sampler.sample(logits, 0, GPT2_VOCAB);
            assertTrue(inNucleus[id], () -> "drew " + id + " outside the nucleus");
            seen[id] = true;
        }
        // Draws spread over the nucleus rather than collapsing onto its most likely tokens.
        long distinct = IntStream.range(0, GPT2_VOCAB).filter(i -> seen[i]).count();
        assertTrue(distinct > size / 10, "only " + distinct + " distinct tokens drawn from a nucleus of " + size);
    }

    @Test
    void topPDrawsEveryNucleusMemberAndNothingElse() {
        // 1000 logits in [0, 1]: probabilities differ by at most a factor e, so every token has at least
        // 1/(1000 e) of the mass, at least 7.4e-4 of the renormalized nucleus (mass 0.5): each member is
        // expected >= 22 times in 30,000 draws and missed with probability <= e^-22.
        var random = new Random(13);
        float[] logits = new float[1000];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = random.nextFloat();
        }
        boolean[] nucleus = referenceNucleus(logits, 1f, 0.5f);
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.5f, 14)), logits, 30_000);
        for (int i = 0; i < logits.length; i++) {
            assertEquals(nucleus[i], counts[i] > 0, "token " + i + " drawn " + counts[i] + " times");
        }
    }

    @Test
    void topPKeepsEveryTokenTiedAtTheBoundary() {
        // Probabilities 0.4, 0.2, 0.2, 0.2, 0 (almost): top-p 0.5 ends within the tie, which stays whole; 0.35 keeps
        // only the top token.
        float[] logits = logOf(0.4, 0.2, 0.2, 0.2, 1e-6);
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.5f, 15)), logits, 20_000);
        assertArrayEquals(new boolean[] {true, true, true, true, false}, positive(counts));
        assertChiSquare(new double[] {0.4, 0.2, 0.2, 0.2}, Arrays.copyOf(counts, 4));
        counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.35f, 15)), logits, 1000);
        assertEquals(1000, counts[0]);
        // 50 equal logits are one tie: any top-p keeps them all
        counts = histogram(new Sampler(new SamplingParams(1f, 0, 0.01f, 15)), new float[50], 20_000);
        assertTrue(Arrays.stream(counts).allMatch(c -> c > 0), Arrays.toString(counts));
    }

    @Test
    void topKKeepsEveryTokenTiedAtTheKthLogit() {
        float[] logits = {1, 5, 5, 0, 5, 5, 2};
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 3, 1f, 16)), logits, 4000);
        assertArrayEquals(new boolean[] {false, true, true, false, true, true, false}, positive(counts));
        counts = histogram(new Sampler(new SamplingParams(1f, 5, 1f, 16)), logits, 4000);
        assertArrayEquals(new boolean[] {false, true, true, false, true, true, true}, positive(counts));
    }

    @Test
    void eachSampledTokenTakesOneUniformAndArgmaxTokensNone() {
        float[] logits = randomLogits(3000, 17);
        for (var params : new SamplingParams[] {new SamplingParams(0.7f, 0, 1f, 5), new SamplingParams(1f, 40, 0.9f, 6),
                new SamplingParams(1.3f, 0, 0.9f, 7)}) {
            var sampler = new Sampler(params);
            var twin = new Sampler(params);
            for (int draw = 0; draw < 100; draw++) {
                float u = twin.uniformForNextToken();
                assertTrue(u >= 0 && u < 1 && u * 0x1p24f == Math.rint(u * 0x1p24f), "u = " + u);
                assertEquals(Sampler.pick(logits, 0, logits.length, params, u), sampler.sample(logits, 0, logits.length));
            }
        }
        for (var params : new SamplingParams[] {SamplingParams.greedy(), new SamplingParams(1f, 1, 0.5f, 8)}) {
            var sampler = new Sampler(params);
            assertEquals(0f, sampler.uniformForNextToken());
            assertEquals(Sampler.pick(logits, 0, logits.length, params, 0.99f), sampler.sample(logits, 0, 3000));
        }
    }

    @Test
    void edgeSettingsAreDefined() {
        float[] logits = randomLogits(500, 18);
        var random = new Random(19);
        for (int i = 0; i < 200; i++) {
            float u = random.nextInt(1 << 24) * 0x1p-24f;
            float t = 0.5f + random.nextFloat();
            int plain = Sampler.pick(logits, 0, 500, new SamplingParams(t, 0, 1f, 0), u);
            // top-k of the whole vocabulary or more, and top-p 1, are off
            assertEquals(plain, Sampler.pick(logits, 0, 500, new SamplingParams(t, 500, 1f, 0), u));
            assertEquals(plain, Sampler.pick(logits, 0, 500, new SamplingParams(t, 100_000, 1f, 0), u));
            // temperature 0 and top-k 1 are the argmax, whatever the draw
            int argmax = Sampler.pick(logits, 0, 500, SamplingParams.greedy(), 0f);
            assertEquals(argmax, Sampler.pick(logits, 0, 500, new SamplingParams(0f, 40, 0.9f, 0), u));
            assertEquals(argmax, Sampler.pick(logits, 0, 500, new SamplingParams(t, 1, 1f, 0), u));
        }
        // +Infinity logits share the draw equally; the rest get nothing
        float inf = Float.POSITIVE_INFINITY;
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 0, 1f, 20)), new float[] {inf, 3f, inf}, 10_000);
        assertEquals(0, counts[1]);
        assertChiSquare(new double[] {0.5, 0.5}, new int[] {counts[0], counts[2]});
        assertEquals(0, new Sampler(SamplingParams.greedy()).sample(new float[] {inf, 3f, inf}, 0, 3));
        // a token of weight 0 (-Infinity, or too unlikely for 40 fractional bits) is never drawn, even by u = 0
        float[] zeros = {Float.NEGATIVE_INFINITY, -200f, 0f, 1f};
        assertEquals(2, Sampler.pick(zeros, 0, 4, new SamplingParams(1f, 0, 1f, 0), 0f));
        assertEquals(3, Sampler.pick(zeros, 0, 4, new SamplingParams(1f, 0, 1f, 0), 1f));
    }

    @Test
    void minusInfinityLogitsAreNeverDrawn() {
        float ninf = Float.NEGATIVE_INFINITY;
        float[] logits = {ninf, 0f, ninf, 0f};
        int[] counts = histogram(new Sampler(new SamplingParams(1f, 0, 1f, 12)), logits, 2000);
        assertEquals(0, counts[0] + counts[2]);
        assertThrows(IllegalStateException.class,
                () -> new Sampler(new SamplingParams(1f, 0, 1f, 12)).sample(new float[] {ninf, ninf}, 0, 2));
    }

    @Test
    void invalidParametersAreRejected() {
        assertMessage("--temperature", () -> new SamplingParams(-0.1f, 0, 1f, 0));
        assertMessage("--temperature", () -> new SamplingParams(Float.NaN, 0, 1f, 0));
        assertMessage("--temperature", () -> new SamplingParams(Float.POSITIVE_INFINITY, 0, 1f, 0));
        assertMessage("--top-k", () -> new SamplingParams(1f, -1, 1f, 0));
        assertMessage("--top-p must be in (0, 1], got 1.5", () -> new SamplingParams(1f, 0, 1.5f, 0));
        assertMessage("--top-p", () -> new SamplingParams(1f, 0, 0f, 0));
        assertMessage("--top-p", () -> new SamplingParams(1f, 0, Float.NaN, 0));
        assertTrue(SamplingParams.greedy().isGreedy());
        assertFalse(new SamplingParams(0.5f, 0, 1f, 0).isGreedy());
        assertThrows(IllegalArgumentException.class, () -> new Sampler(SamplingParams.greedy()).sample(new float[4], 2, 3));
    }

    private static void assertMessage(String expected, Runnable r) {
        var e = assertThrows(IllegalArgumentException.class, r::run);
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }

    private static void assertChiSquare(double[] expected, int[] counts) {
        long n = Arrays.stream(counts).asLongStream().sum();
        double chi = 0;
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i] * n;
            chi += (counts[i] - e) * (counts[i] - e) / e;
        }
        assertTrue(chi < CHI_SQUARE_BOUND, "chi-square " + chi + " for counts " + Arrays.toString(counts)
                + " vs probabilities " + Arrays.toString(expected));
    }

    private static boolean[] positive(int[] counts) {
        boolean[] out = new boolean[counts.length];
        for (int i = 0; i < counts.length; i++) {
            out[i] = counts[i] > 0;
        }
        return out;
    }

    /** The nucleus by a full sort: probability descending, then id ascending. */
    private static boolean[] referenceNucleus(float[] logits, float t, float topP) {
        double[] p = softmax(logits, t);
        Integer[] order = IntStream.range(0, logits.length).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -p[i]).thenComparingInt(i -> i));
        boolean[] nucleus = new boolean[logits.length];
        double cumulative = 0;
        for (int i = 0; cumulative < topP; i++) {
            nucleus[order[i]] = true;
            cumulative += p[order[i]];
        }
        return nucleus;
    }

    private static int[] histogram(Sampler sampler, float[] logits, int draws) {
        int[] counts = new int[logits.length];
        for (int i = 0; i < draws; i++) {
            counts[sampler.sample(logits, 0, logits.length)]++;
        }
        return counts;
    }

    private static int[] draws(Sampler sampler, float[] logits, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = sampler.sample(logits, 0, logits.length);
        }
        return out;
    }

    private static double[] softmax(float[] logits, float t) {
        double max = Double.NEGATIVE_INFINITY;
        for (float x : logits) {
            max = Math.max(max, x);
        }
        double[] p = new double[logits.length];
        double sum = 0;
        for (int i = 0; i < p.length; i++) {
            p[i] = Math.exp((logits[i] - max) / t);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++) {
            p[i] /= sum;
        }
        return p;
    }

    private static float[] logOf(double... probabilities) {
        float[] logits = new float[probabilities.length];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) Math.log(probabilities[i]);
        }
        return logits;
    }

    /** Language-model-like logits: Gaussian noise with a few strongly preferred tokens. */
    private static float[] randomLogits(int n, long seed) {
        var random = new Random(seed);
        float[] logits = new float[n];
        for (int i = 0; i < n; i++) {
            logits[i] = (float) (2 * random.nextGaussian());
        }
        for (int i = 0; i < 20; i++) {
            logits[random.nextInt(n)] += 8f;
        }
        return logits;
    }
}
