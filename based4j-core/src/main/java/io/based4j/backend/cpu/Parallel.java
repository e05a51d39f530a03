package io.based4j.backend.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.function.IntConsumer;
import java.util.stream.IntStream;

/** Runs independent tasks {@code 0 .. n-1} on the common fork-join pool (or inline when there is one). */
public final class Parallel {
    private Parallel() {
    }

    public static int threads() {
        return ForkJoinPool.getCommonPoolParallelism() + 1;
    }

    public static void forEach(int n, IntConsumer task) {
        if (n <= 1 || threads() == 1) {
            for (int i = 0; i < n; i++) {
                task.accept(i);
            }
        } else {
            IntStream.range(0, n).parallel().forEach(task);
        }
    }

    /** Splits {@code [0, n)} into about {@code threads * 4} chunks of at least {@code grain} and runs each. */
    public static void forRanges(int n, int grain, RangeTask task) {
        int chunks = Math.max(1, Math.min(threads() * 4, (n + grain - 1) / Math.max(1, grain)));
        int size = (n + chunks - 1) / chunks;
        forEach(chunks, c -> {
            int from = c * size;
            int to = Math.min(n, from + size);
            if (from < to) {
                task.run(from, to);
            }
        });
    }

    @FunctionalInterface
    public interface RangeTask {
        void run(int from, int to);
    }
}
