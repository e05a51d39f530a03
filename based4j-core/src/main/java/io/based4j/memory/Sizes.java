package io.based4j.memory;

import java.util.Locale;

/**
 * Sizes computed in 64 bits: products and sums that saturate at {@link Long#MAX_VALUE} instead of wrapping (a size
 * that large can never fit, so a memory check refuses it with a positive number), the length check of a Java array,
 * and the human-readable form of a byte count.
 */
public final class Sizes {
    /**
     * The most elements a Java array is given: HotSpot refuses lengths within a few header words of
     * {@link Integer#MAX_VALUE} ("Requested array size exceeds VM limit"), so the limit stays 8 below it.
     */
    public static final int MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

    private Sizes() {
    }

    /** {@code a * b} for non-negative operands, or {@link Long#MAX_VALUE} when the product does not fit. */
    public static long times(long a, long b) {
        long p = a * b;
        return Math.multiplyHigh(a, b) != 0 || p < 0 ? Long.MAX_VALUE : p;
    }

    /** The product of non-negative factors, or {@link Long#MAX_VALUE} when it does not fit. */
    public static long product(long... factors) {
        long p = 1;
        for (long f : factors) {
            p = times(p, f);
        }
        return p;
    }

    /** {@code a + b} for non-negative operands, or {@link Long#MAX_VALUE} when the sum does not fit. */
    public static long plus(long a, long b) {
        long s = a + b;
        return s < 0 ? Long.MAX_VALUE : s;
    }

    /** The sum of non-negative terms, or {@link Long#MAX_VALUE} when it does not fit. */
    public static long sum(long... terms) {
        long s = 0;
        for (long t : terms) {
            s = plus(s, t);
        }
        return s;
    }

    /**
     * {@code rows * cols} as the length of one Java array.
     *
     * @throws IllegalArgumentException naming {@code what} and the sizes when the product is negative or longer than
     *                                  {@link #MAX_ARRAY_LENGTH}
     */
    public static int arrayLength(long rows, long cols, String what) {
        if (rows < 0 || cols < 0) {
            throw new IllegalArgumentException(what + ": negative size " + rows + " x " + cols);
        }
        long n = times(rows, cols);
        if (n > MAX_ARRAY_LENGTH) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "%s: %,d x %,d = %s values, more than one Java array holds (%,d)", what, rows, cols,
                    n == Long.MAX_VALUE ? "over 2^63" : String.format(Locale.ROOT, "%,d", n), MAX_ARRAY_LENGTH));
        }
        return (int) n;
    }

    /** "12.3 KiB" style; exact below 1 KiB ("1000 B"). */
    public static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }

    /** A count in the style of parameter counts: "512", "1.6M", "2.3B", "21.9T". */
    public static String count(long n) {
        if (n < 1_000_000) {
            return String.format(Locale.ROOT, "%,d", n);
        }
        String[] units = {"M", "B", "T", "P", "E"};
        double v = n / 1e6;
        int u = 0;
        while (v >= 1000 && u < units.length - 1) {
            v /= 1000;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f%s", v, units[u]);
    }
}
