package io.based4j.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Arrays;
import java.util.function.IntFunction;

/**
 * A cuBLASLt handle bound to one stream and one workspace, through the foreign-function interface: matrix products
 * {@code D = alpha op(A) op(B) + beta C} (C = D, column-major) with an optional epilogue, a bias added to every
 * column of D ({@link #EPILOGUE_BIAS}) or the sums of B's columns written to a vector ({@link #EPILOGUE_BGRADB}, the
 * bias gradient of the product that gives a weight gradient).
 *
 * <p>Each distinct product ({@link LtGemm}: shape, types, transposes, epilogue, whether beta is nonzero, pointer
 * alignment) gets a plan once: the descriptors, the layouts and the algorithm {@code cublasLtMatmulAlgoGetHeuristic}
 * picks (that call takes tens of microseconds); later calls with the same key only set the bias pointer and launch.
 * Where the heuristic offers no algorithm {@link #matmul} returns false and enqueues nothing, so that the caller can
 * use {@code cublasGemmEx} instead; that answer is kept too. A launch that fails throws a {@link CudaException} that
 * names the product's shape.
 *
 * <p>With {@link #timing} on (a training backend's products: {@link CudaBackend#timeProducts}), a plan of a product
 * of at least {@value #TIMED_MIN_MULTIPLY_ADDS} multiply-adds (or the number {@value #TIMED_FROM_PROPERTY} sets)
 * takes, instead of the heuristic's first, the fastest of
 * its answer, each algorithm timed with events on the call's own inputs and a scratch output, and keeps the choice in
 * {@link GemmChoices} (for the process, and in a file), so that every later plan of the same product, in this process
 * or in a resumed run's, takes the same algorithm without timing. On an H200 the first choice was up to 41% slower
 * than the fastest for a training step's products with a float32 output (based-360m: 185,758 -> 190,106 tokens/s).
 * Inference's timing (and any where {@value #TIMED_COLD_PROPERTY}{@code =true}) runs each timed launch alone after
 * the L2 cache is flushed, as a decode step's products meet their weights; back to back, the weights of a product of
 * a few rows would stay in the L2 cache from the second launch on.
 *
 * <p>Float32 inputs use plain float32 arithmetic: {@code CUBLAS_COMPUTE_32F} with float32 A and B never selects TF32
 * (that is {@code CUBLAS_COMPUTE_32F_FAST_TF32}), and the heuristic is told, through its implementation mask, to skip
 * any algorithm that reads its inputs as TF32, f16 or bf16 all the same.
 *
 * <p>Scalars are passed from host memory (the default pointer mode), from a native pair that each call overwrites;
 * cuBLASLt reads them during the call, which keeps that safe under stream capture. Made and used on one thread at a
 * time; not thread-safe.
 */
@SuppressWarnings("restricted")
public final class CublasLt implements AutoCloseable {
    // cublasLtEpilogue_t (cublasLt.h)
    /** {@code CUBLASLT_EPILOGUE_DEFAULT}: D is the product, nothing more. */
    public static final int EPILOGUE_DEFAULT = 1;
    /** {@code CUBLASLT_EPILOGUE_BIAS}: adds a vector of D's rows count to every column of D. */
    public static final int EPILOGUE_BIAS = 4;
    /** {@code CUBLASLT_EPILOGUE_BGRADA}: writes the sums of A over the k dimension (one per row of D). */
    public static final int EPILOGUE_BGRADA = 256;
    /** {@code CUBLASLT_EPILOGUE_BGRADB}: writes the sums of B over the k dimension (one per column of D). */
    public static final int EPILOGUE_BGRADB = 512;

    // cublasLtMatmulDescAttributes_t
    static final int DESC_TRANSA = 3;
    static final int DESC_TRANSB = 4;
    static final int DESC_EPILOGUE = 7;
    static final int DESC_BIAS_POINTER = 8;

    // cublasLtMatrixLayoutAttribute_t
    static final int LAYOUT_BATCH_COUNT = 5;
    static final int LAYOUT_STRIDED_BATCH_OFFSET = 6;

    // cublasLtMatmulPreferenceAttributes_t
    static final int PREF_MAX_WORKSPACE_BYTES = 1;
    static final int PREF_MIN_ALIGNMENT_A_BYTES = 5;
    static final int PREF_MIN_ALIGNMENT_B_BYTES = 6;
    static final int PREF_MIN_ALIGNMENT_C_BYTES = 7;
    static final int PREF_MIN_ALIGNMENT_D_BYTES = 8;
    static final int PREF_IMPL_MASK = 12;
    /** {@code CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK} (uint32): which split-k reductions an algorithm may use. */
    static final int PREF_REDUCTION_SCHEME_MASK = 3;
    /**
     * {@code CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE}: split-k partial sums kept in the compute type (float32) in the
     * workspace and reduced in a fixed order. The other schemes are refused: {@code INPLACE} (1) accumulates in the
     * output buffer and {@code OUTPUT_TYPE} (4) rounds the partial sums to the output type, so a bf16 output added
     * into ({@code beta = 1}) would carry a bf16 rounding of every part, not only of the result.
     */
    static final int REDUCTION_COMPUTE_TYPE = 2;

    // cublasLtNumericalImplFlags_t: inputs read as f16, bf16 or TF32
    static final long IMPL_INPUT_16F = 0x01L << 16;
    static final long IMPL_INPUT_16BF = 0x02L << 16;
    static final long IMPL_INPUT_TF32 = 0x04L << 16;

