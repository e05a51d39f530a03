package io.based4j.cuda;

import io.based4j.backend.Backend;
import io.based4j.backend.OpClock;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.TrainingBackend;
import io.based4j.config.MixerConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.NotEnoughMemoryException;
import static io.based4j.model.StateSize.human;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Supplier;

/**
 * The {@link Backend} on one NVIDIA GPU: cuBLASLt for the matrix products (the bias added, or its gradient summed, in
 * the product's epilogue where cuBLASLt offers that; {@code cublasGemmEx} where it has no algorithm), the kernels of
 * {@code based4j_kernels.cu} for everything else, all on one non-blocking stream of the device's primary context.
 * Weights and activations are kept in the chosen {@link Precision}; the residual stream, logits and recurrent state
 * stay float32. Token ids and batch layouts are copied up per call; only sampled ids (or logits, on request) come
 * back. Decode steps can be recorded as CUDA graphs ({@link #graphs()}).
 *
 * <p>It is also a {@link TrainingBackend}: the same forward ops over whole sequences from an empty state (state
 * null) keep what the backward needs ({@link TrainKernels} for the dense ops, the loss and AdamW,
 * {@link MixerTrainKernels} for the mixers). A {@link CudaParameter} holds float32 master values and, in bf16, the
 * bf16 copy the forward reads. Gradients and optimizer moments are float32 ({@link #allocateF32}); the training pass's
 * activations are whatever {@link #allocate} gives (the precision's type) and every training op takes each buffer in
 * either type, converting through reused scratch where a kernel wants the other (never in float32). The pass itself
 * needs no conversion in bf16: a float32 addend is added as it is ({@link #addInPlace}), the RMSNorm backward reads
 * its output gradient in either type and leaves the new float32 dx also rounded to bf16 for the product that reads
 * it next ({@link #matmulBackward}), and the SwiGLU backward works on its bf16 buffers. A pass waits for the device
 * once, to read the loss; {@link #sumOfSquares} waits once per call.
 *
 * <p>The CUDA context is current per OS thread: every call re-binds it when it comes from another thread than the
 * last one, so a backend may be handed between threads, but not used by two at once.
 */
public final class CudaBackend implements TrainingBackend {
    /** Resource holding the compiled kernels (sm_80, sm_90a, PTX). */
    static final String FATBIN = "/io/based4j/cuda/based4j-kernels.fatbin";
    /** Why a build without {@link #FATBIN} cannot run on a GPU, and how to get one that can. */
    private static final String NO_KERNELS = "this build of based4j has no CUDA kernels (nvcc, the CUDA compiler, was"
            + " not found when it was built, or -Dbased4j.skipKernels=true was given): install the CUDA toolkit 13"
            + " and rebuild with ./build package, or use a bundle made by scripts/bundle.sh where the toolkit is";
    private static final long CUBLAS_WORKSPACE = 32L << 20;
    /** Device memory a fit check keeps free for cuBLAS and the driver. */
    private static final long DEVICE_MARGIN = 256L << 20;
    /**
     * Logits the fused loss makes at a time at most (rows x vocabulary): 1 GiB in float32, 512 MiB in bf16, enough
     * rows a chunk for its products (rows x d outputs of the dx product) to fill the GPU. (Chunks of 4 or 16 Mi
     * logits, whose logits and gradients stay in the L2 cache, measured slower on an H200: 14% and 4% at the MQAR
     * shape, 9% and 6% at based-360m's; twice as many, 2 chunks of 8,192 rows at based-360m's in bf16, 191,873 and
     * 191,786 tokens/s against 192,280 and 193,394.)
     */
    private static final long LOSS_CELLS = 1L << 28;
    /**
     * Widest model whose gathered loss (a recall task's few scored rows) runs on the tensor cores without logits in
     * memory ({@link TrainKernels#crossEntropyMma}). Wider ones take the products with bf16 logits. Measured by
     * {@code bench kernels} on an H200 at 16,384 rows and a vocabulary of 8,192: width 64, 0.38 ms on the tensor cores
     * against 0.72 (float32 logits) and 0.65 (bf16 logits); width 128, 0.79 against 0.73 and 0.66.
     */
    static final int LOSS_MMA_MAX_WIDTH = 64;

    /** Scratch slot of the argmax of a loss over gathered rows (no other op uses it). */
    private static final int GATHERED_ARGMAX_SLOT = 8;
    /** Scratch slot of the bf16 copy of dx that rmsNormBackward leaves (no other op uses it). */
    private static final int DX_COPY_SLOT = 7;
    /** Scratch slot of a whole product that {@link #matmulEach} splits into its parts' outputs (no other op uses it). */
    private static final int MERGED_SLOT = 9;
    /** What that slot holds, for an allocation's failure (which names the bytes asked for and free). */
    private static final String MERGED_SCRATCH = "the product of stacked projections before its split";

    private final CudaDriver cu;
    private final int ordinal;
    private final long context;
    private final long stream;
    private final long module;
    private final long cublasWorkspace;
    private final Cublas blas;
    private final CublasLt lt;
    private final GemmRoutes routes = new GemmRoutes();
    private final Kernels kernels;
    private final TrainKernels train;
    private final MixerTrainKernels mixers;
    private final Scratch scratch;
    private final Readouts readouts;
    private final Precision precision;
    private final String deviceName;
    private final Map<Long, Long> allocations = new HashMap<>();
    private long allocated;
    private long peakAllocated;
    private Thread boundThread;
    /**
     * The float32 buffer (address and bytes) whose values the last op, a {@link #rmsNormBackward} in bf16, also
     * wrote rounded to bf16 at {@code dxCopy} (scratch slot {@link #DX_COPY_SLOT}), or 0: the operand the next
     * product of the backward walk reads, so that {@link #matmulBackward} need not convert it. Forgotten by the
     * next op ({@link #bind}) but a zero of another buffer (the backward walk zeroes gradient scratch in between).
     */
    private long dxCopyOf;
    private long dxCopyBytes;
    private long dxCopy;
    private Inputs inputs;
    private boolean recording;
    private boolean closed;
    /** The training step being recorded ({@link #stepRecorder}), or null. */
    private StepCapture capture;
    /** Recorded graphs alive (forward calls and training steps): the device memory they read outlives them. */
    private final List<AutoCloseable> graphsAlive = new ArrayList<>();
    /** Frees of memory that a recorded graph may read, done when the last graph closes ({@link #freeLater}). */
    private final List<Runnable> deferredFrees = new ArrayList<>();

    /** The host-to-device integer inputs of forward calls (one set for ordinary calls, one per recorded graph). */
    private final class Inputs implements AutoCloseable {
        final IntInput tokens;
        final IntInput layout;
        final IntInput rows;
        /** The layout of a part of a call's sequences ({@link #partLayout}); made on first use (eager calls only). */
        private IntInput part;
        TokenBatch lastBatch;
        /** The call and the sequences whose layout {@link #part} holds. */
        TokenBatch lastPartBatch;
        int[] lastPart;

        Inputs(int tokenCapacity, int layoutCapacity) {
            tokens = new IntInput(CudaBackend.this, "token ids", tokenCapacity);
            layout = new IntInput(CudaBackend.this, "batch layout", layoutCapacity);
            rows = new IntInput(CudaBackend.this, "row indices", 16);
        }

        IntInput part() {
            if (part == null) {
                part = new IntInput(CudaBackend.this, "layout of a part of a batch", 64);
            }
            return part;
        }

        @Override
        public void close() {
            tokens.close();
            layout.close();
            rows.close();
            if (part != null) {
                part.close();
            }
        }
    }

    /** Rows {@link #sample} takes at once. */
    private static final int SAMPLE_MAX_ROWS = 16384;
    /**
     * The sampling's pinned host memory, which the sampling kernel reads and writes itself (no copies on the stream):
     * two areas taken in turn, so that a sampling queued ahead ({@link #sampleAhead}) need not wait for the one
     * before it to have run; each five ints a row of settings (rows, temperature, top-k, top-p, the uniform), then
     * the sampled ids.
     */
    private final MemorySegment sampleHost;
    /** Where in an area of {@link #sampleHost} the sampled ids are: after the settings of SAMPLE_MAX_ROWS rows. */
    private static final long SAMPLE_IDS_OFFSET = 4L * 5 * SAMPLE_MAX_ROWS;
    /** Bytes of one area of {@link #sampleHost}. */
    private static final long SAMPLE_AREA_BYTES = SAMPLE_IDS_OFFSET + 4L * SAMPLE_MAX_ROWS;
    /** Per area of {@link #sampleHost}: the event after the kernel that last used it, and the ids it chose. */
    private final long[] sampleDone = new long[2];
    private final Drawn[] sampleOwner = new Drawn[2];
    /** The area the next sampling takes. */
    private int sampleTurn;
    /**
     * The recorded forward call launched last, while no forward call has run outside a recording since (its
     * embedding forgets it): the call whose logits a sampling queued now reads.
     */
    private CudaGraph lastGraph;
    /** Replays whose token ids a sampling kernel left in their staging area ({@link StepGraphs#replayFed}). */
    private long fedSteps;

