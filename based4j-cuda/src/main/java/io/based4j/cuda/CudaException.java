package io.based4j.cuda;

/**
 * A CUDA driver or cuBLAS call failed. The message names the call (with its main arguments) and the error, e.g.
 * {@code cuMemAlloc(1073741824 bytes) failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)}.
 */
public class CudaException extends RuntimeException {
    /** {@code CUDA_ERROR_OUT_OF_MEMORY}: the {@link #code()} of a driver call that ran out of device memory. */
    public static final int OUT_OF_MEMORY = 2;
    /** {@code CUDA_ERROR_OUT_OF_MEMORY}, the same as {@link #OUT_OF_MEMORY}. */
    public static final int CUDA_ERROR_OUT_OF_MEMORY = OUT_OF_MEMORY;
    /** {@code CUBLAS_STATUS_ALLOC_FAILED}. */
    public static final int CUBLAS_STATUS_ALLOC_FAILED = 3;
    /** {@link #code()} of a failure that did not come from a CUDA call (a library that could not be loaded). */
    public static final int NO_CODE = -1;

    /** Which API a {@link #code()} belongs to. */
    public enum Api {
        /** A {@code CUresult} of the CUDA driver API. */
        DRIVER,
        /** A {@code cublasStatus_t}. */
        CUBLAS,
        /** Not an API status ({@link #code()} is {@link #NO_CODE}). */
        NONE
    }

    private final int code;
    private final Api api;
    private final String call;

    /** A failure with a message of its own (no API call, or a message composed elsewhere). */
    public CudaException(String message) {
        this(message, NO_CODE, Api.NONE, null, null);
    }

    public CudaException(String message, Throwable cause) {
        this(message, NO_CODE, Api.NONE, null, cause);
    }

    CudaException(String message, int code, Api api, String call, Throwable cause) {
        super(message, cause);
        this.code = code;
        this.api = api;
        this.call = call;
    }

    /**
     * A failed driver call, named from the table in {@link CudaErrors} (used where the driver cannot be asked, and by
     * the tests): {@code call failed: NAME (description)}.
     */
    static CudaException driver(String call, int code) {
        return driver(call, code, CudaErrors.name(code), CudaErrors.description(code));
    }

    /** A failed driver call with the error's name and description as the driver gives them (either may be null). */
    static CudaException driver(String call, int code, String name, String description) {
        return new CudaException(message(call, code, name, description, "CUresult"), code, Api.DRIVER, call, null);
    }

    /** A failed cuBLAS call, named from the table in {@link CudaErrors}. */
    static CudaException cublas(String call, int status) {
        return cublas(call, status, null);
    }

    /** A failed cuBLAS call; {@code statusString} is what {@code cublasGetStatusString} said (may be null). */
    static CudaException cublas(String call, int status, String statusString) {
        String name = CudaErrors.cublasName(status);
        String description = statusString != null && !statusString.isBlank() && !statusString.equals(name)
                ? statusString : CudaErrors.cublasDescription(status);
        return new CudaException(message(call, status, name, description, "cublasStatus_t"), status, Api.CUBLAS,
                call, null);
    }

    private static String message(String call, int code, String name, String description, String type) {
        StringBuilder sb = new StringBuilder(call).append(" failed: ");
        sb.append(name != null && !name.isBlank() ? name : type + " " + code);
        if (description != null && !description.isBlank()) {
            sb.append(" (").append(description).append(')');
        }
        return sb.toString();
    }

    /**
     * The status the call returned: a {@code CUresult} when {@link #api()} is {@link Api#DRIVER}, a
     * {@code cublasStatus_t} when it is {@link Api#CUBLAS}, else {@link #NO_CODE}.
     */
    public int code() {
        return code;
    }

    /** The API {@link #code()} belongs to. */
    public Api api() {
        return api;
    }

    /** The failed call as the message names it ({@code cuMemAlloc(1024 bytes)}), or null. */
    public String call() {
        return call;
    }

    /** Whether the device ran out of memory ({@code CUDA_ERROR_OUT_OF_MEMORY} or {@code CUBLAS_STATUS_ALLOC_FAILED}). */
    public boolean isOutOfMemory() {
        return (api == Api.DRIVER && code == CUDA_ERROR_OUT_OF_MEMORY)
                || (api == Api.CUBLAS && code == CUBLAS_STATUS_ALLOC_FAILED);
    }
}
