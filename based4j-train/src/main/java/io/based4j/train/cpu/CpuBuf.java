package io.based4j.train.cpu;

import io.based4j.backend.TrainingBackend;

/**
 * Training numbers on the heap: {@code rows x cols} float64, row-major. As a parameter it also carries the tensor's
 * shape (a conv's {@code [channels, 1, k]} is stored as {@code channels x k}).
 */
public record CpuBuf(double[] data, int rows, int cols, long[] shape) implements TrainingBackend.Parameter {
    public CpuBuf {
        if ((long) rows * cols != data.length) {
            throw new IllegalArgumentException("buffer of " + data.length + " values is not " + rows + " x " + cols);
        }
    }

    /** A buffer shaped {@code [rows, cols]}. */
    public CpuBuf(double[] data, int rows, int cols) {
        this(data, rows, cols, new long[] {rows, cols});
    }
}
