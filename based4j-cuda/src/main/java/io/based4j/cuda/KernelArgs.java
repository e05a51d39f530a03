package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The argument list of one kernel launch in the form {@code cuLaunchKernel} takes: an array of pointers, each to one
 * argument's value. One instance is reused for every launch of a thread (filled, launched, reset), so a launch
 * allocates no native memory.
 */
public final class KernelArgs {
    private static final long SLOT = 8;
    private final MemorySegment values;
    private final MemorySegment pointers;
    private final int capacity;
    private int count;
    /** The arguments whose pointer is not their slot in {@link #values} ({@link #blob}), a bit each. */
    private long blobs;

    public KernelArgs(int capacity) {
        if (capacity < 1 || capacity > Long.SIZE) {
            throw new IllegalArgumentException("a kernel's arguments: 1 to " + Long.SIZE + ", got " + capacity);
        }
        this.capacity = capacity;
        Arena arena = Arena.ofAuto();
        this.values = arena.allocate(SLOT * capacity, 8);
        this.pointers = arena.allocate(ValueLayout.ADDRESS.byteSize() * capacity, 8);
        for (int i = 0; i < capacity; i++) {
            pointers.setAtIndex(ValueLayout.ADDRESS, i, values.asSlice(SLOT * i, SLOT));
        }
    }

    /** Empties the list for the next launch. */
    public KernelArgs reset() {
        count = 0;
        while (blobs != 0) {
            int i = Long.numberOfTrailingZeros(blobs);
            pointers.setAtIndex(ValueLayout.ADDRESS, i, values.asSlice(SLOT * i, SLOT));
            blobs &= blobs - 1;
        }
        return this;
    }

    /**
     * An argument passed by value whose bytes are {@code value} (a struct such as a {@code CUtensorMap}); the launch
     * copies them, so the segment may change after it.
     */
    public KernelArgs blob(MemorySegment value) {
        int i = (int) (next() / SLOT);
        pointers.setAtIndex(ValueLayout.ADDRESS, i, value);
        blobs |= 1L << i;
        return this;
    }

    /** A device pointer ({@code T*}). */
    public KernelArgs ptr(long devicePointer) {
        return i64(devicePointer);
    }

    /** An {@code int}. */
    public KernelArgs i32(int value) {
        values.set(ValueLayout.JAVA_INT, next(), value);
        return this;
    }

    /** A {@code long long} or {@code size_t}. */
    public KernelArgs i64(long value) {
        values.set(ValueLayout.JAVA_LONG, next(), value);
        return this;
    }

    /** A {@code float}. */
    public KernelArgs f32(float value) {
        values.set(ValueLayout.JAVA_FLOAT, next(), value);
        return this;
    }

    private long next() {
        if (count == capacity) {
            throw new IllegalStateException("a kernel launch takes at most " + capacity + " arguments");
        }
        return SLOT * count++;
    }

    /** The {@code void**} array for {@code cuLaunchKernel}. */
    public MemorySegment pointers() {
        return pointers;
    }

    /** Arguments set since the last {@link #reset}. */
    public int count() {
        return count;
    }
}
