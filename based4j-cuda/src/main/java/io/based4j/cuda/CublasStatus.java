package io.based4j.cuda;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * The {@link CudaException} for a failed cuBLAS or cuBLASLt call (both return a {@code cublasStatus_t}): named from
 * the library's own {@code ...GetStatusName} / {@code ...GetStatusString} where it has them, else from the table in
 * {@link CudaErrors}.
 */
final class CublasStatus {
    private CublasStatus() {
    }

    /**
     * {@code call failed: NAME (description)}.
     *
     * @param statusName   the library's {@code const char* (cublasStatus_t)} naming a status, or null
     * @param statusString the library's {@code const char* (cublasStatus_t)} describing a status, or null
     */
    static CudaException error(String call, int status, MethodHandle statusName, MethodHandle statusString) {
        String name = text(statusName, status);
        String description = text(statusString, status);
        CudaException e = CudaException.cublas(call, status, description);
        if (name == null || name.equals(CudaErrors.cublasName(status))) {
            return e;
        }
        // A status newer than the table: name it as the library does.
        return CudaException.cublas(call, status, name + (description != null ? ": " + description : ""));
    }

    /** The name of {@code status} as the library gives it, else as the table in {@link CudaErrors} does. */
    static String name(int status, MethodHandle statusName) {
        String name = text(statusName, status);
        return name != null ? name : CudaErrors.cublasName(status);
    }

    @SuppressWarnings("restricted")
    private static String text(MethodHandle handle, int status) {
        if (handle == null) {
            return null;
        }
        try {
            MemorySegment p = (MemorySegment) handle.invokeExact(status);
            return p.address() == 0 ? null : p.reinterpret(1024).getString(0);
        } catch (Throwable t) {
            return null;
        }
    }
}
