package io.based4j.backend;

/**
 * Points in a backend's own order of work, for timing its ops: {@link #mark()} notes "now" as the device sees it (a
 * CUDA event recorded on the backend's stream; the host's clock where ops finish before they return), and
 * {@link #millis} reads the time between two marks once the work before the later one has run.
 */
public interface OpClock {
    /** A new mark at the current point of the backend's work. */
    long mark();

    /** Milliseconds from mark {@code from} to mark {@code to}; waits for the work before {@code to}. */
    double millis(long from, long to);

    /**
     * Holds the backend's work at this point until {@link #go} of the returned hold, so that marks queued in between
     * time the device's work without the host's time queuing it (a GPU's stream waits on a gate; where ops run as they
     * are called, nothing to hold: 0). A hold that the host does not release in time (an op inside it waiting for
     * the device) lets go by itself after a bounded wait, which then counts in the op's time.
     */
    default long hold() {
        return 0;
    }

    /** Releases a hold from {@link #hold}. */
    default void go(long hold) {
    }

    /**
     * Starts (or stops) timing the backend's own kernels one by one, where it launches kernels (a GPU's: a pair of
     * events around each launch); {@link #kernelTimes} reads them.
     */
    default void timeKernels(boolean on) {
    }

    /** The kernels timed since {@link #timeKernels}: name, calls and milliseconds (no shapes); empty where none. */
    default java.util.List<OpProfile.Row> kernelTimes() {
        return java.util.List.of();
    }

    /** Frees a mark (no-op where marks hold nothing). */
    default void release(long mark) {
    }

    /** The host's monotonic clock: for backends whose ops have finished when they return. */
    OpClock HOST = new OpClock() {
        @Override
        public long mark() {
            return System.nanoTime();
        }

        @Override
        public double millis(long from, long to) {
            return (to - from) / 1e6;
        }
    };
}
