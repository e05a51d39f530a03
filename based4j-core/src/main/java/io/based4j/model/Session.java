package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import java.util.Arrays;

/**
 * Per-sequence recurrent state of a model: one mixer state per layer for each of {@code slots} sequences, and
 * how many tokens each sequence has seen.
 */
public final class Session {
    private final BasedModel model;
    private final Backend.MixerState[] states;
    private final int[] positions;
    private final int maxLength;

    Session(BasedModel model, Backend.MixerState[] states, int slots, int maxLength) {
        this.model = model;
        this.states = states;
        this.positions = new int[slots];
        this.maxLength = maxLength;
    }

    BasedModel model() {
        return model;
    }

    Backend.MixerState state(int layer) {
        return states[layer];
    }

    public int slots() {
        return positions.length;
    }

    public int maxLength() {
        return maxLength;
    }

    /** Tokens seen so far by the sequence in {@code slot}. */
    public int position(int slot) {
        return positions[slot];
    }

    /** Forgets the sequence in {@code slot}. */
    public void reset(int slot) {
        for (Backend.MixerState s : states) {
            s.reset(slot);
        }
        positions[slot] = 0;
    }

    /** A batch that continues the given slots with the given numbers of tokens. */
    public TokenBatch batch(int[] slots, int[] lengths) {
        int[] starts = new int[slots.length];
        for (int i = 0; i < slots.length; i++) {
            starts[i] = positions[slots[i]];
        }
        return new TokenBatch(slots, starts, lengths);
    }

    void checkBatch(TokenBatch batch) {
        boolean[] seen = new boolean[positions.length];
        for (int i = 0; i < batch.size(); i++) {
            int slot = batch.slot(i);
            if (slot >= positions.length) {
                throw new IllegalArgumentException("slot " + slot + " is outside the session's " + positions.length + " slots");
            }
            if (seen[slot]) {
                throw new IllegalArgumentException("slot " + slot + " appears twice in one batch");
            }
            seen[slot] = true;
            if (batch.start(i) != positions[slot]) {
                throw new IllegalArgumentException("slot " + slot + " is at position " + positions[slot]
                        + " but the batch starts it at " + batch.start(i));
            }
            if (positions[slot] + batch.length(i) > maxLength) {
                throw new IllegalStateException("sequence in slot " + slot + " would reach "
                        + (positions[slot] + batch.length(i)) + " tokens, past the session's maximum of " + maxLength);
            }
        }
    }

    void advance(TokenBatch batch) {
        for (int i = 0; i < batch.size(); i++) {
            positions[batch.slot(i)] += batch.length(i);
        }
    }

    @Override
    public String toString() {
        return "Session[slots=" + positions.length + ", positions=" + Arrays.toString(positions) + "]";
    }
}
