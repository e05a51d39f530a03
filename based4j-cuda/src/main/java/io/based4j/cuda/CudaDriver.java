package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The CUDA driver API through the foreign-function interface. One instance per process ({@link #get()}), which
 * loads {@code libcuda.so.1} and calls {@code cuInit(0)} the first time. Every call is checked: a failure throws
 * {@link CudaException} naming the call and the error.
 *
 * <p>Handles ({@code CUcontext}, {@code CUstream}, {@code CUevent}, {@code CUmodule}, {@code CUfunction},
 * {@code CUgraph}, {@code CUgraphExec}) are their addresses and device pointers ({@code CUdeviceptr}) their 64-bit
 * values, both as Java {@code long}. The symbols bound are those {@code cuda.h} of CUDA 13.0 maps the API names to
 * ({@code cuMemAlloc} is {@code cuMemAlloc_v2}, {@code cuEventElapsedTime} is {@code cuEventElapsedTime_v2},
 * {@code cuGraphInstantiate} is {@code cuGraphInstantiateWithFlags} and so on), without per-thread default stream
 * variants. Opaque handles are passed as 64-bit integers, which the x86-64 and AArch64 C calling conventions pass
 * exactly as pointers, so a call allocates no Java objects for them.
 *
 * <p>Calls that return values through out-parameters use a small native buffer of the calling thread. The driver
 * state a call uses (the current context) is per thread, as in CUDA.
 */
@SuppressWarnings("restricted")
public final class CudaDriver {
    public static final int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public static final int CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public static final int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81;
    /** Whether the device takes the virtual memory calls ({@link #reserveAddresses}, {@link #createMemory} ...). */
    public static final int CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = 102;

    /** {@code CUDA_ERROR_OUT_OF_MEMORY}, as in {@link CudaException#CUDA_ERROR_OUT_OF_MEMORY}. */
    public static final int CUDA_ERROR_OUT_OF_MEMORY = CudaException.CUDA_ERROR_OUT_OF_MEMORY;

    static final int CU_STREAM_NON_BLOCKING = 0x1;
    static final int CU_EVENT_DEFAULT = 0x0;
    static final int CU_EVENT_RECORD_EXTERNAL = 0x1;
    static final int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
    static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    static final int CU_MEMHOSTALLOC_PORTABLE = 0x01;
    static final int CU_MEM_ALLOCATION_TYPE_PINNED = 0x1;
    static final int CU_MEM_LOCATION_TYPE_DEVICE = 0x1;
    static final int CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 0x3;
    static final int CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0x0;
    static final int CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;
    /**
     * {@code CUlaunchConfig} (cuda.h of CUDA 13.0): gridDim x, y, z, blockDim x, y, z, sharedMemBytes (7 unsigned
     * ints), hStream at 32, attrs at 40, numAttrs at 48; 56 bytes.
     */
    static final long LAUNCH_CONFIG_BYTES = 56;
    /** {@code CUlaunchAttribute}: id, 4 bytes of padding, then the 64-byte value union; 72 bytes. */
    static final long LAUNCH_ATTRIBUTE_BYTES = 72;
    /**
     * {@code CUmemAllocationProp} (cuda.h of CUDA 13.0): type, requestedHandleTypes, location {type, id},
     * win32HandleMetaData, allocFlags (8 bytes).
     */
    static final long ALLOCATION_PROP_BYTES = 32;
    /** {@code CUmemAccessDesc}: location {type, id}, flags. */
    static final long ACCESS_DESC_BYTES = 12;

    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;
    private static final MemoryLayout PTR = ValueLayout.ADDRESS;
    /** An opaque handle or a {@code CUdeviceptr}, passed as a 64-bit integer. */
    private static final ValueLayout.OfLong HANDLE = ValueLayout.JAVA_LONG;
    private static final long SCRATCH_BYTES = 512;
    private static final int NAME_BYTES = 256;

    private static final LoadOnce<CudaDriver> INSTANCE =
            new LoadOnce<>("the CUDA driver could not be initialized", CudaDriver::load);

    private final String libraryPath;
    private final ThreadLocal<MemorySegment> scratch =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(SCRATCH_BYTES, 16));
    private final Map<Long, String> functionNames = new ConcurrentHashMap<>();

    private final MethodHandle cuGetErrorName;
    private final MethodHandle cuGetErrorString;
    private final MethodHandle cuInit;
    private final MethodHandle cuDriverGetVersion;
    private final MethodHandle cuDeviceGetCount;
    private final MethodHandle cuDeviceGet;
    private final MethodHandle cuDeviceGetName;
    private final MethodHandle cuDeviceGetAttribute;
    private final MethodHandle cuDeviceTotalMem;
    private final MethodHandle cuDevicePrimaryCtxRetain;
    private final MethodHandle cuDevicePrimaryCtxRelease;
    private final MethodHandle cuCtxSetCurrent;
    private final MethodHandle cuCtxSynchronize;
    /** cuProfilerStart and cuProfilerStop, or null where the driver lacks them. */
    private final MethodHandle cuProfilerStart;
    private final MethodHandle cuProfilerStop;
    private final MethodHandle cuMemGetInfo;
    private final MethodHandle cuMemAlloc;
    private final MethodHandle cuMemFree;
    private final MethodHandle cuMemHostAlloc;
    private final MethodHandle cuMemFreeHost;
    private final MethodHandle cuMemcpyHtoD;
    private final MethodHandle cuMemcpyDtoH;
    private final MethodHandle cuMemcpyHtoDAsync;
    private final MethodHandle cuMemcpyDtoHAsync;
    private final MethodHandle cuMemcpyDtoDAsync;
    private final MethodHandle cuMemsetD8Async;
    private final MethodHandle cuMemsetD32Async;
    private final MethodHandle cuStreamCreate;
    private final MethodHandle cuStreamSynchronize;
    private final MethodHandle cuStreamDestroy;
    private final MethodHandle cuEventCreate;
    private final MethodHandle cuEventRecord;
    private final MethodHandle cuEventRecordWithFlags;
    private final MethodHandle cuEventSynchronize;
    private final MethodHandle cuEventElapsedTime;
    private final MethodHandle cuEventDestroy;
    private final MethodHandle cuModuleLoadData;
    private final MethodHandle cuModuleUnload;
    private final MethodHandle cuModuleGetFunction;
    private final MethodHandle cuFuncSetAttribute;
    private final MethodHandle cuLaunchKernel;
    private final MethodHandle cuStreamBeginCapture;
    private final MethodHandle cuStreamEndCapture;
    /** {@code cuStreamGetCaptureInfo_v3} (CUDA 12.3 and later); null where the driver lacks it. */
    private final MethodHandle cuStreamGetCaptureInfo;
    /** {@code cuStreamUpdateCaptureDependencies_v2} (CUDA 12.3 and later); null where the driver lacks it. */
    private final MethodHandle cuStreamUpdateCaptureDependencies;
    /** {@code cuGraphNodeGetType}; null where the driver lacks it. */
    private final MethodHandle cuGraphNodeGetType;
    private final MethodHandle cuGraphInstantiate;
    private final MethodHandle cuGraphLaunch;
    private final MethodHandle cuGraphDestroy;
    private final MethodHandle cuGraphExecDestroy;
    private final MethodHandle cuMemAddressReserve;
    private final MethodHandle cuMemAddressFree;
    private final MethodHandle cuMemCreate;
    private final MethodHandle cuMemRelease;
    private final MethodHandle cuMemMap;
    private final MethodHandle cuMemUnmap;
    private final MethodHandle cuMemSetAccess;
    private final MethodHandle cuMemGetAllocationGranularity;
    private final MethodHandle cuLaunchKernelEx;
    /** Null where the driver lacks it (before CUDA 12). */
    private final MethodHandle cuTensorMapEncodeTiled;

    private CudaDriver(NativeLibraries.Library library) {
        this.libraryPath = library.where();
        Binder b = new Binder(library);
        cuGetErrorName = b.bind("cuGetErrorName", INT, INT, PTR);
        cuGetErrorString = b.bind("cuGetErrorString", INT, INT, PTR);
        cuInit = b.bind("cuInit", INT, INT);
        cuDriverGetVersion = b.bind("cuDriverGetVersion", INT, PTR);
        cuDeviceGetCount = b.bind("cuDeviceGetCount", INT, PTR);
        cuDeviceGet = b.bind("cuDeviceGet", INT, PTR, INT);
        cuDeviceGetName = b.bind("cuDeviceGetName", INT, PTR, INT, INT);
        cuDeviceGetAttribute = b.bind("cuDeviceGetAttribute", INT, PTR, INT, INT);
        cuDeviceTotalMem = b.bind("cuDeviceTotalMem_v2", INT, PTR, INT);
        cuDevicePrimaryCtxRetain = b.bind("cuDevicePrimaryCtxRetain", INT, PTR, INT);
        cuDevicePrimaryCtxRelease = b.bind("cuDevicePrimaryCtxRelease_v2", INT, INT);
        cuCtxSetCurrent = b.bind("cuCtxSetCurrent", INT, HANDLE);
        cuCtxSynchronize = b.bind("cuCtxSynchronize", INT);
        cuProfilerStart = b.bindOptional("cuProfilerStart", INT);
        cuProfilerStop = b.bindOptional("cuProfilerStop", INT);
        cuMemGetInfo = b.bind("cuMemGetInfo_v2", INT, PTR, PTR);
        cuMemAlloc = b.bind("cuMemAlloc_v2", INT, PTR, LONG);
        cuMemFree = b.bind("cuMemFree_v2", INT, HANDLE);
        cuMemHostAlloc = b.bind("cuMemHostAlloc", INT, PTR, LONG, INT);
        cuMemFreeHost = b.bind("cuMemFreeHost", INT, PTR);
        cuMemcpyHtoD = b.bind("cuMemcpyHtoD_v2", INT, HANDLE, PTR, LONG);
        cuMemcpyDtoH = b.bind("cuMemcpyDtoH_v2", INT, PTR, HANDLE, LONG);
        cuMemcpyHtoDAsync = b.bind("cuMemcpyHtoDAsync_v2", INT, HANDLE, PTR, LONG, HANDLE);
        cuMemcpyDtoHAsync = b.bind("cuMemcpyDtoHAsync_v2", INT, PTR, HANDLE, LONG, HANDLE);
        cuMemcpyDtoDAsync = b.bind("cuMemcpyDtoDAsync_v2", INT, HANDLE, HANDLE, LONG, HANDLE);
        cuMemsetD8Async = b.bind("cuMemsetD8Async", INT, HANDLE, BYTE, LONG, HANDLE);
        cuMemsetD32Async = b.bind("cuMemsetD32Async", INT, HANDLE, INT, LONG, HANDLE);
        cuStreamCreate = b.bind("cuStreamCreate", INT, PTR, INT);
        cuStreamSynchronize = b.bind("cuStreamSynchronize", INT, HANDLE);
        cuStreamDestroy = b.bind("cuStreamDestroy_v2", INT, HANDLE);
        cuEventCreate = b.bind("cuEventCreate", INT, PTR, INT);
        cuEventRecord = b.bind("cuEventRecord", INT, HANDLE, HANDLE);
        cuEventRecordWithFlags = b.bind("cuEventRecordWithFlags", INT, HANDLE, HANDLE, INT);
        cuEventSynchronize = b.bind("cuEventSynchronize", INT, HANDLE);
        // cuda.h of CUDA 12.8+ maps cuEventElapsedTime to cuEventElapsedTime_v2 (same signature); older drivers
        // have only the first version.
        cuEventElapsedTime = b.bindFirst(new String[] {"cuEventElapsedTime_v2", "cuEventElapsedTime"},
                INT, PTR, HANDLE, HANDLE);
        cuEventDestroy = b.bind("cuEventDestroy_v2", INT, HANDLE);
        cuModuleLoadData = b.bind("cuModuleLoadData", INT, PTR, PTR);
        cuModuleUnload = b.bind("cuModuleUnload", INT, HANDLE);
        cuModuleGetFunction = b.bind("cuModuleGetFunction", INT, PTR, HANDLE, PTR);
        cuFuncSetAttribute = b.bind("cuFuncSetAttribute", INT, HANDLE, INT, INT);
        cuLaunchKernel = b.bind("cuLaunchKernel", INT, HANDLE, INT, INT, INT, INT, INT, INT, INT, HANDLE, PTR, PTR);
        cuStreamBeginCapture = b.bind("cuStreamBeginCapture_v2", INT, HANDLE, INT);
        cuStreamEndCapture = b.bind("cuStreamEndCapture", INT, HANDLE, PTR);
        // (stream, CUstreamCaptureStatus*, cuuint64_t* id, CUgraph*, const CUgraphNode** deps,
        //  const CUgraphEdgeData** edgeData, size_t* numDeps)
        cuStreamGetCaptureInfo = b.bindOptional("cuStreamGetCaptureInfo_v3", INT, HANDLE, PTR, PTR, PTR, PTR, PTR,
                PTR);
        // (stream, CUgraphNode* deps, const CUgraphEdgeData* edgeData, size_t numDeps, unsigned int flags)
        cuStreamUpdateCaptureDependencies = b.bindOptional("cuStreamUpdateCaptureDependencies_v2", INT, HANDLE, PTR,
                PTR, LONG, INT);
        cuGraphNodeGetType = b.bindOptional("cuGraphNodeGetType", INT, HANDLE, PTR);
        cuGraphInstantiate = b.bind("cuGraphInstantiateWithFlags", INT, PTR, HANDLE, LONG);
        cuGraphLaunch = b.bind("cuGraphLaunch", INT, HANDLE, HANDLE);
        cuGraphDestroy = b.bind("cuGraphDestroy", INT, HANDLE);
        cuGraphExecDestroy = b.bind("cuGraphExecDestroy", INT, HANDLE);
        cuMemAddressReserve = b.bind("cuMemAddressReserve", INT, PTR, LONG, LONG, HANDLE, LONG);
        cuMemAddressFree = b.bind("cuMemAddressFree", INT, HANDLE, LONG);
        cuMemCreate = b.bind("cuMemCreate", INT, PTR, LONG, PTR, LONG);
        cuMemRelease = b.bind("cuMemRelease", INT, HANDLE);
        cuMemMap = b.bind("cuMemMap", INT, HANDLE, LONG, LONG, HANDLE, LONG);
        cuMemUnmap = b.bind("cuMemUnmap", INT, HANDLE, LONG);
        cuMemSetAccess = b.bind("cuMemSetAccess", INT, HANDLE, LONG, PTR, LONG);
        cuMemGetAllocationGranularity = b.bind("cuMemGetAllocationGranularity", INT, PTR, PTR, INT);
        cuLaunchKernelEx = b.bind("cuLaunchKernelEx", INT, PTR, HANDLE, PTR, PTR);
        cuTensorMapEncodeTiled = b.bindOptional("cuTensorMapEncodeTiled", INT, PTR, INT, INT, HANDLE, PTR, PTR, PTR,
                PTR, INT, INT, INT, INT);
    }

    /** {@code CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}. */
    static final int TENSOR_MAP_BF16 = 9;
    /** {@code CU_TENSOR_MAP_SWIZZLE_128B}: 16-byte chunks swizzled within each 128-byte row of the box. */
    static final int TENSOR_MAP_SWIZZLE_128B = 3;
    /**
     * {@code CUtensorMapL2promotion}: how much the L2 cache reads around each row a tensor copy asks for: none (0), or
     * 64, 128 or 256 bytes (1 to 3).
     */
    static final int TENSOR_MAP_L2_PROMOTIONS = 4;
    /** Bytes of a {@code CUtensorMap}, and the alignment its address needs. */
    static final int TENSOR_MAP_BYTES = 128;
    static final int TENSOR_MAP_ALIGN = 64;

    /** Whether the driver makes tensor maps ({@link #tensorMap2d}). */
    public boolean tensorMaps() {
        return cuTensorMapEncodeTiled != null;
    }

    /**
     * {@code cuTensorMapEncodeTiled} into {@code map} ({@value #TENSOR_MAP_BYTES} bytes, 64-byte aligned): a row-major
     * {@code rows x cols} matrix of bf16 at {@code address} (rows {@code rowBytes} apart), read in boxes of
     * {@code boxCols x boxRows} elements, written to shared memory in the 128-byte swizzled layout; elements past the
     * matrix's edges read as zeros; {@code l2Promotion} as {@link #TENSOR_MAP_L2_PROMOTIONS} names them.
     */
    public void tensorMap2d(MemorySegment map, long address, long cols, long rows, long rowBytes, int boxCols,
                            int boxRows, int l2Promotion) {
        if (l2Promotion < 0 || l2Promotion >= TENSOR_MAP_L2_PROMOTIONS) {
            throw new IllegalArgumentException("tensor map: L2 promotion " + l2Promotion + " (0 to "
                    + (TENSOR_MAP_L2_PROMOTIONS - 1) + ")");
        }
        if (cuTensorMapEncodeTiled == null) {
            throw new CudaUnavailableException(libraryPath + " lacks cuTensorMapEncodeTiled (a driver before CUDA 12)");
        }
        int r;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dims = arena.allocate(LONG, 2);
            dims.setAtIndex(LONG, 0, cols);
            dims.setAtIndex(LONG, 1, rows);
            MemorySegment strides = arena.allocate(LONG, 1);
            strides.setAtIndex(LONG, 0, rowBytes);
            MemorySegment box = arena.allocate(INT, 2);
            box.setAtIndex(INT, 0, boxCols);
            box.setAtIndex(INT, 1, boxRows);
            MemorySegment elementStrides = arena.allocate(INT, 2);
            elementStrides.setAtIndex(INT, 0, 1);
            elementStrides.setAtIndex(INT, 1, 1);
            r = (int) cuTensorMapEncodeTiled.invokeExact(map, TENSOR_MAP_BF16, 2, address, dims, strides, box,
                    elementStrides, 0, TENSOR_MAP_SWIZZLE_128B, l2Promotion, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuTensorMapEncodeTiled(" + rows + " x " + cols + " bf16, rows " + rowBytes + " bytes apart,"
                    + " boxes of " + boxRows + " x " + boxCols + ", L2 promotion " + l2Promotion + ")", r);
        }
    }

    /**
     * The driver of this process, loaded and initialized ({@code cuInit(0)}) on the first call.
     *
     * @throws CudaUnavailableException when {@code libcuda.so.1} cannot be loaded, lacks a symbol, or
     *                                  {@code cuInit} fails (no GPU, a stub library, a driver mismatch); later
     *                                  calls throw the same again
     */
    public static CudaDriver get() {
        return INSTANCE.get();
    }

    /** Whether {@link #get()} succeeds (loading the driver if that has not been tried yet). */
    public static boolean isAvailable() {
        return INSTANCE.isAvailable();
    }

    private static CudaDriver load() {
        CudaDriver loaded = new CudaDriver(NativeLibraries.cuda());
        loaded.init();
        return loaded;
    }

    private void init() {
        int r;
        try {
            r = (int) cuInit.invokeExact(0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            CudaException e = error("cuInit(0)", r);
            throw new CudaUnavailableException("the CUDA driver (" + libraryPath + ") cannot be used: "
                    + e.getMessage(), r, CudaException.Api.DRIVER, e);
        }
    }

    /** Where {@code libcuda} was loaded from (a path, or the soname the system library path resolved). */
    public String libraryPath() {
        return libraryPath;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Version and devices

    /** {@code cuDriverGetVersion}: e.g. 13000 for CUDA 13.0. */
    public int driverVersion() {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDriverGetVersion.invokeExact(out);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuDriverGetVersion");
        return out.get(INT, 0);
    }

    /** {@code cuDeviceGetCount}. */
    public int deviceCount() {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDeviceGetCount.invokeExact(out);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuDeviceGetCount");
        return out.get(INT, 0);
    }

    /** The {@code CUdevice} of an ordinal ({@code cuDeviceGet}). */
    private int device(int ordinal) {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDeviceGet.invokeExact(out, ordinal);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDeviceGet(" + ordinal + ")", r);
        }
        return out.get(INT, 0);
    }

    /** {@code cuDeviceGetName}. */
    public String deviceName(int ordinal) {
        int dev = device(ordinal);
        MemorySegment out = scratch();
        out.set(BYTE, 0, (byte) 0);
        int r;
        try {
            r = (int) cuDeviceGetName.invokeExact(out, NAME_BYTES, dev);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDeviceGetName(device " + ordinal + ")", r);
        }
        out.set(BYTE, NAME_BYTES - 1, (byte) 0);
        return out.getString(0);
    }

    /** {@code cuDeviceGetAttribute}; see the {@code CU_DEVICE_ATTRIBUTE_} constants. */
    public int attribute(int ordinal, int attribute) {
        int dev = device(ordinal);
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDeviceGetAttribute.invokeExact(out, attribute, dev);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDeviceGetAttribute(attribute " + attribute + ", device " + ordinal + ")", r);
        }
        return out.get(INT, 0);
    }

    /** {@code cuDeviceTotalMem}: bytes of device memory. */
    public long totalMemory(int ordinal) {
        int dev = device(ordinal);
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDeviceTotalMem.invokeExact(out, dev);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDeviceTotalMem(device " + ordinal + ")", r);
        }
        return out.get(LONG, 0);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Contexts

    /** {@code cuDevicePrimaryCtxRetain}: the device's primary context, retained (release it once per retain). */
    public long retainPrimaryContext(int ordinal) {
        int dev = device(ordinal);
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuDevicePrimaryCtxRetain.invokeExact(out, dev);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDevicePrimaryCtxRetain(device " + ordinal + ")", r);
        }
        return out.get(LONG, 0);
    }

    /** {@code cuDevicePrimaryCtxRelease}. */
    public void releasePrimaryContext(int ordinal) {
        int dev = device(ordinal);
        int r;
        try {
            r = (int) cuDevicePrimaryCtxRelease.invokeExact(dev);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuDevicePrimaryCtxRelease(device " + ordinal + ")", r);
        }
    }

    /** {@code cuCtxSetCurrent}: binds the context to the calling thread (0 unbinds). */
    public void setCurrent(long ctx) {
        int r;
        try {
            r = (int) cuCtxSetCurrent.invokeExact(ctx);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuCtxSetCurrent");
    }

    /** {@code cuCtxSynchronize}: waits for all work of the current context. */
    public void synchronizeContext() {
        int r;
        beginExclusive("cuCtxSynchronize");
        try {
            r = (int) cuCtxSynchronize.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuCtxSynchronize");
    }

    /**
     * {@code cuProfilerStart} ({@code start}) or {@code cuProfilerStop}: the start or end of the range a profiler
     * started with collection off collects in ({@code ncu --profile-from-start off}, {@code nsys profile
     * --capture-range=cudaProfilerApi}); without such a profiler, nothing happens.
     *
     * @throws CudaUnavailableException where the driver lacks the call
     */
    public void profilerRange(boolean start) {
        String call = start ? "cuProfilerStart" : "cuProfilerStop";
        MethodHandle h = start ? cuProfilerStart : cuProfilerStop;
        if (h == null) {
            throw new CudaUnavailableException(libraryPath + " lacks the symbol " + call
                    + " (too old a version, or not the library it should be)");
        }
        int r;
        try {
            r = (int) h.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, call);
    }

    /**
     * Graph captures under way in this process (each holds the read lock from its begin to its end), against the
     * calls that wait for all of a context's work or may (context synchronisation, frees, unloading a module,
     * destroying a stream), which take the write lock: such a call from one thread while another thread's stream
     * records a graph would fail, or spoil the recording, since several backends share a device's primary context.
     */
    private final ReentrantReadWriteLock captures = new ReentrantReadWriteLock();
    /** Whether this thread's stream is recording a graph. */
    private final ThreadLocal<Boolean> capturing = ThreadLocal.withInitial(() -> false);

    private void beginExclusive(String call) {
        if (capturing.get()) {
            throw new IllegalStateException(call + " while this thread records a graph");
        }
        captures.writeLock().lock();
    }

    private void endExclusive() {
        captures.writeLock().unlock();
    }

    /** {@code cuMemGetInfo}: {free, total} bytes of the current context's device. */
    public long[] memoryInfo() {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuMemGetInfo.invokeExact(out, out.asSlice(8, 8));
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuMemGetInfo");
        return new long[] {out.get(LONG, 0), out.get(LONG, 8)};
    }

    // ---------------------------------------------------------------------------------------------------------
    // Memory

    /** {@code cuMemAlloc}: device memory of the current context. */
    public long malloc(long bytes) {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuMemAlloc.invokeExact(out, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemAlloc(" + bytes + " bytes)", r);
        }
        return out.get(LONG, 0);
    }

    /** {@code cuMemFree}; 0 is ignored. */
    public void free(long ptr) {
        if (ptr == 0) {
            return;
        }
        int r;
        beginExclusive("cuMemFree");
        try {
            r = (int) cuMemFree.invokeExact(ptr);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        if (r != 0) {
            throw error("cuMemFree(0x" + Long.toHexString(ptr) + ")", r);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Virtual memory: addresses reserved up front, memory mapped behind them piece by piece

    /** Fills a {@code CUmemAllocationProp} at {@code at}: pinned device memory of device {@code ordinal}. */
    private void allocationProp(MemorySegment at, int ordinal) {
        at.asSlice(0, ALLOCATION_PROP_BYTES).fill((byte) 0);
        at.set(INT, 0, CU_MEM_ALLOCATION_TYPE_PINNED);
        at.set(INT, 4, 0);  // requestedHandleTypes: none
        at.set(INT, 8, CU_MEM_LOCATION_TYPE_DEVICE);
        at.set(INT, 12, device(ordinal));
    }

    /** {@code cuMemGetAllocationGranularity} (minimum) of pinned memory on device {@code ordinal}: bytes. */
    public long allocationGranularity(int ordinal) {
        MemorySegment out = scratch();
        allocationProp(out.asSlice(64, ALLOCATION_PROP_BYTES), ordinal);
        int r;
        try {
            r = (int) cuMemGetAllocationGranularity.invokeExact(out, out.asSlice(64, ALLOCATION_PROP_BYTES),
                    CU_MEM_ALLOC_GRANULARITY_MINIMUM);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuMemGetAllocationGranularity");
        return out.get(LONG, 0);
    }

    /** {@code cuMemAddressReserve}: {@code bytes} of device addresses (a multiple of the granularity), no memory. */
    public long reserveAddresses(long bytes, long alignment) {
        MemorySegment out = scratch();
        int r;
        beginExclusive("cuMemAddressReserve");
        try {
            r = (int) cuMemAddressReserve.invokeExact(out, bytes, alignment, 0L, 0L);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        if (r != 0) {
            throw error("cuMemAddressReserve(" + bytes + " bytes)", r);
        }
        return out.get(LONG, 0);
    }

    /** {@code cuMemAddressFree} of addresses from {@link #reserveAddresses} (nothing mapped there any more). */
    public void freeAddresses(long ptr, long bytes) {
        int r;
        beginExclusive("cuMemAddressFree");
        try {
            r = (int) cuMemAddressFree.invokeExact(ptr, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuMemAddressFree");
    }

    /**
     * {@code cuMemCreate}: {@code bytes} (a multiple of the granularity) of pinned memory on device {@code ordinal},
     * not yet mapped; its handle. An out-of-memory failure is a {@link CudaException} that says so.
     */
    public long createMemory(int ordinal, long bytes) {
        MemorySegment out = scratch();
        allocationProp(out.asSlice(64, ALLOCATION_PROP_BYTES), ordinal);
        int r;
        beginExclusive("cuMemCreate");
        try {
            r = (int) cuMemCreate.invokeExact(out, bytes, out.asSlice(64, ALLOCATION_PROP_BYTES), 0L);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        if (r != 0) {
            throw error("cuMemCreate(" + bytes + " bytes)", r);
        }
        return out.get(LONG, 0);
    }

    /** {@code cuMemRelease} of a handle from {@link #createMemory} (its memory goes once it is unmapped). */
    public void releaseMemory(long handle) {
        int r;
        beginExclusive("cuMemRelease");
        try {
            r = (int) cuMemRelease.invokeExact(handle);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuMemRelease");
    }

    /**
     * {@code cuMemMap} of the memory {@code handle} (all {@code bytes} of it) at {@code ptr}, within reserved
     * addresses, then {@code cuMemSetAccess}: read and write from device {@code ordinal}.
     */
    public void mapMemory(long ptr, long bytes, long handle, int ordinal) {
        MemorySegment desc = scratch().asSlice(64, ACCESS_DESC_BYTES);
        desc.set(INT, 0, CU_MEM_LOCATION_TYPE_DEVICE);
        desc.set(INT, 4, device(ordinal));
        desc.set(INT, 8, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
        int r;
        beginExclusive("cuMemMap");
        try {
            r = (int) cuMemMap.invokeExact(ptr, bytes, 0L, handle, 0L);
            if (r == 0) {
                r = (int) cuMemSetAccess.invokeExact(ptr, bytes, desc, 1L);
                if (r != 0) {
                    int unmapped = (int) cuMemUnmap.invokeExact(ptr, bytes);
                    if (unmapped != 0) {
                        throw error("cuMemUnmap(" + bytes + " bytes) after cuMemSetAccess failed", unmapped);
                    }
                    throw error("cuMemSetAccess(" + bytes + " bytes)", r);
                }
            }
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        if (r != 0) {
            throw error("cuMemMap(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemUnmap}: the addresses stay reserved, the memory's handle still needs {@link #releaseMemory}. */
    public void unmapMemory(long ptr, long bytes) {
        int r;
        beginExclusive("cuMemUnmap");
        try {
            r = (int) cuMemUnmap.invokeExact(ptr, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuMemUnmap");
    }

    /** {@code cuMemHostAlloc} (portable): pinned host memory, as a segment of {@code bytes} bytes. */
    public MemorySegment mallocHost(long bytes) {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuMemHostAlloc.invokeExact(out, bytes, CU_MEMHOSTALLOC_PORTABLE);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemHostAlloc(" + bytes + " bytes)", r);
        }
        return MemorySegment.ofAddress(out.get(LONG, 0)).reinterpret(bytes);
    }

    /** {@code cuMemFreeHost} of a segment from {@link #mallocHost}. */
    public void freeHost(MemorySegment seg) {
        if (seg == null || seg.address() == 0) {
            return;
        }
        int r;
        beginExclusive("cuMemFreeHost");
        try {
            r = (int) cuMemFreeHost.invokeExact(seg);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuMemFreeHost");
    }

    /** {@code cuMemcpyHtoD}: synchronous copy of {@code bytes} from native memory to the device. */
    public void copyHtoD(long dst, MemorySegment src, long bytes) {
        host(src, bytes, "cuMemcpyHtoD");
        int r;
        try {
            r = (int) cuMemcpyHtoD.invokeExact(dst, src, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemcpyHtoD(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemcpyDtoH}: synchronous copy of {@code bytes} from the device to native memory. */
    public void copyDtoH(MemorySegment dst, long src, long bytes) {
        host(dst, bytes, "cuMemcpyDtoH");
        int r;
        try {
            r = (int) cuMemcpyDtoH.invokeExact(dst, src, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemcpyDtoH(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemcpyHtoDAsync} (asynchronous only from pinned memory). */
    public void copyHtoDAsync(long dst, MemorySegment src, long bytes, long stream) {
        host(src, bytes, "cuMemcpyHtoDAsync");
        int r;
        try {
            r = (int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemcpyHtoDAsync(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemcpyDtoHAsync} (asynchronous only to pinned memory). */
    public void copyDtoHAsync(MemorySegment dst, long src, long bytes, long stream) {
        host(dst, bytes, "cuMemcpyDtoHAsync");
        int r;
        try {
            r = (int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemcpyDtoHAsync(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemcpyDtoDAsync}. */
    public void copyDtoDAsync(long dst, long src, long bytes, long stream) {
        int r;
        try {
            r = (int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemcpyDtoDAsync(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemsetD8Async}: sets {@code bytes} bytes to the low 8 bits of {@code value}. */
    public void memsetD8Async(long dst, int value, long bytes, long stream) {
        int r;
        try {
            r = (int) cuMemsetD8Async.invokeExact(dst, (byte) value, bytes, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemsetD8Async(" + bytes + " bytes)", r);
        }
    }

    /** {@code cuMemsetD32Async}: sets {@code count} 32-bit words (a float's bits with Float.floatToRawIntBits). */
    public void memsetD32Async(long dst, int value, long count, long stream) {
        int r;
        try {
            r = (int) cuMemsetD32Async.invokeExact(dst, value, count, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuMemsetD32Async(" + count + " words)", r);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Streams and events

    /** {@code cuStreamCreate} with {@code CU_STREAM_NON_BLOCKING}. */
    public long createStream() {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuStreamCreate.invokeExact(out, CU_STREAM_NON_BLOCKING);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuStreamCreate");
        return out.get(LONG, 0);
    }

    /** {@code cuStreamSynchronize}. */
    public void synchronize(long stream) {
        int r;
        try {
            r = (int) cuStreamSynchronize.invokeExact(stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuStreamSynchronize");
    }

    /** {@code cuStreamDestroy}; 0 is ignored. */
    public void destroyStream(long stream) {
        if (stream == 0) {
            return;
        }
        int r;
        beginExclusive("cuStreamDestroy");
        try {
            r = (int) cuStreamDestroy.invokeExact(stream);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuStreamDestroy");
    }

    /** {@code cuEventCreate} with the default flags (timing enabled). */
    public long createEvent() {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuEventCreate.invokeExact(out, CU_EVENT_DEFAULT);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventCreate");
        return out.get(LONG, 0);
    }

    /** {@code cuEventRecord}. */
    public void record(long event, long stream) {
        int r;
        try {
            r = (int) cuEventRecord.invokeExact(event, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventRecord");
    }

    /**
     * {@code cuEventRecordWithFlags} with {@code CU_EVENT_RECORD_EXTERNAL}: on a stream being captured, a node of the
     * graph that records the event at that point of each launch (a plain record there only orders the capture).
     */
    public void recordInGraph(long event, long stream) {
        int r;
        try {
            r = (int) cuEventRecordWithFlags.invokeExact(event, stream, CU_EVENT_RECORD_EXTERNAL);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventRecordWithFlags");
    }

    /** {@code cuEventSynchronize}. */
    public void synchronizeEvent(long event) {
        int r;
        try {
            r = (int) cuEventSynchronize.invokeExact(event);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventSynchronize");
    }

    /** {@code cuEventElapsedTime}: milliseconds between two recorded, completed events. */
    public float elapsedMillis(long start, long end) {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuEventElapsedTime.invokeExact(out, start, end);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventElapsedTime");
        return out.get(FLOAT, 0);
    }

    /** {@code cuEventDestroy}; 0 is ignored. */
    public void destroyEvent(long event) {
        if (event == 0) {
            return;
        }
        int r;
        try {
            r = (int) cuEventDestroy.invokeExact(event);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuEventDestroy");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Modules and launches

    /** {@code cuModuleLoadData}: loads a fatbin (or cubin / PTX) image held in native memory. */
    public long loadModule(MemorySegment image) {
        if (!image.isNative()) {
            throw new IllegalArgumentException("cuModuleLoadData needs the image in native memory");
        }
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuModuleLoadData.invokeExact(out, image);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuModuleLoadData(" + image.byteSize() + " bytes)", r);
        }
        return out.get(LONG, 0);
    }

    /** {@code cuModuleUnload}; 0 is ignored. */
    public void unloadModule(long module) {
        if (module == 0) {
            return;
        }
        int r;
        beginExclusive("cuModuleUnload");
        try {
            r = (int) cuModuleUnload.invokeExact(module);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            endExclusive();
        }
        check(r, "cuModuleUnload");
    }

    /** {@code cuModuleGetFunction}: the kernel of that (unmangled, {@code extern "C"}) name. */
    public long moduleGetFunction(long module, String name) {
        MemorySegment out = scratch();
        int r;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cName = arena.allocateFrom(name);
            r = (int) cuModuleGetFunction.invokeExact(out, module, cName);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuModuleGetFunction(" + name + ")", r);
        }
        long function = out.get(LONG, 0);
        functionNames.put(function, name);
        return function;
    }

    /** The kernel name {@link #moduleGetFunction} got a function handle for (or its address in hex). */
    public String functionName(long function) {
        String name = functionNames.get(function);
        return name != null ? name : "function 0x" + Long.toHexString(function);
    }

    /** {@code cuFuncSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)}. */
    public void funcSetMaxDynamicSharedMemory(long function, int bytes) {
        int r;
        try {
            r = (int) cuFuncSetAttribute.invokeExact(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuFuncSetAttribute(" + functionName(function) + ", MAX_DYNAMIC_SHARED_SIZE_BYTES, "
                    + bytes + ")", r);
        }
    }

    /**
     * {@code cuLaunchKernel} with {@code kernelParams = args.pointers()} and {@code extra = NULL}. Allocates
     * nothing; a failure names the kernel.
     */
    public void launch(long function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                       int sharedBytes, long stream, KernelArgs args) {
        int r;
        try {
            r = (int) cuLaunchKernel.invokeExact(function, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes,
                    stream, args.pointers(), MemorySegment.NULL);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuLaunchKernel(" + functionName(function) + ", grid " + gridX + "x" + gridY + "x" + gridZ
                    + ", block " + blockX + "x" + blockY + "x" + blockZ + ", " + sharedBytes + " B shared, "
                    + args.count() + " args)", r);
        }
    }

    /**
     * {@code cuLaunchKernelEx} with the attribute {@code CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION} set:
     * the kernel may begin while the one before it on the stream finishes (programmatic dependent launch, sm_90), so
     * it must wait for that one before touching memory (every based4j kernel does, {@code griddepcontrol.wait} at its
     * start). Otherwise as {@link #launch}.
     */
    public void launchProgrammatic(long function, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ,
                                   int sharedBytes, long stream, KernelArgs args) {
        MemorySegment config = scratch().asSlice(256, LAUNCH_CONFIG_BYTES);
        MemorySegment attr = scratch().asSlice(320, LAUNCH_ATTRIBUTE_BYTES);
        attr.fill((byte) 0);
        attr.set(INT, 0, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
        attr.set(INT, 8, 1);  // programmaticStreamSerializationAllowed
        config.fill((byte) 0);
        config.set(INT, 0, gridX);
        config.set(INT, 4, gridY);
        config.set(INT, 8, gridZ);
        config.set(INT, 12, blockX);
        config.set(INT, 16, blockY);
        config.set(INT, 20, blockZ);
        config.set(INT, 24, sharedBytes);
        config.set(LONG, 32, stream);
        config.set(LONG, 40, attr.address());
        config.set(INT, 48, 1);
        int r;
        try {
            r = (int) cuLaunchKernelEx.invokeExact(config, function, args.pointers(), MemorySegment.NULL);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r != 0) {
            throw error("cuLaunchKernelEx(" + functionName(function) + ", programmatic, grid " + gridX + "x" + gridY
                    + "x" + gridZ + ", block " + blockX + "x" + blockY + "x" + blockZ + ", " + sharedBytes
                    + " B shared, " + args.count() + " args)", r);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Graphs

    /** {@code cuStreamBeginCapture} with {@code CU_STREAM_CAPTURE_MODE_THREAD_LOCAL}. */
    public void beginCapture(long stream) {
        int r;
        captures.readLock().lock();
        try {
            r = (int) cuStreamBeginCapture.invokeExact(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
        } catch (Throwable t) {
            captures.readLock().unlock();
            throw rethrow(t);
        }
        if (r != 0) {
            captures.readLock().unlock();
        } else {
            capturing.set(true);
        }
        check(r, "cuStreamBeginCapture");
    }

    /** Whether the driver has what {@link #captureNextProgrammatic} needs (CUDA 12.3 and later). */
    public boolean capturesProgrammaticEdges() {
        return cuStreamGetCaptureInfo != null && cuStreamUpdateCaptureDependencies != null
                && cuGraphNodeGetType != null;
    }

    /**
     * Makes the next node captured on {@code stream} depend programmatically on the node it would follow, where the
     * capture is active, it would follow exactly one node and that node is a kernel: the next kernel may then start
     * once every block of that one has triggered (its {@code griddepcontrol.launch_dependents}, or its end), as a
     * kernel launched with programmatic stream serialization would, and must itself wait
     * ({@code griddepcontrol.wait}) before it reads what that one writes. The node after must be a kernel too.
     *
     * @return whether the dependency was made programmatic (false, with nothing changed, where it was not)
     */
    public boolean captureNextProgrammatic(long stream) {
        if (!capturesProgrammaticEdges()) {
            return false;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment status = a.allocate(8, 8);
            MemorySegment id = a.allocate(8, 8);
            MemorySegment graph = a.allocate(8, 8);
            MemorySegment deps = a.allocate(8, 8);
            MemorySegment edges = a.allocate(8, 8);
            MemorySegment count = a.allocate(8, 8);
            int r = (int) cuStreamGetCaptureInfo.invokeExact(stream, status, id, graph, deps, edges, count);
            check(r, "cuStreamGetCaptureInfo_v3");
            if (status.get(INT, 0) != CU_STREAM_CAPTURE_STATUS_ACTIVE || count.get(LONG, 0) != 1) {
                return false;
            }
            long node = deps.get(ValueLayout.ADDRESS, 0).reinterpret(8).get(LONG, 0);
            MemorySegment type = a.allocate(4, 4);
            r = (int) cuGraphNodeGetType.invokeExact(node, type);
            check(r, "cuGraphNodeGetType");
            if (type.get(INT, 0) != CU_GRAPH_NODE_TYPE_KERNEL) {
                return false;
            }
            MemorySegment nodes = a.allocate(8, 8);
            nodes.set(LONG, 0, node);
            MemorySegment edge = a.allocate(8, 8);  // CUgraphEdgeData: from_port, to_port, type, reserved[5]
            edge.set(ValueLayout.JAVA_BYTE, 0, (byte) CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC);
            edge.set(ValueLayout.JAVA_BYTE, 2, (byte) CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC);
            r = (int) cuStreamUpdateCaptureDependencies.invokeExact(stream, nodes, edge, 1L,
                    CU_STREAM_SET_CAPTURE_DEPENDENCIES);
            check(r, "cuStreamUpdateCaptureDependencies_v2");
            return true;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static final int CU_STREAM_CAPTURE_STATUS_ACTIVE = 1;
    static final int CU_GRAPH_NODE_TYPE_KERNEL = 0;
    static final int CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC = 1;
    static final int CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC = 1;
    static final int CU_STREAM_SET_CAPTURE_DEPENDENCIES = 1;

    /** {@code cuStreamEndCapture}: the captured {@code CUgraph}. */
    public long endCapture(long stream) {
        MemorySegment out = scratch();
        out.set(LONG, 0, 0L);
        int r;
        try {
            r = (int) cuStreamEndCapture.invokeExact(stream, out);
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            if (capturing.get()) {
                capturing.set(false);
                captures.readLock().unlock();
            }
        }
        check(r, "cuStreamEndCapture");
        return out.get(LONG, 0);
    }

    /** {@code cuGraphInstantiate} (that is {@code cuGraphInstantiateWithFlags}, flags 0): a {@code CUgraphExec}. */
    public long instantiateGraph(long graph) {
        MemorySegment out = scratch();
        int r;
        try {
            r = (int) cuGraphInstantiate.invokeExact(out, graph, 0L);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuGraphInstantiate");
        return out.get(LONG, 0);
    }

    /** {@code cuGraphLaunch}. */
    public void launchGraph(long exec, long stream) {
        int r;
        try {
            r = (int) cuGraphLaunch.invokeExact(exec, stream);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuGraphLaunch");
    }

    /** {@code cuGraphDestroy}; 0 is ignored. */
    public void destroyGraph(long graph) {
        if (graph == 0) {
            return;
        }
        int r;
        try {
            r = (int) cuGraphDestroy.invokeExact(graph);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuGraphDestroy");
    }

    /** {@code cuGraphExecDestroy}; 0 is ignored. */
    public void destroyGraphExec(long exec) {
        if (exec == 0) {
            return;
        }
        int r;
        try {
            r = (int) cuGraphExecDestroy.invokeExact(exec);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        check(r, "cuGraphExecDestroy");
    }

    // ---------------------------------------------------------------------------------------------------------
    // Errors

    /** The enum name of a {@code CUresult} as the driver gives it ({@code cuGetErrorName}). */
    public String errorName(int code) {
        String s = errorText(cuGetErrorName, code);
        return s != null ? s : CudaErrors.name(code);
    }

    /** The description of a {@code CUresult} as the driver gives it ({@code cuGetErrorString}), or null. */
    public String errorString(int code) {
        String s = errorText(cuGetErrorString, code);
        return s != null ? s : CudaErrors.description(code);
    }

    private String errorText(MethodHandle handle, int code) {
        MemorySegment out = scratch();
        out.set(LONG, 0, 0L);
        int r;
        try {
            r = (int) handle.invokeExact(code, out);
        } catch (Throwable t) {
            return null;
        }
        long p = out.get(LONG, 0);
        if (r != 0 || p == 0) {
            return null;
        }
        return MemorySegment.ofAddress(p).reinterpret(1024).getString(0);
    }

    /** The exception for a failed call, naming the error as the driver does. */
    CudaException error(String call, int code) {
        return CudaException.driver(call, code, errorName(code), errorString(code));
    }

    private void check(int r, String call) {
        if (r != 0) {
            throw error(call, r);
        }
    }

    private static void host(MemorySegment segment, long bytes, String call) {
        if (!segment.isNative()) {
            throw new IllegalArgumentException(call + " needs native host memory, not a heap segment");
        }
        if (bytes < 0 || bytes > segment.byteSize()) {
            throw new IndexOutOfBoundsException(call + " of " + bytes + " bytes with a host segment of "
                    + segment.byteSize() + " bytes");
        }
    }

    private MemorySegment scratch() {
        return scratch.get();
    }

    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException e) {
            return e;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException("native call failed", t);
    }

    /** Looks symbols up in one library and makes downcall handles for them. */
    static final class Binder {
        private final NativeLibraries.Library library;
        private final Linker linker = Linker.nativeLinker();

        Binder(NativeLibraries.Library library) {
            this.library = library;
        }

        MethodHandle bind(String symbol, MemoryLayout result, MemoryLayout... args) {
            MemorySegment address = library.lookup().find(symbol).orElseThrow(() -> new CudaUnavailableException(
                    library.where() + " lacks the symbol " + symbol + " (too old a version, or not the library it should be)"));
            return linker.downcallHandle(address, result == null ? FunctionDescriptor.ofVoid(args)
                    : FunctionDescriptor.of(result, args));
        }

        MethodHandle bindFirst(String[] symbols, MemoryLayout result, MemoryLayout... args) {
            for (String symbol : symbols) {
                Optional<MemorySegment> address = library.lookup().find(symbol);
                if (address.isPresent()) {
                    return linker.downcallHandle(address.get(), FunctionDescriptor.of(result, args));
                }
            }
            throw new CudaUnavailableException(library.where() + " lacks the symbols " + String.join(" and ", symbols)
                    + " (too old a version, or not the library it should be)");
        }

        /** The handle for the symbol, or null where the library lacks it. */
        MethodHandle bindOptional(String symbol, MemoryLayout result, MemoryLayout... args) {
            Optional<MemorySegment> address = library.lookup().find(symbol);
            return address.map(a -> linker.downcallHandle(a, FunctionDescriptor.of(result, args))).orElse(null);
        }
    }
}
