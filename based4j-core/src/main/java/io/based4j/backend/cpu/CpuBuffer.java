package io.based4j.backend.cpu;

import io.based4j.backend.Backend;

/** Row-major float32 activations on the Java heap: the first {@code rows * cols} values of an array that may be longer. */
public final class CpuBuffer implements Backend.Buffer {
    final float[] data;
    final int rows;
    final int cols;

    CpuBuffer(float[] data, int rows, int cols) {
        if ((long) rows * cols > data.length) {
            throw new IllegalArgumentException("buffer " + rows + "x" + cols + " needs " + (long) rows * cols
                    + " floats, got " + data.length);
        }
        this.data = data;
        this.rows = rows;
        this.cols = cols;
    }

    static CpuBuffer of(Backend.Buffer b) {
        if (b instanceof CpuBuffer c) {
            return c;
        }
        throw new IllegalArgumentException("buffer " + b + " does not belong to a CPU backend");
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
        return "CpuBuffer[" + rows + "x" + cols + "]";
    }
}