    private CudaBackend(CudaDriver cu, int ordinal, Precision precision) {
        this.cu = cu;
        this.ordinal = ordinal;
        this.precision = precision;
        this.deviceName = cu.deviceName(ordinal);
        this.context = cu.retainPrimaryContext(ordinal);
        cu.setCurrent(context);
        this.boundThread = Thread.currentThread();
        this.stream = cu.createStream();
        this.module = cu.loadModule(loadFatbin());
        this.cublasWorkspace = allocate(CUBLAS_WORKSPACE, "cuBLAS workspace");
        this.blas = Cublas.create(stream, cublasWorkspace, CUBLAS_WORKSPACE);
        // one stream: cuBLASLt's products never overlap cuBLAS's, so they share its workspace
        this.lt = CublasLt.create(stream, cublasWorkspace, CUBLAS_WORKSPACE);
        if (gemmTiming(System.getProperty(GEMM_TIMING_PROPERTY)) == Boolean.TRUE) {
            lt.timing(gemmChoices(), deviceName, true);  // inference: its decode steps meet their weights cold
        }
        this.kernels = new Kernels(cu, module, stream);
        kernels.computeCapability(cu.attribute(ordinal, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                cu.attribute(ordinal, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR));
        kernels.multiprocessors(cu.attribute(ordinal, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT));
        kernels.sharedOptInLimit(cu.attribute(ordinal, CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN));
        kernels.sharedPerMultiprocessor(cu.attribute(ordinal,
                CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR));
        if (kernels.programmaticFits()) {
            lt.slowWriter(this::probeWriter);  // what a product on a programmatic edge is probed with
        }
        this.train = new TrainKernels(kernels, blas, lt);
        this.mixers = new MixerTrainKernels(kernels, this::freeLater);
        this.scratch = new Scratch(this);
        this.readouts = new Readouts(cu, stream, this::bind);
        this.inputs = new Inputs(1024, 1024);
        this.sampleHost = cu.mallocHost(2 * SAMPLE_AREA_BYTES);
        for (int a = 0; a < 2; a++) {
            sampleDone[a] = cu.createEvent();
        }
    }

    /**
     * The slow writer of cuBLASLt's probes ({@link CublasLt#probesFirstCalls}): delayedCopy launched programmatically,
     * inside the probe's own capture (no profile's events around it).
     */
    void probeWriter(long dst, long src, long bytes, long delayNs) {
        boolean programmatic = kernels.programmatic();
        boolean capturing = kernels.capturing();
        kernels.programmatic(true);
        kernels.capturing(true);
        try {
            kernels.delayedCopy(dst, src, bytes, delayNs);
        } finally {
            kernels.capturing(capturing);
            kernels.programmatic(programmatic);
        }
    }

    /**
     * Opens {@code device}: "cuda" (GPU 0) or "cuda:N".
     *
     * @throws CudaUnavailableException when the driver, cuBLAS, cuBLASLt, a GPU or the kernels cannot be found
     */
    public static CudaBackend open(String device, Precision precision) {
        int ordinal = parseOrdinal(device);
        if (CudaBackend.class.getResource(FATBIN) == null) {
            throw new CudaUnavailableException(NO_KERNELS);
        }
        CudaDriver cu = CudaDriver.get();
        int count = cu.deviceCount();
        if (count == 0) {
            throw new CudaUnavailableException("the CUDA driver sees no GPU on this machine");
        }
        if (ordinal >= count) {
            throw new CudaUnavailableException("--device " + device + ": there " + (count == 1 ? "is 1 GPU" : "are "
                    + count + " GPUs") + " (cuda:0" + (count > 1 ? " to cuda:" + (count - 1) : "") + ")");
        }
        return new CudaBackend(cu, ordinal, precision);
    }

    /** The GPU ordinal of "cuda" or "cuda:N". */
    public static int parseOrdinal(String device) {
        if (device.equals("cuda")) {
            return 0;
        }
        if (device.startsWith("cuda:")) {
            try {
                int n = Integer.parseInt(device.substring(5));
                if (n >= 0) {
                    return n;
                }
            } catch (NumberFormatException e) {
                // reported below
            }
        }
        throw new IllegalArgumentException("device '" + device + "' is not of the form cuda or cuda:N");
    }

    private static MemorySegment loadFatbin() {
        try (InputStream in = CudaBackend.class.getResourceAsStream(FATBIN)) {
            if (in == null) {
                throw new CudaUnavailableException(NO_KERNELS);
            }
            byte[] bytes = in.readAllBytes();
            MemorySegment image = Arena.global().allocate(bytes.length + 1L, 16);
            MemorySegment.copy(bytes, 0, image, ValueLayout.JAVA_BYTE, 0, bytes.length);
            return image;
        } catch (IOException e) {
            throw new CudaUnavailableException("cannot read the CUDA kernels " + FATBIN + ": " + e.getMessage());
        }
    }

    @Override
    public String name() {
        return "cuda:" + ordinal;
    }

    public String deviceName() {
        return deviceName;
    }

    public Precision precision() {
        return precision;
    }

    /** {@code bf16} or {@code f32}. */
    @Override
    public String precisionName() {
        return precision.suffix();
    }

    CudaDriver driver() {
        return cu;
    }

    /** The mixers' kernels this backend launches (its own scratch and settings; for the kernel workbench). */
    MixerTrainKernels mixers() {
        bind();
        return mixers;
    }

    /** The kernels, on this backend's stream (for the kernel workbench). */
    Kernels kernels() {
        bind();
        return kernels;
    }

    /** The training kernels, on this backend's stream (for the kernel workbench). */
    TrainKernels trainKernels() {
        bind();
        return train;
    }

    /** The cuBLAS handle, on this backend's stream (for the kernel workbench). */
    Cublas blas() {
        bind();
        return blas;
    }

    long stream() {
        return stream;
    }

    /** Bytes this backend holds in GPU memory now, and the most it has held. */
    public long allocatedBytes() {
        return allocated;
    }

    public long peakAllocatedBytes() {
        return peakAllocated;
    }

    /** Starts counting the peak afresh from what is held now. */
    public void resetPeak() {
        peakAllocated = allocated;
    }

    /**
     * Device-to-device copy bandwidth in bytes per second (bytes read plus bytes written), the best of {@code reps}
     * copies of {@code bytes}, timed with events: the ceiling that memory-bound steps are measured against.
     */
    public double copyBandwidth(long bytes, int reps) {
        bind();
        long src = allocateZeroed(bytes, "bandwidth probe");
        long dst = 0;
        long start = cu.createEvent();
        long end = cu.createEvent();
        try {
            dst = allocate(bytes, "bandwidth probe");
            double best = 0;
            for (int r = 0; r < reps + 1; r++) {
                cu.record(start, stream);
                cu.copyDtoDAsync(dst, src, bytes, stream);
                cu.record(end, stream);
                cu.synchronizeEvent(end);
                float ms = cu.elapsedMillis(start, end);
                if (r > 0) { // the first copy warms up
                    best = Math.max(best, 2.0 * bytes / (ms / 1e3));
                }
            }
            return best;
        } finally {
            cu.destroyEvent(start);
            cu.destroyEvent(end);
            free(src);
            if (dst != 0) {
                free(dst);
            }
        }
    }

    /** {free, total} bytes of the device as the driver reports them. */
    public long[] deviceMemory() {
        bind();
        return cu.memoryInfo();
    }

    /** Waits until all queued work has finished. */
    public void synchronize() {
        bind();
        cu.synchronize(stream);
    }

    /**
     * Starts ({@code start}) or ends the range a profiler started with collection off collects in, for the work
     * queued on this backend's stream from now on ({@code ncu --profile-from-start off}, {@code nsys profile
     * --capture-range=cudaProfilerApi}); without such a profiler, nothing happens.
     */
    public void profilerRange(boolean start) {
        bind();
        cu.profilerRange(start);
    }

    /**
     * Makes the context current on this thread. Every op starts here, so this is also where the bf16 copy of a dx
     * that {@link #rmsNormBackward} left is forgotten ({@link #dxCopyOf}): any op may change the values it copies.
     */
    private void bind() {
        makeCurrent();
        dxCopyOf = 0;
    }

    /**
     * Makes the context current on this thread and nothing else: for the {@link #clock}'s calls between ops, which
     * change no values, so that a profile keeps the bf16 copy of a dx for the product after, as a step does.
     */
    private void makeCurrent() {
        if (closed) {
            throw new IllegalStateException("the CUDA backend is closed");
        }
        Thread t = Thread.currentThread();
        if (t != boundThread) {
            cu.setCurrent(context);
            boundThread = t;
        }
    }

    // ---------------------------------------------------------------- memory

    /** Device memory of {@code bytes}; an out-of-memory failure names {@code what}, the need and what is free. */
    long allocate(long bytes, String what) {
        bind();
        if (capture != null) {
            throw new StepNotRecordable("the pass allocates device memory (" + what + ") as it runs");
        }
        long ptr;
        try {
            ptr = cu.malloc(Math.max(bytes, 1));
        } catch (CudaException e) {
            throw outOfMemory(e, what, bytes);
        }
        allocations.put(ptr, bytes);
        allocated += bytes;
        peakAllocated = Math.max(peakAllocated, allocated);
        return ptr;
    }

    /**
     * {@code e}, or where it says the device is out of memory, an error naming {@code what}, the bytes it needed, what
     * is free and what based4j holds.
     */
    private RuntimeException outOfMemory(CudaException e, String what, long bytes) {
        if (!e.isOutOfMemory()) {
            return e;
        }
        long[] info = cu.memoryInfo();
        return new IllegalStateException(String.format(Locale.ROOT,
                "%s: GPU %s is out of memory: %s needed, %s free of %s (based4j holds %s)", what, name(),
                human(bytes), human(info[0]), human(info[1]), human(allocated)), e);
    }

    long allocateZeroed(long bytes, String what) {
        long ptr = allocate(bytes, what);
        cu.memsetD8Async(ptr, 0, bytes, stream);
        return ptr;
    }

    void free(long ptr) {
        if (capture != null) {
            throw new StepNotRecordable("the pass frees device memory as it runs");
        }
        Long bytes = allocations.remove(ptr);
        if (bytes == null) {
            throw new IllegalStateException("freeing GPU memory this backend does not hold: 0x" + Long.toHexString(ptr));
        }
        bind();
        // Work queued on the stream may still read it.
        cu.synchronize(stream);
        cu.free(ptr);
        allocated -= bytes;
    }

    /**
     * Runs {@code free} (which frees device memory that a recorded graph may read: scratch being replaced) now, or,
     * while graphs are alive, once the last of them has closed.
     */
    void freeLater(Runnable free) {
        if (graphsAlive.isEmpty()) {
            free.run();
        } else {
            deferredFrees.add(free);
        }
    }

    private void graphOpened(AutoCloseable graph) {
        graphsAlive.add(graph);
    }

    private void graphClosed(AutoCloseable graph) {
        graphsAlive.remove(graph);
        if (graphsAlive.isEmpty()) {
            List<Runnable> frees = new ArrayList<>(deferredFrees);
            deferredFrees.clear();
            frees.forEach(Runnable::run);
        }
    }

    /**
     * Launches this backend's kernels with programmatic dependent launch from now on, or the usual way, recorded decode
     * steps included (by default only those take it, {@link Kernels#programmaticSteps}, unless
     * {@code -Dbased4j.cuda.pdl=false}; {@code true} launches every kernel so): each kernel may then be launched once
     * every block of the one before it on the stream has started, waiting for that one to complete before it reads
     * what that one may write, so that launches overlap the previous kernel's work. The same kernels in the same
     * order: the same results, bit for bit.
     *
     * @throws IllegalStateException on a GPU of compute capability below 9, whose code has no such wait
     */
    public void programmaticLaunches(boolean on) {
        bind();
        kernels.programmatic(on);
        kernels.programmaticStepsAllowed(on);
    }

    // ---------------------------------------------------------------- memory that grows (CudaStates.GrowingRegion)

    /** Smallest piece of memory mapped behind reserved addresses. */
    static final long GROWING_PIECE_BYTES = 2L << 20;
    /** Whether the device maps memory behind reserved addresses: 1 yes, 0 no, -1 not asked yet. */
    private int growsMemory = -1;
    private long growingPiece;
    /** The device's granularity of mapped memory (a power of two): the alignment of reserved addresses. */
    private long growingAlignment;
    /** Regions whose addresses are reserved: released when the backend closes, if not before. */
    private final List<CudaStates.GrowingRegion> growing = new ArrayList<>();

    /**
     * The system property that decides whether each cuBLASLt product's algorithm is chosen by timing the heuristic's
     * candidates on its first call: {@code true} for every product, {@code false} for none; unset, the products of a
     * backend that trains ({@link #timeProducts}: all its products from then on, its validation's too) are timed,
     * those of a backend that only infers are not (a prompt of a new length would be).
     */
    static final String GEMM_TIMING_PROPERTY = "based4j.cuda.gemmTiming";
    /**
     * The system property naming the file where timed choices are kept ({@link GemmChoices}; default
     * {@link GemmChoices#defaultFile()}), or {@code none} to keep them in memory only.
     */
    static final String GEMM_CHOICES_PROPERTY = "based4j.cuda.gemmChoices";

    /**
     * The value of {@value #GEMM_TIMING_PROPERTY}: null where unset, else true or false.
     *
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static Boolean gemmTiming(String value) {
        return Kernels.onOff(GEMM_TIMING_PROPERTY, value);
    }

    private static GemmChoices gemmChoices() {
        String file = System.getProperty(GEMM_CHOICES_PROPERTY);
        if ("none".equals(file)) {
            return GemmChoices.of(null);
        }
        return GemmChoices.of(file == null || file.isBlank() ? GemmChoices.defaultFile() : Path.of(file));
    }

    /**
     * Training's products repeat every step: from now on each takes the fastest of the algorithms cuBLASLt's heuristic
     * offers, timed on its first call (a few milliseconds) and kept in {@link GemmChoices}, so that a resumed run
     * takes the same ones; unless {@code -Dbased4j.cuda.gemmTiming=false}. Timed warm (back to back) unless
     * {@code -Dbased4j.cuda.gemmTimedCold=true}, also where inference's timing (cold) was on before.
     */
    @Override
    public void timeProducts() {
        if (gemmTiming(System.getProperty(GEMM_TIMING_PROPERTY)) != Boolean.FALSE) {
            timeProducts(gemmChoices());
        }
    }

    /**
     * {@link #timeProducts()} with the choices kept in {@code choices}, whatever {@code -Dbased4j.cuda.gemmTiming}
     * says ({@code -Dbased4j.cuda.gemmTimedCold} still chooses cold or warm).
     */
    void timeProducts(GemmChoices choices) {
        bind();
        lt.timing(choices, deviceName);
    }

    /** The system property that makes full key/value caches grow ({@code -Dbased4j.cuda.growingCache=true}). */
    static final String GROWING_CACHE_PROPERTY = "based4j.cuda.growingCache";
    /**
     * Whether full key/value caches made from now on grow in pieces ({@link CudaStates.GrowingRegion}). Off unless
     * {@value #GROWING_CACHE_PROPERTY} is true: a mapping costs about 46 us. When each piece was mapped by its own
     * call (a piece per sequence and layer), attn-1b's prefill of 128 x 1,536 tokens took twice as long on an H200;
     * with the pieces a call needs side by side mapped by one call it ran at 152,192 tokens/s against 159,276 with
     * whole caches, and at batch 1 at 67,625 against 119,474.
     */
    private boolean growCaches = Boolean.getBoolean(GROWING_CACHE_PROPERTY);

    /** Makes the full key/value caches made from now on grow in pieces, or be made whole ({@link #growCaches}). */
    void growCaches(boolean on) {
        growCaches = on;
    }

    /**
     * Whether full key/value caches made now grow: when asked to ({@link #growCaches}) and the device takes the
     * virtual memory calls (CUDA's {@code cuMemAddressReserve}, {@code cuMemCreate}, {@code cuMemMap}).
     */
    boolean growsMemory() {
        if (!growCaches) {
            return false;
        }
        if (growsMemory < 0) {
            bind();
            growsMemory = cu.attribute(ordinal, CudaDriver.CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED) == 1
                    ? 1 : 0;
            if (growsMemory == 1) {
                long g = cu.allocationGranularity(ordinal);
                growingPiece = g <= 0 ? GROWING_PIECE_BYTES : (GROWING_PIECE_BYTES + g - 1) / g * g;
                growingAlignment = Math.max(g, 0);  // 0: the driver's own
            }
        }
        return growsMemory == 1;
    }

    /** Bytes of a piece a {@link CudaStates.GrowingRegion} maps at a time (after {@link #growsMemory}). */
    long growingPiece() {
        return growingPiece;
    }

    /** Reserves {@code bytes} of device addresses for {@code region} (no memory behind them yet). */
    long reserveAddresses(CudaStates.GrowingRegion region, long bytes, String what) {
        bind();
        if (capture != null) {
            throw new StepNotRecordable("the pass reserves device addresses (" + what + ") as it runs");
        }
        long ptr = cu.reserveAddresses(bytes, growingAlignment);
        growing.add(region);
        return ptr;
    }

    /** Gives back addresses of {@link #reserveAddresses} (nothing mapped there any more). */
    void freeAddresses(CudaStates.GrowingRegion region, long ptr, long bytes) {
        bind();
        cu.freeAddresses(ptr, bytes);
        growing.remove(region);
    }

    /**
     * Maps {@code bytes} (whole pieces) of new device memory at {@code ptr} (reserved addresses) by one allocation
     * and zeros it on the stream; its handle. Counted as allocated; an out-of-memory failure names {@code what}, the
     * need and what is free.
     */
    long mapPiece(long ptr, long bytes, String what) {
        bind();
        if (capture != null) {
            throw new StepNotRecordable("the pass maps device memory (" + what + ") as it runs");
        }
        long handle;
        try {
            handle = cu.createMemory(ordinal, bytes);
        } catch (CudaException e) {
            throw outOfMemory(e, what, bytes);
        }
        try {
            cu.mapMemory(ptr, bytes, handle, ordinal);
        } catch (RuntimeException e) {
            cu.releaseMemory(handle);
            throw e instanceof CudaException c ? outOfMemory(c, what, bytes) : e;
        }
        try {
            cu.memsetD8Async(ptr, 0, bytes, stream);
        } catch (RuntimeException e) {
            cu.unmapMemory(ptr, bytes);
            cu.releaseMemory(handle);
            throw e;
        }
        allocated += bytes;
        peakAllocated = Math.max(peakAllocated, allocated);
        return handle;
    }

    /** Unmaps what one {@link #mapPiece} mapped once the work queued on the stream is done, and gives it back. */
    void unmapPiece(long ptr, long bytes, long handle) {
        if (capture != null) {
            throw new StepNotRecordable("the pass unmaps device memory as it runs");
        }
        bind();
        cu.synchronize(stream);
        cu.unmapMemory(ptr, bytes);
        cu.releaseMemory(handle);
        allocated -= bytes;
    }

    /** Zeros {@code bytes} bytes at {@code ptr} on the stream. */
    void zeroBytes(long ptr, long bytes) {
        bind();
        cu.memsetD8Async(ptr, 0, bytes, stream);
    }

    /**
     * The key/value cache and BaseConv's history hold the compute type: bf16 halves them (and what a decode step reads
     * of them).
     */
    @Override
    public int cacheValueBytes() {
        return precision.bytes();
    }

    /** Copies {@code bytes} from {@code src} to {@code dst} on the device, on the stream. */
    void copyOnDevice(long dst, long src, long bytes) {
        bind();
        cu.copyDtoDAsync(dst, src, bytes, stream);
    }

    /** New device memory holding {@code values} as float32. */
    long uploadFloats(float[] values, String what) {
        long ptr = allocate(4L * values.length, what);
        copyUp(ptr, values);
        return ptr;
    }

    @Override
    public void checkFits(long bytes, String what) {
        bind();
        long[] info = cu.memoryInfo();
        long margin = DEVICE_MARGIN;
        if (bytes + margin > info[0]) {
            throw new IllegalStateException(String.format(Locale.ROOT,
                    "%s does not fit on GPU %s (%s): %s needed (plus %s spare), %s free of %s", what, name(),
                    deviceName, human(bytes), human(margin), human(info[0]), human(info[1])));
        }
    }

    @Override
    public Buffer allocate(int rows, int cols) {
        return allocateTyped(rows, cols, precision);
    }

    @Override
    public Buffer allocateF32(int rows, int cols) {
        return allocateTyped(rows, cols, Precision.F32);
    }

    private CudaBuffer allocateTyped(int rows, int cols, Precision type) {
        long bytes = (long) rows * cols * type.bytes();
        long ptr = allocateZeroed(bytes, "activations " + rows + "x" + cols);
        return new CudaBuffer(ptr, rows, cols, type, null);
    }

    @Override
    public Buffer view(Buffer buffer, int rows) {
        CudaBuffer b = raw(buffer);
        if (rows < 0 || rows > b.rows) {
            throw new IllegalArgumentException("a view of " + rows + " rows does not fit " + b);
        }
        return rows == b.rows ? b : new CudaBuffer(b.ptr, rows, b.cols, b.type, b.owner);
    }

    @Override
    public void release(Buffer buffer) {
        if (buffer instanceof CudaParameter p && p.hasCopy() && allocations.containsKey(p.compute.ptr)) {
            free(p.compute.ptr);
        }
        CudaBuffer b = raw(buffer);
        if (b.owner == b && allocations.containsKey(b.ptr)) {
            pendingZeros.removeIf(z -> overlaps(z[0], z[1], b.ptr, b.bytes()));
            free(b.ptr);
        }
    }

    @Override
    public Buffer upload(float[] values, int rows, int cols) {
        if ((long) rows * cols != values.length) {
            throw new IllegalArgumentException(values.length + " values do not make " + rows + "x" + cols);
        }
        CudaBuffer out = (CudaBuffer) allocate(rows, cols);
        if (out.type == Precision.F32) {
            copyUp(out.ptr, values);
        } else {
            long staging = uploadFloats(values, "upload staging");
            kernels.f32ToA(out.type, staging, out.ptr, out.count());
            free(staging);
        }
        return out;
    }

    /** New device memory holding {@code values} as int32. */
    long uploadInts(int[] values, String what) {
        long ptr = allocate(4L * values.length, what);
        copyUp(ptr, values.length, host -> MemorySegment.copy(values, 0, host, ValueLayout.JAVA_INT, 0,
                values.length));
        return ptr;
    }

    /** Copies {@code values} as float32 to {@code ptr} and waits until they are there. */
    private void copyUp(long ptr, float[] values) {
        copyUp(ptr, values.length, host -> MemorySegment.copy(values, 0, host, ValueLayout.JAVA_FLOAT, 0,
                values.length));
    }

    /** Copies {@code count} 4-byte values, written into host memory by {@code fill}, to {@code ptr}, and waits. */
    private void copyUp(long ptr, int count, java.util.function.Consumer<MemorySegment> fill) {
        bind();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4L * Math.max(count, 1), 8);
            fill.accept(host);
            cu.copyHtoDAsync(ptr, host, 4L * count, stream);
            cu.synchronize(stream);
        }
    }

    @Override
    public float[] download(Buffer buffer) {
        CudaBuffer b = bufferOf(buffer);
        bind();
        long src = b.ptr;
        long staging = 0;
        if (b.type != Precision.F32) {
            staging = allocate(4L * b.count(), "download staging");
            kernels.aToF32(b.type, b.ptr, staging, b.count());
            src = staging;
        }
        float[] out = new float[Math.toIntExact(b.count())];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4L * Math.max(out.length, 1), 8);
            cu.copyDtoHAsync(host, src, 4L * out.length, stream);
            cu.synchronize(stream);
            MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, 0, out, 0, out.length);
        } finally {
            if (staging != 0) {
                free(staging);
            }
        }
        return out;
    }

    @Override
    public Weight weight(Tensor tensor) {
        bind();
        long ptr = allocate(tensor.numel() * precision.bytes(), "weight " + java.util.Arrays.toString(tensor.shape()));
        upload(tensor, ptr);
        return new CudaWeight(ptr, tensor.shape(), precision);
    }

    /**
     * Matrices of one width in one allocation, one after another (so the rows of all, in order, are one matrix:
     * {@link #matmulEach} takes their products as one); each part as {@link #weight} makes it. Tensors of different
     * widths, or any but 2-D ones, are taken one by one.
     */
    @Override
    public Weight[] weights(Tensor... tensors) {
        bind();
        long cols = -1;
        long rows = 0;
        boolean together = tensors.length >= 2;
        for (Tensor t : tensors) {
            long[] shape = t.shape();
            together &= shape.length == 2 && shape[0] > 0 && (cols < 0 || shape[1] == cols);
            if (together) {
                cols = shape[1];
                rows += shape[0];
            }
        }
        if (!together || rows > Integer.MAX_VALUE) {
            return TrainingBackend.super.weights(tensors);
        }
        long ptr = allocate(rows * cols * precision.bytes(), "weights " + rows + "x" + cols);
        CudaWeight whole = new CudaWeight(ptr, new long[] {rows, cols}, precision);
        Weight[] out = new Weight[tensors.length];
        long at = ptr;
        for (int i = 0; i < tensors.length; i++) {
            upload(tensors[i], at);
            out[i] = new CudaWeight(at, tensors[i].shape(), precision, whole);
            at += tensors[i].numel() * precision.bytes();
        }
        if (mergedProductsOn) {
            // the whole product's scratch for as many rows as matmulEach takes it at, made now: a recorded step
            // allocates nothing
            scratch.slot(MERGED_SLOT, rows * Math.min(mergedMaxRows, MERGED_MAX_ROWS) * precision.bytes(),
                    MERGED_SCRATCH);
        }
        return out;
    }

    /** A tensor's values, in the compute type, into device memory at {@code ptr}. */
    private void upload(Tensor tensor, long ptr) {
        long n = tensor.numel();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host;
            if (precision == Precision.BF16 && tensor.dtype() == DType.BF16) {
                host = tensor.data();
            } else if (precision == Precision.F32 && tensor.dtype() == DType.F32) {
                host = tensor.data();
            } else {
                host = a.allocate(n * precision.bytes(), 8);
                for (long i = 0; i < n; i++) {
                    float v = tensor.getFloat(i);
                    if (precision == Precision.F32) {
                        host.setAtIndex(Tensor.F32_LE, i, v);
                    } else {
                        host.setAtIndex(Tensor.I16_LE, i, Tensor.floatToBf16(v));
                    }
                }
            }
            if (!host.isNative()) {
                MemorySegment copy = a.allocate(host.byteSize(), 8);
                copy.copyFrom(host);
                host = copy;
            }
            cu.copyHtoDAsync(ptr, host, n * precision.bytes(), stream);
            cu.synchronize(stream);
        }
    }

    @Override
    public long storedBytes(Tensor tensor) {
        return tensor.numel() * precision.bytes();
    }

    @Override
    public MixerState allocateState(MixerConfig mixer, int slots, int maxLength) {
        bind();
        return switch (mixer) {
            case MixerConfig.BaseConv c -> new CudaStates.Conv(this, slots, c.innerWidth(), c.kernel());
            case MixerConfig.LinearAttention l -> new CudaStates.Linear(this, slots, l.numHeads(), l.featureDim(),
                    l.headDim(), linearDeferSteps(l, slots));
            case MixerConfig.Attention a -> a.sliding()
                    ? new CudaStates.KeyValue(this, slots, a.window(), true, a, maxLength,
                    Kernels.rotaryTable(a, maxLength))
                    : new CudaStates.KeyValue(this, slots, maxLength, false, a, maxLength,
                    Kernels.rotaryTable(a, maxLength));
        };
    }

    // ---------------------------------------------------------------- inputs

    /** The batch layout the kernels read: slots | starts | lengths | offsets (B + 1) | sequence of each token. */
    static int[] layoutOf(TokenBatch batch) {
        return layoutOf(batch, java.util.stream.IntStream.range(0, batch.size()).toArray());
    }

    /**
     * The layout of the sequences {@code which} of {@code batch} alone (all of them: {@link #layoutOf(TokenBatch)}):
     * slots, starts, lengths and their rows' offsets in the call, the call's token count, then for every row of the
     * call its sequence's place in {@code which}, -1 for a row of another sequence (a kernel over the call's rows
     * skips those).
     */
    static int[] layoutOf(TokenBatch batch, int[] which) {
        int n = which.length;
        int t = batch.totalTokens();
        int[] offsets = batch.offsets();
        int[] l = new int[4 * n + 1 + t];
        Arrays.fill(l, 4 * n + 1, l.length, -1);
        l[4 * n] = t;
        for (int j = 0; j < n; j++) {
            int i = which[j];
            l[j] = batch.slot(i);
            l[n + j] = batch.start(i);
            l[2 * n + j] = batch.length(i);
            l[3 * n + j] = offsets[i];
            for (int r = offsets[i]; r < offsets[i + 1]; r++) {
                l[4 * n + 1 + r] = j;
            }
        }
        return l;
    }

    /** Device copy of the batch layout, uploaded once per batch (the model hands every layer the same one). */
    private long layout(TokenBatch batch) {
        if (inputs.lastBatch == batch) {
            return inputs.layout.device();
        }
        int[] values = layoutOf(batch);
        long ptr = capture != null ? capture.upload(inputs.layout, values, Source.CONSTANT, null)
                : inputs.layout.upload(values, !recording);
        inputs.lastBatch = batch;
        return ptr;
    }

    // ---------------------------------------------------------------- dense ops

    private static void check(String op, CudaBuffer b, int rows, int cols, Precision type) {
        if (b.rows != rows || b.cols != cols) {
            throw new IllegalArgumentException(op + ": buffer is " + b.rows + "x" + b.cols + ", expected " + rows
                    + "x" + cols);
        }
        if (type != null && b.type != type) {
            throw new IllegalArgumentException(op + ": buffer holds " + b.type.suffix() + ", expected "
                    + type.suffix());
        }
    }

    @Override
    public void embedding(Weight table, int[] ids, Buffer out) {
        bind();
        CudaWeight t = weightOf(table);
        CudaBuffer o = bufferOf(out);
        check("embedding", o, ids.length, t.cols(), null);
        for (int id : ids) {
            if (id < 0 || id >= t.rows()) {
                throw new IllegalArgumentException("token id " + id + " is outside the embedding table [0, "
                        + t.rows() + ")");
            }
        }
        if (!recording) {
            lastGraph = null;  // a forward call outside a recording: the logits sampled next are not the graph's
        }
        long dev;
        if (capture != null) {
            dev = capture.upload(inputs.tokens, ids, Source.IDS, ids);
            capture.tokenRows = t.rows();
        } else {
            dev = inputs.tokens.upload(ids, !recording);
        }
        long op = writeTo(o, Precision.F32, 0);
        kernels.embedding(precision, t.ptr, dev, op, ids.length, t.cols());
        written(o, Precision.F32, op);
    }

    @Override
    public void rmsNorm(Buffer x, Weight weight, double epsilon, Buffer out, Buffer rstd) {
        float eps = (float) epsilon;
        bind();
        if (rstd != null) {
            rmsNormKeeping(bufferOf(x), weightOf(weight), eps, bufferOf(out), bufferOf(rstd));
            return;
        }
        CudaBuffer a = bufferOf(x);
        CudaBuffer o = bufferOf(out);
        check("rmsNorm input", a, o.rows, o.cols, Precision.F32);
        check("rmsNorm output", o, a.rows, a.cols, precision);
        train.rmsNormRstd(precision, a.ptr, weightOf(weight).ptr, o.ptr, 0, a.rows, a.cols, eps);
    }

    /**
     * {@code out = x @ w^T + bias}. The bias is added in cuBLASLt's epilogue where it has the output's type (the bias
     * vector of {@code CUBLASLT_EPILOGUE_BIAS} has D's type: a bf16 bias with a bf16 output, a float32 one with a
     * float32 output), else by a kernel after the product (a bf16 bias with a float32 output).
     */
    @Override
    public void matmul(Buffer x, Weight w, Weight bias, Buffer out) {
        bind();
        CudaBuffer a = bufferOf(x);
        CudaWeight m = weightOf(w);
        CudaBuffer o = bufferOf(out);
        CudaWeight b = bias == null ? null : weightOf(bias);
        if (b != null && (long) b.rows() * b.cols() != m.rows()) {
            throw new IllegalArgumentException("matmul: the bias " + b + " does not hold the " + m.rows()
                    + " values of " + m + "'s rows");
        }
        if (gemm(a, m, o, b, "matmul") || b == null) {
            return;
        }
        routes.biasKernel++;
        if (o.type == precision) {
            kernels.addBias(precision, o.ptr, b.ptr, o.rows, o.cols);
        } else {
            kernels.addBiasF32(precision, o.ptr, b.ptr, o.rows, o.cols);
        }
    }

    /**
     * {@code out = x @ w^T (+ bias) + residual}: with a float32 residual and output, one cuBLASLt product that reads
     * the residual as C and writes out as D (beta 1); a parameter's bias in the epilogue from its float32 master
     * values, another bf16 bias by a kernel after the product. Otherwise {@link #matmul} then {@link #addInPlace}.
     */
    @Override
    public void matmulAdd(Buffer x, Weight w, Weight bias, Buffer residual, Buffer out) {
        bind();
        CudaBuffer a = bufferOf(x);
        CudaWeight m = weightOf(w);
        CudaBuffer r = bufferOf(residual);
        CudaBuffer o = raw(out);
        int n = a.rows;
        int k = a.cols;
        int cols = m.rows();
        boolean fused = o.type == Precision.F32 && r.type == Precision.F32 && a.type == precision && m.cols() == k
                && o.rows == n && o.cols == cols && r.rows == n && r.cols == cols && n > 0 && k > 0 && cols > 0
                && !overlaps(o.ptr, o.bytes(), r.ptr, r.bytes());
        long biasF32 = 0;
        CudaWeight b = bias == null ? null : weightOf(bias);
        if (fused && b != null) {
            if ((long) b.rows() * b.cols() != cols) {
                throw new IllegalArgumentException("matmul: the bias " + b + " does not hold the " + cols
                        + " values of " + m + "'s rows");
            }
            biasF32 = bias instanceof CudaParameter p ? p.master.ptr : b.type == Precision.F32 ? b.ptr : 0;
        }
        if (fused) {
            takeZero(o);  // written whole
            if (lt.matmul(Cublas.OP_T, Cublas.OP_N, cols, n, k, 1f, m.ptr, cublasType(m.type), k, a.ptr,
                    cublasType(a.type), k, 1f, r.ptr, Cublas.R_32F, cols, o.ptr, Cublas.COMPUTE_32F,
                    biasF32 == 0 ? CublasLt.EPILOGUE_DEFAULT : CublasLt.EPILOGUE_BIAS, biasF32)) {
                routes.ltResidual++;
                if (b != null && biasF32 == 0) {
                    routes.biasKernel++;
                    kernels.addBiasF32(precision, o.ptr, b.ptr, o.rows, o.cols);
                }
                return;
            }
        }
        TrainingBackend.super.matmulAdd(x, w, bias, residual, out);
    }

    /**
     * Whether gemmWg version 2's paired forms take a product and what follows it ({@link #matmulSwiglu},
     * {@link #matmulBaseConv}): operands as gemmWg takes them, and version 2 taking the product or the paired forms
     * asked for ({@link Kernels#gemmTmaPairedPays}).
     */
    private boolean pairedRoute(CudaBuffer x, CudaWeight w, CudaWeight bias, CudaBuffer out) {
        return precision == Precision.BF16 && x.type == precision && w.type == precision
                && (bias == null || bias.type == precision) && out.type == precision
                && Kernels.gemmWgFits(x.rows, x.cols, x.ptr, w.ptr) && kernels.gemmTmaPairedPays(x.rows);
    }

    /** Which kernel takes a product: the decode step's own (gemmWg, gemmRows, gemv) or the library's. */
    private enum Route { GEMM_WG, GEMM_ROWS, GEMV, LIBRARY }

    /**
     * The kernel {@link #gemm} takes for {@code out = x @ w^T (+ bias)}, shapes checked: the decode step's own take
     * weights and bias in the compute type, out in it or in float32, and few rows.
     */
    private Route route(CudaBuffer x, CudaWeight w, CudaWeight bias, CudaBuffer out) {
        int n = x.rows;
        int k = x.cols;
        int m = w.rows();
        boolean ownKernels = x.type == precision && w.type == precision && (bias == null || bias.type == precision)
                && (out.type == precision || out.type == Precision.F32);
        if (ownKernels && precision == Precision.BF16 && Kernels.gemmWgFits(n, k, x.ptr, w.ptr)
                && kernels.gemmWgPays(n)) {
            return Route.GEMM_WG;
        }
        if (ownKernels && precision == Precision.BF16 && Kernels.gemmRowsFits(n, k, x.ptr, w.ptr)
                && kernels.gemmRowsPays(n, m, k)) {
            return Route.GEMM_ROWS;
        }
        if (ownKernels && Kernels.gemvFits(n, k, x.ptr, w.ptr) && kernels.gemvPays(n, m, k)) {
            return Route.GEMV;
        }
        return Route.LIBRARY;
    }

    /**
     * The system property that switches off the decode step's fused products ({@link #matmulSwiglu},
     * {@link #matmulBaseConv} in one kernel each): {@code false} runs their two ops apart, for comparisons.
     */
    static final String FUSED_PRODUCTS_PROPERTY = "based4j.cuda.fusedProducts";
    private final boolean fusedProducts =
            Kernels.onOff(FUSED_PRODUCTS_PROPERTY, System.getProperty(FUSED_PRODUCTS_PROPERTY)) != Boolean.FALSE;

    /**
     * Whether the product {@code out = x @ w^T (+ bias)} runs as gemv version 3 and a fused form of it takes it
     * ({@link Kernels#gemvFusedParts}): the numbers of the fused kernel are then those of the product and the op
     * after it run apart.
     */
    private boolean fusedGemv(CudaBuffer x, CudaWeight w, CudaWeight bias, CudaBuffer out) {
        return fusedProducts && kernels.gemvFusedRuns() && x.type == precision && out.type == precision
                && w.cols() == x.cols && out.rows == x.rows && out.cols == w.rows() && x.rows > 0
                && (bias == null || (long) bias.rows() * bias.cols() == w.rows())
                && route(x, w, bias, out) == Route.GEMV
                && Kernels.gemvFusedParts(precision, x.rows, w.rows(), x.cols, x.ptr, w.ptr) > 0;
    }

    /**
     * {@code out = swiglu(x @ w^T)}: for a decode step's one or two rows on gemv, one kernel
     * ({@link Kernels#gemvSwiglu}: the product and {@link #swiglu}'s numbers, bit for bit, the product not written);
     * where gemmWg's version 2 takes the product, its paired form ({@link Kernels#gemmTmaSwiglu}, the same numbers);
     * otherwise the two ops.
     */
    @Override
    public void matmulSwiglu(Buffer x, Weight w, Buffer product, Buffer out) {
        bind();
        CudaBuffer a = bufferOf(x);
        CudaWeight m = weightOf(w);
        CudaBuffer p = bufferOf(product);
        CudaBuffer o = bufferOf(out);
        if (fusedGemv(a, m, null, p) && o.type == precision && o.rows == a.rows && 2L * o.cols == m.rows()
                && !overlaps(o.ptr, o.bytes(), a.ptr, a.bytes())) {
            kernels.gemvSwiglu(precision, a.ptr, m.ptr, 0, o.ptr, a.rows, o.cols, a.cols);
            routes.gemv++;
            routes.gemvSwiglu++;
            return;
        }
        if (fusedProducts && p.type == precision && p.rows == a.rows && p.cols == m.rows() && m.cols() == a.cols
                && pairedRoute(a, m, null, p)
                && o.type == precision && o.rows == a.rows && 2L * o.cols == m.rows()
                && !overlaps(o.ptr, o.bytes(), a.ptr, a.bytes())) {
            kernels.gemmTmaSwiglu(precision, a.ptr, m.ptr, o.ptr, a.rows, o.cols, a.cols);
            routes.gemmWg++;
            routes.gemmWgSwiglu++;
            return;
        }
        TrainingBackend.super.matmulSwiglu(x, w, product, out);
    }

    /**
     * Several products of one input: where each would run on gemv version 3 (a decode step's one or two rows) and
     * there are two or three of them, one launch ({@link Kernels#gemvSegments}: each product's numbers as its own
     * launch would make them, bit for bit); otherwise one {@link #matmul} each.
     */
    @Override
    public void matmulEach(Buffer x, Weight[] ws, Buffer[] outs) {
        bind();
        if (ws.length != outs.length) {
            throw new IllegalArgumentException(ws.length + " weights for " + outs.length + " outputs");
        }
        CudaBuffer a = bufferOf(x);
        boolean one = ws.length >= 2 && ws.length <= 3 && a.rows >= 1 && a.rows <= Kernels.GEMV_FUSED_MAX_ROWS
                && a.type == precision && kernels.gemvFusedRuns() && kernels.gemvSegmentsOn();
        long[] w = new long[ws.length];
        long[] o = new long[ws.length];
        long[] oBytes = new long[ws.length];
        int[] n = new int[ws.length];
        Precision outType = null;
        for (int i = 0; i < ws.length && one; i++) {
            CudaWeight m = weightOf(ws[i]);
            CudaBuffer ob = bufferOf(outs[i]);
            one = m.rows() > 0 && m.cols() == a.cols && ob.rows == a.rows && ob.cols == m.rows()
                    && (outType == null || ob.type == outType) && route(a, m, null, ob) == Route.GEMV
                    && !overlaps(ob.ptr, ob.bytes(), a.ptr, a.bytes());
            for (int j = 0; j < i && one; j++) {  // the launches apart would write one after another
                one = !overlaps(ob.ptr, ob.bytes(), o[j], oBytes[j]);
            }
            outType = ob.type;
            w[i] = m.ptr;
            o[i] = ob.ptr;
            oBytes[i] = ob.bytes();
            n[i] = m.rows();
        }
        if (one) {
            kernels.gemvSegments(precision, a.ptr, w, o, n, outType == Precision.F32, a.rows, a.cols);
            routes.gemv += ws.length;
            routes.gemvSegments++;
            return;
        }
        CudaWeight whole = mergedProducts(a, ws, outs);
        if (whole != null) {
            // one product of the whole matrix into scratch, its columns copied into each output: the same sums
            long s = scratch.slot(MERGED_SLOT, (long) a.rows * whole.rows() * precision.bytes(), MERGED_SCRATCH);
            gemm(a, whole, new CudaBuffer(s, a.rows, whole.rows(), precision, null), null, "matmulEach");
            long[] o2 = new long[ws.length];
            int[] n2 = new int[ws.length];
            for (int i = 0; i < ws.length; i++) {
                o2[i] = bufferOf(outs[i]).ptr;
                n2[i] = weightOf(ws[i]).rows();
            }
            kernels.splitColumns(precision, s, o2, n2, a.rows);
            routes.merged += ws.length;
            return;
        }
        TrainingBackend.super.matmulEach(x, ws, outs);
    }

    /**
     * The system property that switches off taking products of one input over weights made together
     * ({@link #weights}) as one product ({@link #matmulEach}): {@code false} runs them one by one, for comparisons.
     */
    static final String MERGED_PRODUCTS_PROPERTY = "based4j.cuda.mergedProducts";
    /**
     * The system property for the most rows at which {@link #matmulEach} takes such products as one: above it (a
     * prompt's many rows, where each product alone already runs near the matrix rate) the split's copy would only add
     * traffic. 1,024 unless set.
     */
    static final String MERGED_MAX_ROWS_PROPERTY = "based4j.cuda.mergedProductsMaxRows";
    static final int MERGED_MAX_ROWS = 1024;
    private final boolean mergedProductsOn =
            Kernels.onOff(MERGED_PRODUCTS_PROPERTY, System.getProperty(MERGED_PRODUCTS_PROPERTY)) != Boolean.FALSE;
    private final int mergedMaxRows = Kernels.atLeast(MERGED_MAX_ROWS_PROPERTY,
            System.getProperty(MERGED_MAX_ROWS_PROPERTY), 0, MERGED_MAX_ROWS, "a number of rows");

    /**
     * The whole matrix {@link #matmulEach} takes the products {@code x @ ws[i]^T} as, or null: the weights made
     * together by {@link #weights}, all of them in their order, x and the outputs in the compute type, of
     * {@link Kernels#GEMV_FUSED_MAX_ROWS} rows (which gemv takes together already) to {@code mergedProductsMaxRows},
     * no output overlapping x or another.
     */
    private CudaWeight mergedProducts(CudaBuffer a, Weight[] ws, Buffer[] outs) {
        if (!mergedProductsOn || ws.length < 2 || a.rows <= Kernels.GEMV_FUSED_MAX_ROWS || a.rows > mergedMaxRows
                || a.type != precision) {
            return null;
        }
        CudaWeight whole = weightOf(ws[0]).whole;
        if (whole == null || whole.cols() != a.cols
                || recording && scratch.size(MERGED_SLOT) < (long) a.rows * whole.rows() * precision.bytes()) {
            return null;  // (a recorded step allocates nothing: its scratch is made with the weights or op by op)
        }
        long at = whole.ptr;
        long rows = 0;
        for (int i = 0; i < ws.length; i++) {
            CudaWeight m = weightOf(ws[i]);
            CudaBuffer ob = bufferOf(outs[i]);
            if (m.whole != whole || m.ptr != at || ob.type != precision || ob.rows != a.rows || ob.cols != m.rows()
                    || overlaps(ob.ptr, ob.bytes(), a.ptr, a.bytes())) {
                return null;
            }
            for (int j = 0; j < i; j++) {
                if (overlaps(ob.ptr, ob.bytes(), bufferOf(outs[j]).ptr, bufferOf(outs[j]).bytes())) {
                    return null;
                }
            }
            at += (long) m.rows() * m.cols() * precision.bytes();
            rows += m.rows();
        }
        return rows == whole.rows() ? whole : null;
    }

    /**
     * BaseConv's in-projection and decode step: for a decode step's one or two rows (one token each) on gemv, one
     * kernel ({@link Kernels#gemvConv}: the product and {@link #baseConv}'s step, bit for bit, u not written);
     * where gemmWg's version 2 takes the product, its paired form ({@link Kernels#gemmTmaConv}, the same numbers);
     * otherwise the two ops.
     */
    @Override
    public void matmulBaseConv(MixerConfig.BaseConv cfg, Buffer x, Weight w, Weight bias, Buffer u,
                               Weight convWeight, TokenBatch batch, MixerState state, Buffer out) {
        bind();
        CudaBuffer a = bufferOf(x);
        CudaWeight m = weightOf(w);
        CudaWeight b = bias == null ? null : weightOf(bias);
        CudaBuffer ub = bufferOf(u);
        CudaBuffer o = bufferOf(out);
        CudaWeight cw = weightOf(convWeight);
        int inner = cfg.innerWidth();
        if (state != null && fusedGemv(a, m, b, ub) && oneTokenEach(batch)
                && batch.totalTokens() == a.rows && m.rows() == 2 * inner && o.type == precision && o.rows == a.rows
                && o.cols == inner && cw.type == precision && (long) cw.rows() * cw.cols() == (long) inner * cfg.kernel()
                && !overlaps(o.ptr, o.bytes(), a.ptr, a.bytes())) {
            CudaStates.Conv st = state(state, CudaStates.Conv.class, "baseConv");  // a live conv state
            checkSlots(batch, st, "baseConv");
            kernels.gemvConv(precision, a.ptr, m.ptr, b == null ? 0 : b.ptr, cw.ptr, st.regions[0], layout(batch), o.ptr,
                    a.rows, inner, a.cols, cfg.kernel());
            routes.gemv++;
            routes.gemvConv++;
            if (b != null) {
                routes.gemvBias++;
            }
            return;
        }
        if (state != null && fusedProducts && ub.type == precision
                && ub.rows == a.rows && ub.cols == m.rows() && m.cols() == a.cols
                && (b == null || (long) b.rows() * b.cols() == m.rows())
                && pairedRoute(a, m, b, ub) && oneTokenEach(batch) && batch.totalTokens() == a.rows
                && m.rows() == 2 * inner && o.type == precision && o.rows == a.rows && o.cols == inner
                && cw.type == precision && (long) cw.rows() * cw.cols() == (long) inner * cfg.kernel()
                && !overlaps(o.ptr, o.bytes(), a.ptr, a.bytes())) {
            CudaStates.Conv st = state(state, CudaStates.Conv.class, "baseConv");  // a live conv state
            checkSlots(batch, st, "baseConv");
            kernels.gemmTmaConv(precision, a.ptr, m.ptr, b == null ? 0 : b.ptr, cw.ptr, st.regions[0], layout(batch),
                    o.ptr, a.rows, inner, a.cols, cfg.kernel());
            routes.gemmWg++;
            routes.gemmWgConv++;
            if (b != null) {
                routes.gemmWgBias++;
            }
            return;
        }
        TrainingBackend.super.matmulBaseConv(cfg, x, w, bias, u, convWeight, batch, state, out);
    }

    /**
     * {@code out = x @ w^T} (column-major: out^T = w x^T), float32 accumulation, plus {@code bias} (null for none)
     * where cuBLASLt's epilogue can add it: whether the bias was added (true when there was nothing to add it to).
     */
    private boolean gemm(CudaBuffer x, CudaWeight w, CudaBuffer out, CudaWeight bias, String op) {
        int n = x.rows;
        int k = x.cols;
        int m = w.rows();
        if (w.cols() != k || out.rows != n || out.cols != m) {
            throw new IllegalArgumentException(op + ": " + x.rows + "x" + x.cols + " @ " + w + "^T does not give "
                    + out.rows + "x" + out.cols);
        }
        if (x.type != precision) {
            throw new IllegalArgumentException(op + ": input holds " + x.type.suffix() + ", expected "
                    + precision.suffix());
        }
        if (n == 0) {
            return true;
        }
        Route route = route(x, w, bias, out);
        if (route == Route.GEMM_WG) {
            // asked for (Kernels.GEMM_WG_PROPERTY): the weights streamed once, on wgmma
            kernels.gemmWg(precision, x.ptr, w.ptr, bias == null ? 0 : bias.ptr, out.ptr, out.type == Precision.F32,
                    n, m, k);
            routes.gemmWg++;
            if (bias != null) {
                routes.gemmWgBias++;
            }
            return true;
        }
        if (route == Route.GEMM_ROWS) {
            // a decode step's few rows (Kernels.gemmRowsWins): the weights streamed once, on tensor cores
            kernels.gemmRows(precision, x.ptr, w.ptr, bias == null ? 0 : bias.ptr, out.ptr,
                    out.type == Precision.F32, n, m, k);
            routes.gemmRows++;
            if (bias != null) {
                routes.gemmRowsBias++;
            }
            return true;
        }
        if (route == Route.GEMV) {
            // a decode step's few rows: one pass over the weights, the bias added before the output's rounding
            kernels.gemv(precision, x.ptr, w.ptr, bias == null ? 0 : bias.ptr, out.ptr, out.type == Precision.F32, n,
                    m, k);
            routes.gemv++;
            if (bias != null) {
                routes.gemvBias++;
            }
            return true;
        }
        int wt = cublasType(w.type);
        int xt = cublasType(x.type);
        int ot = cublasType(out.type);
        if (bias != null && bias.type == out.type && ltProduct(Cublas.OP_T, Cublas.OP_N, m, n, k, w.ptr, wt, k, x.ptr,
                xt, k, 0f, out.ptr, ot, m, CublasLt.EPILOGUE_BIAS, bias.ptr)) {
            routes.ltBias++;
            return true;
        }
        product(Cublas.OP_T, Cublas.OP_N, m, n, k, w.ptr, wt, k, x.ptr, xt, k, 0f, out.ptr, ot, m);
        return bias == null;
    }

    /**
     * {@code C = op(A) op(B) + beta C}, float32 accumulation, column-major: through cuBLASLt, or {@code cublasGemmEx}
     * where cuBLASLt has no algorithm for it (or a dimension is 0).
     */
    private void product(int transA, int transB, int m, int n, int k, long A, int aType, int lda, long B, int bType,
                         int ldb, float beta, long C, int cType, int ldc) {
        if (ltProduct(transA, transB, m, n, k, A, aType, lda, B, bType, ldb, beta, C, cType, ldc,
                CublasLt.EPILOGUE_DEFAULT, 0)) {
            routes.lt++;
            return;
        }
        routes.gemmEx++;
        blas.gemm(transA, transB, m, n, k, 1f, A, aType, lda, B, bType, ldb, beta, C, cType, ldc,
                Cublas.COMPUTE_32F);
    }

    /** {@link CublasLt#matmul} with alpha 1 and float32 accumulation: false where it has no algorithm for it. */
    private boolean ltProduct(int transA, int transB, int m, int n, int k, long A, int aType, int lda, long B,
                              int bType, int ldb, float beta, long C, int cType, int ldc, int epilogue, long bias) {
        return m > 0 && n > 0 && k > 0 && lt.matmul(transA, transB, m, n, k, 1f, A, aType, lda, B, bType, ldb, beta,
                C, cType, ldc, Cublas.COMPUTE_32F, epilogue, bias);
    }

    /** How many products took each route so far. */
    GemmRoutes gemmRoutes() {
        return routes;
    }

    /** The cuBLASLt handle of the products. */
    CublasLt cublasLt() {
        return lt;
    }

    /**
     * cuBLASLt's products and programmatic edges so far ({@code -Dbased4j.cuda.ltProgrammatic=true}): the plans probed
     * on a decode step's first run, those of them whose kernel the probe saw wait for the kernel before it, and the
     * products recorded on a programmatic edge; {@code probing}: whether the property asks for the edges and the
     * device and driver can make them, so that plans are probed.
     */
    public record ProductEdges(boolean probing, int probedPlans, int waitingPlans, long productsOnEdges) {
    }

    /** {@link ProductEdges} of this backend so far. */
    public ProductEdges productEdges() {
        return new ProductEdges(probesProducts(), lt.probedPlans(), lt.waitingPlans(), lt.programmaticProducts());
    }

    /**
     * Whether a decode step's products are probed for programmatic edges on its first run: the property asks for the
     * edges, the device and driver can make them, and recorded steps are launched programmatically.
     */
    private boolean probesProducts() {
        return lt.probesFirstCalls() && kernels.programmaticSteps();
    }

    private static int cublasType(Precision p) {
        return p == Precision.F32 ? Cublas.R_32F : Cublas.R_16BF;
    }

    @Override
    public void matmulRows(Buffer x, int[] rows, Weight w, Buffer out) {
        bind();
        CudaBuffer a = bufferOf(x);
        for (int r : rows) {
            if (r < 0 || r >= a.rows) {
                throw new IllegalArgumentException("matmulRows: row " + r + " is outside [0, " + a.rows + ")");
            }
        }
        if (capture != null) {
            throw new StepNotRecordable("matmulRows takes rows from the host");
        }
        long rowsDev = inputs.rows.upload(rows, !recording);
        long gathered = allocate((long) rows.length * a.cols * a.type.bytes(), "gathered rows");
        try {
            kernels.gatherRows(precision, a.ptr, rowsDev, gathered, rows.length, a.cols);
            gemm(new CudaBuffer(gathered, rows.length, a.cols, a.type, null), weightOf(w), bufferOf(out), null,
                    "matmulRows");
        } finally {
            free(gathered);
        }
    }

    @Override
    public void addInPlace(Buffer acc, Buffer x) {
        bind();
        CudaBuffer a = bufferOf(acc);
        CudaBuffer b = bufferOf(x);
        check("add accumulator", a, b.rows, b.cols, null);
        long sum = read(a, Precision.F32, 0);
        if (b.type == Precision.F32) {
            // a float32 addend (the residual stream of a training pass) is added as it is, not rounded to A first
            kernels.addIntoF32(sum, b.ptr, a.count());
        } else {
            kernels.addInto(precision, sum, read(b, precision, 1), a.count());
        }
        written(a, Precision.F32, sum);
    }

    /**
     * Rows up to which {@link #addRmsNorm} runs as one kernel (a block a row): a decode step's, and a prompt's of up
     * to as many tokens. Longer calls take the bf16 row kernel that does the two ops' work in one pass
     * ({@link TrainKernels#addRmsNormRows}) where it serves, else the two ops. {@value #FUSED_NORM_ROWS_PROPERTY} sets
     * another bound, for comparisons.
     */
    static final int FUSED_NORM_ROWS = 1024;
    static final String FUSED_NORM_ROWS_PROPERTY = "based4j.cuda.fusedNormRows";
    private final int fusedNormRows = fusedNormRows(System.getProperty(FUSED_NORM_ROWS_PROPERTY));

    /** Rows up to which {@link #addRmsNorm} runs as one kernel of a block a row. */
    int fusedNormRows() {
        return fusedNormRows;
    }

    /** The value of {@value #FUSED_NORM_ROWS_PROPERTY}: {@value #FUSED_NORM_ROWS} where unset. */
    static int fusedNormRows(String value) {
        return Kernels.atLeast(FUSED_NORM_ROWS_PROPERTY, value, 0, FUSED_NORM_ROWS, "a number of rows");
    }

    @Override
    public void addRmsNorm(Buffer residual, Buffer branch, Weight weight, double eps, Buffer out) {
        bind();
        CudaBuffer r = bufferOf(residual);
        CudaBuffer br = bufferOf(branch);
        CudaBuffer o = bufferOf(out);
        CudaWeight w = weightOf(weight);
        // the types and shapes both kernels take: a float32 residual, the rest in the compute type, one width
        boolean suits = r.type == Precision.F32 && br.type == precision && o.type == precision && w.type == precision
                && br.rows == r.rows && br.cols == r.cols && o.rows == r.rows && o.cols == r.cols
                && (long) w.rows() * w.cols() == r.cols;
        if (suits && r.rows <= fusedNormRows) {
            kernels.addRmsNorm(precision, r.ptr, br.ptr, w.ptr, o.ptr, r.rows, r.cols, (float) eps);
        } else if (suits && TrainKernels.rmsNormByRows(precision, r.cols, r.ptr, br.ptr, w.ptr, o.ptr)) {
            // a prompt's many rows: the two ops' row kernels as one pass over the residual, the same results
            train.addRmsNormRows(precision, r.ptr, br.ptr, w.ptr, o.ptr, r.rows, r.cols, (float) eps);
        } else {
            TrainingBackend.super.addRmsNorm(residual, branch, weight, eps, out);
        }
    }

    @Override
    public void swiglu(Buffer a, Buffer out) {
        bind();
        CudaBuffer in = bufferOf(a);
        CudaBuffer o = bufferOf(out);
        check("swiglu input", in, o.rows, 2 * o.cols, precision);
        check("swiglu output", o, in.rows, in.cols / 2, precision);
        kernels.swiglu(precision, in.ptr, o.ptr, o.rows, o.cols);
    }

    @Override
    public int[] sample(Buffer logits, int[] rows, int vocab, Sampler[] samplers) {
        Drawn d = queueSampling(logits, rows, vocab, samplers, false);
        // the kernel is the stream's last work: waiting for the stream, as this always has, rather than on the
        // kernel's event (based-1b's prefill of one prompt, which ends in this call, ran a few percent slower and
        // less evenly with the event's wait in runs on one H200)
        cu.synchronize(stream);
        return d.ids();
    }

    /**
     * The sampling kernel queued behind the work before it; the ids are read when asked for. Where the logits'
     * rows are 0 to n - 1 and the recorded step launched last takes n tokens, the kernel also writes the ids into
     * that step's staging area of token ids, which the step's replay copies to the device first: a
     * {@link StepGraphs#replayFed} of the step with what this returns then needs nothing from the host.
     */
    @Override
    public Sampled sampleAhead(Buffer logits, int[] rows, int vocab, Sampler[] samplers) {
        return queueSampling(logits, rows, vocab, samplers, true);
    }

    /** How many recorded steps have run on token ids a sampling kernel handed them (for tests and reports). */
    public long fedSteps() {
        return fedSteps;
    }

    private Drawn queueSampling(Buffer logits, int[] rows, int vocab, Sampler[] samplers, boolean feed) {
        bind();
        if (recording) {
            throw new IllegalStateException("sample: not while a graph is being recorded");
        }
        CudaBuffer l = bufferOf(logits);
        int n = rows.length;
        if (samplers.length != n) {
            throw new IllegalArgumentException(n + " rows but " + samplers.length + " samplers");
        }
        if (l.type != Precision.F32 || vocab > l.cols) {
            throw new IllegalArgumentException("sample: logits must be float32 and at least " + vocab + " wide");
        }
        if (n > SAMPLE_MAX_ROWS) {
            throw new IllegalArgumentException("sample: at most " + SAMPLE_MAX_ROWS + " rows at once, got " + n);
        }
        int[] packed = new int[5 * n];
        boolean inOrder = true;
        for (int i = 0; i < n; i++) {
            if (rows[i] < 0 || rows[i] >= l.rows) {
                throw new IllegalArgumentException("sample: row " + rows[i] + " is outside [0, " + l.rows + ")");
            }
            inOrder &= rows[i] == i;
        }
        if (n == 0) {
            return new Drawn(-1, rows, vocab, null, 0);
        }
        int area = sampleTurn;
        sampleTurn ^= 1;
        if (sampleOwner[area] != null) {
            sampleOwner[area].fetch();  // its ids, before the area is written again (after its kernel has run)
        }
        for (int i = 0; i < n; i++) {
            SamplingParams p = samplers[i].params();
            packed[i] = rows[i];
            packed[n + i] = Float.floatToRawIntBits(p.choosesArgmax() ? 0f : p.temperature());
            packed[2 * n + i] = p.topK();
            packed[3 * n + i] = Float.floatToRawIntBits(p.topP());
            // the token's uniform, taken exactly as the CPU sampler takes it, so that both choose the same token
            packed[4 * n + i] = Float.floatToRawIntBits(samplers[i].uniformForNextToken());
        }
        // the kernel reads the settings from, and writes the ids into, pinned host memory (the device sees it at the
        // same address): no copies queued before and after it
        long offset = area * SAMPLE_AREA_BYTES;
        MemorySegment.copy(packed, 0, sampleHost, ValueLayout.JAVA_INT, offset, 5 * n);
        long in = sampleHost.address() + offset;
        CudaGraph fed = feed && inOrder && lastGraph != null && !lastGraph.closed && lastGraph.tokens == n
                ? lastGraph : null;
        long feedIds = fed == null ? 0 : fed.in.tokens.hostAddress();
        kernels.sample(l.ptr, in, n, l.cols, vocab, in + 4L * n, in + 8L * n, in + 12L * n, in + 16L * n,
                in + SAMPLE_IDS_OFFSET, feedIds);
        cu.record(sampleDone[area], stream);
        long writes = fed == null ? 0 : fed.in.tokens.writtenOnStream();  // its next staging waits for the kernel
        Drawn d = new Drawn(area, rows.clone(), vocab, fed, writes);
        sampleOwner[area] = d;
        return d;
    }

    /** Ids a sampling kernel chose into an area of {@link #sampleHost}, read from there once it has run. */
    private final class Drawn implements Sampled {
        final int area;
        final int[] rows;
        final int vocab;
        /** The recorded step whose staging area of token ids the kernel also wrote the ids into, or null. */
        final CudaGraph feeds;
        /** That staging area's count of writes once the kernel's was queued: a later write makes the feed stale. */
        final long writes;
        /** What the kernel wrote, errors (-1, -2) included; null until read. */
        private int[] got;

        Drawn(int area, int[] rows, int vocab, CudaGraph feeds, long writes) {
            this.area = area;
            this.rows = rows;
            this.vocab = vocab;
            this.feeds = feeds;
            this.writes = writes;
            if (area < 0) {
                got = new int[0];
            }
        }

        /** Waits for the kernel and copies what it wrote out of the area (once). */
        void fetch() {
            if (got != null) {
                return;
            }
            bind();
            cu.synchronizeEvent(sampleDone[area]);
            int[] read = new int[rows.length];
            MemorySegment.copy(sampleHost, ValueLayout.JAVA_INT, area * SAMPLE_AREA_BYTES + SAMPLE_IDS_OFFSET, read, 0,
                    read.length);
            got = read;
            if (sampleOwner[area] == this) {
                sampleOwner[area] = null;
            }
        }

        @Override
        public int[] ids() {
            fetch();
            int[] all = new int[got.length];
            Arrays.setAll(all, i -> i);
            return ids(all);
        }

        @Override
        public int[] ids(int[] places) {
            fetch();
            int[] out = new int[places.length];
            for (int j = 0; j < places.length; j++) {
                int id = got[places[j]];
                int row = rows[places[j]];
                if (id == -1) {
                    throw new IllegalStateException("a logit of row " + row + " is NaN");
                }
                if (id == -2) {
                    throw new IllegalStateException("all logits of row " + row + " are -Infinity");
                }
                if (id < 0 || id >= vocab) {
                    throw new IllegalStateException("the GPU sampler returned id " + id + " for row " + row);
                }
                out[j] = id;
            }
            return out;
        }
    }

    // ---------------------------------------------------------------- sequence mixers

    private static <T extends MixerState> T state(MixerState s, Class<T> type, String op) {
        if (type.isInstance(s)) {
            T t = type.cast(s);
            ((CudaStates.Slotted) t).checkLive();
            return t;
        }
        throw new IllegalArgumentException(op + " was given a state of the wrong kind: " + s.getClass().getSimpleName());
    }

    /** Every slot of the batch must lie in the state: a kernel would write past it otherwise. */
    private static void checkSlots(TokenBatch batch, CudaStates.Slotted st, String op) {
        for (int i = 0; i < batch.size(); i++) {
            if (batch.slot(i) < 0 || batch.slot(i) >= st.slots) {
                throw new IllegalArgumentException(op + ": slot " + batch.slot(i) + " is outside the state's "
                        + st.slots + " slots");
            }
        }
    }

    @Override
    public void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                         Buffer out, Buffer convOut) {
        bind();
        if (state == null) {
            baseConvTraining(cfg, bufferOf(u), weightOf(convWeight), batch, bufferOf(out), convOut);
            return;
        }
        Backend.keepsNothing("baseConv", convOut);
        CudaStates.Conv st = state(state, CudaStates.Conv.class, "baseConv");
        checkSlots(batch, st, "baseConv");
        CudaBuffer in = bufferOf(u);
        CudaBuffer o = bufferOf(out);
        int inner = cfg.innerWidth();
        int t = batch.totalTokens();
        check("baseConv input", in, t, 2 * inner, precision);
        check("baseConv output", o, t, inner, precision);
        long l = layout(batch);
        long w = weightOf(convWeight).ptr;
        if (precision == Precision.BF16 && freshPrompts(batch)) {
            // fresh prompts (no history: the causal conv's zero padding) on the training's forward kernel, per run
            // of sequences of one length, without the conv output a backward would keep
            long rowIn = 2L * inner * precision.bytes();
            long rowOut = (long) inner * precision.bytes();
            runsOfOneLength(batch, (row, first, sequences, len) -> mixers.baseConvForward(precision, in.ptr + row * rowIn, w,
                    0, o.ptr + row * rowOut, sequences, len, inner, cfg.kernel()));
        } else if (oneTokenEach(batch)) {
            // a decode step: the output and the history's shift in one pass
            kernels.baseConvStep(precision, in.ptr, w, st.regions[0], l, o.ptr, batch.size(), inner, cfg.kernel());
            return;
        } else {
            kernels.baseConv(precision, in.ptr, w, st.regions[0], l, o.ptr, t, batch.size(), inner, cfg.kernel());
        }
        kernels.baseConvState(precision, in.ptr, st.regions[0], l, t, batch.size(), inner, cfg.kernel());
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                                MixerState state, Buffer out) {
        bind();
        if (state == null) {
            linearAttentionTraining(cfg, bufferOf(q), bufferOf(k), bufferOf(v), batch, bufferOf(out));
            return;
        }
        CudaStates.Linear st = state(state, CudaStates.Linear.class, "linearAttention");
        checkSlots(batch, st, "linearAttention");
        int t = batch.totalTokens();
        int qk = cfg.numHeads() * cfg.featureDim();
        int d = cfg.numHeads() * cfg.headDim();
        CudaBuffer qb = bufferOf(q);
        CudaBuffer kb = bufferOf(k);
        CudaBuffer vb = bufferOf(v);
        CudaBuffer o = bufferOf(out);
        check("linearAttention q", qb, t, qk, precision);
        check("linearAttention k", kb, t, qk, precision);
        check("linearAttention v", vb, t, d, precision);
        check("linearAttention output", o, t, d, precision);
        if (precision == Precision.BF16 && freshPrompts(batch)) {
            // the outputs from the chunked tensor-core kernels of training, per run of sequences of one length; the
            // state the decode goes on from, from their chunk states, else as the recurrent kernels leave it
            long qkRow = (long) qk * precision.bytes();
            long vRow = (long) d * precision.bytes();
            int h = cfg.numHeads();
            int f = cfg.featureDim();
            int dh = cfg.headDim();
            // on the tensor-core kernels (the scan, or the chunk kernels' states kernel) the forward also leaves each
            // sequence's whole state, in every run or in none (the state kernel below adds to what it finds)
            boolean[] leaves = {true};
            runsOfOneLength(batch, (row, first, sequences, len) -> leaves[0] &= mixers.leavesFinalState(precision,
                    qb.ptr + row * qkRow, kb.ptr + row * qkRow, vb.ptr + row * vRow, o.ptr + row * vRow, sequences, len,
                    h, f, dh));
            long lay = layout(batch);
            runsOfOneLength(batch, (row, first, sequences, len) -> mixers.linearAttentionForward(precision,
                    qb.ptr + row * qkRow, kb.ptr + row * qkRow, vb.ptr + row * vRow, o.ptr + row * vRow, sequences,
                    len, h, f, dh, (float) cfg.eps(), leaves[0]
                            ? new MixerTrainKernels.FinalState(st.kv(), st.k(), lay + 4L * first) : null));
            if (!leaves[0]) {
                kernels.linearAttentionState(precision, kb.ptr, vb.ptr, st.kv(), st.k(), lay, t, batch.size(), h, f,
                        dh);
            }
            return;
        }
        if (oneTokenEach(batch) && Kernels.linearDecodeFits(cfg.featureDim(), cfg.headDim())) {
            // a decode step: each sequence's S and z read once, and written once (every few steps where deferred)
            linearAttentionDecode(cfg, qb, kb, vb, st, layout(batch), batch.size(), o);
            return;
        }
        if (eagerBf16() && linearAttentionMixed(cfg, qb, kb, vb, st, batch, o)) {
            return;
        }
        foldWaiting(st, layout(batch), batch.size());
        kernels.linearAttention(precision, qb.ptr, kb.ptr, vb.ptr, st.kv(), st.k(), layout(batch), o.ptr, t,
                batch.size(), cfg.numHeads(), cfg.featureDim(), cfg.headDim(), (float) cfg.eps());
    }

    /** The model's state and, where linear attention defers its update, the waiting tokens and their counts. */
    @Override
    public long stateBytes(MixerConfig mixer, int slots, int maxLength) {
        long bytes = TrainingBackend.super.stateBytes(mixer, slots, maxLength);
        if (mixer instanceof MixerConfig.LinearAttention l) {
            long[] regions = CudaStates.Linear.regions(l.numHeads(), l.featureDim(), l.headDim(),
                    linearDeferSteps(l, slots));
            if (regions.length > 2) {
                // the waiting tokens, their counts and work areas (float32, int32, float32), and the slot's number
                long waiting = 4L * (regions[2] + regions[3] + regions[4]) + 4;
                bytes = io.based4j.memory.Sizes.plus(bytes, io.based4j.memory.Sizes.times(waiting, slots));
            }
        }
        return bytes;
    }

    /**
     * The most decode steps between two writes of a linear-attention state of {@code slots} sequences
     * ({@link Kernels#linearAttentionDecodeDeferred}): {@link Kernels#linearDefer} where the deferred form takes the
     * layer and a step of every slot has enough blocks (a sequence's head each, {@link Kernels#linearDeferFor}) for
     * the memory's bandwidth to bound it, else 1 (every step writes).
     */
    private int linearDeferSteps(MixerConfig.LinearAttention l, int slots) {
        int steps = kernels.linearDefer();
        return kernels.linearDeferFor((long) slots * l.numHeads())
                && Kernels.linearDeferFits(l.featureDim(), l.headDim(), steps, 0) ? steps : 1;
    }

    /** A decode step of the {@code B} sequences of {@code layout} (one token each) on the decode kernel of the state. */
    private void linearAttentionDecode(MixerConfig.LinearAttention cfg, CudaBuffer qb, CudaBuffer kb, CudaBuffer vb,
                                       CudaStates.Linear st, long layout, int B, CudaBuffer o) {
        if (st.deferred()) {
            kernels.linearAttentionDecodeDeferred(precision, qb.ptr, kb.ptr, vb.ptr, st.kv(), st.k(), st.pending(),
                    st.counts(), st.work(), layout, o.ptr, B, cfg.numHeads(), cfg.featureDim(), cfg.headDim(),
                    (float) cfg.eps(), st.steps);
        } else {
            kernels.linearAttentionDecode(precision, qb.ptr, kb.ptr, vb.ptr, st.kv(), st.k(), layout, o.ptr, B,
                    cfg.numHeads(), cfg.featureDim(), cfg.headDim(), (float) cfg.eps());
        }
    }

    /**
     * Adds the tokens that wait beside the states of the {@code B} sequences of {@code layout} (where the decode step
     * defers the update) into them, before a kernel that reads or writes the states whole.
     */
    private void foldWaiting(CudaStates.Linear st, long layout, int B) {
        if (st.deferred()) {
            kernels.linearAttentionFold(precision, st.kv(), st.k(), st.pending(), st.counts(), layout, B, st.heads,
                    st.featureDim, st.headDim, st.steps);
        }
    }

    /**
     * A call that holds prompts from their first tokens beside other sequences (decode tokens, later pieces of
     * prompts: a serving engine's steps): each such prompt on the chunked tensor-core kernels of fresh prompts, as if
     * fed alone (its output and final state those of a call of it alone, bit for bit), and the other sequences on the
     * decode kernel where each has one token, else on the token-by-token kernel, over a layout of their own whose rows
     * are where they lie in the call. False, with nothing done, where the call holds no such prompt or one's forward
     * would not leave its final state.
     */
    private boolean linearAttentionMixed(MixerConfig.LinearAttention cfg, CudaBuffer qb, CudaBuffer kb, CudaBuffer vb,
                                         CudaStates.Linear st, TokenBatch batch, CudaBuffer o) {
        int h = cfg.numHeads();
        int f = cfg.featureDim();
        int dh = cfg.headDim();
        long qkRow = (long) h * f * precision.bytes();
        long vRow = (long) h * dh * precision.bytes();
        MixedCall call = MixedCall.of(batch, (row, len) -> mixers.leavesFinalState(precision, qb.ptr + row * qkRow,
                kb.ptr + row * qkRow, vb.ptr + row * vRow, o.ptr + row * vRow, 1, len, h, f, dh));
        if (call == null) {
            return false;
        }
        int[] offsets = batch.offsets();
        int[] fresh = call.fresh();
        int[] rest = call.rest();
        long lay = layout(batch);
        for (int i : fresh) {
            mixers.linearAttentionForward(precision, qb.ptr + offsets[i] * qkRow, kb.ptr + offsets[i] * qkRow,
                    vb.ptr + offsets[i] * vRow, o.ptr + offsets[i] * vRow, 1, batch.length(i), h, f, dh,
                    (float) cfg.eps(), new MixerTrainKernels.FinalState(st.kv(), st.k(), lay + 4L * i));
        }
        if (rest.length == 0) {
            return true;
        }
        long part = partLayout(batch, rest);
        if (Arrays.stream(rest).allMatch(i -> batch.length(i) == 1) && Kernels.linearDecodeFits(f, dh)) {
            linearAttentionDecode(cfg, qb, kb, vb, st, part, rest.length, o);
        } else {
            foldWaiting(st, part, rest.length);
            kernels.linearAttention(precision, qb.ptr, kb.ptr, vb.ptr, st.kv(), st.k(), part, o.ptr,
                    batch.totalTokens(), rest.length, h, f, dh, (float) cfg.eps());
        }
        return true;
    }

    /**
     * The full attention of a call that holds prompts from their first tokens beside other sequences (a serving
     * engine's steps): each such prompt on the tensor-core kernels of fresh prompts, as if fed alone, the other
     * sequences on the token-by-token kernel over a layout of their own (its blocks of the prompts' rows end at once).
     * The keys and values of every token are appended after, as for any call. False, with nothing done, where the call
     * holds no such prompt or the tensor-core kernels do not take it, and for a sliding window, whose queries read
     * no more than the window's keys on the token-by-token kernel (the serving engine measured no gain from it for
     * based-1b: docs/bench/serve-h200.md).
     */
    private boolean attentionMixed(MixerConfig.Attention cfg, CudaBuffer qkv, CudaStates.KeyValue st, TokenBatch batch,
                                   CudaBuffer out) {
        if (cfg.sliding() || cfg.rotaryInterleaved() && cfg.rotaryDim() > 0) {
            return false;
        }
        long qkvRow = 3L * cfg.dModel() * precision.bytes();
        long outRow = (long) cfg.dModel() * precision.bytes();
        MixedCall call = MixedCall.of(batch, (row, len) -> MixerTrainKernels.attentionOnTensorCores(precision,
                cfg.headDim(), qkv.ptr + row * qkvRow, out.ptr + row * outRow));
        if (call == null) {
            return false;
        }
        int[] offsets = batch.offsets();
        int[] fresh = call.fresh();
        int[] rest = call.rest();
        int longest = Arrays.stream(fresh).map(batch::length).max().orElseThrow();
        long lse = scratch.slot(2, 4L * longest * cfg.numHeads());
        for (int i : fresh) {
            mixers.attentionForward(precision, qkv.ptr + offsets[i] * qkvRow, out.ptr + offsets[i] * outRow, lse, 1,
                    batch.length(i), cfg.numHeads(), cfg.headDim(), cfg.window(), cfg.rotaryDim(), cfg.rotaryBase(),
                    (float) cfg.softmaxScale());
        }
        if (rest.length > 0) {
            kernels.attention(precision, qkv.ptr, st.keys(), st.values(), st.rotary, partLayout(batch, rest), out.ptr,
                    batch.totalTokens(), rest.length, cfg.numHeads(), cfg.headDim(), st.capacity, cfg.window(),
                    cfg.rotaryDim(), st.maxPos, cfg.rotaryInterleaved(), (float) cfg.softmaxScale());
        }
        return true;
    }

    /** Whether a call may take the mixed calls' paths: bf16, not recorded or captured (their layouts are uploaded). */
    private boolean eagerBf16() {
        return precision == Precision.BF16 && capture == null && !recording;
    }

    /**
     * The sequences of a call that start prompts from their first tokens ({@code fresh}: several tokens from position
     * 0) and the others ({@code rest}), by their places in the call.
     */
    record MixedCall(int[] fresh, int[] rest) {
        /** Whether a prompt's kernels take the one of {@code length} tokens whose rows start at {@code row}. */
        interface Takes {
            boolean test(long row, int length);
        }

        /** The call's two groups; null where no sequence starts a prompt, or the kernels do not take one. */
        static MixedCall of(TokenBatch batch, Takes takes) {
            int[] offsets = batch.offsets();
            List<Integer> fresh = new ArrayList<>();
            List<Integer> rest = new ArrayList<>();
            for (int i = 0; i < batch.size(); i++) {
                boolean starts = batch.start(i) == 0 && batch.length(i) > 1;
                if (starts && !takes.test(offsets[i], batch.length(i))) {
                    return null;
                }
                (starts ? fresh : rest).add(i);
            }
            return fresh.isEmpty() ? null : new MixedCall(fresh.stream().mapToInt(Integer::intValue).toArray(),
                    rest.stream().mapToInt(Integer::intValue).toArray());
        }
    }

    /**
     * The device layout of the sequences {@code which} of {@code batch} alone ({@link #layoutOf(TokenBatch, int[])}),
     * uploaded once for the call's layers.
     */
    private long partLayout(TokenBatch batch, int[] which) {
        if (inputs.lastPartBatch == batch && Arrays.equals(inputs.lastPart, which)) {
            return inputs.part().device();
        }
        long ptr = inputs.part().upload(layoutOf(batch, which), true);
        inputs.lastPartBatch = batch;
        inputs.lastPart = which;
        return ptr;
    }

    /** Whether every sequence of the call has exactly one token: a decode step. */
    private static boolean oneTokenEach(TokenBatch batch) {
        for (int i = 0; i < batch.size(); i++) {
            if (batch.length(i) != 1) {
                return false;
            }
        }
        return true;
    }

    /**
     * Whether a call holds prompts from their first tokens only (nothing of them in the state yet), more tokens than
     * sequences: the calls whose mixers can take the training's parallel kernels.
     */
    private static boolean freshPrompts(TokenBatch batch) {
        if (batch.totalTokens() <= batch.size()) {
            return false;
        }
        for (int i = 0; i < batch.size(); i++) {
            if (batch.start(i) != 0) {
                return false;
            }
        }
        return true;
    }

    @Override
    public void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                          Buffer lse) {
        bind();
        if (state == null) {
            attentionTraining(cfg, bufferOf(qkv), batch, bufferOf(out), lse);
            return;
        }
        Backend.keepsNothing("attention", lse);
        CudaStates.KeyValue st = state(state, CudaStates.KeyValue.class, "attention");
        checkSlots(batch, st, "attention");
        int t = batch.totalTokens();
        int d = cfg.dModel();
        CudaBuffer in = bufferOf(qkv);
        CudaBuffer o = bufferOf(out);
        check("attention qkv", in, t, 3 * d, precision);
        check("attention output", o, t, d, precision);
        for (int i = 0; i < batch.size(); i++) {
            if (batch.start(i) + batch.length(i) > st.maxPos) {
                throw new IllegalArgumentException("attention: slot " + batch.slot(i) + " would reach position "
                        + (batch.start(i) + batch.length(i)) + ", past the state's " + st.maxPos);
            }
        }
        st.reserve(batch);  // BasedModel.forward reserved it already; a caller of the op alone may not have
        long l = layout(batch);
        if (freshPromptsOnTensorCores(cfg, batch, in, o)) {
            attentionOfFreshPrompts(cfg, in, batch, o);
        } else if (oneTokenEach(batch) && kernels.windowDecodeFits(precision, cfg.headDim(), cfg.window(),
                st.capacity, in.ptr, st.keys(), st.values())) {
            // a decode step of a short window: one block a head and sequence (from 128 sequences one a sequence
            // with all its heads) reads all its keys, writes the output and appends the token to the ring itself
            kernels.attentionDecodeWindow(precision, in.ptr, st.keys(), st.values(), st.rotary, l, o.ptr,
                    batch.size(), cfg.numHeads(), cfg.headDim(), st.capacity, cfg.window(), cfg.rotaryDim(),
                    st.maxPos, cfg.rotaryInterleaved(), (float) cfg.softmaxScale());
            return;
        } else if (st.splits > 0 && oneTokenEach(batch)) {
            // a decode step: each query's keys split between blocks that read the cache in pairs of values
            kernels.attentionDecode(precision, in.ptr, st.keys(), st.values(), st.rotary, l, o.ptr, st.partial,
                    batch.size(), cfg.numHeads(), cfg.headDim(), st.capacity, cfg.window(), cfg.rotaryDim(),
                    st.maxPos, cfg.rotaryInterleaved(), (float) cfg.softmaxScale(), st.splits);
        } else if (!(eagerBf16() && attentionMixed(cfg, in, st, batch, o))) {
            kernels.attention(precision, in.ptr, st.keys(), st.values(), st.rotary, l, o.ptr, t, batch.size(),
                    cfg.numHeads(), cfg.headDim(), st.capacity, cfg.window(), cfg.rotaryDim(), st.maxPos,
                    cfg.rotaryInterleaved(), (float) cfg.softmaxScale());
        }
        kernels.attentionAppend(precision, in.ptr, st.keys(), st.values(), st.rotary, l, t, batch.size(),
                cfg.numHeads(), cfg.headDim(), st.capacity, cfg.rotaryDim(), st.maxPos, cfg.rotaryInterleaved(),
                batch.longest());
    }

    /**
     * Whether a call's attention runs on the flash-style tensor-core kernels that training uses: bf16, more tokens
     * than sequences (not a decode step), every sequence a prompt from its first token (nothing of it in the cache
     * yet), rotate-half rotary or none, and a head dim and addresses those kernels take. The scalar kernel, one
     * block per query token, takes the rest: decode steps, and prompts fed in pieces.
     */
    private boolean freshPromptsOnTensorCores(MixerConfig.Attention cfg, TokenBatch batch, CudaBuffer qkv,
                                              CudaBuffer out) {
        return precision == Precision.BF16 && freshPrompts(batch) && !(cfg.rotaryInterleaved() && cfg.rotaryDim() > 0)
                && MixerTrainKernels.attentionOnTensorCores(precision, cfg.headDim(), qkv.ptr, out.ptr);
    }

    /**
     * Attention of prompts that start at their first token: the training forward (queries in tiles of 64 on the
     * tensor cores, keys in tiles from the window's start to the diagonal, the softmax online) once per run of
     * consecutive sequences of one length, whose rows lie together. The caller appends the keys and values to the
     * cache.
     */
    private void attentionOfFreshPrompts(MixerConfig.Attention cfg, CudaBuffer qkv, TokenBatch batch,
                                         CudaBuffer out) {
        long qkvRow = 3L * cfg.dModel() * precision.bytes();
        long outRow = (long) cfg.dModel() * precision.bytes();
        long lse = scratch.slot(2, 4L * batch.totalTokens() * cfg.numHeads());
        runsOfOneLength(batch, (row, first, sequences, len) -> mixers.attentionForward(precision, qkv.ptr + row * qkvRow,
                out.ptr + row * outRow, lse, sequences, len, cfg.numHeads(), cfg.headDim(), cfg.window(),
                cfg.rotaryDim(), cfg.rotaryBase(), (float) cfg.softmaxScale()));
    }

    /** A run of consecutive sequences of one length in a call. */
    @FunctionalInterface
    private interface LengthRun {
        /** The run's first token row, the index of its first sequence in the call, its sequences and their length. */
        void accept(long row, int first, int sequences, int length);
    }

    /** {@code run} of each run of consecutive sequences of one length (not 0) in the call, whose rows lie together. */
    private static void runsOfOneLength(TokenBatch batch, LengthRun run) {
        for (int i = 0; i < batch.size(); ) {
            int len = batch.length(i);
            int j = i + 1;
            while (j < batch.size() && batch.length(j) == len) {
                j++;
            }
            if (len > 0) {
                run.accept(batch.offset(i), i, j - i, len);
            }
            i = j;
        }
    }

    // ---------------------------------------------------------------- training: operands

    /** The backend's form of a weight: a parameter's compute copy, or the weight itself. */
    private static CudaWeight weightOf(Weight w) {
        return w instanceof CudaParameter p ? p.compute : CudaWeight.of(w);
    }

    /**
     * The backend's form of a buffer for an op to read or add into: a parameter's float32 master values, or the
     * buffer itself, with any zeroing still pending on its memory done first (queued before the op).
     */
    private CudaBuffer bufferOf(Buffer b) {
        CudaBuffer c = raw(b);
        if (!pendingZeros.isEmpty()) {
            zeroNow(c.ptr, c.bytes());
        }
        return c;
    }

    /** {@link #bufferOf} without doing pending zeros: for what does not touch the values. */
    private static CudaBuffer raw(Buffer b) {
        return b instanceof CudaParameter p ? p.master : CudaBuffer.of(b);
    }

    /**
     * Zeros asked for and not yet done, {ptr, bytes}: {@link #zero} queues them; the next op that touches an
     * overlapping range does them first ({@link #bufferOf}), or, where it overwrites the whole buffer anyway, skips
     * them ({@link #takeZero}): a gradient's first product then runs with beta 0 instead of adding into zeros.
     */
    private final ArrayList<long[]> pendingZeros = new ArrayList<>();

    /** Does the pending zeros that overlap {@code [ptr, ptr + bytes)}, in the order they were asked for. */
    private void zeroNow(long ptr, long bytes) {
        for (int i = 0; i < pendingZeros.size(); ) {
            long[] z = pendingZeros.get(i);
            if (overlaps(z[0], z[1], ptr, bytes)) {
                cu.memsetD8Async(z[0], 0, z[1], stream);
                pendingZeros.remove(i);
            } else {
                i++;
            }
        }
    }

    /** Does every pending zero: before ops that reach buffers other than through their arguments. */
    private void zeroAll() {
        for (long[] z : pendingZeros) {
            cu.memsetD8Async(z[0], 0, z[1], stream);
        }
        pendingZeros.clear();
    }

    /**
     * For an op about to overwrite all of b: whether b is queued to be zeroed as a whole (the zero is then dropped:
     * the op writes its result instead of adding it), doing any other pending zero that overlaps b.
     */
    private boolean takeZero(CudaBuffer b) {
        if (b == null || pendingZeros.isEmpty()) {
            return false;
        }
        boolean whole = pendingZeros.removeIf(z -> z[0] == b.ptr && z[1] == b.bytes());
        zeroNow(b.ptr, b.bytes());
        return whole;
    }

    /**
     * The values of {@code b} as {@code type} for a kernel to read (or to add into, followed by {@link #written}):
     * b's own memory when it holds that type, else a converted copy in scratch slot {@code slot}. The training ops
     * take every buffer in either type this way, so that the training pass may keep each buffer in float32 or in the
     * precision's type; in float32 nothing is ever converted. 0 for a null buffer.
     */
    private long read(CudaBuffer b, Precision type, int slot) {
        if (b == null) {
            return 0;
        }
        if (b.type == type) {
            return b.ptr;
        }
        long copy = scratch.slot(slot, b.count() * type.bytes());
        convert(b.ptr, b.type, copy, type, b.count());
        return copy;
    }

    /** Where a kernel writes b's new values as {@code type}: b itself, or scratch slot {@code slot}. */
    private long writeTo(CudaBuffer b, Precision type, int slot) {
        if (b == null) {
            return 0;
        }
        return b.type == type ? b.ptr : scratch.slot(slot, b.count() * type.bytes());
    }

    /** Stores values a kernel wrote at {@code ptr} (from {@link #read} or {@link #writeTo}) into b. */
    private void written(CudaBuffer b, Precision type, long ptr) {
        if (b != null && b.type != type) {
            convert(ptr, type, b.ptr, b.type, b.count());
        }
    }

    private void convert(long src, Precision from, long dst, Precision to, long count) {
        if (from == Precision.F32) {
            kernels.f32ToA(to, src, dst, count);
        } else {
            kernels.aToF32(from, src, dst, count);
        }
    }

    private CudaBuffer orNull(Buffer b) {
        return b == null ? null : bufferOf(b);
    }

    private static void sameCount(String op, CudaBuffer b, long count) {
        if (b != null && b.count() != count) {
            throw new IllegalArgumentException(op + ": buffer " + b + " does not hold the " + count + " values expected");
        }
    }

    // ---------------------------------------------------------------- training: memory

    /**
     * Float32 master values on the device; in bf16 also a bf16 copy that the forward ops read, rounded from the
     * master here and rewritten by {@link #adamw}.
     */
    @Override
    public Parameter parameter(Tensor tensor) {
        bind();
        long[] shape = tensor.shape();
        long n = tensor.numel();
        int rows = shape.length == 1 ? 1 : Math.toIntExact(shape[0]);
        int cols = Math.toIntExact(n / Math.max(1, rows));
        String what = "parameter " + java.util.Arrays.toString(shape);
        long master = allocate(4 * n, what);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4 * Math.max(n, 1), 8);
            if (tensor.dtype() == DType.F32) {
                host.copyFrom(tensor.data().asSlice(0, 4 * n));
            } else {
                for (long i = 0; i < n; i++) {
                    host.setAtIndex(Tensor.F32_LE, i, tensor.getFloat(i));
                }
            }
            cu.copyHtoDAsync(master, host, 4 * n, stream);
            cu.synchronize(stream);
        }
        long compute = master;
        if (precision != Precision.F32) {
            compute = allocate(n * precision.bytes(), what + " (" + precision.suffix() + " copy)");
            kernels.f32ToA(precision, master, compute, n);
        }
        return new CudaParameter(new CudaBuffer(master, rows, cols, Precision.F32, null),
                new CudaWeight(compute, shape, precision));
    }

    /** Float32 master values and float32 moments: exact for resuming on the same device and precision. */
    @Override
    public Tensor save(Buffer buffer, long... shape) {
        CudaBuffer b = bufferOf(buffer);
        if (Tensor.numel(shape) != b.count()) {
            throw new IllegalArgumentException("shape " + java.util.Arrays.toString(shape) + " does not hold the "
                    + b.count() + " values of " + b);
        }
        float[] values = download(b);
        MemorySegment seg = Arena.ofAuto().allocate(4L * Math.max(values.length, 1), 8);
        MemorySegment.copy(values, 0, seg, Tensor.F32_LE, 0, values.length);
        return new Tensor(DType.F32, shape, seg);
    }

    /**
     * Queues the zero ({@link #pendingZeros}); keeps the bf16 copy of the last rmsNormBackward's dx
     * ({@link #dxCopyOf}) unless it zeroes that buffer.
     */
    @Override
    public void zero(Buffer buffer) {
        long copyOf = dxCopyOf;
        boolean keep = copyOf != 0;
        bind();
        if (buffer instanceof CudaParameter p && p.hasCopy()) {
            long bytes = p.master.count() * p.compute.type.bytes();
            cu.memsetD8Async(p.compute.ptr, 0, bytes, stream);
            keep &= !overlaps(p.compute.ptr, bytes, copyOf, dxCopyBytes);
        }
        CudaBuffer b = raw(buffer);
        if (b.bytes() > 0 && pendingZeros.stream().noneMatch(z -> z[0] == b.ptr && z[1] == b.bytes())) {
            pendingZeros.add(new long[] {b.ptr, b.bytes()});
        }
        if (keep && !overlaps(b.ptr, b.bytes(), copyOf, dxCopyBytes)) {
            dxCopyOf = copyOf;
        }
    }

    private static boolean overlaps(long a, long aBytes, long b, long bBytes) {
        return a < b + bBytes && b < a + aBytes;
    }

    /**
     * 4: parameters, gradients and moments are float32 (in bf16 the activations take 2, so estimates made with 4 are
     * on the safe side).
     */
    @Override
    public int valueBytes() {
        return Float.BYTES;
    }

    /**
     * The rows a loss scores and their targets: {@code rows[m] | targets[m]} of the positions whose target is not
     * {@link #IGNORE_INDEX}, in order.
     */
    static int[] scoredRows(int[] targets) {
        int m = 0;
        for (int t : targets) {
            m += t == IGNORE_INDEX ? 0 : 1;
        }
        int[] out = new int[2 * m];
        int j = 0;
        for (int i = 0; i < targets.length; i++) {
            if (targets[i] != IGNORE_INDEX) {
                out[j] = i;
                out[m + j++] = targets[i];
            }
        }
        return out;
    }

    /**
     * Rows per chunk of the fused loss over {@code rows} rows: whole rows of the vocabulary, at most
     * {@link #LOSS_CELLS} logits, the rows shared evenly between the fewest chunks that keep to that.
     */
    static int lossChunk(long rows, long vocab) {
        long most = Math.max(1, LOSS_CELLS / Math.max(1, vocab));
        long chunks = Math.max(1, (rows + most - 1) / most);
        return (int) Math.max(1, Math.min(Integer.MAX_VALUE, (rows + chunks - 1) / chunks));
    }

    /** {@link TrainKernels#crossEntropyScratchBytes} and the targets and argmax (in values of {@link #valueBytes}). */
    @Override
    public long lossScratchValues(long rows, long width, long vocab) {
        if (rows > Integer.MAX_VALUE) {
            return Long.MAX_VALUE;
        }
        long bytes = TrainKernels.crossEntropyScratchBytes(precision, (int) rows, lossChunk(rows, vocab), (int) vocab)
                + 8 * rows;
        return (bytes + valueBytes() - 1) / valueBytes();
    }

    /** The host part against the host's memory, the buffers against the device's free memory (less a margin). */
    @Override
    public void checkFits(long bufferBytes, MemoryNeed host) {
        HostMemory.system().require(host);
        bind();
        long[] info = cu.memoryInfo();
        long free = info[0] - DEVICE_MARGIN;
        if (bufferBytes > free) {
            throw new NotEnoughMemoryException(host, bufferBytes, "of GPU memory", free, String.format(Locale.ROOT,
                    "GPU %s (%s): %s free of %s, less %s kept for cuBLAS and the driver", name(), deviceName,
                    human(info[0]), human(info[1]), human(DEVICE_MARGIN)));
        }
    }

    // ---------------------------------------------------------------- training: forward ops that keep

    /** {@link #rmsNorm} of a training pass: also writes each row's rstd. */
    private void rmsNormKeeping(CudaBuffer x, CudaWeight w, float eps, CudaBuffer out, CudaBuffer rstd) {
        check("rmsNorm output", out, x.rows, x.cols, null);
        check("rmsNorm rstd", rstd, x.rows, 1, null);
        long xp = read(x, Precision.F32, 0);
        long op = writeTo(out, precision, 1);
        long rp = writeTo(rstd, Precision.F32, 2);
        train.rmsNormRstd(precision, xp, w.ptr, op, rp, x.rows, x.cols, eps);
        written(out, precision, op);
        written(rstd, Precision.F32, rp);
    }

    private void baseConvTraining(MixerConfig.BaseConv cfg, CudaBuffer u, CudaWeight taps, TokenBatch batch,
                                  CudaBuffer out, Buffer convOut) {
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int inner = cfg.innerWidth();
        check("baseConv input", u, t, 2 * inner, null);
        check("baseConv output", out, t, inner, null);
        CudaBuffer c = orNull(convOut);
        if (c != null) {
            check("baseConv conv output", c, t, inner, null);
        }
        long cp = c == null ? 0 : writeTo(c, precision, 2);  // nothing kept: the kernels write no conv output
        long op = writeTo(out, precision, 1);
        mixers.baseConvForward(precision, read(u, precision, 0), taps.ptr, cp, op, batch.size(), seqLen, inner,
                cfg.kernel());
        written(out, precision, op);
        written(c, precision, cp);
    }

    private void linearAttentionTraining(MixerConfig.LinearAttention cfg, CudaBuffer q, CudaBuffer k, CudaBuffer v,
                                         TokenBatch batch, CudaBuffer out) {
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int qk = cfg.numHeads() * cfg.featureDim();
        int d = cfg.numHeads() * cfg.headDim();
        check("linearAttention q", q, t, qk, null);
        check("linearAttention k", k, t, qk, null);
        check("linearAttention v", v, t, d, null);
        check("linearAttention output", out, t, d, null);
        long op = writeTo(out, precision, 3);
        mixers.linearAttentionForward(precision, read(q, precision, 0), read(k, precision, 1), read(v, precision, 2),
                op, batch.size(), seqLen, cfg.numHeads(), cfg.featureDim(), cfg.headDim(), (float) cfg.eps());
        written(out, precision, op);
    }

    /** Training supports rotate-half rotary only, as the float64 reference does. */
    private static void checkRotary(MixerConfig.Attention cfg) {
        if (cfg.rotaryInterleaved() && cfg.rotaryDim() > 0) {
            throw new IllegalArgumentException("training supports non-interleaved (rotate-half) rotary only");
        }
    }

    private void attentionTraining(MixerConfig.Attention cfg, CudaBuffer qkv, TokenBatch batch, CudaBuffer out,
                                   Buffer lse) {
        checkRotary(cfg);
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int d = cfg.dModel();
        check("attention qkv", qkv, t, 3 * d, null);
        check("attention output", out, t, d, null);
        CudaBuffer l = orNull(lse);
        if (l != null) {
            check("attention lse", l, t, cfg.numHeads(), null);
        }
        long lp = l == null ? scratch.slot(2, 4L * t * cfg.numHeads()) : writeTo(l, Precision.F32, 2);
        long op = writeTo(out, precision, 1);
        mixers.attentionForward(precision, read(qkv, precision, 0), op, lp, batch.size(), seqLen, cfg.numHeads(),
                cfg.headDim(), cfg.window(), cfg.rotaryDim(), cfg.rotaryBase(), (float) cfg.softmaxScale());
        written(out, precision, op);
        written(l, Precision.F32, lp);
    }

    // ---------------------------------------------------------------- training: backward of the dense ops

    /** Deterministic: positions grouped by id on the host, each id's rows summed in position order. */
    @Override
    public void embeddingBackward(int[] ids, Buffer dout, Buffer dtable) {
        bind();
        CudaBuffer g = bufferOf(dout);
        CudaBuffer t = bufferOf(dtable);
        check("embeddingBackward dout", g, ids.length, t.cols, null);
        TrainKernels.EmbeddingGroups groups = TrainKernels.embeddingGroups(ids, t.rows);
        long idp;
        long gp;
        if (capture != null) {
            idp = capture.upload(capture.embeddingIds, ids, Source.IDS, ids);
            gp = capture.upload(capture.groups, groups.layout(), Source.GROUPS_OF_IDS, ids);
            capture.groupRows = t.rows;
        } else {
            idp = scratch.ids().upload(ids, true);
            gp = scratch.groups().upload(groups.layout(), true);
        }
        long tp = read(t, Precision.F32, 1);
        train.embeddingBackwardGrouped(idp, gp, ids.length, t.rows, read(g, Precision.F32, 0), tp, t.cols);
        written(t, Precision.F32, tp);
    }

    @Override
    public void rmsNormBackward(Buffer x, Weight w, Buffer rstd, Buffer dout, Buffer dx, Buffer dw) {
        bind();
        CudaBuffer xb = bufferOf(x);
        CudaBuffer r = bufferOf(rstd);
        CudaBuffer g = bufferOf(dout);
        CudaBuffer dxb = orNull(dx);
        CudaBuffer dwb = bufferOf(dw);
        int n = xb.rows;
        int d = xb.cols;
        check("rmsNormBackward rstd", r, n, 1, null);
        check("rmsNormBackward dout", g, n, d, null);
        if (dxb != null) {
            check("rmsNormBackward dx", dxb, n, d, null);
        }
        sameCount("rmsNormBackward dw", dwb, d);
        long partial = scratch.slot(5, TrainKernels.rmsNormBackwardScratchBytes(n, d));
        long wp = weightOf(w).ptr;
        if (xb.type == Precision.F32 && r.type == Precision.F32 && dwb.type == Precision.F32
                && (dxb == null || dxb.type == Precision.F32)
                && TrainKernels.rmsNormByRows(precision, d, xb.ptr, wp, g.ptr, dxb == null ? 0 : dxb.ptr, partial)) {
            // the bf16 row kernel reads dout in its own type and leaves dx rounded to bf16 for the next product
            long copy = dxb == null ? 0 : scratch.slot(DX_COPY_SLOT, (long) n * d * precision.bytes());
            train.rmsNormBackward(precision, xb.ptr, wp, r.ptr, g.ptr, g.type, dxb == null ? 0 : dxb.ptr, copy,
                    dwb.ptr, partial, n, d);
            if (copy != 0) {
                dxCopyOf = dxb.ptr;
                dxCopyBytes = dxb.bytes();
                dxCopy = copy;
            }
            return;
        }
        long dxp = read(dxb, Precision.F32, 3);
        long dwp = read(dwb, Precision.F32, 4);
        train.rmsNormBackward(precision, read(xb, Precision.F32, 0), wp, read(r, Precision.F32, 1),
                read(g, Precision.F32, 2), dxp, dwp, partial, n, d);
        written(dxb, Precision.F32, dxp);
        written(dwb, Precision.F32, dwp);
    }

    /**
     * The bf16 copy of {@code b}'s values that the last op left (an {@link #rmsNormBackward} into b, followed by
     * nothing but zeros of other buffers), or 0. Read it before any {@link #bind}.
     */
    private long dxCopyFor(CudaBuffer b) {
        boolean same = dxCopyOf != 0 && b.ptr == dxCopyOf && b.bytes() == dxCopyBytes && b.type == Precision.F32;
        return same ? dxCopy : 0;
    }

    /**
     * Two products (cuBLASLt, else {@code cublasGemmEx}) with float32 accumulation and beta 1, each adding into its
     * gradient in the gradient's own type: {@code dx += dout @ w}, {@code dw += dout^T @ x}; and
     * {@code db += colsum(dout)}, summed by {@link TrainKernels#columnSum} into a float32 gradient (else as
     * {@code dout^T @ ones}). (cuBLASLt's bias-gradient epilogue, BGRADB, measured no faster than the product and
     * the column sums apart on an H200: 0.218 against 0.213 ms at 16384 x 1024 -> 4096.)
     */
    @Override
    public void matmulBackward(Buffer x, Weight w, Buffer dout, Buffer dx, Buffer dw, Buffer db) {
        long copy = dxCopyFor(bufferOf(dout));  // before bind() forgets it
        bind();
        CudaBuffer xb = bufferOf(x);
        CudaWeight wt = weightOf(w);
        CudaBuffer g = bufferOf(dout);
        CudaBuffer dxb = dx == null ? null : raw(dx);  // pending zeros: written (beta 0) instead of added into
        CudaBuffer dwb = dw == null ? null : raw(dw);
        CudaBuffer dbb = orNull(db);
        int n = xb.rows;
        int k = xb.cols;
        int m = wt.rows();
        if (wt.cols() != k) {
            throw new IllegalArgumentException("matmulBackward: x is " + n + "x" + k + " but the weight is " + wt);
        }
        check("matmulBackward dout", g, n, m, null);
        if (dxb != null) {
            check("matmulBackward dx", dxb, n, k, null);
        }
        sameCount("matmulBackward dw", dwb, (long) m * k);
        sameCount("matmulBackward db", dbb, m);
        boolean dxFresh = n > 0 && m > 0 && takeZero(dxb);
        boolean dwFresh = n > 0 && m > 0 && k > 0 && takeZero(dwb);
        for (CudaBuffer b : new CudaBuffer[] {dxb, dwb}) {
            if (b != null) {
                zeroNow(b.ptr, b.bytes());  // what no product writes below
            }
        }
        if (n == 0) {
            return;
        }
        int type = cublasType(precision);
        long gp = copy != 0 ? copy : read(g, precision, 1);
        if (dxb != null) {
            // dx^T [k, n] += w^T [k, m] dout^T [m, n] (column-major)
            product(Cublas.OP_N, Cublas.OP_N, k, n, m, wt.ptr, type, k, gp, type, m, dxFresh ? 0f : 1f, dxb.ptr,
                    cublasType(dxb.type), k);
        }
        if (dwb != null) {
            // dw^T [k, m] += x^T [k, n] dout [n, m] (column-major)
            product(Cublas.OP_N, Cublas.OP_T, k, m, n, read(xb, precision, 0), type, k, gp, type, m,
                    dwFresh ? 0f : 1f, dwb.ptr, cublasType(dwb.type), k);
        }
        if (dbb == null) {
            return;
        }
        routes.biasGradientKernel++;
        if (dbb.type == Precision.F32) {
            // db [m] += colsum(dout [n, m]): parts of rows summed in order (a product with ones runs a slow path)
            train.columnSum(precision, gp, dbb.ptr, scratch.slot(3, TrainKernels.columnSumScratchBytes(n, m)), n, m);
        } else {
            // db [m, 1] += dout^T [m, n] ones [n, 1] (column-major)
            blas.gemm(Cublas.OP_N, Cublas.OP_N, m, 1, n, 1f, gp, type, m, scratch.ones(precision, n, kernels), type, n,
                    1f, dbb.ptr, cublasType(dbb.type), m, Cublas.COMPUTE_32F);
        }
    }

    @Override
    public void swigluBackward(Buffer a, Buffer dout, Buffer da) {
        bind();
        CudaBuffer ab = bufferOf(a);
        CudaBuffer g = bufferOf(dout);
        CudaBuffer dab = raw(da);
        int n = ab.rows;
        int h = ab.cols / 2;
        check("swigluBackward dout", g, n, h, null);
        check("swigluBackward da", dab, n, 2 * h, null);
        if (precision != Precision.F32 && ab.type == precision && g.type == precision && dab.type == precision) {
            // the training pass's buffers, all bf16: read and rounded back by the kernel, no conversion passes; a
            // pending zero of da is not done but written over
            train.swigluBackwardInA(precision, ab.ptr, g.ptr, dab.ptr, n, h, takeZero(dab));
            return;
        }
        zeroNow(dab.ptr, dab.bytes());
        long dap = read(dab, Precision.F32, 2);
        train.swigluBackward(precision, read(ab, precision, 0), read(g, Precision.F32, 1), dap, n, h);
        written(dab, Precision.F32, dap);
    }

    // ---------------------------------------------------------------- training: backward of the sequence mixers

    @Override
    public void baseConvBackward(MixerConfig.BaseConv cfg, TokenBatch batch, Buffer u, Weight taps, Buffer convOut,
                                 Buffer dout, Buffer du, Buffer dtaps) {
        bind();
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int inner = cfg.innerWidth();
        CudaBuffer ub = bufferOf(u);
        CudaBuffer c = bufferOf(convOut);
        CudaBuffer g = bufferOf(dout);
        CudaBuffer dub = raw(du);
        CudaBuffer dtb = bufferOf(dtaps);
        check("baseConvBackward u", ub, t, 2 * inner, null);
        check("baseConvBackward conv output", c, t, inner, null);
        check("baseConvBackward dout", g, t, inner, null);
        check("baseConvBackward du", dub, t, 2 * inner, null);
        sameCount("baseConvBackward dtaps", dtb, (long) inner * cfg.kernel());
        long dtp = read(dtb, Precision.F32, 4);
        long up = read(ub, precision, 0);
        long tp = weightOf(taps).ptr;
        long cp = read(c, precision, 1);
        long gp = read(g, precision, 2);
        // a pending zero of du is not done but written over where the rows kernel takes du in its own type
        boolean fresh = dub.type == precision && t > 0
                && MixerTrainKernels.convByRows(precision, t, inner, cfg.kernel(), up, tp, cp, gp, dub.ptr)
                && takeZero(dub);
        if (!fresh) {
            zeroNow(dub.ptr, dub.bytes());
        }
        long dup = read(dub, precision, 3);
        mixers.baseConvBackward(precision, up, tp, cp, gp, dup, dtp, batch.size(), seqLen, inner, cfg.kernel(),
                fresh);
        written(dub, precision, dup);
        written(dtb, Precision.F32, dtp);
    }

    @Override
    public void linearAttentionBackward(MixerConfig.LinearAttention cfg, TokenBatch batch, Buffer q, Buffer k,
                                        Buffer v, Buffer dout, Buffer dq, Buffer dk, Buffer dv) {
        bind();
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int qk = cfg.numHeads() * cfg.featureDim();
        int d = cfg.numHeads() * cfg.headDim();
        CudaBuffer[] in = {bufferOf(q), bufferOf(k), bufferOf(v), bufferOf(dout)};
        CudaBuffer[] grads = {bufferOf(dq), bufferOf(dk), bufferOf(dv)};
        int[] widths = {qk, qk, d, d};
        String[] names = {"q", "k", "v", "dout"};
        for (int i = 0; i < in.length; i++) {
            check("linearAttentionBackward " + names[i], in[i], t, widths[i], null);
            if (i < grads.length) {
                check("linearAttentionBackward d" + names[i], grads[i], t, widths[i], null);
            }
        }
        long[] gp = new long[grads.length];
        for (int i = 0; i < grads.length; i++) {
            gp[i] = read(grads[i], precision, 4 + i);
        }
        mixers.linearAttentionBackward(precision, read(in[0], precision, 0), read(in[1], precision, 1),
                read(in[2], precision, 2), read(in[3], precision, 3), gp[0], gp[1], gp[2], batch.size(), seqLen,
                cfg.numHeads(), cfg.featureDim(), cfg.headDim(), (float) cfg.eps());
        for (int i = 0; i < grads.length; i++) {
            written(grads[i], precision, gp[i]);
        }
    }

    @Override
    public void attentionBackward(MixerConfig.Attention cfg, TokenBatch batch, Buffer qkv, Buffer out, Buffer lse,
                                  Buffer dout, Buffer dqkv) {
        bind();
        checkRotary(cfg);
        int seqLen = batch.uniformLength();
        int t = batch.totalTokens();
        int d = cfg.dModel();
        CudaBuffer in = bufferOf(qkv);
        CudaBuffer o = bufferOf(out);
        CudaBuffer l = bufferOf(lse);
        CudaBuffer g = bufferOf(dout);
        CudaBuffer dq = bufferOf(dqkv);
        check("attentionBackward qkv", in, t, 3 * d, null);
        check("attentionBackward output", o, t, d, null);
        check("attentionBackward lse", l, t, cfg.numHeads(), null);
        check("attentionBackward dout", g, t, d, null);
        check("attentionBackward dqkv", dq, t, 3 * d, null);
        long dqp = read(dq, precision, 4);
        mixers.attentionBackward(precision, read(in, precision, 0), read(o, precision, 1), read(l, Precision.F32, 2),
                read(g, precision, 3), dqp, batch.size(), seqLen, cfg.numHeads(), cfg.headDim(), cfg.window(),
                cfg.rotaryDim(), cfg.rotaryBase(), (float) cfg.softmaxScale());
        written(dq, precision, dqp);
    }

    // ---------------------------------------------------------------- training: loss

    /**
     * {@link TrainKernels#crossEntropy} over vocabulary chunks (no {@code rows x vocab} logits), then the loss and
     * argmax read back: the pass's one wait for the device.
     */
    @Override
    public double crossEntropy(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx,
                               Buffer dhead, int[] argmax) {
        Enqueued q = enqueueCrossEntropy(x, head, vocab, targets, scale, dx, dhead, argmax);
        if (q.loss() == 0) {
            return 0;
        }
        // the argmax of every row, or, where the loss took the scored rows only, of those rows (in their order)
        int n = q.gathered() == null ? targets.length : q.gathered().length / 2;
        MemorySegment host = scratch.host(8 + 4L * n);
        cu.copyDtoHAsync(host, q.loss(), 8, stream);
        if (argmax != null) {
            cu.copyDtoHAsync(host.asSlice(8), q.argmax(), 4L * n, stream);
        }
        cu.synchronize(stream);
        if (argmax != null && q.gathered() == null) {
            MemorySegment.copy(host, ValueLayout.JAVA_INT_UNALIGNED, 8, argmax, 0, n);
        } else if (argmax != null) {
            Arrays.fill(argmax, 0, targets.length, -1); // rows without a target, as the kernel marks them
            for (int j = 0; j < n; j++) {
                argmax[q.gathered()[j]] = host.get(ValueLayout.JAVA_INT_UNALIGNED, 8 + 4L * j);
            }
        }
        return host.get(ValueLayout.JAVA_DOUBLE_UNALIGNED, 0);
    }

    /**
     * A queued loss: the device address of its summed loss (double; 0 when there are no rows), of the argmax (0 when
     * not asked for), and, where the loss ran over the scored rows only, {@link #scoredRows}: their indices, then
     * their targets (null when it ran over every row).
     */
    private record Enqueued(long loss, long argmax, int[] gathered) {
    }

    /** The loss copied into a pinned slot of {@link #readouts} behind the pass's kernels: no wait. */
    @Override
    public Readout crossEntropyLater(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx,
                                     Buffer dhead) {
        long loss = enqueueCrossEntropy(x, head, vocab, targets, scale, dx, dhead, null).loss();
        if (capture != null) {
            capture.loss(loss, vocab);
            return () -> {
                throw new IllegalStateException("the loss of a recorded step is read from its run");
            };
        }
        return loss == 0 ? () -> 0 : readouts.later(loss);
    }

    /**
     * Checks the arguments and queues the fused head and loss. Where at most half the rows have a target (recall
     * tasks score a few positions a sequence), the head's products run over those rows only, gathered: the loss's
     * gradient is added back into dx's rows, and the argmax, if asked for, is that of the gathered rows. Such a loss
     * without an argmax runs in bf16 on the tensor cores for models up to {@link #LOSS_MMA_MAX_WIDTH} wide. Any other
     * bf16 loss without an argmax (a language model's, every row scored) makes bf16 logits, as the reference's bf16
     * autocast makes them; with an argmax (scoring) the logits are float32.
     */
    private Enqueued enqueueCrossEntropy(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx,
                                     Buffer dhead, int[] argmax) {
        bind();
        CudaBuffer xb = bufferOf(x);
        CudaWeight h = weightOf(head);
        CudaBuffer dxb = orNull(dx);
        CudaBuffer dhb = orNull(dhead);
        int n = xb.rows;
        int d = xb.cols;
        if (h.cols() != d || h.rows() < vocab || vocab < 1) {
            throw new IllegalArgumentException("crossEntropy: head " + h + " does not hold " + vocab + " rows of " + d);
        }
        if (targets.length != n || (argmax != null && argmax.length < n)) {
            throw new IllegalArgumentException("crossEntropy: " + n + " rows but " + targets.length + " targets"
                    + (argmax == null ? "" : " and room for " + argmax.length + " argmax"));
        }
        for (int i = 0; i < n; i++) {
            if (targets[i] != IGNORE_INDEX && (targets[i] < 0 || targets[i] >= vocab)) {
                throw new IllegalArgumentException("target " + targets[i] + " at position " + i
                        + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        if (dxb != null) {
            check("crossEntropy dx", dxb, n, d, null);
        }
        sameCount("crossEntropy dhead", dhb, (long) h.rows() * d);
        if (n == 0) {
            return new Enqueued(0, 0, null);
        }
        long dxp = read(dxb, Precision.F32, 1);
        long dhp = read(dhb, Precision.F32, 2);
        long loss = scratch.slot(4, 8);
        if (capture != null && argmax != null) {
            throw new StepNotRecordable("the loss's argmax is read by the host");
        }
        cu.memsetD8Async(loss, 0, 8, stream);
        long xp = read(xb, precision, 0);
        int[] scored = scoredRows(targets);
        if (scored.length > 0 && scored.length <= n) {
            int m = scored.length / 2;
            long in = capture != null ? capture.upload(capture.targetsIn, scored, Source.SCORED_OF_TARGETS, targets)
                    : scratch.targets().upload(scored, true);
            long xc = scratch.slot(5, (long) m * d * precision.bytes());
            kernels.gatherRows(precision, xp, in, xc, m, d);
            long dxc = dxp == 0 ? 0 : scratch.slot(6, 4L * m * d);
            if (dxc != 0 && dhp != 0 && argmax == null && d <= LOSS_MMA_MAX_WIDTH
                    && TrainKernels.crossEntropyMmaFits(precision, d, vocab) && Kernels.aligned(xc, h.ptr)) {
                // a narrow model's loss on the tensor cores, no logits in memory; dxc written whole
                long work = scratch.slot(3, TrainKernels.crossEntropyMmaScratchBytes(m, d, vocab));
                train.crossEntropyMma(xc, h.ptr, m, d, vocab, in + 4L * m, (float) scale, dxc, dhp, loss, work);
                kernels.scatterAddRows(dxc, in, dxp, m, d);
                written(dxb, Precision.F32, dxp);
                written(dhb, Precision.F32, dhp);
                return new Enqueued(loss, 0, scored);
            }
            if (dxc != 0) {
                cu.memsetD8Async(dxc, 0, 4L * m * d, stream);
            }
            int chunk = lossChunk(m, vocab);
            boolean bf16Logits = precision == Precision.BF16 && argmax == null;
            long work = scratch.slot(3, bf16Logits ? TrainKernels.crossEntropyBf16ScratchBytes(m, chunk, vocab)
                    : TrainKernels.crossEntropyScratchBytes(precision, m, chunk, vocab));
            long best = argmax == null ? 0 : scratch.slot(GATHERED_ARGMAX_SLOT, 4L * m);
            train.crossEntropy(precision, xc, h.ptr, m, d, vocab, in + 4L * m, (float) scale, dxc, dhp, best, loss,
                    work, chunk, bf16Logits);
            if (dxc != 0) {
                kernels.scatterAddRows(dxc, in, dxp, m, d);
            }
            written(dxb, Precision.F32, dxp);
            written(dhb, Precision.F32, dhp);
            return new Enqueued(loss, best, scored);
        } else {
            int chunk = lossChunk(n, vocab);
            boolean bf16Logits = precision == Precision.BF16 && argmax == null;
            long work = scratch.slot(3, bf16Logits ? TrainKernels.crossEntropyBf16ScratchBytes(n, chunk, vocab)
                    : TrainKernels.crossEntropyScratchBytes(precision, n, chunk, vocab));
            long best = argmax == null ? 0 : scratch.slot(5, 4L * n);
            long tp = capture != null ? capture.upload(capture.targetsIn, targets, Source.TARGETS, targets)
                    : scratch.targets().upload(targets, true);
            train.crossEntropy(precision, xp, h.ptr, n, d, vocab, tp, (float) scale, dxp, dhp, best, loss, work,
                    chunk, bf16Logits);
            written(dxb, Precision.F32, dxp);
            written(dhb, Precision.F32, dhp);
            return new Enqueued(loss, best, null);
        }
    }

    // ---------------------------------------------------------------- training: optimizer

    /** Sums of squares per block in double, summed in order on the device, the total read back. */
    @Override
    public double sumOfSquares(Buffer g) {
        bind();
        CudaBuffer b = bufferOf(g);
        long partial = scratch.slot(1, 8L * TrainKernels.NORM_MAX_PARTIALS);
        long record = scratch.slot(2, TrainKernels.GRAD_NORM_BYTES);
        int parts = train.sumOfSquares(read(b, Precision.F32, 0), b.count(), partial);
        if (parts == 0) {
            return 0;
        }
        train.gradNormFinish(partial, parts, 0, record);
        MemorySegment host = scratch.host(8);
        cu.copyDtoHAsync(host, record + TrainKernels.GRAD_NORM_SUM_OFFSET, 8, stream);
        cu.synchronize(stream);
        return host.get(ValueLayout.JAVA_DOUBLE_UNALIGNED, 0);
    }

    /** {@code g *= s} as a product with k = 1 ({@code s * g * 1}: one rounding), out of place, then copied back. */
    @Override
    public void scale(Buffer g, double s) {
        bind();
        CudaBuffer b = bufferOf(g);
        long count = b.count();
        if (count == 0) {
            return;
        }
        if (count > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("scale: " + count + " values are more than one product can take");
        }
        long gp = read(b, Precision.F32, 0);
        long scaled = scratch.slot(1, 4 * count);
        blas.gemm(Cublas.OP_N, Cublas.OP_N, (int) count, 1, 1, (float) s, gp, Cublas.R_32F, (int) count,
                scratch.ones(Precision.F32, 1, kernels), Cublas.R_32F, 1, 0f, scaled, Cublas.R_32F, (int) count,
                Cublas.COMPUTE_32F);
        cu.copyDtoDAsync(gp, scaled, 4 * count, stream);
        written(b, Precision.F32, gp);
    }

    /** {@link TrainKernels#adamw} on the float32 master, rewriting the bf16 compute copy in bf16. */
    @Override
    public void adamw(Parameter p, Buffer g, Buffer m, Buffer v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, long step) {
        bind();
        if (!(p instanceof CudaParameter par)) {
            throw new IllegalArgumentException("adamw: " + p + " is not a parameter of a CUDA backend");
        }
        long count = par.master.count();
        CudaBuffer gb = bufferOf(g);
        CudaBuffer mb = bufferOf(m);
        CudaBuffer vb = bufferOf(v);
        sameCount("adamw gradient", gb, count);
        sameCount("adamw first moment", mb, count);
        sameCount("adamw second moment", vb, count);
        long mp = read(mb, Precision.F32, 1);
        long vp = read(vb, Precision.F32, 2);
        train.adamw(precision, par.master.ptr, read(gb, Precision.F32, 0), mp, vp, par.hasCopy() ? par.compute.ptr : 0,
                count, lr, beta1, beta2, eps, weightDecay, step, 0);
        written(mb, Precision.F32, mp);
        written(vb, Precision.F32, vp);
    }

    /**
     * Every parameter in three launches (sums of squares per chunk, the norm and clip factor, AdamW per chunk) over
     * a table of chunks made on the first step over these slots and kept while they stay the same; the norm stays on
     * the device until read. After an update whose norm is not finite the device record refuses every later update
     * over the same slots. Slots whose buffers are not all float32 go through the per-slot default.
     */
    @Override
    public GradientNorm adamwStep(List<AdamWSlot> slots, AdamWUpdate u) {
        bind();
        zeroAll();  // the chunk table reaches the gradients by address
        OptimizerTable t = optimizerTable(slots);
        if (t == null) {
            if (capture != null) {
                throw new StepNotRecordable("the optimizer's buffers are not all float32");
            }
            return TrainingBackend.super.adamwStep(slots, u);
        }
        long live = 0;
        if (capture != null) {
            // the rate and the update's number change from replay to replay: the kernels read them from the device
            live = capture.upload(capture.scalars, TrainKernels.packStepScalars(u.lr(), u.beta1(), u.beta2(),
                    u.step()), Source.SCALARS, null);
            capture.optimized(t, u);
        }
        train.sumOfSquaresChunks(t.table, t.chunks, t.partial);
        train.gradNormFinishChunks(t.partial, t.chunks, u.gradClip(), u.step(), live, t.record);
        train.adamwChunks(precision, t.table, t.chunks, u.lr(), u.beta1(), u.beta2(), u.eps(), u.step(), t.record,
                live);
        long update = u.step();
        return () -> t.readNorm(update);
    }

    /** The device table and record of the multi-tensor step over one list of slots. */
    private final class OptimizerTable {
        final long[] key;
        final int chunks;
        final long table;
        final long partial;
        final long record;

        OptimizerTable(long[] key, List<long[]> rows) {
            this.key = key;
            this.chunks = rows.size();
            table = allocate((long) chunks * TrainKernels.CHUNK_BYTES, "optimizer table");
            partial = allocate(8L * chunks, "optimizer partial sums");
            record = allocateZeroed(TrainKernels.STEP_NORM_BYTES, "optimizer record");
            try (Arena a = Arena.ofConfined()) {
                MemorySegment host = a.allocate((long) chunks * TrainKernels.CHUNK_BYTES, 8);
                for (int c = 0; c < chunks; c++) {
                    MemorySegment.copy(rows.get(c), 0, host, ValueLayout.JAVA_LONG, (long) c * TrainKernels.CHUNK_BYTES,
                            TrainKernels.CHUNK_BYTES / 8);
                }
                cu.copyHtoDAsync(table, host, (long) chunks * TrainKernels.CHUNK_BYTES, stream);
                cu.synchronize(stream);
            }
        }

        /** The norm of update {@code update}, or the first one that was not finite; waits for the device. */
        double readNorm(long update) {
            bind();
            MemorySegment host = scratch.host(TrainKernels.STEP_NORM_BYTES);
            cu.copyDtoHAsync(host, record, TrainKernels.STEP_NORM_BYTES, stream);
            cu.synchronize(stream);
            long latest = host.get(ValueLayout.JAVA_LONG_UNALIGNED, TrainKernels.STEP_NORM_UPDATE_OFFSET);
            long failed = host.get(ValueLayout.JAVA_LONG_UNALIGNED, TrainKernels.STEP_NORM_FAILED_OFFSET);
            if (failed != 0 && failed <= update) {
                return Double.NaN;
            }
            if (latest != update) {
                throw new IllegalStateException("the gradient norm of update " + update + " was read after update "
                        + latest + " replaced it");
            }
            return Math.sqrt(host.get(ValueLayout.JAVA_DOUBLE_UNALIGNED, TrainKernels.GRAD_NORM_SUM_OFFSET));
        }

        void release() {
            freeLater(() -> {
                free(table);
                free(partial);
                free(record);
            });
        }
    }

    private OptimizerTable optimizerTable;

    /** The table of {@code slots}, made again when they changed; null when a buffer is not float32. */
    private OptimizerTable optimizerTable(List<AdamWSlot> slots) {
        long[] key = new long[7 * slots.size()];
        for (int i = 0; i < slots.size(); i++) {
            AdamWSlot s = slots.get(i);
            if (!(s.value() instanceof CudaParameter par)) {
                throw new IllegalArgumentException("adamw: " + s.value() + " is not a parameter of a CUDA backend");
            }
            CudaBuffer g = bufferOf(s.grad());
            CudaBuffer m = bufferOf(s.m());
            CudaBuffer v = bufferOf(s.v());
            long count = par.master.count();
            sameCount("adamw gradient", g, count);
            sameCount("adamw first moment", m, count);
            sameCount("adamw second moment", v, count);
            if (g.type != Precision.F32 || m.type != Precision.F32 || v.type != Precision.F32) {
                return null;
            }
            long[] k = {par.master.ptr, g.ptr, m.ptr, v.ptr, par.hasCopy() ? par.compute.ptr : 0, count,
                    Double.doubleToRawLongBits(s.weightDecay())};
            System.arraycopy(k, 0, key, 7 * i, 7);
        }
        if (optimizerTable != null && Arrays.equals(optimizerTable.key, key)) {
            return optimizerTable;
        }
        List<long[]> rows = new ArrayList<>();
        for (int i = 0; i < slots.size(); i++) {
            long count = key[7 * i + 5];
            int elementBytes = precision.bytes();
            for (long from = 0; from < count; from += TrainKernels.OPTIMIZER_CHUNK) {
                long n = Math.min(TrainKernels.OPTIMIZER_CHUNK, count - from);
                long compute = key[7 * i + 4];
                rows.add(new long[] {key[7 * i] + 4 * from, key[7 * i + 1] + 4 * from, key[7 * i + 2] + 4 * from,
                        key[7 * i + 3] + 4 * from, compute == 0 ? 0 : compute + elementBytes * from, n,
                        key[7 * i + 6], 0});
            }
        }
        if (optimizerTable != null) {
            optimizerTable.release();
            optimizerTable = null;
        }
        if (rows.isEmpty()) {
            return null;
        }
        optimizerTable = new OptimizerTable(key, rows);
        return optimizerTable;
    }

    // ---------------------------------------------------------------- graphs

    /** A recorded CUDA graph, alive until closed (the device memory it reads outlives it: {@link #freeLater}). */
    private abstract class RecordedGraph implements AutoCloseable {
        final long graph;
        final long exec;
        boolean closed;

        RecordedGraph(long graph, long exec) {
            this.graph = graph;
            this.exec = exec;
            graphOpened(this);
        }

        /** Frees the inputs that the graph's replays read. */
        abstract void closeInputs();

        @Override
        public void close() {
            if (!closed && !CudaBackend.this.closed) {
                closed = true;
                bind();
                cu.synchronize(stream);
                cu.destroyGraphExec(exec);
                cu.destroyGraph(graph);
                closeInputs();
                graphClosed(this);
            }
        }
    }

    private final class CudaGraph extends RecordedGraph implements Graph {
        final Inputs in;
        final int tokens;
        final int sequences;

        CudaGraph(long graph, long exec, Inputs in, int tokens, int sequences) {
            super(graph, exec);
            this.in = in;
            this.tokens = tokens;
            this.sequences = sequences;
        }

        @Override
        void closeInputs() {
            in.close();
            if (lastGraph == this) {
                lastGraph = null;
            }
        }
    }

    private final StepGraphs graphs = new StepGraphs() {
        @Override
        public boolean timesFirstCalls() {
            // a product is timed, or probed for programmatic edges, on its first call outside a capture
            return lt.timing() || probesProducts();
        }

        @Override
        public <T> T firstStep(java.util.function.Supplier<T> forward) {
            bind();
            lt.probing(true);  // the step's products probed as they meet their plans, and only these
            try {
                return forward.get();
            } finally {
                lt.probing(false);
            }
        }

        @Override
        public Graph record(int[] tokens, TokenBatch batch, Runnable forward) {
            bind();
            if (recording) {
                throw new IllegalStateException("already recording a graph");
            }
            Inputs mine = new Inputs(tokens.length, 4 * batch.size() + 1 + batch.totalTokens());
            cu.synchronize(stream);
            boolean before = kernels.programmatic();
            kernels.programmatic(before || kernels.programmaticSteps());
            lt.programmaticEdges(kernels.programmatic());
            kernels.weightsFixed(true);  // a forward writes no weights
            long[] recorded;
            try {
                recorded = recordGraph(mine, null, () -> {
                    // the layout's copy first, and the graph's node that tells the host it has been read, so that
                    // the next replay's layout may be staged while this one runs (a step queued ahead)
                    layout(batch);
                    mine.layout.copiedInGraph();
                    forward.run();
                }, mine::close, CudaBackend::rethrown);
            } finally {
                kernels.programmatic(before);
                lt.programmaticEdges(false);
                kernels.weightsFixed(false);
            }
            CudaGraph g = new CudaGraph(recorded[0], recorded[1], mine, tokens.length, batch.size());
            launch(g);
            return g;
        }

        @Override
        public void replay(Graph graph, int[] tokens, TokenBatch batch) {
            CudaGraph g = live(graph, tokens.length, batch);
            g.in.tokens.stage(tokens);
            g.in.layout.stage(layoutOf(batch));
            launch(g);
        }

        @Override
        public boolean replayFed(Graph graph, Sampled ids, TokenBatch batch) {
            CudaGraph g = live(graph, batch.totalTokens(), batch);
            if (!(ids instanceof Drawn d) || d.feeds != g || d.writes != g.in.tokens.writes()) {
                return false;  // the ids were not handed to this graph, or were written over since
            }
            // the token ids are in the staging area already (written by the sampling kernel, queued before this)
            g.in.layout.stage(layoutOf(batch));
            launch(g);
            fedSteps++;
            return true;
        }

        /** {@code graph} as a live graph of this backend recorded for {@code tokens} tokens of batch's shape. */
        private CudaGraph live(Graph graph, int tokens, TokenBatch batch) {
            bind();
            if (!(graph instanceof CudaGraph g) || g.closed) {
                throw new IllegalArgumentException("not a live graph of this backend: " + graph);
            }
            if (tokens != g.tokens || batch.size() != g.sequences || batch.totalTokens() != g.tokens) {
                throw new IllegalArgumentException("the graph was recorded for " + g.sequences + " sequences of "
                        + g.tokens + " tokens, not " + batch.size() + " of " + batch.totalTokens());
            }
            return g;
        }

        private void launch(CudaGraph g) {
            cu.launchGraph(g.exec, stream);
            g.in.tokens.markRead();
            g.in.layout.markRead();
            lastGraph = g;
        }
    };

    @Override
    public StepGraphs graphs() {
        return graphs;
    }

    // ---------------------------------------------------------------- recorded training steps

    /** Where the values of a recorded step's host input come from at each replay. */
    private enum Source {
        /** the step's token ids */
        IDS,
        /** the step's targets */
        TARGETS,
        /** the scored rows of the step's targets and their targets ({@link #scoredRows}) */
        SCORED_OF_TARGETS,
        /** the embedding groups of the step's token ids ({@link TrainKernels#embeddingGroups}) */
        GROUPS_OF_IDS,
        /** the update's rate and number ({@link TrainKernels#packStepScalars}) */
        SCALARS,
        /** the same values at every replay (a batch layout of the recorded shape) */
        CONSTANT
    }

    /**
     * What the recording of a training step learns as its ops run: the inputs the host stages before each replay
     * (in the step's own {@link IntInput}s, made before the recording, since nothing may be allocated during it),
     * where the loss lands, and the optimizer's table and settings.
     */
    private final class StepCapture implements AutoCloseable {
        final int[] ids;
        final int[] targets;
        final Inputs inputs;
        final IntInput targetsIn;
        final IntInput embeddingIds;
        final IntInput groups;
        final IntInput scalars;
        final Map<IntInput, Source> sources = new IdentityHashMap<>();
        final Map<IntInput, int[]> constants = new IdentityHashMap<>();
        int tokenRows = -1;
        int groupRows = -1;
        int scoredInts;
        int vocab = -1;
        long lossAt;
        OptimizerTable table;
        AdamWUpdate update;

        StepCapture(int[] ids, int[] targets) {
            this.ids = ids;
            this.targets = targets;
            int n = ids.length;
            // a uniform batch's layout: 4 ints per sequence, one, and one per token (at most n sequences)
            this.inputs = new Inputs(n, 5 * n + 1);
            this.targetsIn = new IntInput(CudaBackend.this, "loss targets of a recorded step", targets.length);
            this.embeddingIds = new IntInput(CudaBackend.this, "embedding gradient ids of a recorded step", n);
            this.groups = new IntInput(CudaBackend.this, "embedding gradient groups of a recorded step", 2 * n + 2);
            this.scalars = new IntInput(CudaBackend.this, "update scalars of a recorded step",
                    TrainKernels.STEP_SCALAR_INTS);
        }

        /**
         * The device copy of {@code in} for the recorded ops to read, noting where each launch gets its values
         * ({@link #send}); {@code origin} is the array they are made from (the ids themselves, or the ids the groups
         * are made of). Refuses inputs a launch could not give again.
         */
        long upload(IntInput in, int[] values, Source source, int[] origin) {
            boolean known = switch (source) {
                case IDS, GROUPS_OF_IDS -> origin == ids;
                case TARGETS, SCORED_OF_TARGETS -> origin == targets;
                case SCALARS, CONSTANT -> true;
            };
            if (!known) {
                throw new StepNotRecordable("an op of the pass takes " + (source == Source.TARGETS ? "targets"
                        : "token ids") + " other than the step's own");
            }
            if (source == Source.IDS) {
                for (Map.Entry<IntInput, Source> e : sources.entrySet()) {
                    if (e.getValue() == Source.IDS && e.getKey() != in) {
                        return e.getKey().device();  // the ids are on the device already: one copy a step
                    }
                }
            }
            Source before = sources.putIfAbsent(in, source);
            if (before != null && before != source) {
                throw new StepNotRecordable("one input of the pass is given both " + before + " and " + source);
            }
            if (source == Source.SCORED_OF_TARGETS) {
                scoredInts = values.length;
            }
            if (source == Source.CONSTANT) {
                int[] first = constants.putIfAbsent(in, values.clone());
                if (first != null && !Arrays.equals(first, values)) {
                    throw new StepNotRecordable("the pass gives one input two different batch layouts");
                }
            }
            return in.device();  // copied before each launch, outside the recording
        }

        void loss(long at, int vocab) {
            if (lossAt != 0) {
                throw new StepNotRecordable("the pass computes the loss twice");
            }
            if (at == 0) {
                throw new StepNotRecordable("the pass has no rows to score");
            }
            this.lossAt = at;
            this.vocab = vocab;
        }

        void optimized(OptimizerTable t, AdamWUpdate u) {
            this.table = t;
            this.update = u;
        }

        /** Checks a replay's inputs as the ops would have. */
        void check(int[] newIds, int[] newTargets, AdamWUpdate u) {
            if (newIds.length != ids.length || newTargets.length != targets.length) {
                throw new IllegalArgumentException("the step was recorded for " + ids.length + " tokens and "
                        + targets.length + " targets, not " + newIds.length + " and " + newTargets.length);
            }
            int rows = Math.min(tokenRows < 0 ? Integer.MAX_VALUE : tokenRows,
                    groupRows < 0 ? Integer.MAX_VALUE : groupRows);
            for (int id : newIds) {
                if (id < 0 || id >= rows) {
                    throw new IllegalArgumentException("token id " + id + " is outside the embedding table [0, "
                            + rows + ")");
                }
            }
            for (int i = 0; i < newTargets.length; i++) {
                int t = newTargets[i];
                if (t != IGNORE_INDEX && (t < 0 || t >= vocab)) {
                    throw new IllegalArgumentException("target " + t + " at position " + i
                            + " is outside the vocabulary [0, " + vocab + ")");
                }
            }
            if (u.beta1() != update.beta1() || u.beta2() != update.beta2() || u.eps() != update.eps()
                    || u.gradClip() != update.gradClip()) {
                throw new IllegalArgumentException("a recorded step replays with its recorded betas, epsilon and"
                        + " clip (" + update + "), not " + u);
            }
        }

        /** The scored rows of a step's targets, as many as the recording's (else nothing is launched). */
        int[] scored(int[] stepTargets) {
            int[] scored = scoredRows(stepTargets);
            if (scored.length != scoredInts) {
                throw new IllegalArgumentException("the step was recorded for " + scoredInts / 2
                        + " scored targets, not " + scored.length / 2);
            }
            return scored;
        }

        /**
         * Copies a step's inputs to the device on the stream, ahead of its launch: each input's staging area is
         * written once the copy that last read it has run (the previous step's, done before that step began), so
         * the host prepares a step while the one before it runs.
         */
        void send(int[] stepIds, int[] stepTargets, AdamWUpdate u) {
            for (Map.Entry<IntInput, Source> e : sources.entrySet()) {
                int[] values = switch (e.getValue()) {
                    case IDS -> stepIds;
                    case TARGETS -> stepTargets;
                    case SCORED_OF_TARGETS -> scored(stepTargets);
                    case GROUPS_OF_IDS -> TrainKernels.embeddingGroups(stepIds, groupRows).layout();
                    case SCALARS -> TrainKernels.packStepScalars(u.lr(), u.beta1(), u.beta2(), u.step());
                    case CONSTANT -> constants.get(e.getKey());
                };
                e.getKey().upload(values, true);
            }
        }

        @Override
        public void close() {
            inputs.close();
            targetsIn.close();
            embeddingIds.close();
            groups.close();
            scalars.close();
        }
    }

    /** A training step recorded as one CUDA graph. */
    private final class StepGraph extends RecordedGraph implements RecordedStep {
        final StepCapture c;

        StepGraph(long graph, long exec, StepCapture c) {
            super(graph, exec);
            this.c = c;
        }

        @Override
        public StepOutcome replay(int[] ids, int[] targets, AdamWUpdate u) {
            bind();
            if (closed) {
                throw new IllegalStateException("the recorded step is closed");
            }
            if (optimizerTable != c.table) {
                throw new IllegalStateException("the optimizer's buffers changed since the step was recorded");
            }
            c.check(ids, targets, u);
            return launch(ids, targets, u);
        }

        StepOutcome launch(int[] ids, int[] targets, AdamWUpdate u) {
            zeroAll();  // zeros asked for before the step are done before it
            c.send(ids, targets, u);
            cu.launchGraph(exec, stream);
            OptimizerTable t = c.table;
            long update = u.step();
            return new StepOutcome(readouts.later(c.lossAt), () -> t.readNorm(update));
        }

        @Override
        void closeInputs() {
            c.close();
        }
    }

    /**
     * Records the pass and the multi-tensor AdamW step as one CUDA graph. The ops of the pass see the step's own
     * inputs ({@link StepCapture}); anything a replay could not repeat ends the recording with
     * {@link StepNotRecordable} before anything has run: an input from the host other than the step's ids,
     * targets and batch layout, an allocation or free, a wait for the device (a CUDA error of the capture).
     */
    private Recording recordStep(int[] ids, int[] targets, Supplier<Readout> pass, List<AdamWSlot> slots,
                                 AdamWUpdate u) {
        bind();
        if (recording) {
            throw new IllegalStateException("already recording a graph");
        }
        OptimizerTable table = optimizerTable(slots);  // made (or replaced) before the recording
        if (table == null) {
            throw new StepNotRecordable("the optimizer's buffers are not all float32");
        }
        zeroAll();
        StepCapture c = new StepCapture(ids, targets);
        long[] recorded = recordGraph(c.inputs, c, () -> {
            pass.get();
            adamwStep(slots, u);
            if (c.lossAt == 0 || c.table == null) {
                throw new StepNotRecordable("the pass computes no loss");
            }
        }, c::close, CudaBackend::recordingFailure);
        StepGraph g = new StepGraph(recorded[0], recorded[1], c);
        try {
            return new Recording(g, g.launch(ids, targets, u));
        } catch (RuntimeException e) {
            g.close();
            throw e;
        }
    }

    /**
     * What a failed recording throws: a CUDA error of the capture, or a state a recording cannot be in (a wait or a
     * free of the driver's, an input that outgrows its recorded room), as {@link StepNotRecordable}, so that the
     * step runs op by op; bad arguments and everything else as they are.
     */
    private static RuntimeException recordingFailure(Throwable failed) {
        if (failed instanceof StepNotRecordable n) {
            return n;
        }
        if (failed instanceof CudaException || failed instanceof IllegalStateException) {
            return notRecordable((RuntimeException) failed);
        }
        return rethrown(failed);
    }

    /** {@code failed} to throw as it is: an Error is thrown here, a RuntimeException returned, anything else wrapped. */
    private static RuntimeException rethrown(Throwable failed) {
        if (failed instanceof Error e) {
            throw e;
        }
        return failed instanceof RuntimeException r ? r : new IllegalStateException(failed);
    }

    /**
     * Records what {@code body} queues on the stream as a CUDA graph and instantiates it: {graph, exec}. While it
     * runs, the forward ops take their host inputs from {@code graphInputs} and, for a training step, the step's
     * {@code step} capture. Whatever fails (the capture's start, the body, whatever it throws, the instantiation),
     * the capture is ended and dropped, {@code closeInputs} runs, and {@code failure} says what to throw.
     */
    private long[] recordGraph(Inputs graphInputs, StepCapture step, Runnable body, Runnable closeInputs,
                               Function<Throwable, RuntimeException> failure) {
        try {
            cu.beginCapture(stream);
        } catch (RuntimeException e) {
            closeInputs.run();
            throw failure.apply(e);
        }
        Inputs saved = inputs;
        inputs = graphInputs;
        recording = true;
        capture = step;
        kernels.capturing(true);  // a profile's events around launches would be captured into the graph
        lt.capturing(true);
        Throwable failed = null;
        try {
            body.run();
        } catch (Throwable e) {
            failed = e;  // the capture must end whatever went wrong, or the driver's capture lock stays held
        } finally {
            inputs = saved;
            recording = false;
            capture = null;
            kernels.capturing(false);
            lt.capturing(false);
        }
        if (failed != null) {
            try {
                cu.destroyGraph(cu.endCapture(stream));
            } catch (RuntimeException suppressed) {
                failed.addSuppressed(suppressed);
            }
            closeInputs.run();
            throw failure.apply(failed);
        }
        long graph = cu.endCapture(stream);
        try {
            return new long[] {graph, cu.instantiateGraph(graph)};
        } catch (RuntimeException e) {
            cu.destroyGraph(graph);
            closeInputs.run();
            throw failure.apply(e);
        }
    }

    private static StepNotRecordable notRecordable(RuntimeException e) {
        StepNotRecordable n = new StepNotRecordable("recording the step failed: " + e.getMessage());
        n.initCause(e);
        return n;
    }

    @Override
    public StepRecorder stepRecorder() {
        return this::recordStep;
    }

    /** On the device ({@code tokenNll_f32}): only the rows, the targets and the results cross to and from the host. */
    @Override
    public double[] negativeLogLikelihoods(Buffer logits, int[] rows, int[] targets, int vocab) {
        bind();
        CudaBuffer l = bufferOf(logits);
        if (l.type != Precision.F32) {
            return TrainingBackend.super.negativeLogLikelihoods(logits, rows, targets, vocab);
        }
        Backend.checkTokenRows(l, rows, targets, vocab);
        int n = rows.length;
        int[] packed = new int[2 * n];
        System.arraycopy(rows, 0, packed, 0, n);
        System.arraycopy(targets, 0, packed, n, n);
        if (n == 0) {
            return new double[0];
        }
        long in = scratch.ids().upload(packed, true);
        long out = scratch.slot(1, 8L * n);
        kernels.args.reset().ptr(l.ptr).i64(l.cols).ptr(in).ptr(out).i32(n).i32(vocab);
        kernels.launch(kernels.function("tokenNll_f32"), (int) Math.min(n, Kernels.MAX_ELEMENTWISE_BLOCKS), 1, 1,
                Kernels.THREADS, 0);
        MemorySegment host = scratch.host(8L * n);
        cu.copyDtoHAsync(host, out, 8L * n, stream);
        cu.synchronize(stream);
        double[] nll = new double[n];
        MemorySegment.copy(host, ValueLayout.JAVA_DOUBLE_UNALIGNED, 0, nll, 0, n);
        return nll;
    }

    /** CUDA events recorded on this backend's stream, kept for reuse once released. */
    private final OpClock clock = new OpClock() {
        @Override
        public long mark() {
            makeCurrent();
            long e = freeEvents.isEmpty() ? cu.createEvent() : freeEvents.pop();
            cu.record(e, stream);
            return e;
        }

        @Override
        public double millis(long from, long to) {
            makeCurrent();
            cu.synchronizeEvent(to);
            return cu.elapsedMillis(from, to);
        }

        @Override
        public void release(long mark) {
            freeEvents.push(mark);
        }

        @Override
        public long hold() {
            makeCurrent();
            if (recording || closed) {
                return 0;
            }
            if (gate == null) {
                gate = cu.mallocHost(8);
                gate.set(ValueLayout.JAVA_LONG, 0, 0L);
            }
            long ticket = ++gateTicket;
            kernels.opGate(gate.address(), ticket, GATE_TIMEOUT_NS);
            return ticket;
        }

        @Override
        public void timeKernels(boolean on) {
            makeCurrent();
            kernels.timeLaunches(on);
        }

        @Override
        public List<io.based4j.backend.OpProfile.Row> kernelTimes() {
            makeCurrent();
            return kernels.timedLaunches();
        }

        @Override
        public void go(long hold) {
            if (hold != 0 && gate != null) {
                GATE.setVolatile(gate, 0L, hold);
            }
        }
    };
    private final java.util.ArrayDeque<Long> freeEvents = new java.util.ArrayDeque<>();
    /** Longest a {@linkplain OpClock#hold hold} keeps the stream waiting for the host. */
    private static final long GATE_TIMEOUT_NS = 20_000_000L;
    private static final java.lang.invoke.VarHandle GATE = ValueLayout.JAVA_LONG.varHandle();
    /** Pinned host memory the clock's holds wait on (made at the first hold), and the last hold's ticket. */
    private MemorySegment gate;
    private long gateTicket;

    @Override
    public OpClock clock() {
        return clock;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        bind();
        cu.synchronize(stream);
        for (AutoCloseable g : new ArrayList<>(graphsAlive)) {
            try {
                g.close();
            } catch (Exception e) {
                throw new IllegalStateException("closing a recorded graph: " + e.getMessage(), e);
            }
        }
        for (long e : freeEvents) {
            cu.destroyEvent(e);
        }
        freeEvents.clear();
        kernels.timeLaunches(false);  // events of a profile that was not stopped
        if (gate != null) {
            GATE.setVolatile(gate, 0L, Long.MAX_VALUE);  // any hold still queued lets go
            cu.synchronize(stream);
            cu.freeHost(gate);
            gate = null;
        }
        inputs.close();
        cu.freeHost(sampleHost);  // the stream was synchronized above
        for (long e : sampleDone) {
            cu.destroyEvent(e);
        }
        readouts.close();
        scratch.close();
        mixers.close();
        RuntimeException unreleased = null;
        for (CudaStates.GrowingRegion r : new ArrayList<>(growing)) {
            try {
                r.release();
            } catch (RuntimeException e) {
                unreleased = unreleased == null ? e : unreleased;  // the rest is closed all the same
            }
        }
        closed = true;
        lt.close();
        blas.close();
        for (long ptr : allocations.keySet()) {
            cu.free(ptr);
        }
        allocations.clear();
        allocated = 0;
        cu.unloadModule(module);
        cu.destroyStream(stream);
        cu.releasePrimaryContext(ordinal);
        if (unreleased != null) {
            throw new IllegalStateException("closing the CUDA backend: a growing key/value cache could not be given "
                    + "back: " + unreleased.getMessage(), unreleased);
        }
    }
}
