package io.based4j.cuda;

import io.based4j.backend.Backend;
import io.based4j.config.MixerConfig;
import java.util.Arrays;

/**
 * Recurrent mixer states in GPU memory, one region per sequence slot (the layouts the kernels expect): float32, but
 * the attention key/value cache in the backend's compute type (bf16 or float32).
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
        boolean released;

        Slotted(CudaBackend backend, int slots, String what, int valueBytes, long... valuesPerSlot) {
            this.backend = backend;
            this.slots = slots;
            this.valueBytes = valueBytes;
            this.valuesPerSlot = valuesPerSlot;
            this.regions = new long[valuesPerSlot.length];
            try {
                for (int i = 0; i < regions.length; i++) {
                    regions[i] = backend.allocateZeroed((long) valueBytes * valuesPerSlot[i] * slots, what);
                }
            } catch (RuntimeException e) {
                release();
                throw e;
            }
        }

        @Override
        public void reset(int slot) {
            for (int i = 0; i < regions.length; i++) {
                backend.zeroBytes(regions[i] + (long) valueBytes * valuesPerSlot[i] * slot,
                        (long) valueBytes * valuesPerSlot[i]);
            }
        }

        @Override
        public void release() {
            if (!released) {
                released = true;
                for (long r : regions) {
                    if (r != 0) {
                        backend.free(r);
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

        /** What a snapshot must have been taken from to be restored here. */
        String shape() {
            return getClass().getSimpleName() + " state of " + Arrays.toString(valuesPerSlot) + " values of "
                    + valueBytes + " bytes";
        }

        /** Copies the slot's leading values of every region into new device memory (device to device). */
        @Override
        public Backend.Snapshot snapshot(int slot, int length) {
            checkLive();
            long[] values = new long[regions.length];
            long[] copies = new long[regions.length];
            Copy copy = new Copy(backend, shape(), valueBytes, values, copies);
            try {
                for (int i = 0; i < regions.length; i++) {
                    values[i] = copiedValues(i, length);
                    copies[i] = backend.allocate((long) valueBytes * values[i], "a state snapshot");
                    backend.copyOnDevice(copies[i], regions[i] + (long) valueBytes * valuesPerSlot[i] * slot,
                            (long) valueBytes * values[i]);
                }
            } catch (RuntimeException e) {
                copy.close();
                throw e;
            }
            return copy;
        }

        /** Copies the snapshot's values to the start of each of the slot's regions and zeros the rest of them. */
        @Override
        public void restore(int slot, Backend.Snapshot snapshot) {
            checkLive();
            if (!(snapshot instanceof Copy c) || !c.shape.equals(shape()) || c.backend != backend) {
                throw new IllegalArgumentException("cannot restore " + snapshot + " into a " + shape());
            }
            for (int i = 0; i < regions.length; i++) {
                if (c.values[i] > valuesPerSlot[i]) {
                    throw new IllegalArgumentException("a snapshot of " + c.values[i] + " values does not fit a "
                            + shape() + " per sequence");
                }
            }
            for (int i = 0; i < regions.length; i++) {
                long dst = regions[i] + (long) valueBytes * valuesPerSlot[i] * slot;
                backend.copyOnDevice(dst, c.pointer(i), (long) valueBytes * c.values[i]);
                if (c.values[i] < valuesPerSlot[i]) {
                    backend.zeroBytes(dst + (long) valueBytes * c.values[i],
                            (long) valueBytes * (valuesPerSlot[i] - c.values[i]));
                }
            }
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

    /** The last {@code kernel - 1} conv inputs, {@code [slot][tap][channel]}, oldest first. */
    static final class Conv extends Slotted {
        final int channels;
        final int kernel;

        Conv(CudaBackend backend, int slots, int channels, int kernel) {
            super(backend, slots, "BaseConv state", 4, (long) (kernel - 1) * channels);
            this.channels = channels;
            this.kernel = kernel;
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 4L * (kernel - 1) * channels;
        }
    }

    /** {@code S} as {@code [slot][head][feature][dh]} and {@code z} as {@code [slot][head][feature]}, merged features. */
    static final class Linear extends Slotted {
        final int heads;
        final int features;
        final int headDim;

        Linear(CudaBackend backend, int slots, int heads, int features, int headDim) {
            super(backend, slots, "linear attention state", 4, (long) heads * features * headDim,
                    (long) heads * features);
            this.heads = heads;
            this.features = features;
            this.headDim = headDim;
        }

        long kv() {
            return regions[0];
        }

        long k() {
            return regions[1];
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 4L * heads * features * (headDim + 1L);
        }
    }

    /**
     * Rotated keys and values, {@code [slot][position % capacity][d]} in the backend's compute type: a ring of the
     * last {@code window} tokens for sliding-window attention, the whole context for full attention; plus the rotary
     * table (float32) for its positions.
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
            super(backend, slots, "attention key/value cache", backend.cacheValueBytes(), (long) capacity * cfg.dModel(),
                    (long) capacity * cfg.dModel());
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
