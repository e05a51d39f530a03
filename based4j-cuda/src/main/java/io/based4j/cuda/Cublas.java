package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * A cuBLAS handle (the v2 API) bound to one stream and one workspace, through the foreign-function interface. Made
 * and used on a thread whose current context is the one the stream and the workspace belong to; not thread-safe
 * (one per GPU thread). Scalars are passed from host memory (the default pointer mode), from a native pair that
 * each call overwrites, so a call allocates nothing; in host pointer mode cuBLAS reads them during the call, which
 * keeps that safe under stream capture too.
 *
 * <p>Matrices are column-major, as everywhere in cuBLAS.
 */
@SuppressWarnings("restricted")
public final class Cublas implements AutoCloseable {
    /** {@code CUBLAS_OP_N}. */
    public static final int OP_N = 0;
    /** {@code CUBLAS_OP_T}. */
    public static final int OP_T = 1;
    /** {@code CUDA_R_32F} (library_types.h). */
    public static final int R_32F = 0;
    /** {@code CUDA_R_16F} (library_types.h). */
    public static final int R_16F = 2;
    /** {@code CUDA_R_16BF} (library_types.h). */
    public static final int R_16BF = 14;
    /** {@code CUBLAS_COMPUTE_32F}. */
    public static final int COMPUTE_32F = 68;
    /** {@code CUBLAS_COMPUTE_32F_PEDANTIC}. */
    public static final int COMPUTE_32F_PEDANTIC = 69;
    /** {@code CUBLAS_COMPUTE_32F_FAST_TF32}. */
    public static final int COMPUTE_32F_FAST_TF32 = 77;
    /** {@code CUBLAS_GEMM_DEFAULT}. */
    public static final int GEMM_DEFAULT = -1;
    /** {@code CUBLAS_DEFAULT_MATH}. */
    public static final int DEFAULT_MATH = 0;
    /** {@code CUBLAS_PEDANTIC_MATH}. */
    public static final int PEDANTIC_MATH = 2;
    /** {@code CUBLAS_TF32_TENSOR_OP_MATH}. */
    public static final int TF32_TENSOR_OP_MATH = 3;

    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;
    private static final MemoryLayout PTR = ValueLayout.ADDRESS;
    /** A handle, stream or device pointer, passed as a 64-bit integer (as {@link CudaDriver} does). */
    private static final ValueLayout.OfLong HANDLE = ValueLayout.JAVA_LONG;

    private static final LoadOnce<Lib> LIB =
            new LoadOnce<>("cuBLAS could not be loaded", () -> new Lib(NativeLibraries.cublas()));

    private final Lib l;
    private final MemorySegment alpha;
    private final MemorySegment beta;
    private final MemorySegment out;
    private long handle;
    private long stream;

    private Cublas(Lib l, long handle) {
        this.l = l;
        this.handle = handle;
        MemorySegment scalars = Arena.ofAuto().allocate(16, 16);
        this.alpha = scalars.asSlice(0, 4);
        this.beta = scalars.asSlice(4, 4);
        this.out = scalars.asSlice(8, 8);
    }

    /**
     * {@code cublasCreate} on the current context, then {@code cublasSetStream(stream)} and
     * {@code cublasSetWorkspace(workspace, workspaceBytes)} (skipped when {@code workspace} is 0). A workspace of
     * its own keeps cuBLAS from allocating during stream capture.
     *
     * @throws CudaUnavailableException when cuBLAS (or the driver) cannot be loaded
     */
    public static Cublas create(long stream, long workspace, long workspaceBytes) {
        CudaDriver.get();
        Lib l = LIB.get();
        Cublas cublas = new Cublas(l, l.createHandle(l.create, "cublasCreate"));
        try {
            cublas.setStream(stream);
            if (workspace != 0) {
                cublas.setWorkspace(workspace, workspaceBytes);
            }
        } catch (RuntimeException e) {
            cublas.close();
            throw e;
        }
        return cublas;
    }

    /** Whether cuBLAS can be loaded (loading it if that has not been tried yet). */
    public static boolean isAvailable() {
        return LIB.isAvailable();
    }

    /** Where cuBLAS was loaded from. */
    public String libraryPath() {
        return l.where;
    }

    /** {@code cublasSetStream}: later calls go to this stream. */
    public void setStream(long stream) {
        int r;
        try {
            r = (int) l.setStream.invokeExact(live(), stream);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasSetStream", r);
        }
        this.stream = stream;
    }

