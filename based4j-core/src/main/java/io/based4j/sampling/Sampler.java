package io.based4j.sampling;

import java.util.SplittableRandom;

/**
 * Chooses the next token from a row of logits: greedy argmax, or temperature / top-k / top-p sampling.
 *
 * <p>Tokens are ordered by logit, ties broken by the lower id; top-k and top-p keep a prefix of that order.
 * Neither sorts the vocabulary: top-k keeps a bounded heap of k ids, top-p finds its nucleus by a weighted
 * quickselect, both in expected linear time.
 *
 * <p>The random generator is seeded from {@link SamplingParams#seed()}, so a given seed and sequence of calls
 * always gives the same tokens. Scratch buffers are reused between calls: not thread-safe.
 */
public final class Sampler {
    /** Ranges at most this long are finished by insertion sort in the nucleus selection. */
    private static final int SMALL_RANGE = 16;

    private final SamplingParams params;
    private final SplittableRandom random;
    /** Per token id: its logit, then its unnormalized probability (only for candidate ids). */
    private double[] weight = new double[0];
    /** Candidate token ids. */
    private int[] candidates = new int[0];

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    public SamplingParams params() {
        return params;
    }

    /**
     * The next draw in [0, 1) of this sampler's generator, for a sampler that runs elsewhere (on a GPU) and takes its
     * randomness from here, so that a seed still fixes the tokens.
     */
    public float nextUniform() {
        return random.nextInt(1 << 24) * 0x1p-24f;
    }