    /** Bytes of {@code cublasLtMatmulAlgo_t} ({@code uint64_t data[8]}). */
    static final long ALGO_BYTES = 64;
    /**
     * Bytes of {@code cublasLtMatmulHeuristicResult_t}: the algorithm (64), {@code size_t workspaceSize} (at 64),
     * {@code cublasStatus_t state} (at 72), {@code float wavesCount} (at 76), {@code int reserved[4]} (at 80).
     */
    static final long HEURISTIC_RESULT_BYTES = 96;
    private static final long RESULT_WORKSPACE = 64;
    private static final long RESULT_STATE = 72;
    private static final long RESULT_WAVES = 76;
    /**
     * Algorithms asked of the heuristic per plan: untimed, the first that fits is taken (they come fastest first by
     * the heuristic's estimate); timed ({@link #timing}), the fastest of them all.
     */
    private static final int HEURISTIC_RESULTS = 16;
    /** Products of fewer multiply-adds than this keep the heuristic's first choice untimed (a few microseconds). */
    static final long TIMED_MIN_MULTIPLY_ADDS = 1L << 30;
    /**
     * The system property that sets the fewest multiply-adds a product needs to be timed (default
     * {@value #TIMED_MIN_MULTIPLY_ADDS}; a positive integer).
     */
    static final String TIMED_FROM_PROPERTY = "based4j.cuda.gemmTimedFrom";
    /**
     * The system property that has timing meet each product's operands cold ({@code true}: each timed launch after a
     * write of {@link #COLD_BYTES} that flushes the L2 cache, timed alone, as a decode step's products meet their
     * weights) or warm ({@code false}: back to back, a few rows' weights in the L2 cache from the second launch on).
     * Unset, inference's timing ({@code -Dbased4j.cuda.gemmTiming=true}) is cold and a training run's warm.
     */
    static final String TIMED_COLD_PROPERTY = "based4j.cuda.gemmTimedCold";
    /** Bytes written to flush the L2 cache before a cold timed launch: well above any GPU's L2 cache (H200: 50 MB). */
    static final long COLD_BYTES = 256L << 20;
    /**
     * The system property that lets a recorded decode step's products start programmatically ({@code true}; off
     * unless set): each product whose kernel was seen to wait for the kernel before it before reading x (a probe of
     * its plan, {@link #probeEdge}) and that is recorded right after a kernel depends on it through a programmatic
     * edge ({@link CudaDriver#captureNextProgrammatic}), as the backend's own kernels do when launched
     * programmatically, so that it may be launched while the one before still runs. A decode step's products read
     * their weights as A, which no kernel of the step writes.
     */
    static final String PROGRAMMATIC_PROPERTY = "based4j.cuda.ltProgrammatic";
    /** Launches of each algorithm timed (after one untimed) in each round when a plan's algorithm is chosen by timing. */
    private static final int TIMED_LAUNCHES = 5;
    /** Rounds over all the candidates when a plan's algorithm is chosen by timing; each candidate's best round counts. */
    private static final int TIMED_ROUNDS = 2;
    /** The most scratch memory that timing a product's algorithms may take for its output (else it is not timed). */
    private static final long TIMING_SCRATCH_LIMIT = 512L << 20;
    /** Plans kept at most: far more than the distinct products of a training step. */
    static final int PLAN_CAPACITY = 512;
    /** What {@link #heuristic} returns when the call itself failed (the status is in {@link #heuristicStatus}). */
    private static final int HEURISTIC_FAILED = -1;
    /** What {@link #heuristic} returns when no algorithm it found fits (their number is in {@link #count}). */
    private static final int NONE_FITS = -2;

    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG;
    private static final MemoryLayout PTR = ValueLayout.ADDRESS;
    /** A handle, descriptor, stream or device pointer, passed as a 64-bit integer (as {@link CudaDriver} does). */
    private static final ValueLayout.OfLong HANDLE = ValueLayout.JAVA_LONG;

    private static final LoadOnce<Lib> LIB =
            new LoadOnce<>("cuBLASLt could not be loaded", () -> new Lib(NativeLibraries.cublasLt()));

    private final Lib l;
    private final long stream;
    private final long workspace;
    private final long workspaceBytes;
    private final MemorySegment alpha;
    private final MemorySegment beta;
    /** An out-parameter (a created handle) or an attribute's value. */
    private final MemorySegment value;
    private final MemorySegment count;
    private final MemorySegment results;
    private final PlanCache<LtGemm, Plan> plans;
    /** The fewest multiply-adds of a product whose algorithm is chosen by timing ({@value #TIMED_FROM_PROPERTY}). */
    private final long timedFrom;
    /** What {@value #TIMED_COLD_PROPERTY} asks for (null: each kind of timing's own default). */
    private final Boolean askedCold;
    /** Whether timed launches meet their operands cold. */
    private boolean timedCold;
    /** The heuristic's answer every plan built from now on takes, by index ({@link #forceAlgorithm}); -1: none. */
    private int forced = -1;
    /** The split-k the forced algorithm is set to (1: as the heuristic gave it). */
    private int forcedSplit = 1;
    /** What the plan built last with a forced algorithm runs ({@link #forcedDescription}). */
    private String forcedDescription = "";
    private long handle;
    private long launches;
    /** Where plans keep the algorithm timing chose ({@link #timing}); null: the heuristic's first, untimed. */
    private GemmChoices timing;
    /** What the keys of {@link #timing} begin with: the device's name and cuBLASLt's version. */
    private String timingPrefix;
    /** Whether the stream is being captured into a graph now (nothing is timed then: no waits are allowed). */
    private boolean capturing;
    /** Whether {@value #PROGRAMMATIC_PROPERTY} lets products take programmatic edges (false where unset). */
    private final boolean programmaticAsked;
    /** Whether products captured now depend programmatically on the kernel before them (while asked). */
    private boolean programmaticEdges;
    /** Products captured with a programmatic edge before them. */
    private long programmaticProducts;
    /** Whether a plan not probed yet is probed on its call now: a decode step's first run, op by op. */
    private boolean probing;
    /** Launches a slow writer for the probes of {@link #probeEdge} (null: no probes, no edges). */
    private SlowWriter slowWriter;
    /** Plans probed so far, and of them those whose kernel waits. */
    private int probedPlans;
    private int waitingPlans;
    /** Plans whose algorithm was chosen by timing. */
    private int timedPlans;
    /** The status of the last {@code cublasLtMatmulAlgoGetHeuristic} that failed. */
    private int heuristicStatus;
    /** The status of the last destroy call (see {@link #destroy(MethodHandle, long)}). */
    private int destroyStatus;

    private CublasLt(Lib l, long handle, long stream, long workspace, long workspaceBytes, long timedFrom,
                     Boolean askedCold, boolean programmaticAsked) {
        this.l = l;
        this.programmaticAsked = programmaticAsked;
        this.handle = handle;
        this.timedFrom = timedFrom;
        this.askedCold = askedCold;
        this.stream = stream;
        this.workspace = workspace;
        this.workspaceBytes = workspaceBytes;
        Arena arena = Arena.ofAuto();
        MemorySegment scalars = arena.allocate(32, 16);
        this.alpha = scalars.asSlice(0, 4);
        this.beta = scalars.asSlice(4, 4);
        this.count = scalars.asSlice(8, 4);
        this.value = scalars.asSlice(16, 8);
        this.results = arena.allocate(HEURISTIC_RESULTS * HEURISTIC_RESULT_BYTES, 16);
        this.plans = new PlanCache<>(PLAN_CAPACITY, this::destroy);
    }

    /**
     * {@code cublasLtCreate}, for products on {@code stream} that may use {@code workspaceBytes} of device memory at
     * {@code workspace} (256-byte aligned; 0 bytes for none). The workspace may be the one a cuBLAS handle on the same
     * stream uses: calls on one stream never overlap.
     *
     * @throws CudaUnavailableException when cuBLASLt (or the driver) cannot be loaded
     */
    public static CublasLt create(long stream, long workspace, long workspaceBytes) {
        CudaDriver.get();
        Lib l = LIB.get();
        // the settings first: a bad one is named before there is a handle to give back
        long timedFrom = timedFrom(System.getProperty(TIMED_FROM_PROPERTY));
        Boolean askedCold = timedCold(System.getProperty(TIMED_COLD_PROPERTY));
        boolean programmatic = Boolean.TRUE.equals(Kernels.onOff(PROGRAMMATIC_PROPERTY,
                System.getProperty(PROGRAMMATIC_PROPERTY)));
        return new CublasLt(l, l.createHandle(l.create, "cublasLtCreate"), stream, workspace,
                workspace == 0 ? 0 : workspaceBytes, timedFrom, askedCold, programmatic);
    }

    /** Whether cuBLASLt can be loaded (loading it if that has not been tried yet). */
    public static boolean isAvailable() {
        return LIB.isAvailable();
    }

    /** Where cuBLASLt was loaded from. */
    public String libraryPath() {
        return l.where;
    }

