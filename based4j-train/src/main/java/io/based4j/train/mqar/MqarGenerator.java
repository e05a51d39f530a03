package io.based4j.train.mqar;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Multi-query associative recall (MQAR) data, generated as the Zoology benchmark does.
 *
 * <p>One example of length {@code L} with {@code kv} key-value pairs over a vocabulary of {@code V} tokens:
 * <ul>
 *   <li>keys are drawn without replacement from {@code [1, V/2)}, values with replacement from {@code [V/2, V)};</li>
 *   <li>the context is {@code k0 v0 k1 v1 ... k(kv-1) v(kv-1)} (positions {@code 0 .. 2kv-1});</li>
 *   <li>the query region {@code [2kv, L)} has {@code space = (L - 2kv) / 2} even-offset slots; slot {@code g}
 *       (0-based) has weight {@code (g + 1)^(a - 1)} with {@code a = 0.01}, so short gaps are strongly preferred;
 *       {@code kv} distinct slots are drawn by sequential weighted draws, each removing the slot it picks, and key
 *       {@code j} is placed at input position {@code 2kv + 2 g_j};</li>
 *   <li>every other query-region position holds uniform noise from {@code [0, V)};</li>
 *   <li>the target at the position holding key {@code j} is value {@code j} (the next token of the length
 *       {@code L + 1} sequence); every other target is {@link #IGNORE}.</li>
 * </ul>
 * Random numbers are drawn in this order: keys, values, slots, then noise in position order.
 */
public final class MqarGenerator {
    /** Target of positions that are not scored. */
    public static final int IGNORE = -100;
    /** Vocabulary of the paper's MQAR runs. */
    public static final int DEFAULT_VOCAB = 8192;
    /** Power of the query-gap distribution (slot i, 1-based, has weight {@code i^(a-1)}). */
    public static final double POWER_A = 0.01;

    static final int SLICE_BITS = 23;
    static final int EXAMPLE_BITS = 40;

    private MqarGenerator() {
    }

    /** The paper's training mixture: (64,4) x 100k, then (128,8), (256,16), (256,32), (256,64) x 20k each. */
    public static List<MqarSlice> paperTrain() {
        return List.of(new MqarSlice(64, 4, 100_000), new MqarSlice(128, 8, 20_000), new MqarSlice(256, 16, 20_000),
                new MqarSlice(256, 32, 20_000), new MqarSlice(256, 64, 20_000));
    }

    /** The paper's test set: 1000 examples of each of (64,4), (64,8), (64,16), (128,32), (256,64), (512,128), (1024,256). */
    public static List<MqarSlice> paperTest() {
        return List.of(new MqarSlice(64, 4, 1000), new MqarSlice(64, 8, 1000), new MqarSlice(64, 16, 1000),
                new MqarSlice(128, 32, 1000), new MqarSlice(256, 64, 1000), new MqarSlice(512, 128, 1000),
                new MqarSlice(1024, 256, 1000));
    }

    /**
     * Checks the constraints of an example shape: L even, 4 kv <= L, V > L, V even, 1 <= kv <= V/2 - 1.
     *
     * @throws IllegalArgumentException naming the violated constraint
     */
    public static void check(int seqLen, int numKv, int vocab) {
        String what = "MQAR (seq_len=" + seqLen + ", num_kv=" + numKv + ", vocab=" + vocab + "): ";
        if (seqLen < 2 || seqLen % 2 != 0) {
            throw new IllegalArgumentException(what + "sequence length must be even and >= 2");
        }
        if (numKv < 1) {
            throw new IllegalArgumentException(what + "needs at least one key-value pair");
        }
        if (4L * numKv > seqLen) {
            throw new IllegalArgumentException(what + "needs 4 * num_kv <= seq_len (context plus query region)");
        }
        if (vocab <= seqLen) {
            throw new IllegalArgumentException(what + "vocabulary must be larger than the sequence length");
        }
        if (vocab % 2 != 0) {
            throw new IllegalArgumentException(what + "vocabulary must be even (keys below V/2, values above)");
        }
        if (numKv > vocab / 2 - 1) {
            throw new IllegalArgumentException(what + "num_kv must be <= vocab/2 - 1 = " + (vocab / 2 - 1)
                    + " distinct keys");
        }
    }

    /**
     * Fills one example: {@code inputs[off, off + seqLen)} and {@code targets[toff, toff + seqLen)}.
     *
     * @throws IllegalArgumentException when the shape breaks a constraint of {@link #check(int, int, int)}
     */
    public static void example(int seqLen, int numKv, int vocab, SplittableRandom r, int[] inputs, int off,
                               int[] targets, int toff) {
        check(seqLen, numKv, vocab);
        Objects.requireNonNull(r, "r");
        Objects.checkFromIndexSize(off, seqLen, inputs.length);
        Objects.checkFromIndexSize(toff, seqLen, targets.length);
        int half = vocab / 2;
        int keyRange = half - 1; // keys 1 .. half-1

        // keys without replacement (sequential uniform draws among the keys not yet chosen)
        int[] keys = new int[numKv];
        BitSet used = numKv > 32 ? new BitSet(half) : null;
        for (int j = 0; j < numKv; j++) {
            int k;
            while (true) {
                k = 1 + r.nextInt(keyRange);
                if (used != null) {
                    if (!used.get(k)) {
                        used.set(k);
                        break;
                    }
                } else if (!contains(keys, j, k)) {
                    break;
                }
            }
            keys[j] = k;
        }
        // values with replacement
        int[] values = new int[numKv];
        for (int j = 0; j < numKv; j++) {
            values[j] = half + r.nextInt(half);
        }
        // query slots: weighted sampling without replacement, weight (g+1)^(a-1)
        int context = 2 * numKv;
        int space = (seqLen - context) / 2;
        double[] w = new double[space];
        for (int g = 0; g < space; g++) {
            w[g] = Math.pow(g + 1, POWER_A - 1);
        }
        int[] slots = new int[numKv];
        for (int j = 0; j < numKv; j++) {
            double total = 0;
            for (int g = 0; g < space; g++) {
                total += w[g];
            }
            double u = r.nextDouble() * total;
            int pick = -1;
            int lastAlive = -1;
            double acc = 0;
            for (int g = 0; g < space; g++) {
                if (w[g] == 0) {
                    continue;
                }
                lastAlive = g;
                acc += w[g];
                if (u < acc) {
                    pick = g;
                    break;
                }
            }
            if (pick < 0) {
                pick = lastAlive; // rounding at the very top of the range
            }
            slots[j] = pick;
            w[pick] = 0;
        }

        Arrays.fill(targets, toff, toff + seqLen, IGNORE);
        for (int j = 0; j < numKv; j++) {
            inputs[off + 2 * j] = keys[j];
            inputs[off + 2 * j + 1] = values[j];
        }
        boolean[] query = new boolean[seqLen - context];
        for (int j = 0; j < numKv; j++) {
            int p = 2 * slots[j];
            query[p] = true;
            inputs[off + context + p] = keys[j];
            targets[toff + context + p] = values[j];
        }
        for (int p = 0; p < query.length; p++) {
            if (!query[p]) {
                inputs[off + context + p] = r.nextInt(vocab);
            }
        }
    }

    private static boolean contains(int[] a, int n, int v) {
        for (int i = 0; i < n; i++) {
            if (a[i] == v) {
                return true;
            }
        }
        return false;
    }

    /**
     * The seed of example {@code example} of slice {@code sliceIndex} of the train or test set.
     *
     * <p>The three indices are packed into disjoint bit ranges of one 64-bit word
     * {@code x = train << 63 | sliceIndex << 40 | example} (slice index below 2^23, example below 2^40), then
     * {@code exampleSeed = mix64(x ^ mix64(seed ^ 0x243F6A8885A308D3))} with {@code mix64} the SplitMix64 finalizer.
     * For a fixed {@code seed}, {@code x -> x ^ c} and {@code mix64} are bijections, so distinct
     * {@code (train, sliceIndex, example)} always give distinct seeds: train and test seeds never coincide.
     */
    public static long exampleSeed(long seed, boolean train, int sliceIndex, long example) {
        if (sliceIndex < 0 || sliceIndex >= (1 << SLICE_BITS)) {
            throw new IllegalArgumentException("MQAR slice index must be in [0, " + (1 << SLICE_BITS) + "), got "
                    + sliceIndex);
        }
        if (example < 0 || example >= (1L << EXAMPLE_BITS)) {
            throw new IllegalArgumentException("MQAR example index must be in [0, 2^" + EXAMPLE_BITS + "), got "
                    + example);
        }
        long x = (train ? 1L << 63 : 0L) | ((long) sliceIndex << EXAMPLE_BITS) | example;
        return mix64(x ^ mix64(seed ^ 0x243F6A8885A308D3L));
    }

    /**
     * Generates a slice; example {@code e} comes from {@code new SplittableRandom(exampleSeed(seed, train,
     * sliceIndex, e))}, so the result does not depend on the thread count (examples are generated in parallel).
     */
    public static MqarSet generate(MqarSlice slice, int vocab, long seed, boolean train, int sliceIndex) {
        Objects.requireNonNull(slice, "slice");
        check(slice.seqLen(), slice.numKv(), vocab);
        exampleSeed(seed, train, sliceIndex, 0); // validates the slice index
        int len = slice.seqLen();
        long total = (long) slice.count() * len;
        if (total > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("MQAR slice " + slice + " has " + total
                    + " tokens, more than one array can hold; split it into smaller slices");
        }
        int[] inputs = new int[(int) total];
        int[] targets = new int[(int) total];
        IntStream.range(0, slice.count()).parallel().forEach(e -> example(len, slice.numKv(), vocab,
                new SplittableRandom(exampleSeed(seed, train, sliceIndex, e)), inputs, e * len, targets, e * len));
        return new MqarSet(slice, inputs, targets);
    }

    /** Generates every slice of a list; slice {@code i} uses slice index {@code i}. */
    public static List<MqarSet> generate(List<MqarSlice> slices, int vocab, long seed, boolean train) {
        List<MqarSet> sets = new ArrayList<>(slices.size());
        for (int i = 0; i < slices.size(); i++) {
            sets.add(generate(slices.get(i), vocab, seed, train, i));
        }
        return sets;
    }

    /**
     * Recurrent state in bytes (fp32) as the BASED paper's MQAR figure plots it (the short convolution is left
     * out): {@code based}: {@code 4 (d + 1) E} with {@code E = 1 + f + f(f+1)/2}; {@code sliding}:
     * {@code 4 * 2 d w}; {@code attention}: {@code 4 * 2 d * 1024} (the KV cache at the longest test length).
     * Arguments that do not apply to a mixer are ignored.
     */
    public static long stateBytes(String mixer, int d, int featureDim, int window) {
        Objects.requireNonNull(mixer, "mixer");
        if (d < 1) {
            throw new IllegalArgumentException("model width d must be >= 1, got " + d);
        }
        return switch (mixer.toLowerCase(Locale.ROOT)) {
            case "based" -> {
                if (featureDim < 1) {
                    throw new IllegalArgumentException("BASED feature dimension must be >= 1, got " + featureDim);
                }
                yield 4L * (d + 1) * taylorFeatures(featureDim);
            }
            case "sliding", "sliding_window", "sliding-window" -> {
                if (window < 1) {
                    throw new IllegalArgumentException("sliding window must be >= 1, got " + window);
                }
                yield 4L * 2 * d * window;
            }
            case "attention" -> 4L * 2 * d * 1024;
            default -> throw new IllegalArgumentException("unknown mixer \"" + mixer
                    + "\" for the MQAR state size (expected based, sliding or attention)");
        };
    }

    /**
     * Size {@code E = 1 + f + f(f+1)/2} of BASED's second-order Taylor feature map of {@code f} dimensions (the
     * constant, the f linear terms and the distinct products {@code x_i x_j}, i <= j): 45, 153 and 325 for f = 8, 16
     * and 24.
     */
    public static long taylorFeatures(int featureDim) {
        long f = featureDim;
        return 1 + f + f * (f + 1) / 2;
    }

    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
