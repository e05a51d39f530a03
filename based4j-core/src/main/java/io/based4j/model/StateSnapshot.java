package io.based4j.model;

import io.based4j.backend.Backend;

/**
 * The recurrent state of one sequence after its first {@link #position()} tokens, copied out of a {@link Session}
 * slot ({@link Session#snapshot}) and kept where the backend keeps states, to be {@linkplain Session#restore
 * restored} into a slot of any session of the same model: the sequence then continues as if it had been fed those
 * tokens. Close it to give its memory back at once (on a GPU).
 */
public final class StateSnapshot implements AutoCloseable {
    private final BasedModel model;
    private final Backend.Snapshot[] layers;
    private final int position;
    private final long bytes;
    private boolean closed;

    StateSnapshot(BasedModel model, Backend.Snapshot[] layers, int position) {
        this.model = model;
        this.layers = layers;
        this.position = position;
        long sum = 0;
        for (Backend.Snapshot s : layers) {
            sum += s.bytes();
        }
        this.bytes = sum;
    }

    /** Tokens the sequence had seen. */
    public int position() {
        return position;
    }

    /** Bytes the copy holds, all layers together. */
    public long bytes() {
        return bytes;
    }

    BasedModel model() {
        return model;
    }

    Backend.Snapshot layer(int i) {
        if (closed) {
            throw new IllegalStateException("the state snapshot is closed");
        }
        return layers[i];
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            for (Backend.Snapshot s : layers) {
                s.close();
            }
        }
    }
}