    /** {@code cublasLtGetVersion}: e.g. 130000 for cuBLASLt 13.0.0. */
    public long version() {
        try {
            return (long) l.getVersion.invokeExact();
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
    }

    /**
     * {@code D = alpha op(A) op(B) + beta C} into C, float32 scalars, through the plan for this product (built on its
     * first call). {@code epilogue}: {@link #EPILOGUE_DEFAULT} with {@code bias} 0, {@link #EPILOGUE_BIAS} with a bias
     * of m values of C's type, or {@link #EPILOGUE_BGRADB} with n values of C's type that the sums of B's columns
     * overwrite.
     *
     * @return false, with nothing enqueued, where cuBLASLt has no algorithm for this product
     * @throws CudaException naming the product when the launch fails
     */
    public boolean matmul(int transA, int transB, int m, int n, int k, float alpha, long A, int aType, int lda, long B,
                          int bType, int ldb, float beta, long C, int cType, int ldc, int computeType, int epilogue,
                          long bias) {
        return matmul(transA, transB, m, n, k, alpha, A, aType, lda, B, bType, ldb, beta, C, cType, ldc, C,
                computeType, epilogue, bias);
    }

    /**
     * {@link #matmul} into D instead of C: {@code D = alpha op(A) op(B) + beta C (+ bias)}, D of C's type and
     * layout, C read only (D may be C). The plan is chosen for the lesser alignment of the two.
     */
    public boolean matmul(int transA, int transB, int m, int n, int k, float alpha, long A, int aType, int lda, long B,
                          int bType, int ldb, float beta, long C, int cType, int ldc, long D, int computeType,
                          int epilogue, long bias) {
        LtGemm g = LtGemm.of(transA, transB, m, n, k, A, aType, lda, B, bType, ldb, beta != 0f, C | D, cType, ldc,
                computeType, epilogue, bias);
        Plan p = plans.get(g, key -> build(key, bias, new Operands(alpha, A, B, beta, C, D, bias)));
        if (p.algo == null) {
            return false;
        }
        if (epilogue != EPILOGUE_DEFAULT) {
            setPointer(p.desc, DESC_BIAS_POINTER, bias, g);
        }
        run(g, p, alpha, A, B, beta, C, D);
        return true;
    }

    /**
     * Enqueues {@code p}'s product (the plan of {@code g}) on these operands: while a step is captured with
     * programmatic edges, a plan whose kernel was seen to wait depends programmatically on a kernel before it; outside
     * a capture, a plan not probed yet is probed first where programmatic edges are asked for ({@link #probeEdge}).
     */
    private void run(LtGemm g, Plan p, float alpha, long A, long B, float beta, long C, long D) {
        if (capturing) {
            if (programmaticEdges && p.edge == EDGE_WAITS && CudaDriver.get().captureNextProgrammatic(stream)) {
                programmaticProducts++;
            }
        } else if (probing && p.edge == EDGE_UNKNOWN && probesFirstCalls()) {
            p.edge = probeEdge(g, p, alpha, A, B, beta);
        }
        launchPlan(p, alpha, A, B, beta, C, D, g);
    }

    /** Enqueues {@code p}'s product (the plan of {@code g}) on these operands. */
    private void launchPlan(Plan p, float alpha, long A, long B, float beta, long C, long D, LtGemm g) {
        this.alpha.set(ValueLayout.JAVA_FLOAT, 0, alpha);
        this.beta.set(ValueLayout.JAVA_FLOAT, 0, beta);
        int r;
        try {
            r = (int) l.matmul.invokeExact(live(), p.desc, this.alpha, A, p.a, B, p.b, this.beta, C, p.c, D, p.c,
                    p.algo, workspace, workspaceBytes, stream);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error(g.describe(), r);
        }
        launches++;
    }

    /**
     * {@code count} products {@code D_i = alpha op(A_i) op(B_i) + beta C_i} into C in one call (cuBLASLt's strided
     * batch), {@code A_i} at A plus i times {@code strideA} elements, and so on; no epilogue. With strides that walk
     * along k ({@code strideA} and {@code strideB} a k-th of the rows' width) it is a product split along k into
     * partial sums, {@code C_i} one each.
     *
     * @return false, with nothing enqueued, where cuBLASLt has no algorithm for these products
     * @throws CudaException naming the products when the launch fails
     */
    public boolean matmulBatched(int transA, int transB, int m, int n, int k, float alpha, long A, int aType, int lda,
                                 long strideA, long B, int bType, int ldb, long strideB, float beta, long C, int cType,
                                 int ldc, long strideC, int count, int computeType) {
        LtGemm g = LtGemm.of(transA, transB, m, n, k, A, aType, lda, B, bType, ldb, beta != 0f, C, cType, ldc,
                computeType, EPILOGUE_DEFAULT, 0).batched(count, strideA, strideB, strideC);
        Plan p = plans.get(g, key -> build(key, 0, new Operands(alpha, A, B, beta, C, C, 0)));
        if (p.algo == null) {
            return false;
        }
        run(g, p, alpha, A, B, beta, C, C);
        return true;
    }

    /** Whether a plan is kept for {@code g} (with an algorithm or without). */
    boolean planned(LtGemm g) {
        return plans.peek(g) != null;
    }

    /** Why the plan kept for {@code g} has no algorithm (null where it has one, or none is kept). */
    String noAlgorithmReason(LtGemm g) {
        Plan p = plans.peek(g);
        return p == null ? null : p.reason;
    }

    /** Plans kept now. */
    int plans() {
        return plans.size();
    }

    /** Plans built so far. */
    long planBuilds() {
        return plans.builds();
    }

    /** Products launched so far. */
    long launches() {
        return launches;
    }

    // ------------------------------------------------------------------------------------------------ plans

    /** The descriptors of one product and the algorithm chosen for it (null, with the reason, where there is none). */
    private static final class Plan {
        final long desc;
        final long a;
        final long b;
        final long c;
        final MemorySegment algo;
        final String reason;
        /** The algorithm's split-k (1: one kernel's product, no reduction; 0 where there is no algorithm). */
        final int split;
        /** Whether its kernel waits for the kernel before it: {@link #EDGE_UNKNOWN} until probed. */
        int edge = EDGE_UNKNOWN;

        Plan(long desc, long a, long b, long c, MemorySegment algo, String reason, int split) {
            this.desc = desc;
            this.a = a;
            this.b = b;
            this.c = c;
            this.algo = algo;
            this.reason = reason;
            this.split = split;
        }
    }

    /** The operands of the call that builds a plan: what its algorithms are timed on. */
    private record Operands(float alpha, long a, long b, float beta, long c, long d, long bias) {
    }

    /**
     * Builds the plan for {@code g}; {@code bias} is the bias vector of the call that needs it (0 for none), {@code on}
     * that call's operands.
     */
    private Plan build(LtGemm g, long bias, Operands on) {
        long desc = 0;
        long a = 0;
        long b = 0;
        long c = 0;
        long pref = 0;
        try {
            desc = created(l.descCreate, "cublasLtMatmulDescCreate", g, g.computeType(), Cublas.R_32F);
            setInt(desc, DESC_TRANSA, g.transA(), g);
            setInt(desc, DESC_TRANSB, g.transB(), g);
            if (g.epilogue() != EPILOGUE_DEFAULT) {
                setInt(desc, DESC_EPILOGUE, g.epilogue(), g);
                // the heuristic reads the bias pointer's alignment from the descriptor
                setPointer(desc, DESC_BIAS_POINTER, bias, g);
            }
            a = layout(g.aType(), g.aRows(), g.aCols(), g.lda(), g.strideA(), g);
            b = layout(g.bType(), g.bRows(), g.bCols(), g.ldb(), g.strideB(), g);
            c = layout(g.cType(), g.m(), g.n(), g.ldc(), g.strideC(), g);
            pref = preference(g);
            int chosen = heuristic(desc, a, b, c, pref);
            MemorySegment algo = null;
            if (chosen >= 0 && forced >= 0) {
                int found = count.get(INT, 0);
                if (forced >= found || !usable(forced)) {
                    forcedDescription = "answer " + forced + " of " + found + (forced >= found ? ": none" : ": unusable");
                    return new Plan(0, 0, 0, 0, null, forcedDescription, 0);
                }
                chosen = forced;
                if ((algo = forcedAlgorithm(desc, a, b, c, chosen)) == null) {
                    return new Plan(0, 0, 0, 0, null, forcedDescription, 0);
                }
            } else if (chosen >= 0 && timing != null && (double) g.m() * g.n() * g.k() >= timedFrom) {
                chosen = chosen(g, desc, a, b, c, chosen, on);
            }
            if (chosen < 0) {
                // nothing to keep but the answer: what was made is destroyed below
                return new Plan(0, 0, 0, 0, null, noAlgorithm(chosen), 0);
            }
            if (algo == null) {
                algo = Arena.ofAuto().allocate(ALGO_BYTES, 8);
                algo.copyFrom(results.asSlice(chosen * HEURISTIC_RESULT_BYTES, ALGO_BYTES));
            }
            Plan plan = new Plan(desc, a, b, c, algo, null, splitOf(algo));
            desc = 0;
            a = 0;
            b = 0;
            c = 0;
            return plan;
        } finally {
            destroy(l.preferenceDestroy, pref);
            destroy(l.layoutDestroy, c);
            destroy(l.layoutDestroy, b);
            destroy(l.layoutDestroy, a);
            destroy(l.descDestroy, desc);
        }
    }

    /** A plan not probed yet; one whose kernel waits for the kernel before it; one whose kernel does not, or unknown. */
    static final int EDGE_UNKNOWN = 0;
    static final int EDGE_WAITS = 1;
    static final int EDGE_NONE = 2;
    /** How long the probe's writer waits before it writes: far longer than any product takes to read its inputs. */
    static final long PROBE_DELAY_NS = 100_000;
    /** The byte the probe's copy of B holds before the writer writes it. */
    private static final int PROBE_FILL = 0x3f;

    /** A kernel launched programmatically on the handle's stream that copies bytes delayNs after it starts. */
    @FunctionalInterface
    interface SlowWriter {
        /** Copies {@code bytes} (a multiple of 16; 16-byte aligned addresses) from src to dst. */
        void copy(long dst, long src, long bytes, long delayNs);
    }

    /** Sets the writer for the probes of {@link #probeEdge} (null: no probes, so no programmatic edges). */
    void slowWriter(SlowWriter writer) {
        slowWriter = writer;
    }

    /**
     * Whether a plan's first call in a decode step run op by op probes it ({@link #probing}, {@link #probeEdge}):
     * where {@value #PROGRAMMATIC_PROPERTY} lets products take programmatic edges, the driver makes them and a slow
     * writer is set.
     */
    boolean probesFirstCalls() {
        return programmaticAsked && slowWriter != null && CudaDriver.get().capturesProgrammaticEdges();
    }

    /**
     * Whether products called from now on (outside a capture) are probed where their plans have not been: while a
     * decode step of a new shape runs op by op before it is recorded. Prompts' products, which no recorded step
     * holds, are not probed.
     */
    void probing(boolean on) {
        probing = on;
    }

    /** Plans probed so far. */
    int probedPlans() {
        return probedPlans;
    }

    /** Plans probed so far whose kernel waits for the kernel before it. */
    int waitingPlans() {
        return waitingPlans;
    }

    /**
     * Whether {@code p}'s kernel waits for the kernel before it on a programmatic edge before it reads B (x, what
     * the kernel before wrote): its product of B as the slow writer leaves it ({@link #PROBE_DELAY_NS} after it lets
     * the product start, into a copy that held other bytes; the writer one block, so that the product's blocks find
     * multiprocessors free) recorded in a graph of its own and replayed, against the same product of B itself; bit
     * for bit the same where the kernel waits. Only plans without split-k that read no C and whose B is 16-byte
     * aligned are probed ({@link #EDGE_NONE} for the rest, where scratch cannot be had, and where the probe itself
     * fails). Waits for the stream.
     */
    private int probeEdge(LtGemm g, Plan p, float alpha, long A, long B, float beta) {
        if (p.split != 1 || g.accumulate() || (B & 15) != 0
                || g.epilogue() == EPILOGUE_BGRADA || g.epilogue() == EPILOGUE_BGRADB) {
            return EDGE_NONE;
        }
        long copyBytes = (g.bBytes() + 15) & ~15L;  // B's last 16 bytes read whole: within its allocation's granules
        long dBytes = g.cBytes();
        long dSpan = (dBytes + 255) & ~255L;
        long bSpan = (copyBytes + 255) & ~255L;
        if (bSpan + 2 * dSpan > TIMING_SCRATCH_LIMIT) {
            return EDGE_NONE;
        }
        CudaDriver cu = CudaDriver.get();
        long scratch;
        try {
            scratch = cu.malloc(bSpan + 2 * dSpan);
        } catch (CudaException e) {
            return EDGE_NONE;  // no room to probe in
        }
        long bCopy = scratch;
        long plain = scratch + bSpan;
        long raced = plain + dSpan;
        long graph = 0;
        long exec = 0;
        try (Arena arena = Arena.ofConfined()) {
            cu.memsetD8Async(plain, 0, dBytes, stream);  // what the product leaves alone (ldc past m) alike in both
            cu.memsetD8Async(raced, 0, dBytes, stream);
            launchPlan(p, alpha, A, B, beta, plain, plain, g);
            cu.memsetD8Async(bCopy, PROBE_FILL, copyBytes, stream);
            cu.synchronize(stream);
            boolean edge;
            try {
                cu.beginCapture(stream);
                try {
                    slowWriter.copy(bCopy, B, copyBytes, PROBE_DELAY_NS);
                    edge = cu.captureNextProgrammatic(stream);
                    launchPlan(p, alpha, A, bCopy, beta, raced, raced, g);
                } finally {
                    graph = cu.endCapture(stream);
                }
                if (!edge) {
                    return EDGE_NONE;
                }
                exec = cu.instantiateGraph(graph);
                cu.launchGraph(exec, stream);
            } catch (CudaException e) {
                return EDGE_NONE;  // the library's call does not take the edge (another node first, say): none
            }
            MemorySegment want = arena.allocate(dBytes, 16);
            MemorySegment got = arena.allocate(dBytes, 16);
            cu.synchronize(stream);
            cu.copyDtoH(want, plain, dBytes);
            cu.copyDtoH(got, raced, dBytes);
            probedPlans++;
            if (want.mismatch(got) != -1) {
                return EDGE_NONE;
            }
            waitingPlans++;
            return EDGE_WAITS;
        } finally {
            try {
                if (exec != 0) {
                    cu.destroyGraphExec(exec);
                }
                if (graph != 0) {
                    cu.destroyGraph(graph);
                }
            } finally {
                cu.synchronize(stream);
                cu.free(scratch);
            }
        }
    }

    /** The split-k an algorithm is configured with (0 where cuBLASLt does not say). */
    private int splitOf(MemorySegment algo) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(8, 8);
            MemorySegment written = arena.allocate(8, 8);
            int r = (int) l.algoConfigGet.invokeExact(algo, CONFIG_SPLITK_NUM, v, 4L, written);
            return r == 0 ? v.get(INT, 0) : 0;
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
    }

