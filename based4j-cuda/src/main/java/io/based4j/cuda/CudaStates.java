package io.based4j.cuda;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * Recurrent mixer states in GPU memory, one region per sequence slot (the layouts the kernels expect): linear
 * attention's in float32, the attention key/value cache and BaseConv's history in the backend's compute type (bf16 or
 * float32).
 */
final class CudaStates {
    private CudaStates() {
    }

    /** A state made of regions of a fixed number of values per slot, each value {@code valueBytes} wide. */
    abstract static sealed class Slotted implements Backend.MixerState permits Conv, Linear, KeyValue {
        final CudaBackend backend;
        final int slots;
        final int valueBytes;
        final long[] regions;
        final long[] valuesPerSlot;
        /** Where the regions grow ({@link GrowingRegion}, the same addresses as {@link #regions}); else null. */
        final GrowingRegion[] growing;
        boolean released;

        /**
         * Regions of {@code valuesPerSlot[i]} values a slot; allocated whole and zeroed, or, where {@code grow}, with
         * their addresses reserved and their memory mapped as the slots' sequences reach it ({@link #reach}).
         */
        Slotted(CudaBackend backend, int slots, String what, int valueBytes, boolean grow, long... valuesPerSlot) {
            this.backend = backend;
            this.slots = slots;
            this.valueBytes = valueBytes;
            this.valuesPerSlot = valuesPerSlot;
            this.regions = new long[valuesPerSlot.length];
            this.growing = grow ? new GrowingRegion[valuesPerSlot.length] : null;
            try {
                for (int i = 0; i < regions.length; i++) {
                    long bytes = (long) valueBytes * valuesPerSlot[i] * slots;
                    if (grow) {
                        growing[i] = new GrowingRegion(backend, bytes, what);
                        regions[i] = growing[i].base;
                    } else {
                        regions[i] = backend.allocateZeroed(bytes, what);
                    }
                }
            } catch (RuntimeException e) {
                release();
                throw e;
            }
        }

        /** Where the slot's part of region {@code i} starts (a device address). */
        final long slotStart(int i, int slot) {
            return regions[i] + (long) valueBytes * valuesPerSlot[i] * slot;
        }

        /**
         * Makes the memory of the first {@code values[i]} values of slot {@code slots[i]}'s part of every region there
         * (mapped and zeroed where it was not), all the slots' at once: a no-op for regions allocated whole.
         */
        final void reach(int[] slots, long[] values) {
            if (growing == null) {
                return;
            }
            for (int i = 0; i < regions.length; i++) {
                long[] from = new long[slots.length];
                long[] to = new long[slots.length];
                for (int j = 0; j < slots.length; j++) {
                    from[j] = slotStart(i, slots[j]) - regions[i];
                    to[j] = from[j] + (long) valueBytes * Math.min(values[j], valuesPerSlot[i]);
                }
                growing[i].ensure(from, to);
            }
        }

        /** Maps the first {@code values} values of the slot's part of region {@code i} where it grows. */
        private void reachSlot(int i, int slot, long values) {
            if (growing != null) {
                long from = slotStart(i, slot) - regions[i];
                growing[i].ensure(from, from + (long) valueBytes * values);
            }
        }

        /** Zeros {@code bytes} of region {@code i} from {@code ptr}: the parts of them that are mapped, if it grows. */
        private void zero(int i, long ptr, long bytes) {
            if (growing == null) {
                backend.zeroBytes(ptr, bytes);
            } else {
                growing[i].zero(ptr - regions[i], ptr - regions[i] + bytes);
            }
        }

        @Override
        public void reset(int slot) {
            for (int i = 0; i < regions.length; i++) {
                zero(i, slotStart(i, slot), (long) valueBytes * valuesPerSlot[i]);
            }
        }

        @Override
        public long growableBytes() {
            long sum = 0;
            if (growing != null && !released) {
                for (GrowingRegion g : growing) {
                    sum += g == null ? 0 : g.unmappedBytes();
                }
            }
            return sum;
        }

        @Override
        public void release() {
            if (!released) {
                released = true;
                for (int i = 0; i < regions.length; i++) {
                    if (growing != null) {
                        if (growing[i] != null) {
                            growing[i].release();
                        }
                    } else if (regions[i] != 0) {
                        backend.free(regions[i]);
                    }
                }
            }
        }

