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
    /** Which arguments point at a structure of the caller's instead of their own slot. */
    private final boolean[] structs;

    public KernelArgs(int capacity) {
        this.capacity = capacity;
        this.structs = new boolean[capacity];
        Arena arena = Arena.ofAuto();
        this.values = arena.allocate(SLOT * capacity, 8);
        this.pointers = arena.allocate(ValueLayout.ADDRESS.byteSize() * capacity, 8);
        for (int i = 0; i < capacity; i++) {
            pointers.setAtIndex(ValueLayout.ADDRESS, i, values.asSlice(SLOT * i, SLOT));
        }
    }

    /** Empties the list for the next launch. */
    public KernelArgs reset() {
        for (int i = 0; i < count; i++) {
            if (structs[i]) {  // back to its own slot
                pointers.setAtIndex(ValueLayout.ADDRESS, i, values.asSlice(SLOT * i, SLOT));
                structs[i] = false;
            }
        }
        count = 0;
        return this;
    }

    /**
     * A structure passed by value: the argument's bytes are read from {@code bytes} at the launch (laid out as the
     * kernel's parameter type is, in native order); the segment must stay alive until then.
     */
    public KernelArgs struct(MemorySegment bytes) {
        int i = (int) (next() / SLOT);
        pointers.setAtIndex(ValueLayout.ADDRESS, i, bytes);
        structs[i] = true;
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
