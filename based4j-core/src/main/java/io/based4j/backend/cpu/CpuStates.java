package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import java.util.Arrays;

/** Recurrent mixer states kept in heap arrays, one row per sequence slot. */
final class CpuStates {
    private CpuStates() {
    }

    /** The last {@code kernel - 1} inputs of the convolution, {@code [slot][tap][channel]}, oldest first. */
    static final class Conv implements Backend.MixerState {
        final float[][] history;
        final int channels;
        final int taps;

        Conv(int slots, int channels, int kernel) {
            this.channels = channels;
            this.taps = kernel - 1;
            this.history = new float[slots][taps * channels];
        }

        @Override
        public void reset(int slot) {
            Arrays.fill(history[slot], 0f);
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 4L * taps * channels;
        }
    }

    /** {@code S = sum phi(k) v^T} as {@code [slot][head][feature][dh]} and {@code z = sum phi(k)} as {@code [slot][head][feature]}. */
    static final class Linear implements Backend.MixerState {
        final float[][] kv;
        final float[][] k;
        final int heads;
        final int features;
        final int headDim;

        Linear(int slots, int heads, int features, int headDim) {
            this.heads = heads;
            this.features = features;
            this.headDim = headDim;
            this.kv = new float[slots][heads * features * headDim];
            this.k = new float[slots][heads * features];
        }

        @Override
        public void reset(int slot) {
            Arrays.fill(kv[slot], 0f);
            Arrays.fill(k[slot], 0f);
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 4L * heads * features * (headDim + 1L);
        }
    }

    /**
     * Rotated keys and values of earlier tokens, {@code [slot][position % capacity][d]}: a ring buffer of the last
     * {@code capacity} tokens for sliding-window attention, the whole cache for full attention.
     */
    static final class KeyValue implements Backend.MixerState {
        final float[][] keys;
        final float[][] values;
        final int capacity;
        final int width;
        final boolean ring;

        KeyValue(int slots, int capacity, int width, boolean ring) {
            this.capacity = capacity;
            this.width = width;
            this.ring = ring;
            this.keys = new float[slots][Math.multiplyExact(capacity, width)];
            this.values = new float[slots][Math.multiplyExact(capacity, width)];
        }

        @Override
        public void reset(int slot) {
            Arrays.fill(keys[slot], 0f);
            Arrays.fill(values[slot], 0f);
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            long tokens = ring ? capacity : contextLength;
            return 2L * 4L * tokens * width;
        }
    }

    static <T extends Backend.MixerState> T cast(Backend.MixerState s, Class<T> type, String op) {
        if (type.isInstance(s)) {
            return type.cast(s);
        }
        throw new IllegalArgumentException(op + " was given a state of the wrong kind: " + s.getClass().getSimpleName());
    }
}