    // cublasLtMatmulAlgoConfigAttributes_t and cublasLtMatmulAlgoCapAttributes_t
    private static final int CONFIG_ID = 0;
    private static final int CONFIG_TILE_ID = 1;
    private static final int CONFIG_SPLITK_NUM = 2;
    private static final int CONFIG_REDUCTION_SCHEME = 3;
    private static final int CONFIG_STAGES_ID = 6;
    private static final int CAP_SPLITK_SUPPORT = 0;

    /**
     * A copy of result {@code index} of the heuristic's last answer, set to {@link #forcedSplit} (partial sums in
     * float32) where that is not 1 and checked by {@code cublasLtMatmulAlgoCheck}; null where the algorithm has no
     * split-k or the check refuses it. Describes it in {@link #forcedDescription}.
     */
    private MemorySegment forcedAlgorithm(long desc, long a, long b, long c, int index) {
        MemorySegment algo = Arena.ofAuto().allocate(ALGO_BYTES, 8);
        algo.copyFrom(results.asSlice(index * HEURISTIC_RESULT_BYTES, ALGO_BYTES));
        float waves = results.get(ValueLayout.JAVA_FLOAT, index * HEURISTIC_RESULT_BYTES + RESULT_WAVES);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(8, 8);
            MemorySegment written = arena.allocate(8, 8);
            if (forcedSplit != 1) {
                int r = (int) l.algoCapGet.invokeExact(algo, CAP_SPLITK_SUPPORT, v, 4L, written);
                if (r != 0 || v.get(INT, 0) == 0) {
                    forcedDescription = "no split-k";
                    return null;
                }
                v.set(INT, 0, forcedSplit);
                r = (int) l.algoConfigSet.invokeExact(algo, CONFIG_SPLITK_NUM, v, 4L);
                v.set(INT, 0, REDUCTION_COMPUTE_TYPE);
                int r2 = (int) l.algoConfigSet.invokeExact(algo, CONFIG_REDUCTION_SCHEME, v, 4L);
                MemorySegment result = arena.allocate(HEURISTIC_RESULT_BYTES, 16);
                int r3 = (int) l.algoCheck.invokeExact(live(), desc, a, b, c, c, algo, result);
                if (r != 0 || r2 != 0 || r3 != 0 || result.get(LONG, RESULT_WORKSPACE) > workspaceBytes) {
                    forcedDescription = "split-k " + forcedSplit + " refused (" + r + ", " + r2 + ", " + r3 + ")";
                    return null;
                }
                waves = result.get(ValueLayout.JAVA_FLOAT, RESULT_WAVES);
            }
            StringBuilder d = new StringBuilder();
            int[] attributes = {CONFIG_ID, CONFIG_TILE_ID, CONFIG_SPLITK_NUM, CONFIG_STAGES_ID};
            String[] names = {"id", "tile", "split", "stages"};
            for (int i = 0; i < attributes.length; i++) {
                v.set(LONG, 0, 0);
                int r = (int) l.algoConfigGet.invokeExact(algo, attributes[i], v, 4L, written);
                d.append(i == 0 ? "" : " ").append(names[i]).append(' ').append(r == 0 ? v.get(INT, 0) : -1);
            }
            forcedDescription = d.append(String.format(java.util.Locale.ROOT, " waves %.2f", waves)).toString();
            return algo;
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
    }

