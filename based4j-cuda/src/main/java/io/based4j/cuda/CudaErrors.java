package io.based4j.cuda;

import java.util.HashMap;
import java.util.Map;

/**
 * Names of the CUDA driver's {@code CUresult} codes and of cuBLAS's {@code cublasStatus_t} codes, for messages made
 * without the libraries (or when {@code cuGetErrorName} / {@code cublasGetStatusString} are not available). The
 * driver table is taken from the {@code CUresult} enum of the CUDA 13.0 {@code cuda.h}.
 */
final class CudaErrors {
    private static final Map<Integer, String> NAMES = new HashMap<>();
    private static final Map<Integer, String> DESCRIPTIONS = new HashMap<>();
    private static final Map<Integer, String> CUBLAS_NAMES = new HashMap<>();
    private static final Map<Integer, String> CUBLAS_DESCRIPTIONS = new HashMap<>();

    private CudaErrors() {
    }

    /** The enum name of a {@code CUresult}, e.g. {@code CUDA_ERROR_OUT_OF_MEMORY}. */
    static String name(int code) {
        String name = NAMES.get(code);
        return name != null ? name : "CUresult " + code;
    }

    /** A short description of a {@code CUresult} where one is known here (the driver has the full set), else null. */
    static String description(int code) {
        return DESCRIPTIONS.get(code);
    }

    /** The enum name of a {@code cublasStatus_t}, e.g. {@code CUBLAS_STATUS_ALLOC_FAILED}. */
    static String cublasName(int status) {
        String name = CUBLAS_NAMES.get(status);
        return name != null ? name : "cublasStatus_t " + status;
    }

    /** A short description of a {@code cublasStatus_t} where one is known, else null. */
    static String cublasDescription(int status) {
        return CUBLAS_DESCRIPTIONS.get(status);
    }

