package io.based4j.train.cpu;

import io.based4j.train.TrainBackend;

/** Training numbers on the heap: {@code rows x cols} float64, row-major. */
public record CpuBuf(double[] data, int rows, int cols) implements TrainBackend.Buf {
    public CpuBuf {
        if ((long) rows * cols != data.length) {
            throw new IllegalArgumentException("buffer of " + data.length + " values is not " + rows + " x " + cols);
        }
    }
}