    /**
     * Chooses a token id in {@code [0, vocabSize)} from {@code logits[offset .. offset + vocabSize)}. Entries
     * past {@code vocabSize} (padding of the vocabulary) are never looked at.
     *
     * @throws IllegalStateException if a logit is NaN (or, when sampling, +Infinity), or all are -Infinity
     */
    public int sample(float[] logits, int offset, int vocabSize) {
        if (vocabSize <= 0 || offset < 0 || offset + vocabSize > logits.length) {
            throw new IllegalArgumentException("logits range [" + offset + ", " + (offset + vocabSize)
                    + ") does not fit an array of length " + logits.length);
        }
        if (params.isGreedy() || params.topK() == 1) {
            return argmax(logits, offset, vocabSize);
        }
        if (weight.length < vocabSize) {
            weight = new double[vocabSize];
            candidates = new int[vocabSize];
        }
        int k = params.topK();
        int n = k > 0 && k < vocabSize ? selectTopK(logits, offset, vocabSize, k) : allTokens(logits, offset, vocabSize);

        // Softmax of logits / temperature, max-subtracted, in double (left unnormalized).
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, weight[candidates[i]]);
        }
        if (max == Double.NEGATIVE_INFINITY) {
            throw new IllegalStateException("all logits are -Infinity");
        }
        double temperature = params.temperature();
        double total = 0;
        for (int i = 0; i < n; i++) {
            int id = candidates[i];
            double p = Math.exp((weight[id] - max) / temperature);
            weight[id] = p;
            total += p;
        }

        if (params.topP() < 1f) {
            // Every nucleus member has probability > (1 - topP) / n: the tokens from it on (at most n, none more
            // likely than it) carry more than 1 - topP. A cheap pass drops the tokens below (half) that bound.
            double cutoff = 0.5 * (1 - params.topP()) / n * total;
            int m = 0;
            for (int i = 0; i < n; i++) {
                int id = candidates[i];
                if (weight[id] >= cutoff) {
                    candidates[m++] = id;
                }
            }
            n = selectNucleus(m, params.topP() * total);
            total = 0;
            for (int i = 0; i < n; i++) {
                total += weight[candidates[i]];
            }
        }

        double u = random.nextDouble() * total;
        double acc = 0;
        int last = candidates[0];
        for (int i = 0; i < n; i++) {
            int id = candidates[i];
            double p = weight[id];
            if (p > 0) {
                acc += p;
                last = id;
                if (u < acc) {
                    return id;
                }
            }
        }
        return last; // rounding: u landed at the very top of the range
    }

    /** Index of the largest logit in the row (lowest index on ties). */
    private static int argmax(float[] logits, int offset, int vocabSize) {
        int best = 0;
        float bestValue = Float.NEGATIVE_INFINITY;
        for (int id = 0; id < vocabSize; id++) {
            float x = checked(logits[offset + id], id);
            if (x > bestValue) {
                best = id;
                bestValue = x;
            }
        }
        return best;
    }

    private static float checked(float x, int id) {
        if (Float.isNaN(x)) {
            throw new IllegalStateException("logit of token " + id + " is NaN");
        }
        return x;
    }

    /** Makes every token a candidate. */
    private int allTokens(float[] logits, int offset, int vocabSize) {
        for (int id = 0; id < vocabSize; id++) {
            weight[id] = checked(logits[offset + id], id);
            candidates[id] = id;
        }
        return vocabSize;
    }

    /**
     * Puts the k best ids (in no particular order) into candidates[0, k), using it as a min-heap whose root is
     * the worst id kept: most tokens are rejected by one comparison with the root.
     */
    private int selectTopK(float[] logits, int offset, int vocabSize, int k) {
        for (int id = 0; id < k; id++) {
            weight[id] = checked(logits[offset + id], id);
            candidates[id] = id;
        }
        for (int i = k / 2 - 1; i >= 0; i--) {
            siftDownWorstFirst(i, k);
        }
        for (int id = k; id < vocabSize; id++) {
            float x = checked(logits[offset + id], id);
            // Ids arrive in increasing order, so on equal logits the kept (lower) id is better.
            if (x > weight[candidates[0]]) {
                weight[id] = x;
                candidates[0] = id;
                siftDownWorstFirst(0, k);
            }
        }
        return k;
    }

    private void siftDownWorstFirst(int i, int size) {
        int x = candidates[i];
        while (true) {
            int child = 2 * i + 1;
            if (child >= size) {
                break;
            }
            if (child + 1 < size && before(candidates[child], candidates[child + 1])) {
                child++;
            }
            if (!before(x, candidates[child])) {
                break;
            }
            candidates[i] = candidates[child];
            i = child;
        }
        candidates[i] = x;
    }

    /**
     * Rearranges candidates[0, size) so that its prefix is the nucleus: the shortest run of best ids whose
     * weights reach {@code target}; returns its length (at least 1). Weighted quickselect: partition around a
     * pivot, then continue only in the side that holds the boundary.
     *
     * <p>Invariant: every id in [0, lo) is in the nucleus and better than every id in [lo, hi); every id in
     * [hi, size) is outside it; {@code need} is what [lo, hi) must still contribute (always > 0).
     */
    private int selectNucleus(int size, double target) {
        int lo = 0;
        int hi = size;
        double need = target;
        while (hi - lo > SMALL_RANGE) {
            int mid = (lo + hi) >>> 1;
            int pivot = medianOfThree(candidates[lo], candidates[mid], candidates[hi - 1]);
            // Partition [lo, hi) into ids before the pivot, [lo, p), and the rest, pivot included, [p, hi).
            int p = lo;
            double better = 0;
            for (int i = lo; i < hi; i++) {
                int id = candidates[i];
                if (before(id, pivot)) {
                    better += weight[id];
                    candidates[i] = candidates[p];
                    candidates[p++] = id;
                }
            }
            if (better >= need) {
                hi = p; // the boundary lies among the better ids
            } else {
                // Move the pivot to p; everything before it joins the nucleus.
                for (int i = p; i < hi; i++) {
                    if (candidates[i] == pivot) {
                        candidates[i] = candidates[p];
                        candidates[p] = pivot;
                        break;
                    }
                }
                need -= better + weight[pivot];
                if (need <= 0) {
                    return p + 1;
                }
                lo = p + 1;
            }
        }
        // Finish the small range in order.
        for (int i = lo + 1; i < hi; i++) {
            int id = candidates[i];
            int j = i;
            while (j > lo && before(id, candidates[j - 1])) {
                candidates[j] = candidates[j - 1];
                j--;
            }
            candidates[j] = id;
        }
        for (int i = lo; i < hi; i++) {
            need -= weight[candidates[i]];
            if (need <= 0) {
                return i + 1;
            }
        }
        return Math.max(hi, 1); // rounding: the whole range falls just short of the target
    }

    private int medianOfThree(int a, int b, int c) {
        if (before(a, b)) {
            return before(b, c) ? b : before(a, c) ? c : a;
        }
        return before(a, c) ? a : before(b, c) ? c : b;
    }

    /** Token a ranks before token b: larger weight, then lower id. */
    private boolean before(int a, int b) {
        double wa = weight[a];
        double wb = weight[b];
        return wa > wb || (wa == wb && a < b);
    }
}
