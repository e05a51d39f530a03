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

    public KernelArgs(int capacity) {
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
