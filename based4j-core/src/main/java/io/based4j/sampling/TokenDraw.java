package io.based4j.sampling;

import java.util.Arrays;

/**
 * The sampling function of based4j: which token a row of logits, sampling settings and one uniform draw give. The CPU
 * sampler ({@link Sampler}) computes it here, and the GPU kernel {@code sample_f32} computes the same function, so
 * both choose the same token for the same logits, settings and draw.
 *
 * <p>Every decision is made on integers, so the result does not depend on the order of any sum: tokens are ranked by
 * {@link #orderKey} (the float's order; equal logits tie), and weighted by {@link #sampleWeight}, a fixed-point
 * {@code exp((logit - max) / temperature)}. Over {@code logits[offset, offset + vocab)}:
 * <ol>
 * <li>a NaN logit, or all -Infinity, is an error;</li>
 * <li>argmax settings ({@link SamplingParams#choosesArgmax}): the largest logit, the lowest index on ties;</li>
 * <li>else top-k ({@code 0 < topK < vocab}) keeps the tokens whose key is at least the topK-th largest key (ties at
 * the boundary all kept); top-p ({@code topP < 1}) then keeps, of those, the tokens whose key is at least tau, the
 * largest key whose kept tokens at or above it weigh at least need = clamp(ceil((double) topP * total), 1, total);
 * target = min((long) ((double) clamp(uniform, 0, 1) * kept), kept - 1) with kept the kept weight (at least
 * 2^40: the maximal token always stays); the answer is the first kept index, in index order, at which the running
 * sum of the weights exceeds target (a token of weight 0 is never chosen).</li>
 * </ol>
 * No sort: the top-k threshold comes from a bounded heap of keys, the top-p one from a radix selection over the keys
 * (four passes of 256 bins, as on the GPU), both in linear time; weights are computed only for the tokens top-k keeps.
 * Scratch space is reused between calls: not thread-safe.
 */
final class TokenDraw {
    /** Vocabularies below this size keep every weight sum under 2^63 (each weight is at most 2^40). */
    static final int MAX_VOCAB = 1 << 23;

    /** The fixed-point weight of the maximal logit: 1.0 in 40 fractional bits. */
    private static final float ONE = 0x1p40f;

    /** Per token of the row: its fixed-point weight (set for the candidates only). */
    private long[] weight = new long[0];
    /** Token ids still in the draw, in index order (a prefix of the array). */
    private int[] candidates = new int[0];
    /** The tokens that still match the key chosen so far in a radix selection. */
    private int[] selecting = new int[0];
    /** The k largest keys seen, a min-heap, for top-k. */
    private long[] heap = new long[0];
    private final long[] bins = new long[256];

    /** The order-preserving unsigned key of a float (in [0, 2^32)); -0.0 sorts just below +0.0. */
    static long orderKey(float v) {
        int b = Float.floatToRawIntBits(v);
        return (b ^ ((b >> 31) | 0x80000000)) & 0xFFFFFFFFL; // negative: all bits flipped; else the sign bit set
    }

    /**
     * Fixed-point weight {@code floor(w * 2^40)} of logit {@code v} with row maximum {@code m}:
     * {@code w = (float) exp((v - m) / temperature)} (the difference and quotient in float, exp in double), and
     * {@code w = 1} for {@code v == m} (also when m is +Infinity). At most 2^40.
     */
    static long sampleWeight(float v, float m, float temperature) {
        float w = v == m ? 1f : (float) Math.exp((v - m) / temperature);
        return (long) (w * ONE);
    }

    /**
     * The token id in {@code [0, vocab)} that this function gives.
     *
     * @throws IllegalStateException if a logit is NaN, or all are -Infinity
     */
    int choose(float[] logits, int offset, int vocab, SamplingParams params, float uniform) {
        if (vocab <= 0 || vocab >= MAX_VOCAB) {
            throw new IllegalArgumentException("a vocabulary of " + vocab + " tokens: the sampler takes 1 to "
                    + (MAX_VOCAB - 1));
        }
        if (offset < 0 || offset > logits.length - vocab) {
            throw new IllegalArgumentException("logits range [" + offset + ", " + ((long) offset + vocab)
                    + ") does not fit an array of length " + logits.length);
        }
        int best = -1;
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            float v = logits[offset + i];
            if (Float.isNaN(v)) {
                throw new IllegalStateException("logit of token " + i + " is NaN");
            }
            if (v > max) {
                max = v;
                best = i;
            }
        }
        if (best < 0) {
            throw new IllegalStateException("all logits are -Infinity");
        }
        if (params.choosesArgmax()) {
            return best;
        }

