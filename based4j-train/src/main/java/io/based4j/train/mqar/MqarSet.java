package io.based4j.train.mqar;

import java.util.Objects;

/**
 * The examples of one {@link MqarSlice}: {@code inputs} and {@code targets} hold {@code count * seqLen} ints,
 * example {@code e} at {@code [e * seqLen, (e + 1) * seqLen)}. A target is {@link MqarGenerator#IGNORE} except at
 * the positions holding a queried key, where it is that key's value.
 */
public record MqarSet(MqarSlice slice, int[] inputs, int[] targets) {
    public MqarSet {
        Objects.requireNonNull(slice, "slice");
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(targets, "targets");
        long n = (long) slice.count() * slice.seqLen();
        if (inputs.length != n || targets.length != n) {
            throw new IllegalArgumentException("MQAR set " + slice + " needs " + n + " inputs and targets, got "
                    + inputs.length + " and " + targets.length);
        }
    }

    public int count() {
        return slice.count();
    }

    public int seqLen() {
        return slice.seqLen();
    }

    public int numKv() {
        return slice.numKv();
    }
}
