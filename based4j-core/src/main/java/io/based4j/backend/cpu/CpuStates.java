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
     * Rotated keys and values of earlier tokens, a row of {@code d} floats a position: for sliding-window attention a
     * ring of the last {@code capacity} tokens ({@code position % capacity}), held whole from the start; for full
     * attention pages of {@link #PAGE_TOKENS} tokens, each made when its sequence first reaches it ({@link #ensure})
     * and dropped when the slot is reset, so that a sequence holds memory for the tokens it has seen, not for the
     * longest context ({@code capacity}) it may reach.
     */
    static final class KeyValue implements Backend.MixerState {
        /** Tokens a page of a full cache holds. */
        static final int PAGE_TOKENS = 256;
        final int capacity;
        final int width;
        final boolean ring;
        /** Tokens a page holds: the whole ring, or {@link #PAGE_TOKENS} (fewer where the capacity is less). */
        private final int pageTokens;
        /** [slot][page]: {@code pageTokens * width} floats, null until the page is first needed. */
        private final float[][][] keys;
        private final float[][][] values;
        private final HostMemory memory;

        KeyValue(HostMemory memory, int slots, int capacity, int width, boolean ring) {
            this.capacity = capacity;
            this.width = width;
            this.ring = ring;
            this.memory = memory;
            String what = String.format(Locale.ROOT, "the key/value cache of %,d tokens", capacity);
            int length = Sizes.arrayLength(capacity, width, what);
            this.pageTokens = ring ? capacity : Math.max(1, Math.min(PAGE_TOKENS, capacity));
            int pages = ring ? 1 : (capacity + pageTokens - 1) / pageTokens;
            this.keys = new float[slots][pages][];
            this.values = new float[slots][pages][];
            if (ring) {  // a window's ring is small and fixed: held whole from the start
                require(memory, slots, 2L * length, what);
                for (int s = 0; s < slots; s++) {
                    keys[s][0] = new float[length];
                    values[s][0] = new float[length];
                }
            }
        }

        /**
         * Makes the pages that hold positions {@code [0, length)} of {@code slot} (a ring's are there already), the
         * memory checked first.
         *
         * @throws io.based4j.memory.NotEnoughMemoryException when the heap cannot hold a new page
         */
        void ensure(int slot, int length) {
            if (ring) {
                return;
            }
            int need = (Math.min(length, capacity) + pageTokens - 1) / pageTokens;
            for (int p = 0; p < need; p++) {
                if (keys[slot][p] == null) {
                    memory.requireHeap(2L * Float.BYTES * pageTokens * width, String.format(Locale.ROOT,
                            "a page of %,d tokens of the key/value cache (tokens %,d to %,d of a sequence)",
                            pageTokens, (long) p * pageTokens, (long) (p + 1) * pageTokens - 1));
                    keys[slot][p] = new float[pageTokens * width];
                    values[slot][p] = new float[pageTokens * width];
                }
            }
        }

        /** The page holding the keys of {@code position} of {@code slot} (made by {@link #ensure}). */
        float[] keyPage(int slot, int position) {
            return keys[slot][ring ? 0 : position / pageTokens];
        }

        /** The page holding the values of {@code position} of {@code slot}. */
        float[] valuePage(int slot, int position) {
            return values[slot][ring ? 0 : position / pageTokens];
        }

        /** Where the row of {@code position} starts in its page. */
        int row(int position) {
            return (ring ? position % capacity : position % pageTokens) * width;
        }

        @Override
        public long growableBytes() {
            long missing = 0;
            for (float[][] slot : keys) {
                for (float[] page : slot) {
                    missing += page == null ? 1 : 0;
                }
            }
            return missing * 2L * Float.BYTES * pageTokens * width;
        }

        /** Floats this state holds for {@code slot} now (a full cache's pages grow with its sequence). */
        long heldFloats(int slot) {
            long floats = 0;
            for (float[] page : keys[slot]) {
                floats += page == null ? 0 : 2L * page.length;
            }
            return floats;
        }

        @Override
        public void reset(int slot) {
            if (ring) {
                Arrays.fill(keys[slot][0], 0f);
                Arrays.fill(values[slot][0], 0f);
            } else {
                Arrays.fill(keys[slot], null);
                Arrays.fill(values[slot], null);
            }
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
            int tokens = ring ? capacity : length;
            return new Copy(shape(), gather(keys[slot], tokens), gather(values[slot], tokens));
        }

        /** The first {@code tokens} rows of a slot's pages, one after another (zeros where no page was made). */
        private float[] gather(float[][] pages, int tokens) {
            float[] out = new float[tokens * width];
            for (int p = 0; (long) p * pageTokens < tokens; p++) {
                int from = p * pageTokens;
                int rows = Math.min(pageTokens, tokens - from);
                if (pages[p] != null) {
                    System.arraycopy(pages[p], 0, out, from * width, rows * width);
                }
            }
            return out;
        }

        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            Copy copy = Copy.of(snapshot, shape(), 2);
            int tokens = copy.parts[0].length / width;
            if (tokens > capacity) {
                throw new IllegalArgumentException("a snapshot of " + tokens + " tokens does"
                        + " not fit a key/value cache of " + capacity + " tokens");
            }
            if (ring) {
                copy.into(keys[slot][0], 0);
                copy.into(values[slot][0], 1);
                return;
            }
            reset(slot);
            ensure(slot, tokens);
            for (int p = 0; (long) p * pageTokens < tokens; p++) {
                int from = p * pageTokens;
                int rows = Math.min(pageTokens, tokens - from);
                System.arraycopy(copy.parts[0], from * width, keys[slot][p], 0, rows * width);
                System.arraycopy(copy.parts[1], from * width, values[slot][p], 0, rows * width);
            }
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
