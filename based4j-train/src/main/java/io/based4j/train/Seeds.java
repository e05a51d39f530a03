package io.based4j.train;

/** Independent seeds derived from a run's one seed, so that each consumer draws from its own stream. */
public final class Seeds {
    public static final long INIT = 1;
    public static final long DATA = 2;

    private Seeds() {
    }

    /** A 64-bit mix (the murmur3 finalizer) of the run seed and a stream number. */
    public static long derive(long seed, long stream) {
        long z = seed + stream * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 33)) * 0xff51afd7ed558ccdL;
        z = (z ^ (z >>> 33)) * 0xc4ceb9fe1a85ec53L;
        return z ^ (z >>> 33);
    }
}
