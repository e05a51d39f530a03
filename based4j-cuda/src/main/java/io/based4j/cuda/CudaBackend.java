package io.based4j.cuda;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.config.MixerConfig;
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
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The {@link Backend} on one NVIDIA GPU: cuBLAS for the matrix products, the kernels of {@code based4j_kernels.cu}
 * for everything else, all on one non-blocking stream of the device's primary context. Weights and activations are
 * kept in the chosen {@link Precision}; the residual stream, logits and recurrent state stay float32. Token ids and
 * batch layouts are copied up per call; only sampled ids (or logits, on request) come back. Decode steps can be
 * recorded as CUDA graphs ({@link #graphs()}).
 *
 * <p>The CUDA context is current per OS thread: every call re-binds it when it comes from another thread than the
 * last one, so a backend may be handed between threads, but not used by two at once.
 */
public final class CudaBackend implements Backend {
    /** Resource holding the compiled kernels (sm_80, sm_90a, PTX). */
    static final String FATBIN = "/io/based4j/cuda/based4j-kernels.fatbin";
    /** Why a build without {@link #FATBIN} cannot run on a GPU, and how to get one that can. */
    private static final String NO_KERNELS = "this build of based4j has no CUDA kernels (nvcc, the CUDA compiler, was"
            + " not found when it was built, or -Dbased4j.skipKernels=true was given): install the CUDA toolkit 13"
            + " and rebuild with ./build package, or use a bundle made by scripts/bundle.sh where the toolkit is";
    private static final long CUBLAS_WORKSPACE = 32L << 20;

    private final CudaDriver cu;
    private final int ordinal;
    private final long context;
    private final long stream;
    private final long module;
    private final long cublasWorkspace;
    private final Cublas blas;
    private final Kernels kernels;
    private final Precision precision;
    private final String deviceName;
    private final Map<Long, Long> allocations = new HashMap<>();
    private long allocated;
    private long peakAllocated;
    private Thread boundThread;
    private Inputs inputs;
    private boolean recording;
    private boolean closed;

    /** The host-to-device integer inputs of forward calls (one set for ordinary calls, one per recorded graph). */
    private final class Inputs implements AutoCloseable {
        final IntInput tokens;
        final IntInput layout;
        final IntInput rows;
        TokenBatch lastBatch;

        Inputs(int tokenCapacity, int layoutCapacity) {
            tokens = new IntInput(CudaBackend.this, "token ids", tokenCapacity);
            layout = new IntInput(CudaBackend.this, "batch layout", layoutCapacity);
            rows = new IntInput(CudaBackend.this, "row indices", 16);
        }

        @Override
        public void close() {
            tokens.close();
            layout.close();
            rows.close();
        }
    }

    private final IntInput sampleInput;
    private final IntInput sampleOutput;
    private final MemorySegment sampleHost;

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
        this.kernels = new Kernels(cu, module, stream);
        this.inputs = new Inputs(1024, 1024);
        this.sampleInput = new IntInput(this, "sampling settings", 1024);
        this.sampleOutput = new IntInput(this, "sampled ids", 256);
        this.sampleHost = Arena.ofAuto().allocate(4L * 65536, 8);
    }

    /**
     * Opens {@code device}: "cuda" (GPU 0) or "cuda:N".
     *
     * @throws CudaUnavailableException when the driver, cuBLAS, a GPU or the kernels cannot be found
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

    CudaDriver driver() {
        return cu;
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

    private void bind() {
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
        long ptr;
        try {
            ptr = cu.malloc(Math.max(bytes, 1));
        } catch (CudaException e) {
            if (e.isOutOfMemory()) {
                long[] info = cu.memoryInfo();
                throw new IllegalStateException(String.format(Locale.ROOT,
                        "%s: GPU %s is out of memory: %s needed, %s free of %s (based4j holds %s)", what, name(),
                        human(bytes), human(info[0]), human(info[1]), human(allocated)), e);
            }
            throw e;
        }
        allocations.put(ptr, bytes);
        allocated += bytes;
        peakAllocated = Math.max(peakAllocated, allocated);
        return ptr;
    }

    long allocateZeroed(long bytes, String what) {
        long ptr = allocate(bytes, what);
        cu.memsetD8Async(ptr, 0, bytes, stream);
        return ptr;
    }

    void free(long ptr) {
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

    /** Zeros {@code floats} float32 values at {@code ptr} on the stream. */
    void zero(long ptr, long floats) {
        bind();
        cu.memsetD32Async(ptr, 0, floats, stream);
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
        // Keep a margin for cuBLAS and the driver.
        long margin = 256L << 20;
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
        CudaBuffer b = CudaBuffer.of(buffer);
        if (rows < 0 || rows > b.rows) {
            throw new IllegalArgumentException("a view of " + rows + " rows does not fit " + b);
        }
        return rows == b.rows ? b : new CudaBuffer(b.ptr, rows, b.cols, b.type, b.owner);
    }

    @Override
    public void release(Buffer buffer) {
        CudaBuffer b = CudaBuffer.of(buffer);
        if (b.owner == b && allocations.containsKey(b.ptr)) {
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

    /** Copies {@code values} as float32 to {@code ptr} and waits until they are there. */
    private void copyUp(long ptr, float[] values) {
        bind();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment host = a.allocate(4L * Math.max(values.length, 1), 8);
            MemorySegment.copy(values, 0, host, ValueLayout.JAVA_FLOAT, 0, values.length);
            cu.copyHtoDAsync(ptr, host, 4L * values.length, stream);
            cu.synchronize(stream);
        }
    }

    @Override
    public float[] download(Buffer buffer) {
        CudaBuffer b = CudaBuffer.of(buffer);
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
        long n = tensor.numel();
        long ptr = allocate(n * precision.bytes(), "weight " + java.util.Arrays.toString(tensor.shape()));
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
        return new CudaWeight(ptr, tensor.shape(), precision);
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
            case MixerConfig.LinearAttention l ->
                    new CudaStates.Linear(this, slots, l.numHeads(), l.expandedDim(), l.headDim());
            case MixerConfig.Attention a -> a.sliding()
                    ? new CudaStates.KeyValue(this, slots, a.window(), true, a.dModel(), maxLength,
                    Kernels.rotaryTable(a, maxLength))
                    : new CudaStates.KeyValue(this, slots, maxLength, false, a.dModel(), maxLength,
                    Kernels.rotaryTable(a, maxLength));
        };
    }

    // ---------------------------------------------------------------- inputs

    /** The batch layout the kernels read: slots | starts | lengths | offsets (B + 1) | sequence of each token. */
    static int[] layoutOf(TokenBatch batch) {
        int b = batch.size();
        int t = batch.totalTokens();
        int[] l = new int[4 * b + 1 + t];
        int[] offsets = batch.offsets();
        for (int i = 0; i < b; i++) {
            l[i] = batch.slot(i);
            l[b + i] = batch.start(i);
            l[2 * b + i] = batch.length(i);
            l[3 * b + i] = offsets[i];
            for (int r = offsets[i]; r < offsets[i + 1]; r++) {
                l[4 * b + 1 + r] = i;
            }
        }
        l[4 * b] = offsets[b];
        return l;
    }

    /** Device copy of the batch layout, uploaded once per batch (the model hands every layer the same one). */
    private long layout(TokenBatch batch) {
        if (inputs.lastBatch == batch) {
            return inputs.layout.device();
        }
        long ptr = inputs.layout.upload(layoutOf(batch), !recording);
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
        CudaWeight t = CudaWeight.of(table);
        CudaBuffer o = CudaBuffer.of(out);
        check("embedding", o, ids.length, t.cols(), Precision.F32);
        for (int id : ids) {
            if (id < 0 || id >= t.rows()) {
                throw new IllegalArgumentException("token id " + id + " is outside the embedding table [0, "
                        + t.rows() + ")");
            }
        }
        long dev = inputs.tokens.upload(ids, !recording);
        kernels.embedding(precision, t.ptr, dev, o.ptr, ids.length, t.cols());
    }

    @Override
    public void rmsNorm(Buffer x, Weight weight, double epsilon, Buffer out, Buffer rstd) {
        Backend.keepsNothing("rmsNorm", rstd);
        float eps = (float) epsilon;
        bind();
        CudaBuffer a = CudaBuffer.of(x);
        CudaBuffer o = CudaBuffer.of(out);
        check("rmsNorm input", a, o.rows, o.cols, Precision.F32);
        check("rmsNorm output", o, a.rows, a.cols, precision);
        kernels.rmsNorm(precision, a.ptr, CudaWeight.of(weight).ptr, o.ptr, a.rows, a.cols, eps);
    }

    @Override
    public void matmul(Buffer x, Weight w, Weight bias, Buffer out) {
        bind();
        CudaBuffer a = CudaBuffer.of(x);
        CudaWeight m = CudaWeight.of(w);
        CudaBuffer o = CudaBuffer.of(out);
        gemm(a, m, o, "matmul");
        if (bias != null) {
            if (o.type != precision) {
                throw new IllegalArgumentException("matmul: a bias needs an output in " + precision.suffix());
            }
            kernels.addBias(precision, o.ptr, CudaWeight.of(bias).ptr, o.rows, o.cols);
        }
    }

    /** {@code out = x @ w^T} through cuBLAS (column-major: out^T = w x^T), float32 accumulation. */
    private void gemm(CudaBuffer x, CudaWeight w, CudaBuffer out, String op) {
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
            return;
        }
        blas.gemm(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w.ptr, cublasType(w.type), k, x.ptr, cublasType(x.type), k,
                0f, out.ptr, cublasType(out.type), m, Cublas.COMPUTE_32F);
    }

    private static int cublasType(Precision p) {
        return p == Precision.F32 ? Cublas.R_32F : Cublas.R_16BF;
    }

    @Override
    public void matmulRows(Buffer x, int[] rows, Weight w, Buffer out) {
        bind();
        CudaBuffer a = CudaBuffer.of(x);
        for (int r : rows) {
            if (r < 0 || r >= a.rows) {
                throw new IllegalArgumentException("matmulRows: row " + r + " is outside [0, " + a.rows + ")");
            }
        }
        long rowsDev = inputs.rows.upload(rows, !recording);
        long gathered = allocate((long) rows.length * a.cols * a.type.bytes(), "gathered rows");
        try {
            kernels.gatherRows(precision, a.ptr, rowsDev, gathered, rows.length, a.cols);
            gemm(new CudaBuffer(gathered, rows.length, a.cols, a.type, null), CudaWeight.of(w), CudaBuffer.of(out),
                    "matmulRows");
        } finally {
            free(gathered);
        }
    }

    @Override
    public void addInPlace(Buffer acc, Buffer x) {
        bind();
        CudaBuffer a = CudaBuffer.of(acc);
        CudaBuffer b = CudaBuffer.of(x);
        check("add accumulator", a, b.rows, b.cols, Precision.F32);
        check("add input", b, a.rows, a.cols, precision);
        kernels.addInto(precision, a.ptr, b.ptr, a.count());
    }

    @Override
    public void swiglu(Buffer a, Buffer out) {
        bind();
        CudaBuffer in = CudaBuffer.of(a);
        CudaBuffer o = CudaBuffer.of(out);
        check("swiglu input", in, o.rows, 2 * o.cols, precision);
        check("swiglu output", o, in.rows, in.cols / 2, precision);
        kernels.swiglu(precision, in.ptr, o.ptr, o.rows, o.cols);
    }

    @Override
    public int[] sample(Buffer logits, int[] rows, int vocab, Sampler[] samplers) {
        bind();
        CudaBuffer l = CudaBuffer.of(logits);
        int n = rows.length;
        if (samplers.length != n) {
            throw new IllegalArgumentException(n + " rows but " + samplers.length + " samplers");
        }
        if (l.type != Precision.F32 || vocab > l.cols) {
            throw new IllegalArgumentException("sample: logits must be float32 and at least " + vocab + " wide");
        }
        if (n == 0) {
            return new int[0];
        }
        if (n > 16384) {
            throw new IllegalArgumentException("sample: at most 16384 rows at once, got " + n);
        }
        int[] packed = new int[5 * n];
        for (int i = 0; i < n; i++) {
            if (rows[i] < 0 || rows[i] >= l.rows) {
                throw new IllegalArgumentException("sample: row " + rows[i] + " is outside [0, " + l.rows + ")");
            }
            SamplingParams p = samplers[i].params();
            boolean greedy = p.isGreedy() || p.topK() == 1;
            packed[i] = rows[i];
            packed[n + i] = Float.floatToRawIntBits(greedy ? 0f : p.temperature());
            packed[2 * n + i] = p.topK();
            packed[3 * n + i] = Float.floatToRawIntBits(p.topP());
            packed[4 * n + i] = Float.floatToRawIntBits(greedy ? 0f : samplers[i].nextUniform());
        }
        long in = sampleInput.upload(packed, true);
        long out = sampleOutput.upload(new int[n], true);
        kernels.sample(l.ptr, in, n, l.cols, vocab, in + 4L * n, in + 8L * n, in + 12L * n, in + 16L * n, out);
        cu.copyDtoHAsync(sampleHost, out, 4L * n, stream);
        cu.synchronize(stream);
        int[] ids = new int[n];
        MemorySegment.copy(sampleHost, ValueLayout.JAVA_INT, 0, ids, 0, n);
        for (int i = 0; i < n; i++) {
            if (ids[i] == -1) {
                throw new IllegalStateException("a logit of row " + rows[i] + " is NaN");
            }
            if (ids[i] == -2) {
                throw new IllegalStateException("all logits of row " + rows[i] + " are -Infinity");
            }
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw new IllegalStateException("the GPU sampler returned id " + ids[i] + " for row " + rows[i]);
            }
        }
        return ids;
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
        Backend.keepsNothing("baseConv", convOut);
        bind();
        CudaStates.Conv st = state(state, CudaStates.Conv.class, "baseConv");
        checkSlots(batch, st, "baseConv");
        CudaBuffer in = CudaBuffer.of(u);
        CudaBuffer o = CudaBuffer.of(out);
        int inner = cfg.innerWidth();
        int t = batch.totalTokens();
        check("baseConv input", in, t, 2 * inner, precision);
        check("baseConv output", o, t, inner, precision);
        long l = layout(batch);
        long w = CudaWeight.of(convWeight).ptr;
        kernels.baseConv(precision, in.ptr, w, st.regions[0], l, o.ptr, t, batch.size(), inner, cfg.kernel());
        kernels.baseConvState(precision, in.ptr, st.regions[0], l, t, batch.size(), inner, cfg.kernel());
    }

    @Override
    public void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                                MixerState state, Buffer out) {
        bind();
        CudaStates.Linear st = state(state, CudaStates.Linear.class, "linearAttention");
        checkSlots(batch, st, "linearAttention");
        int t = batch.totalTokens();
        int qk = cfg.numHeads() * cfg.featureDim();
        int d = cfg.numHeads() * cfg.headDim();
        CudaBuffer qb = CudaBuffer.of(q);
        CudaBuffer kb = CudaBuffer.of(k);
        CudaBuffer vb = CudaBuffer.of(v);
        CudaBuffer o = CudaBuffer.of(out);
        check("linearAttention q", qb, t, qk, precision);
        check("linearAttention k", kb, t, qk, precision);
        check("linearAttention v", vb, t, d, precision);
        check("linearAttention output", o, t, d, precision);
        kernels.linearAttention(precision, qb.ptr, kb.ptr, vb.ptr, st.kv(), st.k(), layout(batch), o.ptr, t,
                batch.size(), cfg.numHeads(), cfg.featureDim(), cfg.headDim(), (float) cfg.eps());
    }

    @Override
    public void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                          Buffer lse) {
        Backend.keepsNothing("attention", lse);
        bind();
        CudaStates.KeyValue st = state(state, CudaStates.KeyValue.class, "attention");
        checkSlots(batch, st, "attention");
        int t = batch.totalTokens();
        int d = cfg.dModel();
        CudaBuffer in = CudaBuffer.of(qkv);
        CudaBuffer o = CudaBuffer.of(out);
        check("attention qkv", in, t, 3 * d, precision);
        check("attention output", o, t, d, precision);
        for (int i = 0; i < batch.size(); i++) {
            if (batch.start(i) + batch.length(i) > st.maxPos) {
                throw new IllegalArgumentException("attention: slot " + batch.slot(i) + " would reach position "
                        + (batch.start(i) + batch.length(i)) + ", past the state's " + st.maxPos);
            }
        }
        long l = layout(batch);
        kernels.attention(precision, in.ptr, st.keys(), st.values(), st.rotary, l, o.ptr, t, batch.size(),
                cfg.numHeads(), cfg.headDim(), st.capacity, cfg.window(), cfg.rotaryDim(), st.maxPos,
                cfg.rotaryInterleaved(), (float) cfg.softmaxScale());
        kernels.attentionAppend(precision, in.ptr, st.keys(), st.values(), st.rotary, l, t, batch.size(),
                cfg.numHeads(), cfg.headDim(), st.capacity, cfg.rotaryDim(), st.maxPos, cfg.rotaryInterleaved());
    }

    // ---------------------------------------------------------------- graphs

    private final class CudaGraph implements Graph {
        final long graph;
        final long exec;
        final Inputs in;
        final int tokens;
        final int sequences;
        boolean closed;

        CudaGraph(long graph, long exec, Inputs in, int tokens, int sequences) {
            this.graph = graph;
            this.exec = exec;
            this.in = in;
            this.tokens = tokens;
            this.sequences = sequences;
        }

        @Override
        public void close() {
            if (!closed && !CudaBackend.this.closed) {
                closed = true;
                bind();
                cu.synchronize(stream);
                cu.destroyGraphExec(exec);
                cu.destroyGraph(graph);
                in.close();
            }
        }
    }

    private final StepGraphs graphs = new StepGraphs() {
        @Override
        public Graph record(int[] tokens, TokenBatch batch, Runnable forward) {
            bind();
            if (recording) {
                throw new IllegalStateException("already recording a graph");
            }
            Inputs mine = new Inputs(tokens.length, 4 * batch.size() + 1 + batch.totalTokens());
            Inputs saved = inputs;
            cu.synchronize(stream);
            inputs = mine;
            recording = true;
            long graph;
            cu.beginCapture(stream);
            try {
                forward.run();
            } catch (RuntimeException e) {
                try {
                    cu.destroyGraph(cu.endCapture(stream));
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
                mine.close();
                throw e;
            } finally {
                inputs = saved;
                recording = false;
            }
            graph = cu.endCapture(stream);
            long exec;
            try {
                exec = cu.instantiateGraph(graph);
            } catch (RuntimeException e) {
                cu.destroyGraph(graph);
                mine.close();
                throw e;
            }
            CudaGraph g = new CudaGraph(graph, exec, mine, tokens.length, batch.size());
            launch(g);
            return g;
        }

        @Override
        public void replay(Graph graph, int[] tokens, TokenBatch batch) {
            bind();
            if (!(graph instanceof CudaGraph g) || g.closed) {
                throw new IllegalArgumentException("not a live graph of this backend: " + graph);
            }
            if (tokens.length != g.tokens || batch.size() != g.sequences || batch.totalTokens() != g.tokens) {
                throw new IllegalArgumentException("the graph was recorded for " + g.sequences + " sequences of "
                        + g.tokens + " tokens, not " + batch.size() + " of " + batch.totalTokens());
            }
            g.in.tokens.stage(tokens);
            g.in.layout.stage(layoutOf(batch));
            launch(g);
        }

        private void launch(CudaGraph g) {
            cu.launchGraph(g.exec, stream);
            g.in.tokens.markRead();
            g.in.layout.markRead();
        }
    };

    @Override
    public StepGraphs graphs() {
        return graphs;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        bind();
        cu.synchronize(stream);
        inputs.close();
        sampleInput.close();
        sampleOutput.close();
        closed = true;
        blas.close();
        for (long ptr : allocations.keySet()) {
            cu.free(ptr);
        }
        allocations.clear();
        allocated = 0;
        cu.unloadModule(module);
        cu.destroyStream(stream);
        cu.releasePrimaryContext(ordinal);
    }
}