    /**
     * {@code cublasLtMatmulAlgoGetHeuristic}: the index in {@link #results} of the first algorithm (they come fastest
     * first) that succeeded and fits the workspace, else {@link #HEURISTIC_FAILED} or {@link #NONE_FITS}.
     */
    private int heuristic(long desc, long a, long b, long c, long pref) {
        int r;
        try {
            r = (int) l.heuristic.invokeExact(live(), desc, a, b, c, c, pref, HEURISTIC_RESULTS, results, count);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            heuristicStatus = r;
            count.set(INT, 0, 0);  // no answer: not the last plan's count
            return HEURISTIC_FAILED;
        }
        int found = count.get(INT, 0);
        for (int i = 0; i < found; i++) {
            MemorySegment result = results.asSlice(i * HEURISTIC_RESULT_BYTES, HEURISTIC_RESULT_BYTES);
            if (usable(i)) {
                return i;
            }
        }
        return NONE_FITS;
    }

    /**
     * The algorithm for {@code g} among the heuristic's answer: the one chosen before for the same product (by any
     * handle of this process, or in the choices' file), else the fastest when timed now, else (while the stream is
     * captured, when nothing may wait) the heuristic's {@code first}.
     */
    private int chosen(LtGemm g, long desc, long a, long b, long c, int first, Operands on) {
        int found = count.get(INT, 0);
        String key = timingPrefix + "|" + g.key();
        GemmChoices.Choice known = timing.get(key);
        if (known != null && known.count() == found && usable(known.index())) {
            return known.index();
        }
        if (capturing) {
            return first;
        }
        int best = fastest(g, desc, a, b, c, first, on);
        if (best < 0) {
            return first;  // not timed (no room for the scratch output): nothing to keep
        }
        if (known != null && known.count() == found) {
            return best;  // the kept choice does not fit this handle's workspace
        }
        // a choice made for another answer of the heuristic (another count) is replaced
        GemmChoices.Choice kept = timing.put(key, new GemmChoices.Choice(best, found), known != null);
        return kept.count() == found && usable(kept.index()) ? kept.index() : best;
    }

    /** Whether result {@code i} of the heuristic's last answer succeeded and fits the workspace. */
    private boolean usable(int i) {
        MemorySegment result = results.asSlice(i * HEURISTIC_RESULT_BYTES, HEURISTIC_RESULT_BYTES);
        return result.get(INT, RESULT_STATE) == 0 && result.get(LONG, RESULT_WORKSPACE) <= workspaceBytes;
    }

