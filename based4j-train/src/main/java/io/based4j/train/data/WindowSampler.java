package io.based4j.train.data;

import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Random training windows of {@code windowTokens = seqLen + 1} consecutive tokens (inputs and shifted targets).
 *
 * <p>The start of window {@code index} of step {@code step} is a pure function of {@code (seed, step, index)}: a
 * {@link SplittableRandom} seeded with {@link #windowSeed(long, long, int)} draws one uniform value in
 * {@code [0, count - windowTokens]}. Nothing depends on earlier calls, so a run resumed at step {@code s} sees
 * exactly the batches the original run saw from step {@code s} on, and batches may be built in any order or in
 * parallel.
 */
public final class WindowSampler {
    private final TokenDataset data;
    private final int windowTokens;
    private final long seed;
    private final long bound;

    public WindowSampler(TokenDataset data, int windowTokens, long seed) {
        Objects.requireNonNull(data, "data");
        if (windowTokens < 2) {
            throw new IllegalArgumentException("window must be at least 2 tokens (sequence length + 1), got "
                    + windowTokens);
        }
        if (data.count() < windowTokens) {
            throw new IllegalArgumentException("the " + data.split() + " split in " + data.dir() + " holds "
                    + data.count() + " tokens, fewer than one window of " + windowTokens
                    + " (sequence length + 1); use a shorter sequence or more data");
        }
        this.data = data;
        this.windowTokens = windowTokens;
        this.seed = seed;
        this.bound = data.count() - windowTokens + 1;
    }

    public TokenDataset data() {
        return data;
    }

    public int windowTokens() {
        return windowTokens;
    }

    public long seed() {
        return seed;
    }

    /**
     * The seed of window {@code (step, index)}: three rounds of the SplitMix64 finalizer,
     * {@code h = mix(seed ^ 0x6A09E667F3BCC909); h = mix(h + step * 0x9E3779B97F4A7C15);
     * h = mix(h + (index + 1) * 0xD1B54A32D192ED03)}.
     */
    public static long windowSeed(long seed, long step, int index) {
        long h = mix64(seed ^ 0x6A09E667F3BCC909L);
        h = mix64(h + step * 0x9E3779B97F4A7C15L);
        return mix64(h + (index + 1L) * 0xD1B54A32D192ED03L);
    }

    /** Start of window {@code index} of step {@code step}, uniform in {@code [0, count - windowTokens]}. */
    public long start(long step, int index) {
        if (step < 0 || index < 0) {
            throw new IllegalArgumentException("step and index must be >= 0, got step " + step + ", index " + index);
        }
        return new SplittableRandom(windowSeed(seed, step, index)).nextLong(bound);
    }

    /** Fills {@code dst[0, batchSize * windowTokens)} with windows {@code 0 .. batchSize-1} of step {@code step}. */
    public void batch(long step, int batchSize, int[] dst) {
        if (batchSize < 1) {
            throw new IllegalArgumentException("batch size must be >= 1, got " + batchSize);
        }
        long need = (long) batchSize * windowTokens;
        if (dst.length < need) {
            throw new IllegalArgumentException("batch buffer holds " + dst.length + " ints, need " + need + " ("
                    + batchSize + " windows of " + windowTokens + ")");
        }
        for (int i = 0; i < batchSize; i++) {
            data.read(start(step, i), dst, i * windowTokens, windowTokens);
        }
    }

    /**
     * Evenly spaced, non-overlapping window starts for evaluation: {@code n = min(maxWindows, count / windowTokens)}
     * windows, the first at 0 and (for n > 1) the last at {@code count - windowTokens}; start i is
     * {@code i * (count - windowTokens) / (n - 1)}. Empty when not even one window fits.
     */
    public static long[] evalStarts(long count, int windowTokens, int maxWindows) {
        if (count < 0 || windowTokens < 1 || maxWindows < 0) {
            throw new IllegalArgumentException("evalStarts needs count >= 0, windowTokens >= 1, maxWindows >= 0; got "
                    + count + ", " + windowTokens + ", " + maxWindows);
        }
        int n = (int) Math.min(maxWindows, count / windowTokens);
        long[] starts = new long[n];
        if (n > 1) {
            // exact floor(i * span / (n - 1)) without overflow: span = q (n - 1) + r
            long span = count - windowTokens;
            long q = span / (n - 1);
            long r = span % (n - 1);
            for (int i = 0; i < n; i++) {
                starts[i] = i * q + (long) i * r / (n - 1);
            }
        }
        return starts;
    }

    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