    static {
        NAMES.put(0, "CUDA_SUCCESS");
        NAMES.put(1, "CUDA_ERROR_INVALID_VALUE");
        NAMES.put(2, "CUDA_ERROR_OUT_OF_MEMORY");
        NAMES.put(3, "CUDA_ERROR_NOT_INITIALIZED");
        NAMES.put(4, "CUDA_ERROR_DEINITIALIZED");
        NAMES.put(5, "CUDA_ERROR_PROFILER_DISABLED");
        NAMES.put(6, "CUDA_ERROR_PROFILER_NOT_INITIALIZED");
        NAMES.put(7, "CUDA_ERROR_PROFILER_ALREADY_STARTED");
        NAMES.put(8, "CUDA_ERROR_PROFILER_ALREADY_STOPPED");
        NAMES.put(34, "CUDA_ERROR_STUB_LIBRARY");
        NAMES.put(36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER");
        NAMES.put(46, "CUDA_ERROR_DEVICE_UNAVAILABLE");
        NAMES.put(100, "CUDA_ERROR_NO_DEVICE");
        NAMES.put(101, "CUDA_ERROR_INVALID_DEVICE");
        NAMES.put(102, "CUDA_ERROR_DEVICE_NOT_LICENSED");
        NAMES.put(200, "CUDA_ERROR_INVALID_IMAGE");
        NAMES.put(201, "CUDA_ERROR_INVALID_CONTEXT");
        NAMES.put(202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT");
        NAMES.put(205, "CUDA_ERROR_MAP_FAILED");
        NAMES.put(206, "CUDA_ERROR_UNMAP_FAILED");
        NAMES.put(207, "CUDA_ERROR_ARRAY_IS_MAPPED");
        NAMES.put(208, "CUDA_ERROR_ALREADY_MAPPED");
        NAMES.put(209, "CUDA_ERROR_NO_BINARY_FOR_GPU");
        NAMES.put(210, "CUDA_ERROR_ALREADY_ACQUIRED");
        NAMES.put(211, "CUDA_ERROR_NOT_MAPPED");
        NAMES.put(212, "CUDA_ERROR_NOT_MAPPED_AS_ARRAY");
        NAMES.put(213, "CUDA_ERROR_NOT_MAPPED_AS_POINTER");
        NAMES.put(214, "CUDA_ERROR_ECC_UNCORRECTABLE");
        NAMES.put(215, "CUDA_ERROR_UNSUPPORTED_LIMIT");
        NAMES.put(216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE");
        NAMES.put(217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED");
        NAMES.put(218, "CUDA_ERROR_INVALID_PTX");
        NAMES.put(219, "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT");
        NAMES.put(220, "CUDA_ERROR_NVLINK_UNCORRECTABLE");
        NAMES.put(221, "CUDA_ERROR_JIT_COMPILER_NOT_FOUND");
        NAMES.put(222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION");
        NAMES.put(223, "CUDA_ERROR_JIT_COMPILATION_DISABLED");
        NAMES.put(224, "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY");
        NAMES.put(225, "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC");
        NAMES.put(226, "CUDA_ERROR_CONTAINED");
        NAMES.put(300, "CUDA_ERROR_INVALID_SOURCE");
        NAMES.put(301, "CUDA_ERROR_FILE_NOT_FOUND");
        NAMES.put(302, "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND");
        NAMES.put(303, "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED");
        NAMES.put(304, "CUDA_ERROR_OPERATING_SYSTEM");
        NAMES.put(400, "CUDA_ERROR_INVALID_HANDLE");
        NAMES.put(401, "CUDA_ERROR_ILLEGAL_STATE");
        NAMES.put(402, "CUDA_ERROR_LOSSY_QUERY");
        NAMES.put(500, "CUDA_ERROR_NOT_FOUND");
        NAMES.put(600, "CUDA_ERROR_NOT_READY");
        NAMES.put(700, "CUDA_ERROR_ILLEGAL_ADDRESS");
        NAMES.put(701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES");
        NAMES.put(702, "CUDA_ERROR_LAUNCH_TIMEOUT");
        NAMES.put(703, "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING");
        NAMES.put(704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED");
        NAMES.put(705, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED");
        NAMES.put(708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE");
        NAMES.put(709, "CUDA_ERROR_CONTEXT_IS_DESTROYED");
        NAMES.put(710, "CUDA_ERROR_ASSERT");
        NAMES.put(711, "CUDA_ERROR_TOO_MANY_PEERS");
        NAMES.put(712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED");
        NAMES.put(713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED");
        NAMES.put(714, "CUDA_ERROR_HARDWARE_STACK_ERROR");
        NAMES.put(715, "CUDA_ERROR_ILLEGAL_INSTRUCTION");
        NAMES.put(716, "CUDA_ERROR_MISALIGNED_ADDRESS");
        NAMES.put(717, "CUDA_ERROR_INVALID_ADDRESS_SPACE");
        NAMES.put(718, "CUDA_ERROR_INVALID_PC");
        NAMES.put(719, "CUDA_ERROR_LAUNCH_FAILED");
        NAMES.put(720, "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE");
        NAMES.put(721, "CUDA_ERROR_TENSOR_MEMORY_LEAK");
        NAMES.put(800, "CUDA_ERROR_NOT_PERMITTED");
        NAMES.put(801, "CUDA_ERROR_NOT_SUPPORTED");
        NAMES.put(802, "CUDA_ERROR_SYSTEM_NOT_READY");
        NAMES.put(803, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH");
        NAMES.put(804, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE");
        NAMES.put(805, "CUDA_ERROR_MPS_CONNECTION_FAILED");
        NAMES.put(806, "CUDA_ERROR_MPS_RPC_FAILURE");
        NAMES.put(807, "CUDA_ERROR_MPS_SERVER_NOT_READY");
        NAMES.put(808, "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED");
        NAMES.put(809, "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED");
        NAMES.put(810, "CUDA_ERROR_MPS_CLIENT_TERMINATED");
        NAMES.put(811, "CUDA_ERROR_CDP_NOT_SUPPORTED");
        NAMES.put(812, "CUDA_ERROR_CDP_VERSION_MISMATCH");
        NAMES.put(900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED");
        NAMES.put(901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED");
        NAMES.put(902, "CUDA_ERROR_STREAM_CAPTURE_MERGE");
        NAMES.put(903, "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED");
        NAMES.put(904, "CUDA_ERROR_STREAM_CAPTURE_UNJOINED");
        NAMES.put(905, "CUDA_ERROR_STREAM_CAPTURE_ISOLATION");
        NAMES.put(906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT");
        NAMES.put(907, "CUDA_ERROR_CAPTURED_EVENT");
        NAMES.put(908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD");
        NAMES.put(909, "CUDA_ERROR_TIMEOUT");
        NAMES.put(910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE");
        NAMES.put(911, "CUDA_ERROR_EXTERNAL_DEVICE");
        NAMES.put(912, "CUDA_ERROR_INVALID_CLUSTER_SIZE");
        NAMES.put(913, "CUDA_ERROR_FUNCTION_NOT_LOADED");
        NAMES.put(914, "CUDA_ERROR_INVALID_RESOURCE_TYPE");
        NAMES.put(915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION");
        NAMES.put(916, "CUDA_ERROR_KEY_ROTATION");
        NAMES.put(999, "CUDA_ERROR_UNKNOWN");

        // The wording cuGetErrorString gives for the errors one meets most.
        DESCRIPTIONS.put(1, "invalid argument");
        DESCRIPTIONS.put(2, "out of memory");
        DESCRIPTIONS.put(3, "initialization error");
        DESCRIPTIONS.put(4, "driver shutting down");
        DESCRIPTIONS.put(34, "CUDA driver is a stub library");
        DESCRIPTIONS.put(36, "CUDA driver is too old for this call");
        DESCRIPTIONS.put(46, "CUDA-capable device(s) is/are busy or unavailable");
        DESCRIPTIONS.put(100, "no CUDA-capable device is detected");
        DESCRIPTIONS.put(101, "invalid device ordinal");
        DESCRIPTIONS.put(200, "device kernel image is invalid");
        DESCRIPTIONS.put(201, "invalid device context");
        DESCRIPTIONS.put(209, "no kernel image is available for execution on the device");
        DESCRIPTIONS.put(218, "a PTX JIT compilation failed");
        DESCRIPTIONS.put(222, "the provided PTX was compiled with an unsupported toolchain");
        DESCRIPTIONS.put(400, "invalid resource handle");
        DESCRIPTIONS.put(500, "named symbol not found");
        DESCRIPTIONS.put(700, "an illegal memory access was encountered");
        DESCRIPTIONS.put(701, "too many resources requested for launch");
        DESCRIPTIONS.put(716, "misaligned address");
        DESCRIPTIONS.put(719, "unspecified launch failure");
        DESCRIPTIONS.put(801, "operation not supported");
        DESCRIPTIONS.put(803, "system has unsupported display driver / cuda driver combination");
        DESCRIPTIONS.put(900, "operation not permitted when stream is capturing");
        DESCRIPTIONS.put(901, "operation failed due to a previous error during capture");
        DESCRIPTIONS.put(906, "operation would make the legacy stream depend on a capturing blocking stream");
        DESCRIPTIONS.put(908, "attempt to terminate a thread-local capture sequence from another thread");
        DESCRIPTIONS.put(999, "unknown error");

        // cublasStatus_t (cublas_api.h).
        CUBLAS_NAMES.put(0, "CUBLAS_STATUS_SUCCESS");
        CUBLAS_NAMES.put(1, "CUBLAS_STATUS_NOT_INITIALIZED");
        CUBLAS_NAMES.put(3, "CUBLAS_STATUS_ALLOC_FAILED");
        CUBLAS_NAMES.put(7, "CUBLAS_STATUS_INVALID_VALUE");
        CUBLAS_NAMES.put(8, "CUBLAS_STATUS_ARCH_MISMATCH");
        CUBLAS_NAMES.put(11, "CUBLAS_STATUS_MAPPING_ERROR");
        CUBLAS_NAMES.put(13, "CUBLAS_STATUS_EXECUTION_FAILED");
        CUBLAS_NAMES.put(14, "CUBLAS_STATUS_INTERNAL_ERROR");
        CUBLAS_NAMES.put(15, "CUBLAS_STATUS_NOT_SUPPORTED");
        CUBLAS_NAMES.put(16, "CUBLAS_STATUS_LICENSE_ERROR");
        CUBLAS_DESCRIPTIONS.put(1, "the library was not initialized");
        CUBLAS_DESCRIPTIONS.put(3, "the resource allocation failed");
        CUBLAS_DESCRIPTIONS.put(7, "an invalid numeric value was used as an argument");
        CUBLAS_DESCRIPTIONS.put(8, "an absent device architectural feature is required");
        CUBLAS_DESCRIPTIONS.put(11, "an access to GPU memory space failed");
        CUBLAS_DESCRIPTIONS.put(13, "the GPU program failed to execute");
        CUBLAS_DESCRIPTIONS.put(14, "an internal operation failed");
        CUBLAS_DESCRIPTIONS.put(15, "the functionality requested is not supported");
        CUBLAS_DESCRIPTIONS.put(16, "error detected trying to check the license");
    }
}
