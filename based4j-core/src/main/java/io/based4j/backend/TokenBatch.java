package io.based4j.backend;

import java.util.Arrays;

/**
 * Tokens of several sequences packed one after another, one row each.
 *
 * <p>Sequence {@code i} owns rows {@code [offset(i), offset(i) + length(i))}, continues the sequence kept in state
 * slot {@code slot(i)}, and its first row sits at absolute position {@code start(i)} (the number of tokens that
 * slot has already seen). No two sequences of a batch share a slot (the kernels that continue a state read and write
 * each slot's state from one sequence's work).
 */
public record TokenBatch(int[] slots, int[] starts, int[] lengths) {
    public TokenBatch {
        if (slots.length != starts.length || slots.length != lengths.length) {
            throw new IllegalArgumentException("slots, starts and lengths differ in size");
        }
        slots = slots.clone();
        starts = starts.clone();
        lengths = lengths.clone();
        for (int i = 0; i < slots.length; i++) {
            if (lengths[i] < 1 || starts[i] < 0 || slots[i] < 0) {
                throw new IllegalArgumentException("sequence " + i + " has length " + lengths[i] + ", start "
                        + starts[i] + ", slot " + slots[i]);
            }
        }
        int[] sorted = slots.clone();
        Arrays.sort(sorted);
        for (int i = 1; i < sorted.length; i++) {
            if (sorted[i] == sorted[i - 1]) {
                throw new IllegalArgumentException("two sequences of one batch continue slot " + sorted[i]
                        + " (slots " + Arrays.toString(slots) + "): each sequence has a slot of its own");
            }
        }
    }

    public int size() {
        return slots.length;
    }

    public int slot(int i) {
        return slots[i];
    }

    public int start(int i) {
        return starts[i];
    }

    public int length(int i) {
        return lengths[i];
    }

    public int offset(int i) {
        int o = 0;
        for (int j = 0; j < i; j++) {
            o += lengths[j];
        }
        return o;
    }

    /** All offsets at once ({@code size() + 1} entries, the last one the total). */
    public int[] offsets() {
        int[] o = new int[lengths.length + 1];
        for (int i = 0; i < lengths.length; i++) {
            o[i + 1] = o[i] + lengths[i];
        }
        return o;
    }

    public int totalTokens() {
        return Arrays.stream(lengths).sum();
    }

    /** The longest sequence's length (0 for no sequence). */
    public int longest() {
        return Arrays.stream(lengths).max().orElse(0);
    }

    /** Row of the last token of each sequence. */
    public int[] lastRows() {
        int[] o = offsets();
        int[] rows = new int[lengths.length];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = o[i + 1] - 1;
        }
        return rows;
    }

    /** One token for each of the given slots at the given positions (a decode step). */
    public static TokenBatch step(int[] slots, int[] positions) {
        int[] ones = new int[slots.length];
        Arrays.fill(ones, 1);
        return new TokenBatch(slots, positions, ones);
    }

    /**
     * A training pass: {@code batch} fresh sequences of {@code seqLen} tokens each, in slots {@code 0 .. batch-1},
     * packed one after another.
     */
    public static TokenBatch uniform(int batch, int seqLen) {
        int[] slots = new int[batch];
        int[] lengths = new int[batch];
        for (int b = 0; b < batch; b++) {
            slots[b] = b;
            lengths[b] = seqLen;
        }
        return new TokenBatch(slots, new int[batch], lengths);
    }

    /** The one length every sequence has; fails naming the lengths when they differ (a training pass is uniform). */
    public int uniformLength() {
        for (int len : lengths) {
            if (len != lengths[0]) {
                throw new IllegalArgumentException("a training pass needs sequences of one length, got "
                        + Arrays.toString(lengths));
            }
        }
        return lengths.length == 0 ? 0 : lengths[0];
    }
}
