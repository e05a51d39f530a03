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
