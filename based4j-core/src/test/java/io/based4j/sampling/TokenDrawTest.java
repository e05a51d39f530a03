package io.based4j.sampling;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The sampling function (shared with the GPU kernel) against two independent statements of it: the plain one with
 * full sorts (the specification the kernel was first tested against), which must agree exactly, and the textbook one
 * in float64 (softmax, sort, inverse CDF), which must agree wherever the draw is not within a stated margin of a
 * boundary.
 */
class TokenDrawTest {
    static final long SEED = Long.getLong("based4j.seed", System.nanoTime());

    @Test
    void equalsThePlainStatementExactly() {
        SplittableRandom r = new SplittableRandom(SEED);
        TokenDraw draw = new TokenDraw();
        for (int c = 0; c < 3000; c++) {
            int vocab = 1 + r.nextInt(c % 10 == 0 ? 3000 : 40);
            float[] logits = randomRow(r, vocab + 3, c);
            int offset = r.nextInt(4);
            SamplingParams p = randomParams(r, vocab);
            float u = c % 50 == 0 ? (c % 100 == 0 ? 0f : 1 - 0x1p-24f) : r.nextInt(1 << 24) * 0x1p-24f;
            int want = plainStatement(logits, offset, vocab, p, u);
            String what = "case " + c + ": " + p + ", u=" + u + ", vocab " + vocab + " [-Dbased4j.seed=" + SEED + "]";
            if (want < 0) {
                IllegalStateException e = assertThrows(IllegalStateException.class,
                        () -> draw.choose(logits, offset, vocab, p, u), what);
                assertTrue(e.getMessage().contains(want == -1 ? "NaN" : "-Infinity"), e.getMessage());
            } else {
                assertEquals(want, draw.choose(logits, offset, vocab, p, u), what);
            }
        }
    }

    @Test
    void agreesWithTheTextbookFunctionAwayFromBoundaries() {
        SplittableRandom r = new SplittableRandom(SEED + 1);
        TokenDraw draw = new TokenDraw();
        int compared = 0;
        int cases = 2000;
        for (int c = 0; c < cases; c++) {
            int vocab = 2 + r.nextInt(c % 10 == 0 ? 5000 : 60);
            float[] logits = new float[vocab];
            double spread = 0.5 + 4 * r.nextDouble();
            for (int i = 0; i < vocab; i++) {
                logits[i] = (float) (spread * r.nextGaussian());
            }
            float[] temperatures = {0.7f, 1f, 1.3f};
            int[] topKs = {0, 2, 40, vocab + 5};
            float[] topPs = {1f, 0.95f, 0.9f, 0.5f};
            SamplingParams p = new SamplingParams(temperatures[r.nextInt(3)], topKs[r.nextInt(4)], topPs[r.nextInt(4)],
                    0);
            float u = r.nextInt(1 << 24) * 0x1p-24f;
            int want = TextbookSampling.choose(logits, 0, vocab, p, u, 0);
            if (want >= 0) {
                compared++;
                assertEquals(want, draw.choose(logits, 0, vocab, p, u), "case " + c + ": " + p + ", u=" + u
                        + " [-Dbased4j.seed=" + SEED + "]");
            }
        }
        // The margins are about 1e-6 (see TextbookSampling), so a case is left out with a probability of that order times
        // the number of boundaries within reach of the draw: nearly every case is compared.
        assertTrue(compared > cases * 0.99, "only " + compared + " of " + cases + " cases away from a boundary");
    }

    /** Rows with ties, zeros of both signs, infinities and now and then a NaN. */
    private static float[] randomRow(SplittableRandom r, int n, int c) {
        float[] row = new float[n];
        double spread = 0.3 + 5 * r.nextDouble();
        boolean coarse = r.nextBoolean();
        for (int i = 0; i < n; i++) {
            double x = spread * r.nextGaussian();
            row[i] = coarse ? Math.round(x * 4) / 4f : (float) x;
            int special = r.nextInt(60);
            if (special == 0) {
                row[i] = Float.NEGATIVE_INFINITY;
            } else if (special == 1) {
                row[i] = -0f;
            } else if (special == 2 && c % 7 == 0) {
                row[i] = Float.POSITIVE_INFINITY;
            }
        }
        if (c % 97 == 0) {
            row[r.nextInt(n)] = Float.NaN;
        }
        if (c % 89 == 0) {
            Arrays.fill(row, Float.NEGATIVE_INFINITY);
        }
        return row;
    }

