package io.based4j.cuda;

import java.lang.foreign.MemorySegment;

/**
 * Device and pinned host memory that the training ops of a {@link CudaBackend} reuse from call to call: numbered
 * scratch slots (grown, never shrunk, so that steps of one shape allocate nothing), a vector of ones for the column
 * sums that cuBLAS takes, the integer inputs of the loss and the embedding's backward, and the pinned area results
 * are read back through. Freed with the backend.
 */
final class Scratch implements AutoCloseable {
    /** Slots an op may use at once. */
    static final int SLOTS = 10;
    private static final int ONE_F32_BITS = Float.floatToRawIntBits(1f);

    private final CudaBackend backend;
    private final long[] ptr = new long[SLOTS];
    private final long[] bytes = new long[SLOTS];
    private long onesF32;
    private long onesA;
    private long onesCount;
    private Precision onesType;
    private MemorySegment host;
    private long hostBytes;
    private IntInput targets;
    private IntInput argmax;
    private IntInput ids;
    private IntInput groups;

    Scratch(CudaBackend backend) {
        this.backend = backend;
    }

    /**
     * At least {@code size} bytes of slot {@code slot}; what it held before is gone when it grows (the old memory is
     * freed once no recorded graph can read it).
     */
    long slot(int slot, long size) {
        return slot(slot, size, null);
    }

    /**
     * {@link #slot(int, long)}, an out-of-memory failure naming {@code what} the slot holds (null: training scratch).
     */
    long slot(int slot, long size, String what) {
        if (size > bytes[slot]) {
            if (ptr[slot] != 0) {
                long old = ptr[slot];
                backend.freeLater(() -> backend.free(old));
                ptr[slot] = 0;
                bytes[slot] = 0;
            }
            ptr[slot] = backend.allocate(size, what != null ? what : "training scratch of " + size + " bytes");
            bytes[slot] = size;
        }
        return ptr[slot];
    }

    /** The bytes slot {@code slot} holds now (0 before its first use). */
    long size(int slot) {
        return bytes[slot];
    }

    /** At least {@code count} ones of {@code type} (float32 ones are rounded exactly to bf16). */
    long ones(Precision type, long count, Kernels kernels) {
        if (count > onesCount) {
            release();
            long n = Math.max(count, 1024);
            onesF32 = backend.allocate(4 * n, "a vector of ones");
            backend.driver().memsetD32Async(onesF32, ONE_F32_BITS, n, backend.stream());
            onesCount = n;
        }
        if (type == Precision.F32) {
            return onesF32;
        }
        if (onesA == 0 || onesType != type) {
            if (onesA != 0) {
                long old = onesA;
                backend.freeLater(() -> backend.free(old));
            }
            onesA = backend.allocate(type.bytes() * onesCount, "a vector of ones");
            kernels.f32ToA(type, onesF32, onesA, onesCount);
            onesType = type;
        }
        return onesA;
    }

    private void release() {
        long a = onesA;
        long f = onesF32;
        backend.freeLater(() -> {
            if (a != 0) {
                backend.free(a);
            }
            if (f != 0) {
                backend.free(f);
            }
        });
        onesA = 0;
        onesF32 = 0;
        onesCount = 0;
    }

    /** Pinned host memory of at least {@code size} bytes for reading results back. */
    MemorySegment host(long size) {
        if (size > hostBytes) {
            if (host != null) {
                backend.synchronize();
                backend.driver().freeHost(host);
            }
            long n = Math.max(size, 4096);
            host = backend.driver().mallocHost(n);
            hostBytes = n;
        }
        return host;
    }

    IntInput targets() {
        if (targets == null) {
            targets = new IntInput(backend, "loss targets", 1024);
        }
        return targets;
    }

    IntInput argmax() {
        if (argmax == null) {
            argmax = new IntInput(backend, "loss argmax", 1024);
        }
        return argmax;
    }

    IntInput ids() {
        if (ids == null) {
            ids = new IntInput(backend, "embedding gradient ids", 1024);
        }
        return ids;
    }

    IntInput groups() {
        if (groups == null) {
            groups = new IntInput(backend, "embedding gradient groups", 1024);
        }
        return groups;
    }

    @Override
    public void close() {
        for (IntInput in : new IntInput[] {targets, argmax, ids, groups}) {
            if (in != null) {
                in.close();
            }
        }
        for (int i = 0; i < SLOTS; i++) {
            if (ptr[i] != 0) {
                backend.free(ptr[i]);
                ptr[i] = 0;
            }
        }
        release();
        if (host != null) {
            backend.driver().freeHost(host);
            host = null;
        }
    }
}
