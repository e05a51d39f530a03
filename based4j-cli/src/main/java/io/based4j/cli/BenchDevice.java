package io.based4j.cli;

import io.based4j.backend.Backend;
import io.based4j.cuda.CudaBackend;

/**
 * What {@code bench gpu} reads from the device beside the clock: on a GPU its name, a wait for queued work, peak and
 * in-use memory and the copy bandwidth; on the CPU (a quick check of the benchmark itself) none of these, as nulls.
 */
record BenchDevice(Backend backend, CudaBackend gpu) {
    static BenchDevice of(Backend backend) {
        return new BenchDevice(backend, backend instanceof CudaBackend g ? g : null);
    }

    String deviceName() {
        return gpu == null ? Runtime.getRuntime().availableProcessors() + " CPU threads" : gpu.deviceName();
    }

    String precision() {
        return gpu == null ? "f32" : gpu.precision().suffix();
    }

    /** Bytes of one weight value as the device keeps them. */
    int weightBytes() {
        return gpu == null ? Float.BYTES : gpu.precision().bytes();
    }

    void synchronize() {
        if (gpu != null) {
            gpu.synchronize();
        }
    }

    /** The start or end of the profiler's range (CudaBackend#profilerRange); nothing on the CPU. */
    void profilerRange(boolean start) {
        if (gpu != null) {
            gpu.profilerRange(start);
        }
    }

    void resetPeak() {
        if (gpu != null) {
            gpu.resetPeak();
        }
    }

    Long peakBytes() {
        return gpu == null ? null : gpu.peakAllocatedBytes();
    }

    Long usedBytes() {
        if (gpu == null) {
            return null;
        }
        long[] mem = gpu.deviceMemory();
        return mem[1] - mem[0];
    }

    /** Device copy bandwidth (read + write) in GB/s, or null on the CPU. */
    Double copyGBs() {
        return gpu == null ? null : gpu.copyBandwidth(1L << 30, 10) / 1e9;
    }
}
