package io.based4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A host tensor: an element type, a row-major shape and little-endian bytes in a memory segment
 * (often a slice of a memory-mapped checkpoint file, so nothing is copied onto the heap).
 */
public record Tensor(DType dtype, long[] shape, MemorySegment data) {
    public static final ValueLayout.OfFloat F32_LE =
            ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfShort I16_LE =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt I32_LE =
            ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong I64_LE =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfDouble F64_LE =
            ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public Tensor {
        shape = shape.clone();
        long n = numel(shape);
        if (data.byteSize() != n * dtype.bytes()) {
            throw new IllegalArgumentException("tensor of shape " + Arrays.toString(shape) + " and dtype " + dtype
                    + " needs " + n * dtype.bytes() + " bytes, got " + data.byteSize());
        }
    }

    public static long numel(long[] shape) {
        long n = 1;
        for (long s : shape) {
            if (s < 0) {
                throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
            }
            n = Math.multiplyExact(n, s);
        }
        return n;
    }

    /** A float32 tensor holding a copy of {@code values} (heap-backed). */
    public static Tensor ofFloats(float[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 4]);
        for (int i = 0; i < values.length; i++) {
            seg.setAtIndex(F32_LE, i, values[i]);
        }
        return new Tensor(DType.F32, shape, seg);
    }

    /** A bfloat16 tensor holding {@code values} rounded to nearest even (heap-backed). */
    public static Tensor ofBf16(float[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 2]);
        for (int i = 0; i < values.length; i++) {
            seg.setAtIndex(I16_LE, i, floatToBf16(values[i]));
        }
        return new Tensor(DType.BF16, shape, seg);
    }

    /** An int64 tensor holding a copy of {@code values} (heap-backed). */
    public static Tensor ofLongs(long[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 8]);
        for (int i = 0; i < values.length; i++) {
            seg.setAtIndex(I64_LE, i, values[i]);
        }
        return new Tensor(DType.I64, shape, seg);
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long dim(int i) {
        return shape[i];
    }

    public long numel() {
        return numel(shape);
    }

    public boolean hasShape(long... expected) {
        return Arrays.equals(shape, expected);
    }

    /** Element {@code i} (flat index) converted to float. */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> data.getAtIndex(F32_LE, i);
            case BF16 -> bf16ToFloat(data.getAtIndex(I16_LE, i));
            case F16 -> Float.float16ToFloat(data.getAtIndex(I16_LE, i));
            case F64 -> (float) data.getAtIndex(F64_LE, i);
            default -> throw new UnsupportedOperationException("tensor of dtype " + dtype + " is not floating point");
        };
    }

    /** Element {@code i} (flat index) of an integer tensor, as long. */
    public long getLong(long i) {
        return switch (dtype) {
            case I64 -> data.getAtIndex(I64_LE, i);
            case I32 -> data.getAtIndex(I32_LE, i);
            case I16 -> data.getAtIndex(I16_LE, i);
            case I8 -> data.get(ValueLayout.JAVA_BYTE, i);
            case U8, BOOL -> Byte.toUnsignedLong(data.get(ValueLayout.JAVA_BYTE, i));
            default -> throw new UnsupportedOperationException("tensor of dtype " + dtype + " is not an integer type");
        };
    }

    /** All elements converted to a float array (copies; for small tensors and tests). */
    public float[] toFloatArray() {
        long n = numel();
        if (n > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("tensor too large for a float[]: " + n + " elements");
        }
        float[] out = new float[(int) n];
        if (dtype == DType.F32) {
            MemorySegment.copy(data, F32_LE, 0, out, 0, out.length);
        } else {
            for (int i = 0; i < out.length; i++) {
                out[i] = getFloat(i);
            }
        }
        return out;
    }

    /** All elements of an integer tensor as a long array. */
    public long[] toLongArray() {
        long[] out = new long[Math.toIntExact(numel())];
        for (int i = 0; i < out.length; i++) {
            out[i] = getLong(i);
        }
        return out;
    }

    /** A float32 copy of this tensor in {@code arena} (the same tensor when it already is float32). */
    public Tensor toF32(Arena arena) {
        if (dtype == DType.F32) {
            return this;
        }
        long n = numel();
        MemorySegment out = arena.allocate(n * 4, 64);
        for (long i = 0; i < n; i++) {
            out.setAtIndex(F32_LE, i, getFloat(i));
        }
        return new Tensor(DType.F32, shape, out);
    }

    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    /** Round-to-nearest-even float to bfloat16 bits. */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) {
            return (short) ((bits >>> 16) | 0x40);
        }
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    @Override
    public boolean equals(Object o) {
        return this == o;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }

    @Override
    public String toString() {
        return "Tensor[" + dtype + " " + Arrays.toString(shape) + "]";
    }
}
