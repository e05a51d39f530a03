package io.based4j.cuda;

import io.based4j.backend.Backend;

/** A weight in GPU memory, stored in the backend's precision. */
final class CudaWeight implements Backend.Weight {
    final long ptr;
    final long[] shape;
    final Precision type;
    /**
     * Where this matrix was made as part of one with others ({@link CudaBackend#weights}): that whole matrix, whose
     * rows are those of its parts in order; otherwise null.
     */
    final CudaWeight whole;

    CudaWeight(long ptr, long[] shape, Precision type) {
        this(ptr, shape, type, null);
    }

    CudaWeight(long ptr, long[] shape, Precision type, CudaWeight whole) {
        this.ptr = ptr;
        this.shape = shape.clone();
        this.type = type;
        this.whole = whole;
    }

    static CudaWeight of(Backend.Weight w) {
        if (w instanceof CudaWeight c) {
            return c;
        }
        throw new IllegalArgumentException("weight " + w + " does not belong to a CUDA backend");
    }

    int rows() {
        return (int) shape[0];
    }

    int cols() {
        long c = 1;
        for (int i = 1; i < shape.length; i++) {
            c *= shape[i];
        }
        return (int) c;
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public String toString() {
        return "CudaWeight" + java.util.Arrays.toString(shape) + " " + type.suffix();
    }
}
