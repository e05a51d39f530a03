package io.based4j.serve;

import java.util.Arrays;

/**
 * Counts of durations in fixed buckets, as Prometheus' histograms keep them: written by the engine's thread, read
 * as a {@link Snapshot} from any thread.
 */
public final class LatencyHistogram {
    /**
     * Bucket bounds of the time to first token, in seconds: from a prompt fed in one step on an idle GPU (a few
     * milliseconds) to one waiting in a long queue (a minute).
     */
    static final double[] FIRST_TOKEN_BOUNDS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
    /** Bucket bounds of the time between two tokens of a sequence, in seconds: one decode step, a millisecond up. */
    static final double[] INTER_TOKEN_BOUNDS = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

    /**
     * The histogram at one moment.
     *
     * @param bounds the buckets' upper bounds, increasing (the last bucket, +Inf, is implied)
     * @param cumulative observations at most each bound (Prometheus' {@code le} counts), one per bound
     * @param count all observations (the +Inf bucket)
     * @param sum the observations' total, in seconds
     */
    public record Snapshot(double[] bounds, long[] cumulative, long count, double sum) {
    }

    private final double[] bounds;
    private final long[] counts;
    private long count;
    private double sum;

    LatencyHistogram(double[] bounds) {
        this.bounds = bounds.clone();
        this.counts = new long[bounds.length];
    }

    /** Records one duration, in nanoseconds. */
    synchronized void observeNanos(long nanos) {
        double seconds = nanos / 1e9;
        int bucket = 0;
        while (bucket < bounds.length && seconds > bounds[bucket]) {
            bucket++;
        }
        if (bucket < bounds.length) {
            counts[bucket]++;
        }
        count++;
        sum += seconds;
    }

    synchronized Snapshot snapshot() {
        long[] cumulative = new long[bounds.length];
        long running = 0;
        for (int i = 0; i < bounds.length; i++) {
            running += counts[i];
            cumulative[i] = running;
        }
        return new Snapshot(bounds.clone(), cumulative, count, sum);
    }

    @Override
    public synchronized String toString() {
        return "LatencyHistogram[count=" + count + ", sum=" + sum + ", counts=" + Arrays.toString(counts) + "]";
    }
}
