package io.based4j.cli;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.serve.Engine;
import io.based4j.serve.RequestHandle;
import io.based4j.serve.StreamListener;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.locks.LockSupport;

/**
 * One load of {@code bench serve}: requests submitted to an engine at Poisson arrivals of a given rate (or all at
 * once), every generated token's time taken as the engine hands it over, and the throughput and latencies that
 * follow. Latencies count from a request's scheduled arrival, so a submitter that falls behind is charged to the
 * server, as a client would see it.
 */
final class ServeLoadRun {
    /** All requests arrive at once (a rate of infinity). */
    static final double AT_ONCE = Double.POSITIVE_INFINITY;

    /**
     * What one load measured. Times in seconds.
     *
     * @param seconds from the first arrival to the last token
     * @param timeToFirstToken each request's first token after its arrival, sorted
     * @param interToken the gaps between consecutive tokens of a request, of all requests, sorted
     */
    record Result(int requests, long tokens, double seconds, double[] timeToFirstToken, double[] interToken) {
        double requestsPerSecond() {
            return requests / seconds;
        }

        double tokensPerSecond() {
            return tokens / seconds;
        }
    }

    private ServeLoadRun() {
    }

    /**
     * Submits {@code requests} (request {@code i} arriving after exponential gaps of mean {@code 1 / rate} seconds
     * drawn from {@code random}, or all at once for {@link #AT_ONCE}) and waits until all have finished.
     *
     * @throws IllegalStateException when a request fails or does not generate every token it asked for
     */
    static Result run(Engine engine, List<GenerationRequest> requests, double rate, SplittableRandom random) {
        int n = requests.size();
        long[] arrivals = new long[n];
        double offset = 0;
        for (int i = 0; i < n; i++) {
            if (rate != AT_ONCE) {
                offset += -Math.log(1 - random.nextDouble()) / rate;
            }
            arrivals[i] = (long) (offset * 1e9);
        }
        long[][] times = new long[n][];
        int[] counts = new int[n];
        List<RequestHandle> handles = new ArrayList<>(n);
        long start = System.nanoTime();
        for (int i = 0; i < n; i++) {
            long due = start + arrivals[i];
            for (long wait; (wait = due - System.nanoTime()) > 0; ) {
                LockSupport.parkNanos(wait);
            }
            arrivals[i] = due;
            long[] mine = times[i] = new long[requests.get(i).maxNewTokens()];
            int index = i;
            // called on the engine's thread only; the result's completion publishes the times to this thread
            StreamListener listener = (tokenId, text) -> {
                if (tokenId >= 0) {
                    mine[counts[index]++] = System.nanoTime();
                }
            };
            handles.add(engine.submit(requests.get(i), listener));
        }
        long tokens = 0;
        long end = start;
        List<Double> firsts = new ArrayList<>(n);
        List<Double> gaps = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            GenerationResult result = handles.get(i).result().join();
            int made = counts[i];
            if (made != requests.get(i).maxNewTokens() || result.tokens().length != made) {
                throw new IllegalStateException("request " + i + " generated " + made + " tokens, not the "
                        + requests.get(i).maxNewTokens() + " it asked for");
            }
            tokens += made;
            end = Math.max(end, times[i][made - 1]);
            firsts.add((times[i][0] - arrivals[i]) / 1e9);
            for (int t = 1; t < made; t++) {
                gaps.add((times[i][t] - times[i][t - 1]) / 1e9);
            }
        }
        return new Result(n, tokens, (end - start) / 1e9, sorted(firsts), sorted(gaps));
    }

    private static double[] sorted(List<Double> values) {
        double[] a = values.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return a;
    }

    /** The nearest-rank percentile {@code p} (0 to 100) of sorted values; NaN when there are none. */
    static double percentile(double[] sorted, double p) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        int rank = (int) Math.ceil(p / 100 * sorted.length);
        return sorted[Math.clamp(rank - 1, 0, sorted.length - 1)];
    }
}