    /**
     * The index in {@link #results} of the fastest of the algorithms the heuristic found (from {@code first}, the first
     * that fits), each launched once then {@value #TIMED_LAUNCHES} times, its best of {@value #TIMED_ROUNDS} such
     * rounds (warm: the launches back to back between two events; cold: each after a write that flushes the L2 cache,
     * between events of its own, the round their sum), on {@code on}'s inputs
     * and a scratch output (so the call's own output is neither written nor, where it accumulates, added to twice).
     * {@code first} where every other candidate fails to launch; -1 where the scratch cannot be had (nothing timed).
     */
    private int fastest(LtGemm g, long desc, long a, long b, long c, int first, Operands on) {
        int found = count.get(INT, 0);
        int elementBytes = LtGemm.typeBytes(g.cType());
        long outBytes = g.cBytes();
        long biasOffset = (outBytes + 255) & ~255L;
        boolean gradient = g.epilogue() == EPILOGUE_BGRADA || g.epilogue() == EPILOGUE_BGRADB;
        long scratchBytes = biasOffset + (gradient ? (long) Math.max(g.m(), g.n()) * elementBytes : 0);
        if (scratchBytes > TIMING_SCRATCH_LIMIT) {
            return -1;
        }
        CudaDriver cu = CudaDriver.get();
        long scratch;
        try {
            scratch = cu.malloc(scratchBytes);
        } catch (CudaException e) {
            return -1;  // no room to time in
        }
        long flush = 0;
        if (timedCold) {
            try {
                flush = cu.malloc(COLD_BYTES);
            } catch (CudaException e) {
                cu.free(scratch);
                return -1;  // no room to flush the L2 cache with
            }
        }
        long start = 0;
        long end = 0;
        try {
            start = cu.createEvent();
            end = cu.createEvent();
            // accumulating into itself, C is the scratch too; read from elsewhere, C is the call's own
            long cRead = on.c() == on.d() ? scratch : on.c();
            long biasArg = gradient ? scratch + biasOffset : on.bias();
            if (g.epilogue() != EPILOGUE_DEFAULT) {
                setPointer(desc, DESC_BIAS_POINTER, biasArg, g);
            }
            alpha.set(ValueLayout.JAVA_FLOAT, 0, on.alpha());
            beta.set(ValueLayout.JAVA_FLOAT, 0, on.beta());
            // each candidate's best of TIMED_ROUNDS rounds, the rounds interleaved: a moment's slowness of the
            // device (a clock change, another process) does not decide
            float[] ms = new float[found];
            Arrays.fill(ms, Float.MAX_VALUE);
            for (int round = 0; round < TIMED_ROUNDS; round++) {
                for (int i = first; i < found; i++) {
                    if (!usable(i) || (round > 0 && ms[i] == Float.MAX_VALUE)) {
                        continue;  // unusable, or it failed to launch in the first round
                    }
                    MemorySegment algo = results.asSlice(i * HEURISTIC_RESULT_BYTES, ALGO_BYTES);
                    if (launch(desc, on, cRead, scratch, a, b, c, algo) != 0) {
                        continue;
                    }
                    float roundMs = 0;
                    // cold: each launch alone after the L2 cache is flushed; warm: all back to back
                    for (int t = 0; t < (flush != 0 ? TIMED_LAUNCHES : 1); t++) {
                        if (flush != 0) {
                            cu.memsetD8Async(flush, t, COLD_BYTES, stream);
                        }
                        cu.record(start, stream);
                        for (int u = 0; u < (flush != 0 ? 1 : TIMED_LAUNCHES); u++) {
                            launch(desc, on, cRead, scratch, a, b, c, algo);
                        }
                        cu.record(end, stream);
                        cu.synchronizeEvent(end);
                        roundMs += cu.elapsedMillis(start, end);
                    }
                    ms[i] = Math.min(ms[i], roundMs);
                }
            }
            int best = first;
            for (int i = first; i < found; i++) {
                if (ms[i] < ms[best]) {
                    best = i;
                }
            }
            timedPlans++;
            return best;
        } finally {
            // the scratch is freed whatever else fails (after the stream is done with it)
            try {
                try {
                    cu.destroyEvent(start);
                    cu.destroyEvent(end);
                } finally {
                    cu.synchronize(stream);
                }
            } finally {
                try {
                    cu.free(scratch);
                } finally {
                    if (flush != 0) {
                        cu.free(flush);
                    }
                }
            }
        }
    }

