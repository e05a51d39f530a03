package io.based4j.backend.cpu;

import io.based4j.backend.Backend;
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

    CpuWeight(Tensor t, Arena arena) {
        Tensor usable = (t.dtype() == DType.F32 || t.dtype() == DType.BF16) ? t : t.toF32(arena);
        if (!usable.dtype().isFloatingPoint()) {
            throw new IllegalArgumentException("weight of dtype " + t.dtype() + " is not floating point");
        }
        this.shape = t.shape();
        this.dtype = usable.dtype();
        this.data = usable.data();
        long n = t.numel();
        this.cols = shape.length == 0 ? 1 : (int) shape[shape.length - 1];
        this.rows = cols == 0 ? 0 : Math.toIntExact(n / cols);
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
            long n = (long) rows * cols;
            f = new float[Math.toIntExact(n)];
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