        void checkLive() {
            if (released) {
                throw new IllegalStateException("this state was released (its session is closed)");
            }
        }

        /** Values of region {@code region} a snapshot after {@code length} tokens copies: all of the slot's. */
        long copiedValues(int region, int length) {
            return valuesPerSlot[region];
        }

        /** The regions a snapshot copies: the first ones, all but kept work ({@link Linear}'s waiting tokens). */
        int copiedRegions() {
            return regions.length;
        }

        /** What a snapshot must have been taken from to be restored here. */
        String shape() {
            return getClass().getSimpleName() + " state of "
                    + Arrays.toString(Arrays.copyOf(valuesPerSlot, copiedRegions())) + " values of " + valueBytes
                    + " bytes";
        }

        /** Copies the slot's leading values of every region into new device memory (device to device). */
        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            checkLive();
            long[] values = new long[copiedRegions()];
            long[] copies = new long[values.length];
            Copy copy = new Copy(backend, shape(), valueBytes, values, copies);
            try {
                for (int i = 0; i < values.length; i++) {
                    values[i] = copiedValues(i, length);
                }
                for (int i = 0; i < values.length; i++) {
                    reachSlot(i, slot, values[i]);  // what the slot has reached is mapped; this maps no more
                    copies[i] = backend.allocate((long) valueBytes * values[i], "a state snapshot");
                    backend.copyOnDevice(copies[i], slotStart(i, slot), (long) valueBytes * values[i]);
                }
            } catch (RuntimeException e) {
                copy.close();
                throw e;
            }
            return copy;
        }

