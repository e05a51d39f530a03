package io.based4j.cuda;

import io.based4j.backend.Backend;

/**
 * Row-major activations in GPU memory: {@code rows x cols} values of {@code type} at {@code ptr}. A view shares the
 * memory of the buffer it was taken from (its first rows).
 */
public final class CudaBuffer implements Backend.Buffer {
    final long ptr;
    final int rows;
    final int cols;
    final Precision type;
    /** The allocation this buffer lives in (itself unless it is a view). */
    final CudaBuffer owner;

    CudaBuffer(long ptr, int rows, int cols, Precision type, CudaBuffer owner) {
        this.ptr = ptr;
        this.rows = rows;
        this.cols = cols;
        this.type = type;
        this.owner = owner == null ? this : owner;
    }

    static CudaBuffer of(Backend.Buffer b) {
        if (b instanceof CudaBuffer c) {
            return c;
        }
        throw new IllegalArgumentException("buffer " + b + " does not belong to a CUDA backend");
    }

    long bytes() {
        return (long) rows * cols * type.bytes();
    }

    long count() {
        return (long) rows * cols;
    }

    @Override
    public int rows() {
        return rows;
    }

    @Override
    public int cols() {
        return cols;
    }

    @Override
    public String toString() {
        return "CudaBuffer[" + rows + "x" + cols + " " + type.suffix() + "]";
    }
}