    /** One {@code cublasLtMatmul} of a plan being built, with the algorithm {@code algo}: its status. */
    private int launch(long desc, Operands on, long cRead, long d, long a, long b, long c, MemorySegment algo) {
        try {
            return (int) l.matmul.invokeExact(live(), desc, alpha, on.a(), a, on.b(), b, beta, cRead, c, d, c, algo,
                    workspace, workspaceBytes, stream);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
    }

    /**
     * The value of {@value #TIMED_FROM_PROPERTY}: {@value #TIMED_MIN_MULTIPLY_ADDS} where unset.
     *
     * @throws IllegalArgumentException naming the property and the value where it is not a positive integer
     */
    static long timedFrom(String value) {
        if (value == null || value.isBlank()) {
            return TIMED_MIN_MULTIPLY_ADDS;
        }
        try {
            long v = Long.parseLong(value.strip());
            if (v > 0) {
                return v;
            }
        } catch (NumberFormatException e) {
            // named below
        }
        throw new IllegalArgumentException("-D" + TIMED_FROM_PROPERTY + "=" + value
                + ": expected a positive number of multiply-adds");
    }

    /**
     * The value of {@value #TIMED_COLD_PROPERTY}: null where unset.
     *
     * @throws IllegalArgumentException naming the property and the value where it is neither true nor false
     */
    static Boolean timedCold(String value) {
        return Kernels.onOff(TIMED_COLD_PROPERTY, value);
    }

    /**
     * For the kernel workbench: plans built from now on take the algorithm at {@code index} in the heuristic's answer
     * (none where it has fewer, or that one does not fit: {@link #matmul} then returns false), untimed; -1 gives the
     * usual choice back. Drops every plan kept, so that the next call of each product builds its plan again.
     */
    void forceAlgorithm(int index) {
        forceAlgorithm(index, 1);
    }

    /**
     * {@link #forceAlgorithm(int)}, the algorithm set to {@code split} parts of k summed in float32 where that is not
     * 1 (none where it has no split-k, or cuBLASLt's check refuses it).
     */
    void forceAlgorithm(int index, int split) {
        if (index < -1 || index >= HEURISTIC_RESULTS || split < 1) {
            throw new IllegalArgumentException("algorithm " + index + " of the heuristic's " + HEURISTIC_RESULTS
                    + ", split-k " + split);
        }
        forced = index;
        forcedSplit = split;
        plans.close();
    }

    /** What the plan built last with a forced algorithm runs: its configuration, or why there is none. */
    String forcedDescription() {
        return forcedDescription;
    }

    /** How many algorithms the heuristic offered the plan built last. */
    int lastAnswerCount() {
        return count.get(INT, 0);
    }

    /**
     * Has plans built from now on (products of at least {@value #TIMED_MIN_MULTIPLY_ADDS} multiply-adds, or what
     * {@value #TIMED_FROM_PROPERTY} sets) take the
     * algorithm kept in {@code choices} for their product on a device named {@code deviceName}, else the fastest of
     * the heuristic's answer, timed then and kept there; null: the heuristic's first, untimed (the default). Timing
     * waits for the device, so nothing is timed while the stream is captured ({@link #capturing(boolean)}).
     */
    public CublasLt timing(GemmChoices choices, String deviceName) {
        return timing(choices, deviceName, false);
    }

    /**
     * {@link #timing(GemmChoices, String)}, each timed launch meeting its operands cold where {@code cold} (unless
     * {@value #TIMED_COLD_PROPERTY} says otherwise): inference's timing, whose decode steps meet their weights cold.
     */
    public CublasLt timing(GemmChoices choices, String deviceName, boolean cold) {
        this.timedCold = askedCold != null ? askedCold : cold;
        this.timing = choices;
        // what the heuristic's answer depends on besides the product: the device, the library, the workspace
        this.timingPrefix = deviceName.replace('\t', ' ') + "|cublasLt " + version() + "|workspace " + workspaceBytes
                + (timedCold ? "|cold" : "");
        return this;
    }

    /** Whether plans choose their algorithm by timing ({@link #timing}). */
    public boolean timing() {
        return timing != null;
    }

    /**
     * Whether products captured from now on depend programmatically on the kernel before them, where
     * {@value #PROGRAMMATIC_PROPERTY} lets them and the driver can (a recorded decode step whose kernels are
     * launched programmatically); only plans whose kernel a probe saw wait take the edge.
     */
    void programmaticEdges(boolean on) {
        programmaticEdges = on && programmaticAsked && CudaDriver.get().capturesProgrammaticEdges();
    }

    /** Products captured so far with a programmatic edge before them. */
    long programmaticProducts() {
        return programmaticProducts;
    }

    /** Whether the stream is being captured into a graph: plans built meanwhile take the heuristic's first choice. */
    void capturing(boolean now) {
        this.capturing = now;
    }

    /** Plans whose algorithm was chosen by timing so far. */
    int timedPlans() {
        return timedPlans;
    }

    private String noAlgorithm(int outcome) {
        if (outcome == HEURISTIC_FAILED) {
            return "cublasLtMatmulAlgoGetHeuristic returned " + CublasStatus.name(heuristicStatus, l.statusName);
        }
        int found = count.get(INT, 0);
        return found == 0 ? "the heuristic found no algorithm" : "none of the " + found + " algorithms the heuristic"
                + " found fits a workspace of " + workspaceBytes + " bytes";
    }

    private long preference(LtGemm g) {
        long pref = created(l.preferenceCreate, "cublasLtMatmulPreferenceCreate", g);
        try {
            value.set(LONG, 0, workspaceBytes);
            setPreference(pref, PREF_MAX_WORKSPACE_BYTES, 8, g);
            setPreferenceInt(pref, PREF_MIN_ALIGNMENT_A_BYTES, g.alignA(), g);
            setPreferenceInt(pref, PREF_MIN_ALIGNMENT_B_BYTES, g.alignB(), g);
            setPreferenceInt(pref, PREF_MIN_ALIGNMENT_C_BYTES, g.alignC(), g);
            setPreferenceInt(pref, PREF_MIN_ALIGNMENT_D_BYTES, g.alignC(), g);
            setPreferenceInt(pref, PREF_REDUCTION_SCHEME_MASK, REDUCTION_COMPUTE_TYPE, g);
            if (g.aType() == Cublas.R_32F && g.bType() == Cublas.R_32F) {
                value.set(LONG, 0, ~(IMPL_INPUT_16F | IMPL_INPUT_16BF | IMPL_INPUT_TF32));
                setPreference(pref, PREF_IMPL_MASK, 8, g);
            }
            return pref;
        } catch (RuntimeException e) {
            destroy(l.preferenceDestroy, pref);
            throw e;
        }
    }

    /** A matrix layout of {@code g}'s, made a strided batch of {@code g.batch()} where that is more than 1. */
    private long layout(int type, int rows, int cols, int ld, long stride, LtGemm g) {
        int r;
        try {
            r = (int) l.layoutCreate.invokeExact(value, type, (long) rows, (long) cols, (long) ld);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error("cublasLtMatrixLayoutCreate(" + LtGemm.typeName(type) + ", " + rows + "x" + cols + ", ld "
                    + ld + ") for " + g.describe(), r);
        }
        long layout = value.get(LONG, 0);
        if (g.batch() > 1) {
            try {
                value.set(INT, 0, g.batch());
                int r1 = (int) l.layoutSetAttribute.invokeExact(layout, LAYOUT_BATCH_COUNT, value, 4L);
                value.set(LONG, 0, stride);
                int r2 = (int) l.layoutSetAttribute.invokeExact(layout, LAYOUT_STRIDED_BATCH_OFFSET, value, 8L);
                if (r1 != 0 || r2 != 0) {
                    throw l.error("cublasLtMatrixLayoutSetAttribute(batch " + g.batch() + ", stride " + stride
                            + ") for " + g.describe(), r1 != 0 ? r1 : r2);
                }
            } catch (RuntimeException e) {
                destroy(l.layoutDestroy, layout);
                throw e;
            } catch (Throwable t) {
                destroy(l.layoutDestroy, layout);
                throw CudaDriver.rethrow(t);
            }
        }
        return layout;
    }

    private long created(MethodHandle create, String call, LtGemm g) {
        int r;
        try {
            r = (int) create.invokeExact(value);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error(call + " for " + g.describe(), r);
        }
        return value.get(LONG, 0);
    }

    private long created(MethodHandle create, String call, LtGemm g, int computeType, int scaleType) {
        int r;
        try {
            r = (int) create.invokeExact(value, computeType, scaleType);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error(call + "(compute " + LtGemm.computeName(computeType) + ") for " + g.describe(), r);
        }
        return value.get(LONG, 0);
    }

    private void setInt(long desc, int attribute, int v, LtGemm g) {
        value.set(INT, 0, v);
        setDesc(desc, attribute, 4, g);
    }

    private void setPointer(long desc, int attribute, long pointer, LtGemm g) {
        value.set(LONG, 0, pointer);
        setDesc(desc, attribute, 8, g);
    }

    private void setDesc(long desc, int attribute, long bytes, LtGemm g) {
        setAttribute(l.descSetAttribute, "cublasLtMatmulDescSetAttribute", CublasLt::descAttributeName, desc,
                attribute, bytes, g);
    }

    private void setPreferenceInt(long pref, int attribute, int v, LtGemm g) {
        value.set(INT, 0, v);
        setPreference(pref, attribute, 4, g);
    }

    private void setPreference(long pref, int attribute, long bytes, LtGemm g) {
        setAttribute(l.preferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute",
                CublasLt::preferenceAttributeName, pref, attribute, bytes, g);
    }

    /**
     * Sets {@code attribute} of a descriptor or preference to the first {@code bytes} of {@link #value}, through
     * {@code set}, an {@code int (target, attribute, const void* buf, size_t sizeInBytes)}.
     */
    private void setAttribute(MethodHandle set, String call, IntFunction<String> attributeName, long target,
                              int attribute, long bytes, LtGemm g) {
        int r;
        try {
            r = (int) set.invokeExact(target, attribute, value, bytes);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        if (r != 0) {
            throw l.error(call + "(" + attributeName.apply(attribute) + ", " + bytes + " bytes) for "
                    + g.describe(), r);
        }
    }

    static String descAttributeName(int attribute) {
        return switch (attribute) {
            case DESC_TRANSA -> "CUBLASLT_MATMUL_DESC_TRANSA";
            case DESC_TRANSB -> "CUBLASLT_MATMUL_DESC_TRANSB";
            case DESC_EPILOGUE -> "CUBLASLT_MATMUL_DESC_EPILOGUE";
            case DESC_BIAS_POINTER -> "CUBLASLT_MATMUL_DESC_BIAS_POINTER";
            default -> "cublasLtMatmulDescAttributes_t " + attribute;
        };
    }

    static String preferenceAttributeName(int attribute) {
        return switch (attribute) {
            case PREF_MAX_WORKSPACE_BYTES -> "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES";
            case PREF_MIN_ALIGNMENT_A_BYTES -> "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES";
            case PREF_MIN_ALIGNMENT_B_BYTES -> "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES";
            case PREF_MIN_ALIGNMENT_C_BYTES -> "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES";
            case PREF_MIN_ALIGNMENT_D_BYTES -> "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES";
            case PREF_IMPL_MASK -> "CUBLASLT_MATMUL_PREF_IMPL_MASK";
            case PREF_REDUCTION_SCHEME_MASK -> "CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK";
            default -> "cublasLtMatmulPreferenceAttributes_t " + attribute;
        };
    }

    /** Frees what a plan holds (nothing for a plan without an algorithm); the first failure is thrown. */
    private void destroy(Plan p) {
        RuntimeException first = null;
        for (long layout : new long[] {p.a, p.b, p.c}) {
            if (!destroy(l.layoutDestroy, layout) && first == null) {
                first = l.error("cublasLtMatrixLayoutDestroy", destroyStatus);
            }
        }
        if (!destroy(l.descDestroy, p.desc) && first == null) {
            first = l.error("cublasLtMatmulDescDestroy", destroyStatus);
        }
        if (first != null) {
            throw first;
        }
    }

    /**
     * Destroys a descriptor, layout or preference (0: nothing); false, with the status in {@link #destroyStatus},
     * where that failed. Used where a failure can only be reported, not undone.
     */
    private boolean destroy(MethodHandle destroy, long handle) {
        if (handle == 0) {
            return true;
        }
        int r;
        try {
            r = (int) destroy.invokeExact(handle);
        } catch (Throwable t) {
            throw CudaDriver.rethrow(t);
        }
        destroyStatus = r;
        return r == 0;
    }

    private long live() {
        if (handle == 0) {
            throw new IllegalStateException("this cuBLASLt handle is closed");
        }
        return handle;
    }

    /** Destroys every plan, then {@code cublasLtDestroy}; a second close does nothing. */
    @Override
    public void close() {
        if (handle == 0) {
            return;
        }
        try {
            plans.close();
        } finally {
            long h = handle;
            handle = 0;
            l.destroyHandle(l.destroy, h, "cublasLtDestroy");
        }
    }

    /** The bound cuBLASLt entry points (signatures as in cublasLt.h). */
    private static final class Lib extends CublasLibrary {
        final MethodHandle create;
        final MethodHandle destroy;
        final MethodHandle getVersion;
        final MethodHandle descCreate;
        final MethodHandle descDestroy;
        final MethodHandle descSetAttribute;
        final MethodHandle layoutCreate;
        final MethodHandle layoutDestroy;
        final MethodHandle layoutSetAttribute;
        final MethodHandle preferenceCreate;
        final MethodHandle preferenceDestroy;
        final MethodHandle preferenceSetAttribute;
        final MethodHandle heuristic;
        final MethodHandle matmul;
        final MethodHandle algoConfigSet;
        final MethodHandle algoConfigGet;
        final MethodHandle algoCapGet;
        final MethodHandle algoCheck;

        Lib(NativeLibraries.Library library) {
            super(library, "cublasLt");
            CudaDriver.Binder b = new CudaDriver.Binder(library);
            create = b.bind("cublasLtCreate", INT, PTR);
            destroy = b.bind("cublasLtDestroy", INT, HANDLE);
            getVersion = b.bind("cublasLtGetVersion", LONG);
            // (cublasLtMatmulDesc_t*, cublasComputeType_t, cudaDataType_t scaleType)
            descCreate = b.bind("cublasLtMatmulDescCreate", INT, PTR, INT, INT);
            descDestroy = b.bind("cublasLtMatmulDescDestroy", INT, HANDLE);
            // (desc, cublasLtMatmulDescAttributes_t, const void* buf, size_t sizeInBytes)
            descSetAttribute = b.bind("cublasLtMatmulDescSetAttribute", INT, HANDLE, INT, PTR, LONG);
            // (cublasLtMatrixLayout_t*, cudaDataType, uint64_t rows, uint64_t cols, int64_t ld)
            layoutCreate = b.bind("cublasLtMatrixLayoutCreate", INT, PTR, INT, LONG, LONG, LONG);
            layoutDestroy = b.bind("cublasLtMatrixLayoutDestroy", INT, HANDLE);
            // (cublasLtMatrixLayout_t, cublasLtMatrixLayoutAttribute_t, const void* buf, size_t sizeInBytes)
            layoutSetAttribute = b.bind("cublasLtMatrixLayoutSetAttribute", INT, HANDLE, INT, PTR, LONG);
            preferenceCreate = b.bind("cublasLtMatmulPreferenceCreate", INT, PTR);
            preferenceDestroy = b.bind("cublasLtMatmulPreferenceDestroy", INT, HANDLE);
            preferenceSetAttribute = b.bind("cublasLtMatmulPreferenceSetAttribute", INT, HANDLE, INT, PTR, LONG);
            // (handle, desc, Adesc, Bdesc, Cdesc, Ddesc, preference, int requested, results[], int* returned)
            heuristic = b.bind("cublasLtMatmulAlgoGetHeuristic", INT,
                    HANDLE, HANDLE, HANDLE, HANDLE, HANDLE, HANDLE, HANDLE, INT, PTR, PTR);
            // (handle, desc, alpha*, A, Adesc, B, Bdesc, beta*, C, Cdesc, D, Ddesc, algo*, workspace, size_t, stream)
            matmul = b.bind("cublasLtMatmul", INT,
                    HANDLE, HANDLE, PTR, HANDLE, HANDLE, HANDLE, HANDLE, PTR, HANDLE, HANDLE, HANDLE, HANDLE, PTR,
                    HANDLE, LONG, HANDLE);
            // (cublasLtMatmulAlgo_t*, attribute, const void* buf, size_t sizeInBytes)
            algoConfigSet = b.bind("cublasLtMatmulAlgoConfigSetAttribute", INT, PTR, INT, PTR, LONG);
            // (const cublasLtMatmulAlgo_t*, attribute, void* buf, size_t sizeInBytes, size_t* sizeWritten)
            algoConfigGet = b.bind("cublasLtMatmulAlgoConfigGetAttribute", INT, PTR, INT, PTR, LONG, PTR);
            algoCapGet = b.bind("cublasLtMatmulAlgoCapGetAttribute", INT, PTR, INT, PTR, LONG, PTR);
            // (handle, desc, Adesc, Bdesc, Cdesc, Ddesc, const algo*, cublasLtMatmulHeuristicResult_t* result)
            algoCheck = b.bind("cublasLtMatmulAlgoCheck", INT, HANDLE, HANDLE, HANDLE, HANDLE, HANDLE, HANDLE, PTR,
                    PTR);
        }
    }
}