    private static SamplingParams randomParams(SplittableRandom r, int vocab) {
        float[] temperatures = {0f, 1e-3f, 0.7f, 1f, 1.3f, 3f};
        int[] topKs = {0, 1, 2, 5, 40, vocab - 1, vocab, vocab + 7};
        float[] topPs = {1f, 0.999f, 0.9f, 0.5f, 0.05f, 1e-6f};
        return new SamplingParams(temperatures[r.nextInt(temperatures.length)],
                Math.max(0, topKs[r.nextInt(topKs.length)]), topPs[r.nextInt(topPs.length)], 0);
    }

    /**
     * The function stated plainly, with full sorts: -1 for a NaN logit, -2 for all -inf, else the token (see
     * {@link TokenDraw}).
     */
    static int plainStatement(float[] logits, int offset, int vocab, SamplingParams p, float uniform) {
        float best = Float.NEGATIVE_INFINITY;
        int bestIdx = -1;
        boolean nan = false;
        for (int i = 0; i < vocab; i++) {
            float v = logits[offset + i];
            if (Float.isNaN(v)) {
                nan = true;
            } else if (bestIdx < 0 || v > best) {
                best = v;
                bestIdx = i;
            }
        }
        if (nan) {
            return -1;
        }
        if (bestIdx < 0 || best == Float.NEGATIVE_INFINITY) {
            return -2;
        }
        if (!(p.temperature() > 0f) || p.topK() == 1) {
            return bestIdx;
        }
        float m = best;
        long[] key = new long[vocab];
        long[] q = new long[vocab];
        for (int i = 0; i < vocab; i++) {
            float v = logits[offset + i];
            key[i] = TokenDraw.orderKey(v);
            q[i] = TokenDraw.sampleWeight(v, m, p.temperature());
        }
        long threshold = 0;
        if (p.topK() > 0 && p.topK() < vocab) {
            long[] sorted = key.clone();
            Arrays.sort(sorted);
            threshold = sorted[vocab - p.topK()];
        }
        if (p.topP() < 1f) {
            long total = 0;
            int count = 0;
            for (int i = 0; i < vocab; i++) {
                if (key[i] >= threshold) {
                    total += q[i];
                    count++;
                }
            }
            double prod = (double) p.topP() * (double) total;
            long need = prod <= 0 ? 0 : (long) Math.ceil(prod);
            need = Math.max(1, Math.min(need, total));
            Integer[] kept = new Integer[count];
            for (int i = 0, c = 0; i < vocab; i++) {
                if (key[i] >= threshold) {
                    kept[c++] = i;
                }
            }
            Arrays.sort(kept, (a, b) -> Long.compare(key[b], key[a]));
            long cum = 0;
            long tau = threshold;
            for (int j = 0; j < count; j++) {
                cum += q[kept[j]];
                boolean lastOfKey = j + 1 == count || key[kept[j + 1]] != key[kept[j]];
                if (lastOfKey && cum >= need) {
                    tau = key[kept[j]];
                    break;
                }
            }
            threshold = Math.max(threshold, tau);
        }
        long keptWeight = 0;
        for (int i = 0; i < vocab; i++) {
            if (key[i] >= threshold) {
                keptWeight += q[i];
            }
        }
        float u = uniform;
        if (!(u > 0f)) {
            u = 0f;
        }
        if (u > 1f) {
            u = 1f;
        }
        long target = (long) ((double) u * (double) keptWeight);
        if (target >= keptWeight) {
            target = keptWeight - 1;
        }
        long cum = 0;
        for (int i = 0; i < vocab; i++) {
            if (key[i] >= threshold) {
                cum += q[i];
                if (cum > target) {
                    return i;
                }
            }
        }
        throw new AssertionError("no token reached the target");
    }
}
