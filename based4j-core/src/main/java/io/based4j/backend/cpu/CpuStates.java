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

        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            return new Copy(shape(), history[slot].clone());
        }

        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            Copy.of(snapshot, shape(), 1).into(history[slot], 0);
        }

        private String shape() {
            return "BaseConv state of " + taps + " x " + channels;
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

        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            return new Copy(shape(), kv[slot].clone(), k[slot].clone());
        }

        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            Copy copy = Copy.of(snapshot, shape(), 2);
            copy.into(kv[slot], 0);
            copy.into(k[slot], 1);
        }

        private String shape() {
            return "linear attention state of " + heads + " x " + features + " x " + headDim;
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

        /** The whole ring of a sliding window; the first {@code length} tokens of a full cache. */
        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            if (length < 0 || (!ring && length > capacity)) {
                throw new IllegalArgumentException("a snapshot of " + length + " tokens of a key/value cache of "
                        + capacity + " tokens");
            }
            int floats = (ring ? capacity : length) * width;
            return new Copy(shape(), Arrays.copyOf(keys[slot], floats), Arrays.copyOf(values[slot], floats));
        }

        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            Copy copy = Copy.of(snapshot, shape(), 2);
            if (copy.parts[0].length > keys[slot].length) {
                throw new IllegalArgumentException("a snapshot of " + copy.parts[0].length / width + " tokens does"
                        + " not fit a key/value cache of " + capacity + " tokens");
            }
            copy.into(keys[slot], 0);
            copy.into(values[slot], 1);
        }

        private String shape() {
            return (ring ? "sliding window key/value ring of " + capacity + " tokens" : "key/value cache") + " of width "
                    + width;
        }
    }

    /** A copy of one slot of a state: the leading values of each of its arrays, and the shape of state they fit. */
    record Copy(String shape, float[]... parts) implements Backend.Snapshot {
        static Copy of(Backend.Snapshot snapshot, String shape, int parts) {
            if (!(snapshot instanceof Copy c) || !c.shape.equals(shape) || c.parts.length != parts) {
                throw new IllegalArgumentException("cannot restore " + snapshot + " into a " + shape);
            }
            return c;
        }

        /** Writes part {@code part} to the start of {@code slot} and zeros the rest of it. */
        void into(float[] slot, int part) {
            float[] values = parts[part];
            System.arraycopy(values, 0, slot, 0, values.length);
            Arrays.fill(slot, values.length, slot.length, 0f);
        }

        @Override
        public long bytes() {
            long floats = 0;
            for (float[] p : parts) {
                floats += p.length;
            }
            return 4L * floats;
        }

        @Override
        public String toString() {
            return "a snapshot of a " + shape;
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