        if (weight.length < vocab) {
            weight = new long[vocab];
            candidates = new int[vocab];
            selecting = new int[vocab];
        }
        // The candidates, in index order: the tokens top-k keeps, else all.
        int n = vocab;
        for (int i = 0; i < vocab; i++) {
            candidates[i] = i;
        }
        int k = params.topK();
        if (k > 0 && k < vocab) {
            n = keepFrom(logits, offset, n, kthLargestKey(logits, offset, vocab, k));
        }
        for (int j = 0; j < n; j++) {
            int id = candidates[j];
            weight[id] = sampleWeight(logits[offset + id], max, params.temperature());
        }
        if (params.topP() < 1f) {
            long total = weightOf(n);
            double product = (double) params.topP() * (double) total;
            long need = product <= 0 ? 0 : (long) Math.ceil(product);
            need = Math.max(1, Math.min(need, total));
            n = keepFrom(logits, offset, n, largestKeyReaching(logits, offset, n, need));
        }

        long kept = weightOf(n);
        float u = uniform > 0f ? Math.min(uniform, 1f) : 0f;
        long target = Math.min((long) ((double) u * (double) kept), kept - 1);
        long sum = 0;
        for (int j = 0; j < n; j++) {
            sum += weight[candidates[j]];
            if (sum > target) {
                return candidates[j];
            }
        }
        throw new AssertionError("no token reached the target " + target + " of " + kept);
    }

    /** Keeps the first {@code n} candidates whose key is at least {@code threshold}, in order; returns how many. */
    private int keepFrom(float[] logits, int offset, int n, long threshold) {
        int m = 0;
        for (int j = 0; j < n; j++) {
            int id = candidates[j];
            if (orderKey(logits[offset + id]) >= threshold) {
                candidates[m++] = id;
            }
        }
        return m;
    }

    /** The weight of the first {@code n} candidates. */
    private long weightOf(int n) {
        long total = 0;
        for (int j = 0; j < n; j++) {
            total += weight[candidates[j]];
        }
        return total;
    }

    /**
     * The k-th largest key of the row (counting equal keys apart), for {@code 0 < k < vocab}: a min-heap of the k
     * largest keys seen, whose root most tokens fail to beat.
     */
    private long kthLargestKey(float[] logits, int offset, int vocab, int k) {
        if (heap.length < k) {
            heap = new long[k];
        }
        for (int i = 0; i < k; i++) {
            heap[i] = orderKey(logits[offset + i]);
        }
        for (int i = k / 2 - 1; i >= 0; i--) {
            siftDown(i, heap[i], k);
        }
        for (int i = k; i < vocab; i++) {
            long key = orderKey(logits[offset + i]);
            if (key > heap[0]) {
                siftDown(0, key, k);
            }
        }
        return heap[0];
    }

    /** Puts {@code key} at heap position {@code i} and moves it down to its place in the min-heap of this size. */
    private void siftDown(int i, long key, int size) {
        while (true) {
            int child = 2 * i + 1;
            if (child >= size) {
                break;
            }
            if (child + 1 < size && heap[child + 1] < heap[child]) {
                child++;
            }
            if (key <= heap[child]) {
                break;
            }
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = key;
    }

    /**
     * The largest key tau such that those of the first {@code n} candidates whose key is at least tau weigh at least
     * {@code need}, where {@code 1 <= need <=} the weight of them all. Radix selection, 8 bits of the key a pass from
     * the top, each pass over the tokens that still match.
     */
    private long largestKeyReaching(float[] logits, int offset, int n, long need) {
        System.arraycopy(candidates, 0, selecting, 0, n);
        int m = n;
        long prefix = 0;
        long rest = need;
        for (int shift = 24; shift >= 0; shift -= 8) {
            Arrays.fill(bins, 0);
            for (int j = 0; j < m; j++) {
                int id = selecting[j];
                bins[digit(logits[offset + id], shift)] += weight[id];
            }
            long above = 0;
            int chosen = 0;
            for (int d = 255; d >= 0; d--) {
                if (above + bins[d] >= rest) {
                    chosen = d;
                    rest -= above;
                    break;
                }
                above += bins[d];
            }
            prefix |= (long) chosen << shift;
            int still = 0;
            for (int j = 0; j < m; j++) {
                int id = selecting[j];
                if (digit(logits[offset + id], shift) == chosen) {
                    selecting[still++] = id;
                }
            }
            m = still;
        }
        return prefix;
    }

    private static int digit(float v, int shift) {
        return (int) (orderKey(v) >>> shift) & 255;
    }
}
