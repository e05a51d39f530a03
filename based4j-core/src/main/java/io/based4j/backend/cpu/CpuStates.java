package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import io.based4j.memory.HostMemory;
import io.based4j.memory.Sizes;
import java.util.Arrays;
import java.util.Locale;

/** Recurrent mixer states kept in heap arrays, one row per sequence slot. */
final class CpuStates {
    private CpuStates() {
    }

    /** The last {@code kernel - 1} inputs of the convolution, {@code [slot][tap][channel]}, oldest first. */
    static final class Conv implements Backend.MixerState {
        final float[][] history;
        final int channels;
        final int taps;

        Conv(HostMemory memory, int slots, int channels, int kernel) {
            this.channels = channels;
            this.taps = kernel - 1;
            int length = Sizes.arrayLength(taps, channels, "BaseConv state");
            require(memory, slots, length, "the BaseConv state");
            this.history = new float[slots][length];
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

        Linear(HostMemory memory, int slots, int heads, int features, int headDim) {
            this.heads = heads;
            this.features = features;
            this.headDim = headDim;
            int kvLength = Sizes.arrayLength((long) heads * features, headDim, "linear attention state");
            int kLength = Sizes.arrayLength(heads, features, "linear attention normalizer");
            require(memory, slots, (long) kvLength + kLength, "the linear attention state");
            this.kv = new float[slots][kvLength];
            this.k = new float[slots][kLength];
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

        KeyValue(HostMemory memory, int slots, int capacity, int width, boolean ring) {
            this.capacity = capacity;
            this.width = width;
            this.ring = ring;
            String what = String.format(Locale.ROOT, "the key/value cache of %,d tokens", capacity);
            int length = Sizes.arrayLength(capacity, width, what);
            require(memory, slots, 2L * length, what);
            this.keys = new float[slots][length];
            this.values = new float[slots][length];
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

    /** Refuses {@code floatsPerSlot} floats for each of {@code slots} sequences when they do not fit in the heap. */
    private static void require(HostMemory memory, int slots, long floatsPerSlot, String what) {
        memory.requireHeap(Sizes.product(Float.BYTES, slots, floatsPerSlot),
                String.format(Locale.ROOT, "%s of %,d sequences", what, slots));
    }

    static <T extends Backend.MixerState> T cast(Backend.MixerState s, Class<T> type, String op) {
        if (type.isInstance(s)) {
            return type.cast(s);
        }
        throw new IllegalArgumentException(op + " was given a state of the wrong kind: " + s.getClass().getSimpleName());
    }
}
