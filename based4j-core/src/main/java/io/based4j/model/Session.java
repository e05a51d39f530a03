package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * Per-sequence recurrent state of a model: one mixer state per layer for each of {@code slots} sequences, how many
 * tokens each sequence has seen, and the workspace of activations its forward calls use (at most
 * {@link #maxTokensPerCall()} tokens per call). Close it to give its memory back at once (on a GPU); an unclosed
 * session's memory goes back when the backend closes.
 */
public final class Session implements AutoCloseable {
    private final BasedModel model;
    private final Backend.MixerState[] states;
    private final int[] positions;
    private final int maxLength;
    private final Workspace workspace;
    /** Recorded decode steps by number of sequences. */
    private final Map<Integer, Backend.Graph> graphs = new HashMap<>();
    private boolean useGraphs = true;
    private boolean closed;

    Session(BasedModel model, Backend.MixerState[] states, int slots, int maxLength, Workspace workspace) {
        this.model = model;
        this.states = states;
        this.positions = new int[slots];
        this.maxLength = maxLength;
        this.workspace = workspace;
    }

    Workspace workspace() {
        if (closed) {
            throw new IllegalStateException("the session is closed");
        }
        return workspace;
    }

    /** Most tokens (all sequences together) one forward call may take. */
    public int maxTokensPerCall() {
        return workspace.capacity;
    }

    /**
     * Whether decode steps are recorded once per batch size and replayed (where the backend can, as CUDA graphs).
     * On by default; off runs every op of every step.
     */
    public Session useGraphs(boolean on) {
        this.useGraphs = on;
        return this;
    }

    /** Whether decode steps are recorded and replayed where the backend can ({@link #useGraphs}). */
    public boolean usesGraphs() {
        return useGraphs;
    }

    Backend.Graph graph(int sequences) {
        return graphs.get(sequences);
    }

    void putGraph(int sequences, Backend.Graph graph) {
        graphs.put(sequences, graph);
    }

    BasedModel model() {
        return model;
    }

    /** Every layer's recurrent state, in layer order. */
    Backend.MixerState[] states() {
        return states;
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

    /**
     * Bytes a {@link #snapshot} of a sequence that has seen {@code length} tokens holds: the fixed-size states, and
     * the key/value caches of full attention layers up to that length.
     */
    /**
     * Bytes the session's states may still take as its sequences grow ({@link Backend.MixerState#growableBytes}):
     * memory budgets beside the session count them as held.
     */
    public long growableBytes() {
        long sum = 0;
        for (Backend.MixerState s : states) {
            sum += s.growableBytes();
        }
        return sum;
    }

    public long snapshotBytes(int length) {
        long sum = 0;
        for (Backend.MixerState s : states) {
            sum += s.snapshotBytes(length);
        }
        return sum;
    }

    /**
     * Copies the state of the sequence in {@code slot} (every layer's, and its position); the slot's sequence is
     * unchanged (a backend may bring work it keeps beside a state into it first, the state's values the same).
     */
    public StateSnapshot snapshot(int slot) {
        workspace();
        Backend.Snapshot[] layers = new Backend.Snapshot[states.length];
        try {
            for (int i = 0; i < states.length; i++) {
                layers[i] = states[i].snapshot(slot, positions[slot]);
            }
        } catch (RuntimeException e) {
            for (Backend.Snapshot s : layers) {
                if (s != null) {
                    s.close();
                }
            }
            throw e;
        }
        return new StateSnapshot(model, layers, positions[slot]);
    }

    /**
     * Puts the sequence of {@code snapshot} in {@code slot}: it continues from the snapshot's position exactly as
     * the sequence it was taken from would have. The snapshot stays usable.
     *
     * @throws IllegalArgumentException when the snapshot belongs to another model or is longer than this session's
     *                                  sequences
     */
    public void restore(int slot, StateSnapshot snapshot) {
        workspace();
        if (snapshot.model() != model) {
            throw new IllegalArgumentException("the state snapshot belongs to another model");
        }
        if (snapshot.position() > maxLength) {
            throw new IllegalArgumentException("a state snapshot of " + snapshot.position() + " tokens does not fit"
                    + " the session's sequences of at most " + maxLength + " tokens");
        }
        for (int i = 0; i < states.length; i++) {
            states[i].restore(slot, snapshot.layer(i));
        }
        positions[slot] = snapshot.position();
    }

    /** A batch that continues the given slots with the given numbers of tokens. */
    public TokenBatch batch(int[] slots, int[] lengths) {
        int[] starts = new int[slots.length];
        for (int i = 0; i < slots.length; i++) {
            starts[i] = positions[slots[i]];
        }
        return new TokenBatch(slots, starts, lengths);
    }

    /** A decode step of the given slots: one token each, at its position. */
    public TokenBatch step(int[] slots) {
        int[] at = new int[slots.length];
        for (int i = 0; i < slots.length; i++) {
            at[i] = positions[slots[i]];
        }
        return TokenBatch.step(slots, at);
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
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        graphs.values().forEach(Backend.Graph::close);
        graphs.clear();
        workspace.release();
        for (Backend.MixerState s : states) {
            s.release();
        }
    }

    @Override
    public String toString() {
        return "Session[slots=" + positions.length + ", positions=" + Arrays.toString(positions) + "]";
    }
}
