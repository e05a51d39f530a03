package io.based4j.backend.cpu;

import io.based4j.memory.HostMemory;
import io.based4j.memory.Sizes;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** cos and sin of rotary angles per position, computed once (float32 as the reference does) and shared. */
final class RotaryTable {
    private static final Map<String, RotaryTable> TABLES = new ConcurrentHashMap<>();

    private final int half;
    private final float[] invFreq;
    private volatile float[] cos = new float[0];
    private volatile float[] sin = new float[0];

    private RotaryTable(int rotaryDim, double base) {
        this.half = rotaryDim / 2;
        this.invFreq = new float[half];
        for (int p = 0; p < half; p++) {
            invFreq[p] = RotaryAngles.inverseFrequency(base, p, rotaryDim);
        }
    }

    static RotaryTable of(int rotaryDim, double base) {
        return TABLES.computeIfAbsent(rotaryDim + "/" + base, key -> new RotaryTable(rotaryDim, base));
    }

    /**
     * Makes sure positions {@code [0, positions)} are in the table, growing it (to twice its size at least, where that
     * fits) after checking the new table's size against {@code memory}.
     */
    void ensure(int positions, HostMemory memory) {
        if (half == 0 || (long) cos.length >= (long) positions * half) {
            return;
        }
        synchronized (this) {
            int have = cos.length / half;
            if (have >= positions) {
                return;
            }
            long doubled = Math.min(Math.max(256L, 2L * have), Sizes.MAX_ARRAY_LENGTH / half);
            long n = Math.max(positions, doubled);
            if (bytes(n) > memory.heapFree()) {
                n = positions;
            }
            int len = Sizes.arrayLength(n, half, String.format(Locale.ROOT,
                    "the rotary angles of %,d positions (prompt plus new tokens)", n));
            memory.requireHeap(bytes(n), String.format(Locale.ROOT, "rotary angles for %,d positions", n));
            float[] c = new float[len];
            float[] s = new float[len];
            for (int pos = 0; pos < n; pos++) {
                for (int p = 0; p < half; p++) {
                    float angle = (float) pos * invFreq[p];
                    c[pos * half + p] = (float) Math.cos(angle);
                    s[pos * half + p] = (float) Math.sin(angle);
                }
            }
            sin = s;
            cos = c;
        }
    }

    /** Bytes of the cos and sin tables for {@code positions} positions. */
    private long bytes(long positions) {
        return Sizes.product(2 * Float.BYTES, positions, half);
    }

    float[] cos() {
        return cos;
    }

    float[] sin() {
        return sin;
    }

    /**
     * Rotates the first {@code 2 * half} dims of {@code x[off ..]} in place by the angles stored at
     * {@code cos[table ..]}, {@code sin[table ..]}: pairs {@code (p, p + half)} ("rotate half"), or
     * {@code (2p, 2p + 1)} when interleaved.
     */
    static void rotate(float[] x, int off, int half, boolean interleaved, float[] cos, float[] sin, int table) {
        for (int p = 0; p < half; p++) {
            float c = cos[table + p];
            float s = sin[table + p];
            int i1 = interleaved ? off + 2 * p : off + p;
            int i2 = interleaved ? off + 2 * p + 1 : off + p + half;
            float x1 = x[i1];
            float x2 = x[i2];
            x[i1] = x1 * c - x2 * s;
            x[i2] = x2 * c + x1 * s;
        }
    }
}
