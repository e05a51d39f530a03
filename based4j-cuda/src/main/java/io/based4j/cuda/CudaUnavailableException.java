package io.based4j.cuda;

/**
 * CUDA cannot be used in this process: the driver library ({@code libcuda.so.1}) or cuBLAS was not found or lacks a
 * needed symbol, or the driver found no usable GPU ({@code cuInit} failed). The message says what was tried.
 * {@link #code()} is the {@code CUresult} where the driver reported the problem, else {@link #NO_CODE}.
 */
public class CudaUnavailableException extends CudaException {
    public CudaUnavailableException(String message) {
        super(message);
    }

    public CudaUnavailableException(String message, Throwable cause) {
        super(message, cause);
    }

    CudaUnavailableException(String message, int code, Api api, Throwable cause) {
        super(message, code, api, null, cause);
    }
}