        /**
         * Copies the snapshot's values to the start of each of the slot's copied regions and zeros the rest of them,
         * and the regions a snapshot does not copy.
         */
        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            checkLive();
            if (!(snapshot instanceof Copy c) || !c.shape.equals(shape()) || c.backend != backend) {
                throw new IllegalArgumentException("cannot restore " + snapshot + " into a " + shape());
            }
            for (int i = 0; i < c.values.length; i++) {
                if (c.values[i] > valuesPerSlot[i]) {
                    throw new IllegalArgumentException("a snapshot of " + c.values[i] + " values does not fit a "
                            + shape() + " per sequence");
                }
            }
            for (int i = 0; i < regions.length; i++) {
                long dst = slotStart(i, slot);
                long copied = i < c.values.length ? c.values[i] : 0;
                reachSlot(i, slot, copied);
                if (copied > 0) {
                    backend.copyOnDevice(dst, c.pointer(i), (long) valueBytes * copied);
                }
                if (copied < valuesPerSlot[i]) {
                    zero(i, dst + (long) valueBytes * copied, (long) valueBytes * (valuesPerSlot[i] - copied));
                }
            }
        }
    }

    /**
     * Device memory whose addresses are reserved whole up front and whose memory is mapped behind them in pieces
     * ({@link CudaBackend#growingPiece}, 2 MiB) as it is first needed ({@link #ensure}), neighbouring pieces needed at
     * once by one mapping, each zeroed as it is mapped.
     * The kernels see one flat region at a fixed address, so steps recorded as graphs stay valid as it grows, and it
     * holds memory for the parts reached. Everything goes back at {@link #release}, or when the backend closes.
     */
    static final class GrowingRegion {
        final CudaBackend backend;
        /** The first reserved address. */
        final long base;
        /** Bytes asked for; the addresses reserved are whole pieces. */
        final long bytes;
        final long piece;
        private final long reserved;
        private final String what;
        /** Whether each piece has memory behind it. */
        private final boolean[] mapped;
        /** At the first piece of each run mapped by one call: the memory's handle and the run's pieces; else 0. */
        private final long[] handles;
        private final int[] runs;
        private int mappedPieces;
        private boolean released;

        GrowingRegion(CudaBackend backend, long bytes, String what) {
            this.backend = backend;
            this.bytes = bytes;
            this.what = what;
            this.piece = backend.growingPiece();
            long pieces = Math.max(1, (bytes + piece - 1) / piece);
            if (pieces > Integer.MAX_VALUE) {
                throw new IllegalArgumentException(what + ": " + bytes + " bytes are more pieces than can be counted");
            }
            this.reserved = pieces * piece;
            this.mapped = new boolean[(int) pieces];
            this.handles = new long[(int) pieces];
            this.runs = new int[(int) pieces];
            this.base = backend.reserveAddresses(this, reserved, what);
        }

        /** Maps the pieces that bytes {@code [from, to)} of the region lie in where none is mapped yet. */
        void ensure(long from, long to) {
            ensure(new long[] {from}, new long[] {to});
        }

        /**
         * Maps the pieces that the byte ranges {@code [from[i], to[i])} lie in where none is mapped yet: each run of
         * such neighbouring pieces by one call ({@link CudaBackend#mapPiece}), so that the ranges of a call's
         * sequences that lie side by side (a prefill of many) cost one mapping, not one a piece.
         */
        void ensure(long[] from, long[] to) {
            if (released) {
                throw new IllegalStateException("this state was released (its session is closed)");
            }
            boolean[] needed = new boolean[mapped.length];
            for (int i = 0; i < from.length; i++) {
                if (from[i] < 0 || to[i] > bytes) {
                    throw new IllegalArgumentException(String.format(Locale.ROOT,
                            "bytes %d to %d of %s, a region of %d bytes", from[i], to[i], what, bytes));
                }
                for (long p = from[i] / piece; from[i] < to[i] && p <= (to[i] - 1) / piece; p++) {
                    needed[(int) p] = !mapped[(int) p];
                }
            }
            for (int[] run : runsOf(needed)) {
                int p = run[0];
                int n = run[1];
                handles[p] = backend.mapPiece(base + p * piece, n * piece, String.format(Locale.ROOT,
                        "%s (%,d bytes more as its sequences grow)", what, n * piece));
                runs[p] = n;
                for (int q = p; q < p + n; q++) {
                    mapped[q] = true;
                }
                mappedPieces += n;
            }
        }

        /** The runs of neighbouring true entries of {@code pieces}: {first, count} each, in order. */
        static List<int[]> runsOf(boolean[] pieces) {
            List<int[]> out = new ArrayList<>();
            for (int p = 0; p < pieces.length; p++) {
                if (pieces[p]) {
                    int q = p;
                    while (q + 1 < pieces.length && pieces[q + 1]) {
                        q++;
                    }
                    out.add(new int[] {p, q - p + 1});
                    p = q;
                }
            }
            return out;
        }

        /** Zeros the mapped parts of bytes {@code [from, to)} (the rest holds nothing to zero). */
        void zero(long from, long to) {
            long at = Math.max(0, from);
            long end = Math.min(to, bytes);
            while (at < end) {
                int p = (int) (at / piece);
                long pieceEnd = Math.min(end, (p + 1L) * piece);
                if (mapped[p]) {
                    backend.zeroBytes(base + at, pieceEnd - at);
                }
                at = pieceEnd;
            }
        }

        /** Bytes of the region with no memory behind them yet. */
        long unmappedBytes() {
            return Math.max(0, bytes - (long) mappedPieces * piece);
        }

        /**
         * Unmaps and gives back every run, then the addresses. A run that cannot be unmapped stays recorded and the
         * addresses reserved, and the first failure is thrown once the other runs are back: a later release (the
         * backend's close) tries again.
         */
        void release() {
            if (released) {
                return;
            }
            RuntimeException failed = null;
            for (int p = 0; p < runs.length; p++) {
                if (runs[p] > 0) {
                    try {
                        backend.unmapPiece(base + p * piece, runs[p] * piece, handles[p]);
                    } catch (RuntimeException e) {
                        failed = failed == null ? e : failed;
                        continue;
                    }
                    Arrays.fill(mapped, p, p + runs[p], false);
                    mappedPieces -= runs[p];
                    handles[p] = 0;
                    runs[p] = 0;
                }
            }
            if (failed != null) {
                throw failed;
            }
            backend.freeAddresses(this, base, reserved);
            released = true;
        }
    }

    /** A copy of one slot of a state in device memory: the leading values of each region. */
    static final class Copy implements Backend.Snapshot {
        final CudaBackend backend;
        final String shape;
        final int valueBytes;
        final long[] values;
        private final long[] pointers;
        private boolean closed;

        Copy(CudaBackend backend, String shape, int valueBytes, long[] values, long[] pointers) {
            this.backend = backend;
            this.shape = shape;
            this.valueBytes = valueBytes;
            this.values = values;
            this.pointers = pointers;
        }

        long pointer(int region) {
            if (closed) {
                throw new IllegalStateException("the state snapshot is closed");
            }
            return pointers[region];
        }

        @Override
        public long bytes() {
            return valueBytes * Arrays.stream(values).sum();
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                for (long p : pointers) {
                    if (p != 0) {
                        backend.free(p);
                    }
                }
            }
        }

        @Override
        public String toString() {
            return "a snapshot of a " + shape;
        }
    }

    /**
     * The last {@code kernel - 1} conv inputs, {@code [slot][tap][channel]}, oldest first, in the compute type (they
     * are values of the in-projection's output, which has that type: bf16 keeps them exactly in half the bytes).
     */
    static final class Conv extends Slotted {
        final int channels;
        final int kernel;

        Conv(CudaBackend backend, int slots, int channels, int kernel) {
            super(backend, slots, "BaseConv state", backend.cacheValueBytes(), false, (long) (kernel - 1) * channels);
            this.channels = channels;
            this.kernel = kernel;
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return (long) valueBytes * (kernel - 1) * channels;
        }
    }

    /**
     * {@code S} as {@code [slot][head][feature][dh]} and {@code z} as {@code [slot][head][feature]}, merged features;
     * where the decode step defers the state's update ({@link Kernels#linearAttentionDecodeDeferred}, every
     * {@link #steps} steps at most), the keys and values of the tokens since the last write
     * ({@code [slot][head][steps - 1][f + dh]}), their count ({@code [slot][head]}, int32) and a work area
     * ({@code [slot][head]} of {@link Kernels#linearDeferWorkFloats}) beside them.
     */
    static final class Linear extends Slotted {
        final int heads;
        final int featureDim;
        final int headDim;
        /** The most decode steps between two writes of S and z; 1 where every step writes them. */
        final int steps;

        /**
         * Where the update is deferred, the slots' numbers 0, 1, .. on the device: from {@code slotNumbers + 4 slot},
         * the layout of a call of that slot alone for {@link Kernels#linearAttentionFold} (which reads its slots
         * only); else 0.
         */
        private final long slotNumbers;

        Linear(CudaBackend backend, int slots, int heads, int featureDim, int headDim, int steps) {
            super(backend, slots, "linear attention state", 4, false, regions(heads, featureDim, headDim, steps));
            this.heads = heads;
            this.featureDim = featureDim;
            this.headDim = headDim;
            this.steps = steps;
            long numbers = 0;
            if (steps >= 2) {
                try {
                    numbers = backend.uploadInts(java.util.stream.IntStream.range(0, slots).toArray(),
                            "linear attention state's slot numbers");
                } catch (RuntimeException e) {
                    super.release();
                    throw e;
                }
            }
            this.slotNumbers = numbers;
        }

        /**
         * S and z only: the tokens waiting are added in first ({@link #snapshot}); a snapshot restores into a state
         * that defers its update or not alike, nothing waiting after it.
         */
        @Override
        int copiedRegions() {
            return 2;
        }

        /**
         * The slot's S and z with the tokens waiting beside them added in first (the state the model defines, as a
         * step-by-step update holds it; the slot's state is written so, the same values, and its next steps' outputs
         * sum in the order of a state with nothing waiting); restored, nothing waits.
         */
        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            checkLive();
            if (deferred()) {
                backend.kernels().linearAttentionFold(backend.precision(), kv(), k(), pending(), counts(),
                        slotNumbers + 4L * slot, 1, heads, featureDim, headDim, steps);
            }
            return super.snapshot(slot, length);
        }

        @Override
        public void release() {
            if (!released && slotNumbers != 0) {
                backend.free(slotNumbers);
            }
            super.release();
        }

        /**
         * S's, z's and, where the update is deferred, the waiting tokens', their counts' and the work areas' values a
         * slot.
         */
        static long[] regions(int heads, int featureDim, int headDim, int steps) {
            long e = MixerConfig.LinearAttention.expandedDim(featureDim);
            return steps < 2 ? new long[] {heads * e * headDim, heads * e}
                    : new long[] {heads * e * headDim, heads * e, (long) heads * (steps - 1) * (featureDim + headDim),
                            heads, heads * Kernels.linearDeferWorkFloats(featureDim, headDim)};
        }

        long kv() {
            return regions[0];
        }

        long k() {
            return regions[1];
        }

        /** Whether the decode step defers the update: the waiting tokens at {@link #pending}, counted at {@link #counts}. */
        boolean deferred() {
            return steps >= 2;
        }

        long pending() {
            return regions[2];
        }

        long counts() {
            return regions[3];
        }

        /** Where the update is deferred, a (slot, head)'s work area of the decode step's version 9. */
        long work() {
            return regions[4];
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 4L * Arrays.stream(valuesPerSlot).sum();
        }

        /** S and z: the waiting tokens are added in before a snapshot, not copied. */
        @Override
        public long snapshotBytes(int length) {
            return 4L * (valuesPerSlot[0] + valuesPerSlot[1]);
        }
    }

    /**
     * Rotated keys and values, {@code [slot][position % capacity][d]} in the backend's compute type: a ring of the
     * last {@code window} tokens for sliding-window attention, the whole context for full attention; plus the rotary
     * table (float32) for its positions. A full cache, where the backend grows caches
     * ({@link CudaBackend#growsMemory}), holds memory for the positions its sequences reached ({@link #reserve}, in
     * pieces of {@link GrowingRegion}), not for {@code capacity} tokens each from the start; a ring is made whole.
     */
    static final class KeyValue extends Slotted {
        final int capacity;
        final int width;
        final int maxPos;
        final boolean ring;
        final long rotary;
        /** Blocks a decode step's query splits its keys into ({@link Kernels#attentionDecode}); 0: not split. */
        final int splits;
        /** The split decode's partial results, {@code [slot][head][split][2 + head dim]} float32 (0: not split). */
        final long partial;

        KeyValue(CudaBackend backend, int slots, int capacity, boolean ring, MixerConfig.Attention cfg, int maxPos,
                 float[] rotaryTable) {
            super(backend, slots, "attention key/value cache", backend.cacheValueBytes(),
                    !ring && backend.growsMemory(), (long) capacity * cfg.dModel(), (long) capacity * cfg.dModel());
            this.capacity = capacity;
            this.ring = ring;
            this.width = cfg.dModel();
            this.maxPos = maxPos;
            // the keys a decode step's query sees at most: its window and itself, or every position
            long keysSeen = Math.min((long) maxPos, ring ? (long) cfg.window() + 1 : maxPos);
            this.splits = Kernels.decodeSplits(cfg.headDim()) ? Kernels.decodeSplitCount(keysSeen) : 0;
            long r = 0;
            long part = 0;
            try {
                r = backend.uploadFloats(rotaryTable, "rotary table");
                if (splits > 0) {  // a small fraction of the cache: (2 + dh) floats a head per 256 keys
                    part = backend.allocate(4L * slots * cfg.numHeads() * splits * (2L + cfg.headDim()),
                            "split decode attention scratch");
                }
            } catch (RuntimeException e) {
                if (r != 0) {
                    backend.free(r);
                }
                release();
                throw e;
            }
            this.rotary = r;
            this.partial = part;
        }

        long keys() {
            return regions[0];
        }

        /** Maps the memory of the positions each sequence of the batch reaches in this call (a full cache's). */
        @Override
        public void reserve(TokenBatch batch) {
            checkLive();
            if (growing == null) {
                return;
            }
            int[] at = new int[batch.size()];
            long[] values = new long[batch.size()];
            for (int i = 0; i < batch.size(); i++) {
                at[i] = batch.slot(i);
                if (at[i] < 0 || at[i] >= slots) {
                    throw new IllegalArgumentException("slot " + at[i] + " of a key/value cache of " + slots + " slots");
                }
                values[i] = Math.min((long) capacity, (long) batch.start(i) + batch.length(i)) * width;
            }
            reach(at, values);
        }

        long values() {
            return regions[1];
        }

        @Override
        public void release() {
            if (!released) {
                if (rotary != 0) {
                    backend.free(rotary);
                }
                if (partial != 0) {
                    backend.free(partial);
                }
            }
            super.release();
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 2L * valueBytes * width * (ring ? capacity : contextLength);
        }

        /** The whole ring of a sliding window; the first {@code length} tokens of a full cache. */
        @Override
        long copiedValues(int region, int length) {
            if (ring) {
                return super.copiedValues(region, length);
            }
            if (length < 0 || length > capacity) {
                throw new IllegalArgumentException("a snapshot of " + length + " tokens of a key/value cache of "
                        + capacity + " tokens");
            }
            return (long) length * width;
        }

        /** A full cache takes the snapshot of any shorter one of its width. */
        @Override
        String shape() {
            return ring ? super.shape() : "full attention key/value cache of width " + width;
        }
    }
}
