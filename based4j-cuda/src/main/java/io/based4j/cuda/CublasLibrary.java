package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * What the cuBLAS and cuBLASLt bindings share (both return a {@code cublasStatus_t}): where the library was loaded
 * from, how it names a status, and the calls that make and destroy a handle.
 */
abstract class CublasLibrary {
    final String where;
    /** {@code const char* <prefix>GetStatusName(cublasStatus_t)}, or null where the library lacks it. */
    final MethodHandle statusName;
    /** {@code const char* <prefix>GetStatusString(cublasStatus_t)}, or null where the library lacks it. */
    final MethodHandle statusString;

    /** Binds the status functions of {@code library}, whose symbols begin with {@code prefix}. */
    CublasLibrary(NativeLibraries.Library library, String prefix) {
        where = library.where();
        CudaDriver.Binder b = new CudaDriver.Binder(library);
        statusName = b.bindOptional(prefix + "GetStatusName", ValueLayout.ADDRESS, ValueLayout.JAVA_INT);
        statusString = b.bindOptional(prefix + "GetStatusString", ValueLayout.ADDRESS, ValueLayout.JAVA_INT);
    }

    /** The exception for {@code call} that returned {@code status}. */
    CudaException error(String call, int status) {
        return CublasStatus.error(call, status, statusName, statusString);
    }

    /**
     * Calls {@code create}, an {@code int (handle*)} such as {@code cublasCreate}, and returns the handle it made.
     *
     * @throws CudaException naming {@code call} where it failed
     */
    long createHandle(MethodHandle create, String call) {
        MemorySegment h = Arena.ofAuto().allocate(8, 8);
        int r;
        try {
            r = (int) create.invokeExact(h);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw error(call, r);
        }
        return h.get(ValueLayout.JAVA_LONG, 0);
    }

    /**
     * Calls {@code destroy}, an {@code int (handle)} such as {@code cublasDestroy}, on {@code handle}.
     *
     * @throws CudaException naming {@code call} where it failed
     */
    void destroyHandle(MethodHandle destroy, long handle, String call) {
        int r;
        try {
            r = (int) destroy.invokeExact(handle);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw error(call, r);
        }
    }
}
