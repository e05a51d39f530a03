package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A weight as the CPU computes with it: float32 or bfloat16 bytes (usually straight from the memory-mapped
 * checkpoint), viewed as {@code rows x cols}; small weights (norms, biases, conv taps) also as a float array.
 */
public final class CpuWeight implements Backend.Weight {
    final long[] shape;
    final DType dtype;
    final MemorySegment data;
    final int rows;
    final int cols;
    private float[] floats;

    CpuWeight(Tensor t, Arena arena, HostMemory memory) {
        if (!t.dtype().isFloatingPoint()) {
            throw new IllegalArgumentException("weight of dtype " + t.dtype() + " is not floating point");
        }
        this.shape = t.shape();
        long n = t.numel();
        long c = shape.length == 0 ? 1 : shape[shape.length - 1];
        long r = c == 0 ? 0 : n / c;
        if (r > Integer.MAX_VALUE || c > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("weight " + Arrays.toString(shape) + " has " + r + " rows of " + c
                    + " values; the CPU backend indexes rows and columns with 32-bit ints");
        }
        this.cols = (int) c;
        this.rows = (int) r;
        Tensor usable = t;
        if (!computesDirectly(t)) {
            memory.require(MemoryNeed.offHeap("weight " + Arrays.toString(shape), Sizes.times(n, Float.BYTES),
                    "for its float32 copy (converted from " + t.dtype() + ")"));
            usable = t.toF32(arena);
        }
        this.dtype = usable.dtype();
        this.data = usable.data();
    }

    /** Whether the backend computes with the tensor's own bytes (float32 and bfloat16) rather than a float32 copy. */
    static boolean computesDirectly(Tensor t) {
        return t.dtype() == DType.F32 || t.dtype() == DType.BF16;
    }

    static CpuWeight of(Backend.Weight w) {
        if (w instanceof CpuWeight c) {
            return c;
        }
        throw new IllegalArgumentException("weight " + w + " does not belong to a CPU backend");
    }

    /** All values as floats (cached; meant for small weights). */
    float[] floats() {
        float[] f = floats;
        if (f == null) {
            f = new float[Sizes.arrayLength(rows, cols, "weight " + Arrays.toString(shape))];
            if (dtype == DType.F32) {
                MemorySegment.copy(data, Tensor.F32_LE, 0, f, 0, f.length);
            } else {
                for (int i = 0; i < f.length; i++) {
                    f[i] = Tensor.bf16ToFloat(data.getAtIndex(Tensor.I16_LE, i));
                }
            }
            floats = f;
        }
        return f;
    }

    /** Element (row, col) as float. */
    float get(long row, int col) {
        long i = row * cols + col;
        return dtype == DType.F32 ? data.getAtIndex(Tensor.F32_LE, i)
                : Tensor.bf16ToFloat(data.getAtIndex(Tensor.I16_LE, i));
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public String toString() {
        return "CpuWeight[" + dtype + " " + Arrays.toString(shape) + "]";
    }
}
