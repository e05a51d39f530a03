package io.based4j.cuda;

import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * What a kernel test needs on GPU 0 without a backend: the primary context, a stream, the kernels' module, a cuBLAS
 * handle on that stream, {@link Kernels} and {@link TrainKernels}, and device memory that {@link #close} frees.
 * Copies wait for the stream, so a value read back is the result of everything launched before.
 */
final class KernelRig implements AutoCloseable {
    private static final long CUBLAS_WORKSPACE = 32L << 20;

    final CudaDriver cu;
    final long stream;
    final Kernels kernels;
    final TrainKernels train;
    private final long module;
    private final Cublas blas;
    private final CublasLt lt;
    private final List<Long> allocations = new ArrayList<>();

    KernelRig() {
        cu = CudaDriver.get();
        cu.setCurrent(cu.retainPrimaryContext(0));
        stream = cu.createStream();
        module = cu.loadModule(fatbin());
        long workspace = zeros(CUBLAS_WORKSPACE);
        blas = Cublas.create(stream, workspace, CUBLAS_WORKSPACE);
        lt = CublasLt.create(stream, workspace, CUBLAS_WORKSPACE);  // one stream: the two share the workspace
        kernels = new Kernels(cu, module, stream);
        train = new TrainKernels(kernels, blas, lt);
    }

    private static MemorySegment fatbin() {
        try (InputStream in = KernelRig.class.getResourceAsStream(CudaBackend.FATBIN)) {
            if (in == null) {
                throw new IllegalStateException("no " + CudaBackend.FATBIN + " in this build");
            }
            byte[] bytes = in.readAllBytes();
            MemorySegment image = Arena.global().allocate(bytes.length + 1L, 16);
            MemorySegment.copy(bytes, 0, image, ValueLayout.JAVA_BYTE, 0, bytes.length);
            return image;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code bytes} of zeroed device memory. */
    long zeros(long bytes) {
        long ptr = cu.malloc(Math.max(bytes, 1));
        allocations.add(ptr);
        cu.memsetD8Async(ptr, 0, Math.max(bytes, 1), stream);
        return ptr;
    }

    private long up(MemorySegment host) {
        long ptr = zeros(host.byteSize());
        cu.copyHtoDAsync(ptr, host, host.byteSize(), stream);
        cu.synchronize(stream);
        return ptr;
    }

    long floats(float[] v) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4L * Math.max(v.length, 1), 8);
            MemorySegment.copy(v, 0, host, ValueLayout.JAVA_FLOAT, 0, v.length);
            return up(host);
        }
    }

    /** {@code v} stored as {@code p} (bf16: rounded to nearest even, as {@link Tensor#floatToBf16}). */
    long values(Precision p, float[] v) {
        if (p == Precision.F32) {
            return floats(v);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(2L * Math.max(v.length, 1), 8);
            for (int i = 0; i < v.length; i++) {
                host.setAtIndex(ValueLayout.JAVA_SHORT, i, Tensor.floatToBf16(v[i]));
            }
            return up(host);
        }
    }

    long ints(int[] v) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4L * Math.max(v.length, 1), 8);
            MemorySegment.copy(v, 0, host, ValueLayout.JAVA_INT, 0, v.length);
            return up(host);
        }
    }

    long doubles(double[] v) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(8L * Math.max(v.length, 1), 8);
            MemorySegment.copy(v, 0, host, ValueLayout.JAVA_DOUBLE, 0, v.length);
            return up(host);
        }
    }

    private MemorySegment down(Arena a, long ptr, long bytes) {
        MemorySegment host = a.allocate(Math.max(bytes, 1), 8);
        cu.synchronize(stream);
        cu.copyDtoHAsync(host, ptr, bytes, stream);
        cu.synchronize(stream);
        return host;
    }

    float[] floats(long ptr, int count) {
        try (Arena a = Arena.ofConfined()) {
            float[] out = new float[count];
            MemorySegment.copy(down(a, ptr, 4L * count), ValueLayout.JAVA_FLOAT, 0, out, 0, count);
            return out;
        }
    }

    /** {@code count} values of type {@code p} as floats. */
    float[] values(Precision p, long ptr, int count) {
        if (p == Precision.F32) {
            return floats(ptr, count);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = down(a, ptr, 2L * count);
            float[] out = new float[count];
            for (int i = 0; i < count; i++) {
                out[i] = Tensor.bf16ToFloat(host.getAtIndex(ValueLayout.JAVA_SHORT, i));
            }
            return out;
        }
    }

    int[] ints(long ptr, int count) {
        try (Arena a = Arena.ofConfined()) {
            int[] out = new int[count];
            MemorySegment.copy(down(a, ptr, 4L * count), ValueLayout.JAVA_INT, 0, out, 0, count);
            return out;
        }
    }

    double[] doubles(long ptr, int count) {
        try (Arena a = Arena.ofConfined()) {
            double[] out = new double[count];
            MemorySegment.copy(down(a, ptr, 8L * count), ValueLayout.JAVA_DOUBLE, 0, out, 0, count);
            return out;
        }
    }

    @Override
    public void close() {
        cu.synchronize(stream);
        lt.close();
        blas.close();
        for (long ptr : allocations) {
            cu.free(ptr);
        }
        cu.unloadModule(module);
        cu.destroyStream(stream);
        cu.releasePrimaryContext(0);
    }
}