    /** The stream of {@link #setStream}. */
    public long stream() {
        return stream;
    }

    /** {@code cublasSetWorkspace}: device memory cuBLAS uses instead of allocating its own. */
    public void setWorkspace(long workspace, long bytes) {
        int r;
        try {
            r = (int) l.setWorkspace.invokeExact(live(), workspace, bytes);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasSetWorkspace(" + bytes + " bytes)", r);
        }
    }

    /** {@code cublasSetMathMode}: {@link #DEFAULT_MATH}, {@link #PEDANTIC_MATH}, {@link #TF32_TENSOR_OP_MATH}. */
    public void setMathMode(int mode) {
        int r;
        try {
            r = (int) l.setMathMode.invokeExact(live(), mode);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasSetMathMode(" + mode + ")", r);
        }
    }

    /** {@code cublasGetVersion}: e.g. 130000 for cuBLAS 13.0.0. */
    public int version() {
        int r;
        try {
            r = (int) l.getVersion.invokeExact(live(), out);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasGetVersion", r);
        }
        return out.get(INT, 0);
    }

    /**
     * {@code cublasGemmEx} with {@code CUBLAS_GEMM_DEFAULT}: {@code C = alpha op(A) op(B) + beta C}, column-major,
     * {@code op(A)} m x k, {@code op(B)} k x n, C m x n. Types are {@code cudaDataType} values ({@link #R_32F},
     * {@link #R_16BF}); {@code computeType} a {@code cublasComputeType_t} ({@link #COMPUTE_32F},
     * {@link #COMPUTE_32F_FAST_TF32}), whose scalar type is float.
     */
    public void gemm(int transA, int transB, int m, int n, int k, float alpha, long A, int aType, int lda, long B,
                     int bType, int ldb, float beta, long C, int cType, int ldc, int computeType) {
        this.alpha.set(ValueLayout.JAVA_FLOAT, 0, alpha);
        this.beta.set(ValueLayout.JAVA_FLOAT, 0, beta);
        int r;
        try {
            r = (int) l.gemmEx.invokeExact(live(), transA, transB, m, n, k, this.alpha, A, aType, lda, B, bType, ldb,
                    this.beta, C, cType, ldc, computeType, GEMM_DEFAULT);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasGemmEx(" + op(transA) + op(transB) + ", m=" + m + ", n=" + n + ", k=" + k
                    + ", types A/B/C " + aType + "/" + bType + "/" + cType + ", lda=" + lda + ", ldb=" + ldb
                    + ", ldc=" + ldc + ", compute " + computeType + ")", r);
        }
    }

    private static String op(int op) {
        return switch (op) {
            case OP_N -> "N";
            case OP_T -> "T";
            default -> "op" + op;
        };
    }

    private long live() {
        if (handle == 0) {
            throw new IllegalStateException("this cuBLAS handle is closed");
        }
        return handle;
    }

    /** {@code cublasDestroy}; a second close does nothing. */
    @Override
    public void close() {
        if (handle == 0) {
            return;
        }
        long h = handle;
        handle = 0;
        l.destroyHandle(l.destroy, h, "cublasDestroy");
    }

    /** The bound cuBLAS entry points. */
    private static final class Lib extends CublasLibrary {
        final MethodHandle create;
        final MethodHandle destroy;
        final MethodHandle setStream;
        final MethodHandle setWorkspace;
        final MethodHandle setMathMode;
        final MethodHandle getVersion;
        final MethodHandle gemmEx;

        Lib(NativeLibraries.Library library) {
            super(library, "cublas");
            CudaDriver.Binder b = new CudaDriver.Binder(library);
            create = b.bind("cublasCreate_v2", INT, PTR);
            destroy = b.bind("cublasDestroy_v2", INT, HANDLE);
            setStream = b.bind("cublasSetStream_v2", INT, HANDLE, HANDLE);
            setWorkspace = b.bind("cublasSetWorkspace_v2", INT, HANDLE, HANDLE, LONG);
            setMathMode = b.bind("cublasSetMathMode", INT, HANDLE, INT);
            getVersion = b.bind("cublasGetVersion_v2", INT, HANDLE, PTR);
            gemmEx = b.bind("cublasGemmEx", INT,
                    HANDLE, INT, INT, INT, INT, INT, PTR, HANDLE, INT, INT, HANDLE, INT, INT, PTR, HANDLE, INT, INT,
                    INT, INT);
        }
    }
}
