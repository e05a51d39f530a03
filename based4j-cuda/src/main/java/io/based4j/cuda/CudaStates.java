package io.based4j.cuda;

import io.based4j.backend.Backend;

/** Recurrent mixer states in GPU memory, float32, one region per sequence slot (the layouts the kernels expect). */
final class CudaStates {
    private CudaStates() {
    }

    /** A state made of float32 regions of a fixed size per slot. */
    abstract static sealed class Slotted implements Backend.MixerState permits Conv, Linear, KeyValue {
        final CudaBackend backend;
        final int slots;
        final long[] regions;
        final long[] floatsPerSlot;
        boolean released;

        Slotted(CudaBackend backend, int slots, String what, long... floatsPerSlot) {
            this.backend = backend;
            this.slots = slots;
            this.floatsPerSlot = floatsPerSlot;
            this.regions = new long[floatsPerSlot.length];
            try {
                for (int i = 0; i < regions.length; i++) {
                    regions[i] = backend.allocateZeroed(4L * floatsPerSlot[i] * slots, what);
                }
            } catch (RuntimeException e) {
                release();
                throw e;
            }
        }

        @Override
        public void reset(int slot) {
            for (int i = 0; i < regions.length; i++) {
                backend.zero(regions[i] + 4L * floatsPerSlot[i] * slot, floatsPerSlot[i]);
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
    }

    /** The last {@code kernel - 1} conv inputs, {@code [slot][tap][channel]}, oldest first. */
    static final class Conv extends Slotted {
        final int channels;
        final int kernel;

        Conv(CudaBackend backend, int slots, int channels, int kernel) {
            super(backend, slots, "BaseConv state", (long) (kernel - 1) * channels);
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
            super(backend, slots, "linear attention state", (long) heads * features * headDim, (long) heads * features);
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
     * Rotated keys and values, {@code [slot][position % capacity][d]}: a ring of the last {@code window} tokens for
     * sliding-window attention, the whole context for full attention; plus the rotary table for its positions.
     */
    static final class KeyValue extends Slotted {
        final int capacity;
        final int width;
        final int maxPos;
        final boolean ring;
        final long rotary;

        KeyValue(CudaBackend backend, int slots, int capacity, boolean ring, int width, int maxPos,
                 float[] rotaryTable) {
            super(backend, slots, "attention key/value cache", (long) capacity * width, (long) capacity * width);
            this.capacity = capacity;
            this.ring = ring;
            this.width = width;
            this.maxPos = maxPos;
            long r;
            try {
                r = backend.uploadFloats(rotaryTable, "rotary table");
            } catch (RuntimeException e) {
                release();
                throw e;
            }
            this.rotary = r;
        }

        long keys() {
            return regions[0];
        }

        long values() {
            return regions[1];
        }

        @Override
        public void release() {
            if (!released && rotary != 0) {
                backend.free(rotary);
            }
            super.release();
        }

        @Override
        public long bytesPerSequence(int contextLength) {
            return 2L * 4L * width * (ring ? capacity : contextLength);
        }
    }
}
