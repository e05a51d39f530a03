package io.based4j.cuda;

import io.based4j.config.MixerConfig;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Consumer;

/**
 * The kernel workbench: every numbered version of a kernel (and the library routine it competes with) run on the same
 * inputs at the shapes the models use, each checked against a float64 reference computed on the host and timed with
 * CUDA events, so that the version the backend runs is chosen by measurement. A kernel's versions live in its own
 * file (gemv: {@code gemv.cuh}, versions 1 to 3, beside the tensor-core product of a decode step's rows,
 * {@code gemm_rows.cuh}, in each of its splits; the decode step's attention: {@code attention_decode.cuh}, versions 1
 * to 5, and for a short window {@code attention_window_decode.cuh}, timed against the split version
 * {@link Kernels#decodeVersion} names followed by the append it saves; its linear attention:
 * {@code linear_attention_decode.cuh}, versions 1 to 4; a prompt's linear attention: the scan kernel,
 * {@code train_linear_scan.cuh}, and the chunk kernels, {@code train_linear_mma.cuh}, beside the causal flash
 * attention of the same shape); the backend runs the one its launcher names, marked "(used)": for the products
 * {@link Kernels#gemvVersion} where it beats the library ({@link Kernels#gemvPays}), gemmRows in the split
 * {@link Kernels#gemmRowsSplit} gives where it takes the rows ({@link Kernels#gemmRowsPays}), and the library
 * (cuBLASLt) elsewhere.
 *
 * <p>Timing: the mean of {@code reps} calls between two events on the backend's stream, after a warm-up call (and,
 * before the first kernel, {@value #WARM_UP_NANOS} ns of writes that bring the GPU's clocks up from idle). The
 * inputs of a memory-bound kernel are held in enough copies (at least {@value #COLD_BYTES} bytes in all, more than
 * the L2 cache) that the calls, which take the copies in turn, read them from device memory, as a decode step that
 * goes through all of a model's layers does.
 */
public final class KernelWorkbench {
    /** Kernels the workbench has versions of. */
    public static final List<String> KERNELS = List.of("gemv", "crossEntropy", "attentionDecode",
            "linearAttentionDecode", "linearAttentionPrefill", "addRmsNorm", "baseConvStep");
    /**
     * Bytes of input copies the timed calls go through at least (more than an H200's 50 MiB L2 cache): those that
     * cuBLASLt's cold timing writes to flush the L2 cache.
     */
    static final long COLD_BYTES = CublasLt.COLD_BYTES;

    /**
     * One version of a kernel at one shape: the mean milliseconds a call, the bytes a call must move at least over
     * that time (GB/s), and its largest error against the float64 reference with the bound it must keep.
     */
    public record Result(String kernel, String shape, String version, double millis, double gbPerSecond,
                         double error, double bound) {
        /** Whether the version's results are within the bound. */
        public boolean ok() {
            return error <= bound;
        }
    }

    /** A product shape of the decode step: {@code m} rows of x, {@code w [n, k]}. */
    record GemvShape(String name, int m, int n, int k) {
    }

    /**
     * based-1b's (d 1792) and based-360m's (d 1024) decode products at 1, 2, 8, 32, 64, 128 and 256 rows (a decode
     * step of as many sequences: the gemv kernels take at most 8 rows, gemmRows up to 128, gemmWg and cuBLAS any),
     * where the weights are still the bytes that count.
     */
    static final List<GemvShape> GEMV_SHAPES = gemvShapes();

    private static List<GemvShape> gemvShapes() {
        int[][] nk = {{7168, 1792}, {1792, 3584}, {5376, 1792}, {1792, 1792}, {50264, 1792}, {4096, 1024},
                {1024, 2048}};
        String[] names = {"1b mlp in", "1b mlp out", "1b qkv", "1b proj", "1b head", "360m mlp in", "360m mlp out"};
        List<GemvShape> shapes = new ArrayList<>();
        for (int m : new int[] {1, 2, 8, 32, 64, 128, 256}) {
            for (int i = 0; i < nk.length; i++) {
                shapes.add(new GemvShape(names[i], m, nk[i][0], nk[i][1]));
            }
        }
        return shapes;
    }

    private final CudaBackend gpu;
    private final CudaDriver cu;
    private final long stream;
    private final int reps;
    private final Consumer<String> note;
    private final List<Long> allocations = new ArrayList<>();

    private KernelWorkbench(CudaBackend gpu, int reps, Consumer<String> note) {
        this.gpu = gpu;
        this.cu = gpu.driver();
        this.stream = gpu.stream();
        this.reps = reps;
        this.note = note;
    }

    /**
     * Runs every version of {@code kernel} at its shapes on {@code gpu} (a bf16 backend), {@code reps} timed calls
     * each; {@code note} hears what is being run.
     *
     * @throws IllegalArgumentException for a kernel the workbench does not have or reps below 1
     */
    public static List<Result> run(CudaBackend gpu, String kernel, int reps, Consumer<String> note) {
        if (!KERNELS.contains(kernel)) {
            throw new IllegalArgumentException("no kernel '" + kernel + "' on the workbench (it has " + KERNELS + ")");
        }
        if (reps < 1) {
            throw new IllegalArgumentException("reps must be >= 1, got " + reps);
        }
        if (gpu.precision() != Precision.BF16) {
            throw new IllegalArgumentException("the workbench runs bf16 kernels: open the backend in bf16");
        }
        KernelWorkbench w = new KernelWorkbench(gpu, reps, note);
        try {
            w.warmUp();
            return switch (kernel) {
                case "gemv" -> w.gemv();
                case "crossEntropy" -> w.crossEntropy();
                case "attentionDecode" -> w.attentionDecode();
                case "linearAttentionDecode" -> w.linearAttentionDecode();
                case "addRmsNorm" -> w.addRmsNorm();
                case "baseConvStep" -> w.baseConvStep();
                default -> w.linearAttentionPrefill();
            };
        } finally {
            w.freeAll();
        }
    }

    // ------------------------------------------------------------------------------------------------ gemv

    private List<Result> gemv() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(7);
        Kernels kernels = gpu.kernels();
        Cublas blas = gpu.blas();
        for (GemvShape s : GEMV_SHAPES) {
            String shape = String.format(Locale.ROOT, "%s %dx%d . %dx%d", s.name(), s.m(), s.k(), s.k(), s.n());
            note.accept("gemv " + shape);
            try (Arena arena = Arena.ofConfined()) {
                long wValues = (long) s.n() * s.k();
                MemorySegment w = randomBf16(arena, wValues, r);
                MemorySegment x = randomBf16(arena, (long) s.m() * s.k(), r);
                double[] want = gemvReference(w, x, s, Math.min(s.m(), CHECKED_ROWS));
                long wBytes = 2 * wValues;
                int copies = (int) Math.max(1, (COLD_BYTES + wBytes - 1) / wBytes);
                long[] ws = new long[copies];
                for (int c = 0; c < copies; c++) {
                    ws[c] = upload(w, wBytes);
                }
                long xd = upload(x, 2L * s.m() * s.k());
                long outBytes = 2L * s.m() * s.n();
                long out = alloc(outBytes);
                double bytes = wBytes + 2.0 * s.m() * s.k() + outBytes;
                List<String> names = new ArrayList<>();
                List<java.util.function.IntConsumer> calls = new ArrayList<>();
                names.add("cublasGemmEx");
                calls.add(c -> blas.gemm(Cublas.OP_T, Cublas.OP_N, s.n(), s.m(), s.k(), 1f, ws[c], Cublas.R_16BF,
                        s.k(), xd, Cublas.R_16BF, s.k(), 0f, out, Cublas.R_16BF, s.n(), Cublas.COMPUTE_32F));
                boolean wgFits = kernels.wgmmaFits() && Kernels.gemmWgFits(s.m(), s.k(), xd, ws[0]);
                boolean wgUsed = wgFits && kernels.gemmWgPays(s.m());
                boolean rowsUsed = !wgUsed && Kernels.gemmRowsFits(s.m(), s.k(), xd, ws[0])
                        && kernels.gemmRowsPays(s.m(), s.n(), s.k());
                boolean gemvUsed = !wgUsed && !rowsUsed && s.m() <= Kernels.GEMV_MAX_ROWS && kernels.gemvPays(s.m(), s.n(), s.k());
                names.add("cublasLt" + (gemvUsed || rowsUsed || wgUsed ? "" : " (used)"));
                java.util.function.IntPredicate lt = c -> gpu.cublasLt().matmul(Cublas.OP_T, Cublas.OP_N, s.n(),
                        s.m(), s.k(), 1f, ws[c], Cublas.R_16BF, s.k(), xd, Cublas.R_16BF, s.k(), 0f, out,
                        Cublas.R_16BF, s.n(), Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0);
                calls.add(lt::test);
                boolean streamed = s.m() <= Kernels.GEMV_FUSED_MAX_ROWS && gemvStreamed(kernels, s);
                for (int v = 1; v <= Kernels.GEMV_VERSIONS && s.m() <= Kernels.GEMV_MAX_ROWS; v++) {
                    int version = v;
                    boolean used = v == kernels.gemvVersion() && gemvUsed && (v != 3 || !streamed);
                    names.add("v" + v + (used ? " (used)" : ""));
                    // version 3 on a block each, not streamed (the rows after it stream it)
                    calls.add(c -> kernels.gemv(version, Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(), s.k(),
                            Integer.MAX_VALUE));
                }
                if (s.m() <= Kernels.GEMV_FUSED_MAX_ROWS && kernels.multiprocessors() > 0) {
                    int blocks = Kernels.gemv3Blocks(Precision.BF16, s.m(), s.n(), s.k());
                    for (int b = 1; b <= Kernels.GEMV_STREAM_MAX_BLOCKS; b++) {
                        int grid = b * kernels.multiprocessors();
                        if (grid >= blocks) {
                            break;  // a block each: version 3's row above
                        }
                        boolean used = gemvUsed && kernels.gemvVersion() == 3 && streamed
                                && b == kernels.gemvStreamBlocks();
                        names.add("v3 streamed " + b + "/SM" + (used ? " (used)" : ""));
                        calls.add(c -> kernels.gemvStream(Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(),
                                s.k(), grid));
                    }
                }
                if (Kernels.gemmRowsFits(s.m(), s.k(), xd, ws[0])) {
                    for (int split : Kernels.GEMM_ROWS_SPLITS) {
                        if (split > 1 && !kernels.clustersFit()) {
                            continue;
                        }
                        boolean used = rowsUsed && split == kernels.gemmRowsSplit(s.n(), s.k());
                        names.add("rows s" + split + (used ? " (used)" : ""));
                        calls.add(c -> kernels.gemmRows(split, Precision.BF16, xd, ws[c], 0, out, false, s.m(),
                                s.n(), s.k()));
                    }
                }
                int wgAsked = kernels.gemmWgVersion();  // the backend's own settings, given back after
                int promotionAsked = kernels.gemmTmaPromotion();
                if (wgFits) {
                    // version 1 ("wg"), then version 2 ("wg2", tensor copies) where the driver makes tensor maps
                    int chosen = kernels.gemmWgSplit(s.m(), s.n(), s.k());
                    int versions = cu.tensorMaps() ? Kernels.GEMM_WG_VERSIONS : 1;
                    for (int version = 1; version <= versions; version++) {
                        int v = version;
                        for (int split : Kernels.GEMM_WG_SPLITS) {
                            boolean used = wgUsed && split == chosen && v == wgAsked;
                            names.add((v == 1 ? "wg s" : "wg2 s") + split + (used ? " (used)" : ""));
                            calls.add(c -> {
                                kernels.gemmWgVersion(v);
                                kernels.gemmWg(split, Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(), s.k());
                            });
                        }
                    }
                    if (versions == 2) {
                        // version 2 at its split with each other L2 promotion of its tensor copies
                        for (int promotion = 0; promotion < Kernels.GEMM_TMA_PROMOTIONS.size(); promotion++) {
                            if (promotion == promotionAsked) {
                                continue;
                            }
                            int l2 = promotion;
                            names.add("wg2 s" + chosen + " L2 " + Kernels.GEMM_TMA_PROMOTIONS.get(l2));
                            calls.add(c -> {
                                kernels.gemmWgVersion(2);
                                kernels.gemmTmaPromotion(l2);
                                try {
                                    kernels.gemmWg(chosen, Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(),
                                            s.k());
                                } finally {
                                    kernels.gemmTmaPromotion(promotionAsked);
                                }
                            });
                        }
                    }
                }
                try {
                    for (int i = 0; i < names.size(); i++) {
                        java.util.function.IntConsumer call = calls.get(i);
                        cu.memsetD8Async(out, 0, outBytes, stream);
                        call.accept(0);
                        double error = maxError(download(arena, out, outBytes), want);
                        double ms = time(copies, call);
                        results.add(new Result("gemv", shape, names.get(i), ms, bytes / (ms * 1e-3) / 1e9, error,
                                GEMV_BOUND));
                    }
                    results.addAll(cublasLtAnswers(arena, s, shape, lt, out, outBytes, copies, bytes, want));
                    if (s.m() >= LT_BATCHED_FROM_ROWS && s.n() <= LT_BATCHED_MAX_OUTPUTS) {
                        results.addAll(cublasLtSplitBatched(arena, s, shape, xd, ws, copies, want));
                    }
                    if (wgFits && cu.tensorMaps() && s.name().endsWith("mlp in")) {
                        results.addAll(gemmTmaSwiglu(arena, s, shape, xd, ws, out, copies, want));
                    }
                } finally {
                    kernels.gemmWgVersion(wgAsked);
                }
            }
            freeAll();
        }
        return results;
    }

    /** The split-k forms each of cuBLASLt's answers is tried in (1: as the heuristic gave it). */
    private static final int[] LT_SPLITS = {1, 2, 3, 4, 6, 8};

    /**
     * The product through each algorithm of cuBLASLt's heuristic's answer in turn (the row "cublasLt" takes its
     * first that fits), each checked and timed on cold weights as the other rows: whether another of its answers
     * beats its first at this shape. {@code lt} runs the product on weight copy c (false: no plan for it).
     */
    private List<Result> cublasLtAnswers(Arena arena, GemvShape s, String shape, java.util.function.IntPredicate lt,
                                         long out, long outBytes, int copies, double bytes, double[] want) {
        List<Result> results = new ArrayList<>();
        CublasLt plans = gpu.cublasLt();
        try {
            for (int i = 0; ; i++) {
                int answers = 0;
                for (int split : LT_SPLITS) {
                    plans.forceAlgorithm(i, split);
                    cu.memsetD8Async(out, 0, outBytes, stream);
                    boolean ran = lt.test(0);
                    answers = plans.lastAnswerCount();
                    if (ran) {
                        String what = plans.forcedDescription();
                        double error = maxError(download(arena, out, outBytes), want);
                        double ms = time(copies, lt::test);
                        results.add(new Result("gemv", shape, "cublasLt answer " + i + " of " + answers
                                + (split == 1 ? "" : " split " + split) + " (" + what + ")", ms,
                                bytes / (ms * 1e-3) / 1e9, error, GEMV_BOUND));
                    } else if (split == 1) {
                        break;  // the answer itself does not run: none of its splits will
                    }
                }
                if (i + 1 >= answers) {
                    return results;
                }
            }
        } finally {
            plans.forceAlgorithm(-1);
        }
    }

    /** The rows of x from which the product split along k into a batch of partial sums is tried. */
    static final int LT_BATCHED_FROM_ROWS = 64;
    /** The widest output the batched form is tried for (a decode step's products, not the head). */
    static final int LT_BATCHED_MAX_OUTPUTS = 8192;
    /** How many parts along k the batched form splits a product into (where k divides into 16-byte parts). */
    private static final int[] LT_BATCHED_SPLITS = {2, 4, 7, 8};

    /**
     * The product split along k into S parts made as one strided batch of cuBLASLt products (the i-th on the i-th
     * k-th of W's rows and of x's), each writing its float32 partial sums to a slab of its own, through each
     * algorithm of the heuristic's answer in turn: what the product itself costs where its S partial sums are added
     * by the op after it (the residual's add and the next norm), with no split-k reduction of cuBLASLt's. Checked by
     * summing the slabs on the host; the bytes counted are the weights, x and the float32 slabs written.
     */
    private List<Result> cublasLtSplitBatched(Arena arena, GemvShape s, String shape, long xd, long[] ws, int copies,
                                              double[] want) {
        List<Result> results = new ArrayList<>();
        CublasLt plans = gpu.cublasLt();
        long slab = (long) s.m() * s.n();
        for (int split : LT_BATCHED_SPLITS) {
            if (s.k() % split != 0 || (s.k() / split) % 8 != 0) {
                continue;
            }
            int part = s.k() / split;
            long partials = alloc(4 * slab * split);
            double bytes = 2.0 * s.n() * s.k() + 2.0 * s.m() * s.k() + 4.0 * slab * split;
            java.util.function.IntPredicate lt = c -> plans.matmulBatched(Cublas.OP_T, Cublas.OP_N, s.n(), s.m(), part,
                    1f, ws[c], Cublas.R_16BF, s.k(), part, xd, Cublas.R_16BF, s.k(), part, 0f, partials, Cublas.R_32F,
                    s.n(), slab, split, Cublas.COMPUTE_32F);
            try {
                for (int i = 0; ; i++) {
                    plans.forceAlgorithm(i);
                    cu.memsetD8Async(partials, 0, 4 * slab * split, stream);
                    boolean ran = lt.test(0);
                    int answers = plans.lastAnswerCount();
                    if (ran) {
                        String what = plans.forcedDescription();
                        double error = summedError(arena, partials, split, slab, want);
                        double ms = time(copies, lt::test);
                        results.add(new Result("gemv", shape, "cublasLt k in " + split + " batched, float32 partials,"
                                + " answer " + i + " of " + answers + " (" + what + ")", ms, bytes / (ms * 1e-3) / 1e9,
                                error, GEMV_BOUND));
                    }
                    if (i + 1 >= answers) {
                        break;
                    }
                }
            } finally {
                plans.forceAlgorithm(-1);
            }
        }
        return results;
    }

    /**
     * The largest |sum - want| over the largest |want|, the sum in float64 of {@code split} float32 slabs of
     * {@code slab} values each at {@code partials} on the device (their first {@code want.length}).
     */
    private double summedError(Arena arena, long partials, int split, long slab, double[] want) {
        MemorySegment[] slabs = new MemorySegment[split];
        for (int p = 0; p < split; p++) {
            slabs[p] = download(arena, partials + 4 * slab * p, 4L * want.length);
        }
        return relativeError(want.length, i -> {
            double sum = 0;
            for (int p = 0; p < split; p++) {
                sum += slabs[p].getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i);
            }
            return sum;
        }, i -> want[i]);
    }

    /**
     * An MLP in-projection's product and its SwiGLU with gemmWg's version 2 at its split: the two ops apart (the
     * product into {@code out}, then swiglu) and in one kernel (gemmTmaSwiglu), each timed on cold weights; the one
     * kernel's output is checked against the two ops' bit for bit (error 0 where every bit agrees, else the share of
     * outputs that differ), the two ops' against y silu(g) in float64 from {@code product}, the product's float64
     * reference (its first rows), within {@link #SWIGLU_BOUND}.
     */
    private List<Result> gemmTmaSwiglu(Arena arena, GemvShape s, String shape, long xd, long[] ws, long out,
                                       int copies, double[] product) {
        Kernels kernels = gpu.kernels();
        int h = s.n() / 2;
        int split = kernels.gemmWgSplit(s.m(), s.n(), s.k());
        long pairBytes = 2L * s.m() * h;
        long apart = alloc(pairBytes);
        long fused = alloc(pairBytes);
        kernels.gemmWgVersion(2);
        java.util.function.IntConsumer twoOps = c -> {
            kernels.gemmWg(split, Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(), s.k());
            kernels.swiglu(Precision.BF16, out, apart, s.m(), h);
        };
        java.util.function.IntConsumer oneKernel = c -> kernels.gemmTmaSwiglu(split, Precision.BF16, xd, ws[c], fused,
                s.m(), h, s.k());
        twoOps.accept(0);
        oneKernel.accept(0);
        MemorySegment a = download(arena, apart, pairBytes);
        MemorySegment f = download(arena, fused, pairBytes);
        long differ = 0;
        for (long i = 0; i < pairBytes / 2; i++) {
            if (a.getAtIndex(ValueLayout.JAVA_SHORT, i) != f.getAtIndex(ValueLayout.JAVA_SHORT, i)) {
                differ++;
            }
        }
        double error = (double) differ / (pairBytes / 2);
        int checked = product.length / s.n();
        double[] want = new double[checked * h];
        for (int m = 0; m < checked; m++) {
            for (int j = 0; j < h; j++) {
                double g = product[m * s.n() + h + j];
                want[m * h + j] = product[m * s.n() + j] * g / (1 + Math.exp(-g));
            }
        }
        double apartError = maxError(a, want);
        double bytes = 2.0 * s.n() * s.k() + 2.0 * s.m() * s.k() + pairBytes;
        double msApart = time(copies, twoOps);
        double msFused = time(copies, oneKernel);
        return List.of(
                new Result("gemv", shape, "wg2 s" + split + " + swiglu (two kernels)", msApart,
                        bytes / (msApart * 1e-3) / 1e9, apartError, SWIGLU_BOUND),
                new Result("gemv", shape, "wg2 s" + split + " swiglu in one kernel", msFused,
                        bytes / (msFused * 1e-3) / 1e9, error, 0));
    }

    /** Whether {@link Kernels#gemv} streams version 3 for this shape: streaming on and more blocks than it keeps. */
    private static boolean gemvStreamed(Kernels kernels, GemvShape s) {
        int blocks = Kernels.gemv3Blocks(Precision.BF16, s.m(), s.n(), s.k());
        return kernels.gemvStreamGrid(blocks) < blocks;
    }

    /**
     * Largest error allowed against the float64 product, relative to the largest output: the result is rounded to
     * bf16 once (2^-8 of a value at most: 8 significant bits), after float32 sums whose own error at these widths
     * (k 2^-24 of the sum of |x w| at most, k up to 3584; about sqrt(k) times the output for random signs) stays
     * below 2^-12 of it.
     */
    static final double GEMV_BOUND = 0x1p-8 + 0x1p-12;
    /**
     * Largest error of y silu(g) against float64, relative to the largest output: three bf16 roundings (y, g and the
     * result, 2^-9 of a value each), silu passing g's on at most 1.1 times (silu'(g) g <= 1.1 silu(g) for g >= 0, and
     * for g < 0 its output is small against the largest): some 3.1 times 2^-9, within 2^-7, besides the sums' 2^-12.
     */
    static final double SWIGLU_BOUND = 0x1p-7 + 0x1p-12;

    /** Rows of a product checked against float64 (the first ones; the rest are the same kernel's work). */
    static final int CHECKED_ROWS = 8;

    /** {@code x w^T} in float64 from the bf16 inputs: its first {@code m} rows. */
    private static double[] gemvReference(MemorySegment w, MemorySegment x, GemvShape s, int m) {
        int n = s.n();
        int k = s.k();
        float[] xf = new float[m * k];
        for (int i = 0; i < xf.length; i++) {
            xf[i] = Tensor.bf16ToFloat(x.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i));
        }
        double[] y = new double[m * n];
        float[] row = new float[k];
        for (int j = 0; j < n; j++) {
            for (int t = 0; t < k; t++) {
                row[t] = Tensor.bf16ToFloat(w.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) j * k + t));
            }
            for (int i = 0; i < m; i++) {
                double sum = 0;
                for (int t = 0; t < k; t++) {
                    sum += (double) row[t] * xf[i * k + t];
                }
                y[i * n + j] = sum;
            }
        }
        return y;
    }

    // ------------------------------------------------------------------------------------------------ addRmsNorm

    /** A decode step's residual add and RMSNorm: {@code n} rows (sequences) of width {@code d}. */
    record NormShape(String name, int n, int d) {
    }

    /** based-1b's (d 1792) at batches 1, 128 and 1,024, based-360m's (d 1024) at 1, 8 and 128. */
    static final List<NormShape> NORM_SHAPES = List.of(new NormShape("1b", 1, 1792), new NormShape("1b", 128, 1792),
            new NormShape("1b", 1024, 1792), new NormShape("360m", 1, 1024), new NormShape("360m", 8, 1024),
            new NormShape("360m", 128, 1024));

    /**
     * Largest error of the normed rows against float64, relative to the largest output: one rounding to bf16 (2^-8
     * of a value at most) after float32 sums of at most 1,792 squares (below 2^-12 of the scale).
     */
    static final double NORM_BOUND = 0x1p-8 + 0x1p-12;

    /**
     * The residual add and RMSNorm of a decode step ({@link Kernels#addRmsNorm}): version 1 (a block a row, a value
     * a thread at a time), version 2 (its vector form, 8 values a thread) and the row kernel of prompts (a warp a row,
     * {@link TrainKernels#addRmsNormRows}), "(used)" where the backend takes it at that many rows. The residual and
     * the branch are read from copies in turn (more bytes than the L2 cache), the residual's sums checked bit for bit
     * against the float32 add and the normed rows against float64.
     */
    private List<Result> addRmsNorm() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(11);
        Kernels kernels = gpu.kernels();
        TrainKernels train = gpu.trainKernels();
        float eps = 1e-5f;
        for (NormShape s : NORM_SHAPES) {
            int n = s.n();
            int d = s.d();
            String shape = String.format(Locale.ROOT, "%s %dx%d", s.name(), n, d);
            note.accept("addRmsNorm " + shape);
            try (Arena arena = Arena.ofConfined()) {
                long values = (long) n * d;
                long bytesPerCopy = 4 * values + 2 * values;
                int copies = (int) Math.max(1, (COLD_BYTES + bytesPerCopy - 1) / bytesPerCopy);
                MemorySegment res = arena.allocate(4 * values, 16);
                for (long i = 0; i < values; i++) {
                    res.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, (float) r.nextGaussian());
                }
                MemorySegment br = randomBf16(arena, values, r);
                MemorySegment wt = arena.allocate(2L * d, 16);
                for (int i = 0; i < d; i++) {
                    wt.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Tensor.floatToBf16((float) r.nextDouble(0.6, 1.4)));
                }
                long resAll = alloc(4 * values * copies);
                long brAll = alloc(2 * values * copies);
                for (int c = 0; c < copies; c++) {
                    cu.copyHtoD(resAll + 4 * values * c, res, 4 * values);
                    cu.copyHtoD(brAll + 2 * values * c, br, 2 * values);
                }
                long wd = upload(wt, 2L * d);
                long out = alloc(2 * values);
                long fresh = upload(res, 4 * values);
                long residual = alloc(4 * values);
                float[] sums = new float[(int) values];
                double[] want = new double[(int) values];
                for (int row = 0; row < n; row++) {
                    double ss = 0;
                    for (int j = 0; j < d; j++) {
                        int i = row * d + j;
                        sums[i] = res.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i)
                                + Tensor.bf16ToFloat(br.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i));
                        ss += (double) sums[i] * sums[i];
                    }
                    double rstd = 1 / Math.sqrt(ss / d + eps);
                    for (int j = 0; j < d; j++) {
                        want[row * d + j] = sums[row * d + j] * rstd
                                * Tensor.bf16ToFloat(wt.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, j));
                    }
                }
                boolean vecFits = Kernels.addRmsNormVecFits(Precision.BF16, d, resAll, brAll, wd, out);
                boolean oneKernel = n <= gpu.fusedNormRows();
                List<String> names = new ArrayList<>();
                List<java.util.function.IntConsumer> calls = new ArrayList<>();
                names.add("v1 (block a row)" + (oneKernel && !(vecFits && kernels.normVec()) ? " (used)" : ""));
                calls.add(c -> kernels.addRmsNorm(1, Precision.BF16, resAll + 4 * values * c, brAll + 2 * values * c,
                        wd, out, n, d, eps));
                if (vecFits) {
                    names.add("v2 (vector)" + (oneKernel && kernels.normVec() ? " (used)" : ""));
                    calls.add(c -> kernels.addRmsNorm(2, Precision.BF16, resAll + 4 * values * c,
                            brAll + 2 * values * c, wd, out, n, d, eps));
                }
                if (TrainKernels.rmsNormByRows(Precision.BF16, d, resAll, brAll, wd, out)) {
                    names.add("rows (warp a row)" + (oneKernel ? "" : " (used)"));
                    calls.add(c -> train.addRmsNormRows(Precision.BF16, resAll + 4 * values * c,
                            brAll + 2 * values * c, wd, out, n, d, eps));
                }
                double bytes = 4.0 * values * 2 + 2.0 * values * 2 + 2.0 * d;
                for (int i = 0; i < names.size(); i++) {
                    java.util.function.IntConsumer call = calls.get(i);
                    // one call on a fresh residual (copy 0 put back first), checked
                    cu.copyDtoDAsync(resAll, fresh, 4 * values, stream);
                    cu.memsetD8Async(out, 0, 2 * values, stream);
                    call.accept(0);
                    cu.copyDtoDAsync(residual, resAll, 4 * values, stream);
                    float[] gotSums = floats(arena, residual, values);
                    double error = maxError(download(arena, out, 2 * values), want);
                    if (!java.util.Arrays.equals(gotSums, sums)) {
                        error = Double.POSITIVE_INFINITY;  // the residual's sums are the float32 adds, exactly
                    }
                    double ms = time(copies, call);
                    results.add(new Result("addRmsNorm", shape, names.get(i), ms, bytes / (ms * 1e-3) / 1e9, error,
                            NORM_BOUND));
                }
            }
            freeAll();
        }
        return results;
    }

    // ------------------------------------------------------------------------------------------------ baseConvStep

    /** BaseConv's decode step at {@code b} sequences: u [b, 2 inner] (the in-projection's), a kernel of k taps. */
    record ConvShape(String name, int b, int inner, int k) {
    }

    /** based-1b's (inner 3,584) at batches 1, 128 and 1,024, based-360m's (inner 2,048) at 1 and 128; 3 taps. */
    static final List<ConvShape> CONV_SHAPES = List.of(new ConvShape("1b", 1, 3584, 3), new ConvShape("1b", 128, 3584, 3),
            new ConvShape("1b", 1024, 3584, 3), new ConvShape("360m", 1, 2048, 3), new ConvShape("360m", 128, 2048, 3));

    /**
     * Largest error of the step's outputs against float64, relative to the largest output: one rounding to bf16 (8
     * significant bits: 2^-8 of a value at most) after float32 sums of 3 products and the float32 SiLU (some 2^-22 of
     * the scale).
     */
    static final double CONV_BOUND = 0x1p-8 + 0x1p-16;

    /**
     * BaseConv's decode step ({@link Kernels#baseConvStep}): version 1 (a channel a thread), version 2 (8 channels a
     * thread for any count of taps) and version 3 (8 a thread, a kernel per count of taps), "(used)" where the backend
     * takes it. u and the history are read from copies in turn (more bytes than the L2 cache); the outputs checked
     * against float64, and bit for bit against version 1's (the same float operations in the same order), and the
     * history, shifted by one token, bit for bit (an error of infinity otherwise).
     */
    private List<Result> baseConvStep() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(13);
        Kernels kernels = gpu.kernels();
        for (ConvShape s : CONV_SHAPES) {
            int b = s.b();
            int inner = s.inner();
            int k = s.k();
            int taps = k - 1;
            String shape = String.format(Locale.ROOT, "%s %dx%d, %d taps", s.name(), b, inner, k);
            note.accept("baseConvStep " + shape);
            try (Arena arena = Arena.ofConfined()) {
                long uValues = 2L * b * inner;
                long hValues = (long) b * taps * inner;
                long bytesPerCopy = 2 * uValues + 2 * hValues;
                int copies = (int) Math.max(1, (COLD_BYTES + bytesPerCopy - 1) / bytesPerCopy);
                MemorySegment u = randomBf16(arena, uValues, r);
                MemorySegment hist = randomBf16(arena, hValues, r);
                MemorySegment convW = randomBf16(arena, (long) inner * k, r);
                long uAll = alloc(2 * uValues * copies);
                long hAll = alloc(2 * hValues * copies);
                for (int c = 0; c < copies; c++) {
                    cu.copyHtoD(uAll + 2 * uValues * c, u, 2 * uValues);
                    cu.copyHtoD(hAll + 2 * hValues * c, hist, 2 * hValues);
                }
                long wd = upload(convW, 2L * inner * k);
                long fresh = upload(hist, 2 * hValues);
                long out = alloc(2L * b * inner);
                long layoutD = uploadLayout(arena, filledInts(b, 100));
                double[] want = new double[b * inner];
                short[] shifted = new short[(int) hValues];
                for (int q = 0; q < b; q++) {
                    for (int c = 0; c < inner; c++) {
                        double acc = 0;
                        for (int j = 0; j < k; j++) {
                            short x = j < taps ? hist.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED,
                                    ((long) q * taps + j) * inner + c)
                                    : u.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) q * 2 * inner + c);
                            acc += (double) Tensor.bf16ToFloat(convW.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED,
                                    (long) c * k + j)) * Tensor.bf16ToFloat(x);
                        }
                        double gate = Tensor.bf16ToFloat(u.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED,
                                (long) q * 2 * inner + inner + c));
                        want[q * inner + c] = gate * acc / (1 + Math.exp(-acc));
                        for (int j = 0; j < taps; j++) {
                            shifted[(q * taps + j) * inner + c] = j + 1 < taps
                                    ? hist.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, ((long) q * taps + j + 1) * inner + c)
                                    : u.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, (long) q * 2 * inner + c);
                        }
                    }
                }
                boolean vec = Kernels.convStepVec(inner, k, uAll, wd, hAll, out);
                List<String> names = new ArrayList<>();
                List<Integer> versions = new ArrayList<>();
                names.add("v1 (channel a thread)" + (vec ? "" : " (used)"));
                versions.add(1);
                if (vec) {
                    names.add("v2 (8 channels, any taps)");
                    versions.add(2);
                    names.add("v3 (8 channels, a kernel per taps) (used)");
                    versions.add(3);
                }
                double bytes = 2.0 * uValues + 4.0 * hValues + 2.0 * b * inner + 2.0 * inner * k;
                short[] first = null;  // version 1's outputs
                for (int i = 0; i < names.size(); i++) {
                    int version = versions.get(i);
                    java.util.function.IntConsumer call = c -> kernels.baseConvStep(version, Precision.BF16,
                            uAll + 2 * uValues * c, wd, hAll + 2 * hValues * c, layoutD, out, b, inner, k);
                    // one call on a fresh history (copy 0 put back first), checked
                    cu.copyDtoDAsync(hAll, fresh, 2 * hValues, stream);
                    cu.memsetD8Async(out, 0, 2L * b * inner, stream);
                    call.accept(0);
                    MemorySegment got = download(arena, out, 2L * b * inner);
                    double error = maxError(got, want);
                    short[] gotOut = got.toArray(ValueLayout.JAVA_SHORT);
                    if (first == null) {
                        first = gotOut;
                    } else if (!java.util.Arrays.equals(gotOut, first)) {
                        error = Double.POSITIVE_INFINITY;  // every version's outputs are version 1's, bit for bit
                    }
                    short[] gotHist = download(arena, hAll, 2 * hValues).toArray(ValueLayout.JAVA_SHORT);
                    if (!java.util.Arrays.equals(gotHist, shifted)) {
                        error = Double.POSITIVE_INFINITY;  // the history moves by one token, bit for bit
                    }
                    double ms = time(copies, call);
                    results.add(new Result("baseConvStep", shape, names.get(i), ms, bytes / (ms * 1e-3) / 1e9, error,
                            CONV_BOUND));
                }
            }
            freeAll();
        }
        return results;
    }

    // ------------------------------------------------------------------------------------------------ crossEntropy

    /** A loss shape: {@code n} scored rows of width {@code d}, a vocabulary of {@code vocab}. */
    record LossShape(String name, int n, int d, int vocab) {
    }

    /** The MQAR models' losses (a quarter of 16,384 and 65,536 tokens scored; widths 64 and 128) and based-360m's. */
    static final List<LossShape> LOSS_SHAPES = List.of(new LossShape("mqar 16k tokens", 4096, 128, 8192),
            new LossShape("mqar 64k tokens", 16384, 128, 8192), new LossShape("mqar d 64", 16384, 64, 8192),
            new LossShape("360m", 16384, 1024, 50264));

    /**
     * Allowance of the loss's versions against version 1: the gradients normwise within 2e-2 (each version rounds
     * the softmax, or its gradient, to bf16 before its products, 2^-8 relatively, as version 1 does in its own
     * order), the loss sum within 2^-8 relatively (version 3 rounds each logit to bf16 first, 2^-9 of it).
     */
    static final double LOSS_BOUND = 2e-2;

    /**
     * The fused head and loss with its gradients: version 1, cuBLAS products with float32 logits and a bf16 gradient
     * beside them ({@link TrainKernels#crossEntropy}); version 2, the tensor-core kernels without logits in memory
     * ({@link TrainKernels#crossEntropyMma}, widths up to 128); version 3, cuBLAS products with bf16 logits that the
     * gradient is written over. Checked against version 1 (which CrossEntropyKernelTest holds to float64).
     */
    private List<Result> crossEntropy() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(9);
        TrainKernels train = gpu.trainKernels();
        for (LossShape s : LOSS_SHAPES) {
            int n = s.n();
            int d = s.d();
            int vocab = s.vocab();
            String shape = String.format(Locale.ROOT, "%s %dx%d, vocab %d", s.name(), n, d, vocab);
            note.accept("crossEntropy " + shape);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment x = gaussianBf16(arena, (long) n * d, 1, r);
                MemorySegment head = gaussianBf16(arena, (long) vocab * d, 2 / Math.sqrt(d), r);
                MemorySegment targets = arena.allocate(4L * n, 16);
                for (int i = 0; i < n; i++) {
                    targets.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i, r.nextInt(vocab));
                }
                long xd = upload(x, 2L * n * d);
                long hd = upload(head, 2L * vocab * d);
                long td = upload(targets, 4L * n);
                long dx = alloc(4L * n * d);
                long dhead = alloc(4L * vocab * d);
                long loss = alloc(8);
                int chunk = CudaBackend.lossChunk(n, vocab);
                long scratch = alloc(Math.max(TrainKernels.crossEntropyScratchBytes(Precision.BF16, n, chunk, vocab),
                        TrainKernels.crossEntropyMmaScratchBytes(n, d, vocab)));
                float scale = 1f / n;
                double bytes = 2.0 * n * d + 2.0 * vocab * d + 4.0 * n * d + 4.0 * vocab * d;
                List<String> names = new ArrayList<>();
                List<Runnable> calls = new ArrayList<>();
                names.add("v1 (f32 logits)");
                calls.add(() -> train.crossEntropy(Precision.BF16, xd, hd, n, d, vocab, td, scale, dx, dhead, 0, loss,
                        scratch, chunk, false));
                if (TrainKernels.crossEntropyMmaFits(Precision.BF16, d, vocab)) {
                    names.add("v2 (tensor cores)");
                    calls.add(() -> train.crossEntropyMma(xd, hd, n, d, vocab, td, scale, dx, dhead, loss, scratch));
                }
                names.add("v3 (bf16 logits)");
                calls.add(() -> train.crossEntropy(Precision.BF16, xd, hd, n, d, vocab, td, scale, dx, dhead, 0, loss,
                        scratch, chunk, true));
                float[][] want = null;
                for (int i = 0; i < names.size(); i++) {
                    Runnable call = calls.get(i);
                    cu.memsetD8Async(dx, 0, 4L * n * d, stream);
                    cu.memsetD8Async(dhead, 0, 4L * vocab * d, stream);
                    cu.memsetD8Async(loss, 0, 8, stream);
                    call.run();
                    float[][] got = {floats(arena, dx, (long) n * d), floats(arena, dhead, (long) vocab * d),
                            {(float) download(arena, loss, 8).get(ValueLayout.JAVA_DOUBLE_UNALIGNED, 0)}};
                    if (want == null) {
                        want = got;
                    }
                    double error = Math.max(Math.max(normwise(got[0], want[0]), normwise(got[1], want[1])),
                            Math.abs(got[2][0] - want[2][0]) / Math.abs(want[2][0]) * (LOSS_BOUND / 0x1p-8));
                    double ms = time(1, c -> call.run());
                    results.add(new Result("crossEntropy", shape, names.get(i), ms, bytes / (ms * 1e-3) / 1e9,
                            error, LOSS_BOUND));
                }
            }
            freeAll();
        }
        return results;
    }

    /** max |got - want| over max |want|. */
    private static double normwise(float[] got, float[] want) {
        return relativeError(want.length, i -> got[i], i -> want[i]);
    }

    private float[] floats(Arena arena, long ptr, long count) {
        return download(arena, ptr, 4 * count).toArray(ValueLayout.JAVA_FLOAT);
    }

    /** bf16 values of a normal distribution of standard deviation sd. */
    private static MemorySegment gaussianBf16(Arena arena, long count, double sd, SplittableRandom r) {
        MemorySegment seg = arena.allocate(2 * count, 16);
        for (long i = 0; i < count; i++) {
            double u = r.nextDouble();
            double v = r.nextDouble();
            double g = Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
            seg.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Tensor.floatToBf16((float) (sd * g)));
        }
        return seg;
    }

    // ------------------------------------------------------------------------------------------------ attentionDecode

    /**
     * A decode step's attention: {@code batch} sequences at position {@code pos} (each sees keys
     * {@code max(0, pos - window) ..= pos}), {@code heads} heads of {@code dh}, a cache of {@code capacity} rows a
     * sequence (a ring of the window where the window is smaller).
     */
    record DecodeShape(String name, int batch, int heads, int dh, int pos, int window, int capacity) {
        int keysSeen() {
            return Math.min(pos, window) + 1;
        }
    }

    /**
     * attn-1b's full attention after 1,536 tokens at batches 128 and 1 (its cache reserved for 2,048), attn-360m's
     * at 2,000 tokens and batch 64, and based-1b's sliding window (64 keys back, a ring of 64) at batch 128 and 1,024.
     */
    static final List<DecodeShape> DECODE_SHAPES = List.of(
            new DecodeShape("attn-1b b128 ctx 1536", 128, 16, 112, 1536, Integer.MAX_VALUE, 2048),
            new DecodeShape("attn-1b b1 ctx 1536", 1, 16, 112, 1536, Integer.MAX_VALUE, 2048),
            new DecodeShape("attn-360m b64 ctx 2000", 64, 16, 64, 2000, Integer.MAX_VALUE, 2048),
            new DecodeShape("based-1b window b128", 128, 16, 112, 1536, 64, 64),
            new DecodeShape("based-1b window b1024", 1024, 16, 112, 1536, 64, 64));

    /** Values of the random block the caches repeat (16 MiB of bf16). */
    private static final int DECODE_BLOCK = 8 << 20;

    /**
     * Every version of the decode step's attention (with its merge) on caches filled by repeating a random block each
     * (in enough copies that the timed calls read them from device memory), checked against a float64 softmax over
     * the same bf16 values: one rounding of the output to bf16 (2^-8 of the largest output at most) and float32 sums
     * whose error is far below it, the bound of {@link #GEMV_BOUND}. Without rotary positions (the query's rotation,
     * dh values a block, is not part of what is compared).
     */
    private List<Result> attentionDecode() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(11);
        Kernels kernels = gpu.kernels();
        for (DecodeShape s : DECODE_SHAPES) {
            int b = s.batch();
            int h = s.heads();
            int dh = s.dh();
            long d = (long) h * dh;
            String shape = String.format(Locale.ROOT, "%s (H %d, dh %d)", s.name(), h, dh);
            note.accept("attentionDecode " + shape);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment keyBlock = randomBf16(arena, DECODE_BLOCK, r);
                MemorySegment valueBlock = randomBf16(arena, DECODE_BLOCK, r);
                long cacheValues = b * (long) s.capacity() * d;
                // copies of the caches enough that the timed calls read them from device memory
                int copies = (int) Math.max(1, (COLD_BYTES + 4 * cacheValues - 1) / (4 * cacheValues));
                long[] keys = new long[copies];
                long[] values = new long[copies];
                for (int c = 0; c < copies; c++) {
                    keys[c] = filled(keyBlock, cacheValues);
                    values[c] = filled(valueBlock, cacheValues);
                }
                MemorySegment qkv = randomBf16(arena, 3 * b * d, r);
                long qkvD = upload(qkv, 2 * 3 * b * d);
                int[] slots = new int[b];
                int[] positions = new int[b];
                int[] lengths = new int[b];
                for (int i = 0; i < b; i++) {
                    slots[i] = i;
                    positions[i] = s.pos();
                    lengths[i] = 1;
                }
                int[] layout = CudaBackend.layoutOf(new io.based4j.backend.TokenBatch(slots, positions, lengths));
                MemorySegment layoutHost = arena.allocate(4L * layout.length, 16);
                MemorySegment.copy(layout, 0, layoutHost, ValueLayout.JAVA_INT_UNALIGNED, 0, layout.length);
                long layoutD = upload(layoutHost, 4L * layout.length);
                int splits = Kernels.decodeSplitCount(s.keysSeen());
                long partial = alloc(4L * b * h * splits * (2 + dh));
                long outBytes = 2 * b * d;
                long out = alloc(outBytes);
                float scale = (float) (1 / Math.sqrt(dh));
                double[] want = decodeReference(keyBlock, valueBlock, qkv, s, scale);
                double bytes = 2.0 * 2 * b * (double) s.keysSeen() * d + 2.0 * 3 * b * d + outBytes;
                double usedError = Double.NaN;
                // the backend's decode step takes the window kernel where it fits, else the version decodeVersion names
                boolean windowUsed = kernels.windowDecodeFits(Precision.BF16, dh, s.window(), s.capacity(), qkvD,
                        keys[0], values[0]);
                for (int v = 1; v <= Kernels.DECODE_VERSIONS; v++) {
                    int version = v;
                    java.util.function.IntConsumer call = c -> kernels.attentionDecode(version, Precision.BF16, qkvD,
                            keys[c], values[c], 0, layoutD, out, partial, b, h, dh, s.capacity(), s.window(), 0,
                            s.pos() + 1, false, scale, splits);
                    cu.memsetD8Async(out, 0, outBytes, stream);
                    call.accept(0);
                    double error = maxError(download(arena, out, outBytes), want);
                    double ms = time(copies, call);
                    boolean used = v == kernels.decodeVersion(b);
                    int runs = Kernels.decodeLaunchVersion(v, h, dh);
                    String name = "v" + v + (runs != v ? " (runs v" + runs + ")" : "")
                            + (used && !windowUsed ? " (used)" : "");
                    if (used) {
                        usedError = error;
                    }
                    results.add(new Result("attentionDecode", shape, name, ms, bytes / (ms * 1e-3) / 1e9, error,
                            GEMV_BOUND));
                }
                if (Kernels.windowDecodeShape(dh, s.window(), s.capacity())) {
                    // the window kernel (it writes the token's key and value into the ring, after reading the cell;
                    // checked on the first call, then timed) against the split decode followed by the append
                    java.util.function.IntConsumer window = c -> kernels.attentionDecodeWindow(Precision.BF16, qkvD,
                            keys[c], values[c], 0, layoutD, out, b, h, dh, s.capacity(), s.window(), 0, s.pos() + 1,
                            false, scale);
                    boolean headsUsed = kernels.windowHeadsRuns(b, h, dh, s.window());
                    Boolean asked = kernels.windowHeadsAsked();  // the backend's own settings, given back after
                    Boolean prefetchAsked = kernels.windowPrefetchAsked();
                    kernels.windowHeads(false);  // the items' form here, the heads' form below
                    cu.memsetD8Async(out, 0, outBytes, stream);
                    window.accept(0);
                    double error = maxError(download(arena, out, outBytes), want);
                    double ms = time(copies, window);
                    kernels.windowHeads(asked);
                    double appended = bytes + 2.0 * 2 * b * d;
                    String name = "window (appends)" + (windowUsed && !headsUsed ? " (used)" : "");
                    results.add(new Result("attentionDecode", shape, name, ms, appended / (ms * 1e-3) / 1e9, error,
                            GEMV_BOUND));
                    int used = kernels.decodeVersion(b);
                    java.util.function.IntConsumer split = c -> {
                        kernels.attentionDecode(used, Precision.BF16, qkvD, keys[c], values[c], 0, layoutD, out,
                                partial, b, h, dh, s.capacity(), s.window(), 0, s.pos() + 1, false, scale, splits);
                        kernels.attentionAppend(Precision.BF16, qkvD, keys[c], values[c], 0, layoutD, b, b, h, dh,
                                s.capacity(), 0, s.pos() + 1, false, 1);
                    };
                    double msSplit = time(copies, split);
                    results.add(new Result("attentionDecode", shape, "v" + used + " + append", msSplit,
                            appended / (msSplit * 1e-3) / 1e9, usedError, GEMV_BOUND));
                    if (Kernels.windowHeadsFit(b, h, dh, s.window())) {
                        // the window kernel's heads' form (-Dbased4j.cuda.attentionDecodeWindowForm=heads), first
                        // without asking for the next chunks, then asking (-Dbased4j.cuda.windowPrefetch); each
                        // checked on caches as the reference has them (the timed calls above appended to these)
                        boolean prefetchUsed = kernels.windowPrefetchRuns(b);
                        kernels.windowHeads(true);
                        try {
                            for (boolean prefetch : new boolean[] {false, true}) {
                                kernels.windowPrefetch(prefetch);
                                keys[0] = filled(keyBlock, cacheValues);
                                values[0] = filled(valueBlock, cacheValues);
                                cu.memsetD8Async(out, 0, outBytes, stream);
                                window.accept(0);
                                double headsError = maxError(download(arena, out, outBytes), want);
                                double msHeads = time(copies, window);
                                String form = prefetch ? "window, heads' form, next chunks asked for (appends)"
                                        : "window, heads' form (appends)";
                                boolean isUsed = windowUsed && headsUsed && prefetch == prefetchUsed;
                                results.add(new Result("attentionDecode", shape, form + (isUsed ? " (used)" : ""),
                                        msHeads, appended / (msHeads * 1e-3) / 1e9, headsError, GEMV_BOUND));
                            }
                        } finally {
                            kernels.windowHeads(asked);
                            kernels.windowPrefetch(prefetchAsked);
                        }
                    }
                }
            }
            freeAll();
        }
        return results;
    }

    /** A device buffer of {@code count} bf16 values: {@code block} repeated. */
    private long filled(MemorySegment block, long count) {
        long blockBytes = block.byteSize();
        long src = upload(block, blockBytes);
        long bytes = 2 * count;
        long dst = alloc(bytes);
        for (long off = 0; off < bytes; off += blockBytes) {
            cu.copyDtoDAsync(dst + off, src, Math.min(blockBytes, bytes - off), stream);
        }
        return dst;
    }

    /**
     * The decode step's attention in float64 over the bf16 inputs: the key cache is {@code keyBlock} repeated, the
     * value cache {@code valueBlock}.
     */
    private static double[] decodeReference(MemorySegment keyBlock, MemorySegment valueBlock, MemorySegment qkv,
                                            DecodeShape s, float scale) {
        int b = s.batch();
        int h = s.heads();
        int dh = s.dh();
        long d = (long) h * dh;
        long blockValues = keyBlock.byteSize() / 2;
        int first = Math.max(0, s.pos() - s.window());
        int n = s.pos() - first + 1;
        double[] out = new double[(int) (b * d)];
        double[] scores = new double[n];
        double[] q = new double[dh];
        for (int i = 0; i < b; i++) {
            for (int head = 0; head < h; head++) {
                long qAt = i * 3 * d + (long) head * dh;
                for (int e = 0; e < dh; e++) {
                    q[e] = bf16(qkv, qAt + e);
                }
                double max = Double.NEGATIVE_INFINITY;
                for (int k = 0; k < n; k++) {
                    int j = first + k;
                    long at = (cacheRow(s, i, j) * d + (long) head * dh) % blockValues;
                    double dot = 0;
                    for (int e = 0; e < dh; e++) {
                        dot += q[e] * (j < s.pos() ? bf16(keyBlock, wrapped(at + e, blockValues))
                                : bf16(qkv, qAt + d + e));
                    }
                    scores[k] = dot * scale;
                    max = Math.max(max, scores[k]);
                }
                double sum = 0;
                for (int k = 0; k < n; k++) {
                    scores[k] = Math.exp(scores[k] - max);
                    sum += scores[k];
                }
                double[] y = new double[dh];
                for (int k = 0; k < n; k++) {
                    int j = first + k;
                    long at = (cacheRow(s, i, j) * d + (long) head * dh) % blockValues;
                    for (int e = 0; e < dh; e++) {
                        y[e] += scores[k] * (j < s.pos() ? bf16(valueBlock, wrapped(at + e, blockValues))
                                : bf16(qkv, qAt + 2 * d + e));
                    }
                }
                for (int e = 0; e < dh; e++) {
                    out[(int) (i * d + (long) head * dh + e)] = y[e] / sum;
                }
            }
        }
        return out;
    }

    /** {@code index} taken back into {@code [0, size)}, from below {@code 2 size}. */
    private static long wrapped(long index, long size) {
        return index < size ? index : index - size;
    }

    /** The cache row of sequence (slot) {@code i}'s key at position {@code j}. */
    private static long cacheRow(DecodeShape s, int i, int j) {
        return (long) i * s.capacity() + j % s.capacity();
    }

    private static double bf16(MemorySegment seg, long index) {
        return Tensor.bf16ToFloat(seg.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, index));
    }

    // ------------------------------------------------------------------------------------ linearAttentionDecode

    /** A linear-attention decode step: {@code batch} sequences, {@code heads} heads, feature dim f, head dim dh. */
    record LinearDecodeShape(String name, int batch, int heads, int f, int dh) {
        int expanded() {
            return MixerConfig.LinearAttention.expandedDim(f);
        }
    }

    /** based-1b's layers (f 16, dh 112) at batches 128 and 1, based-360m's (dh 64) at batch 256. */
    static final List<LinearDecodeShape> LINEAR_DECODE_SHAPES = List.of(
            new LinearDecodeShape("based-1b b128", 128, 16, 16, 112),
            new LinearDecodeShape("based-1b b1", 1, 16, 16, 112),
            new LinearDecodeShape("based-360m b256", 256, 16, 16, 64),
            new LinearDecodeShape("based-1b b1024", 1024, 16, 16, 112));

    /**
     * Largest error of the new state S allowed against float64, relative to its largest value: S + phi(k) v rounded
     * once (2^-24 of it), with phi(k) already rounded twice by the kernel's feature map (2^-23 of it each), the term
     * phi(k) v being below the largest S here: under 2^-21.
     */
    static final double STATE_BOUND = 0x1p-21;

    /**
     * Every version of the linear-attention decode step on random states (S normal, z a running sum's size), each call
     * on its own copy of the state (so that the state comes from device memory, as across a model's layers), checked
     * against float64 on the host: the outputs within {@link #GEMV_BOUND} (one rounding to bf16) and the new S within
     * {@link #STATE_BOUND}; the error reported is the larger of the two, each over its bound, times GEMV_BOUND.
     */
    private List<Result> linearAttentionDecode() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(13);
        Kernels kernels = gpu.kernels();
        for (LinearDecodeShape s : LINEAR_DECODE_SHAPES) {
            int b = s.batch();
            int h = s.heads();
            int f = s.f();
            int dh = s.dh();
            int e = s.expanded();
            String shape = String.format(Locale.ROOT, "%s (H %d, f %d, dh %d)", s.name(), h, f, dh);
            note.accept("linearAttentionDecode " + shape);
            try (Arena arena = Arena.ofConfined()) {
                long sValues = (long) b * h * e * dh;
                long zValues = (long) b * h * e;
                MemorySegment s0 = arena.allocate(4 * sValues, 16);
                MemorySegment z0 = arena.allocate(4 * zValues, 16);
                for (long i = 0; i < sValues; i++) {
                    s0.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, (float) (r.nextGaussian() * 10));
                }
                for (long i = 0; i < zValues; i++) {
                    float z = (float) (i % e == 0 ? 1000 : r.nextGaussian() * 30);
                    z0.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, z);
                }
                MemorySegment q = gaussianBf16(arena, (long) b * h * f, 0.5, r);
                MemorySegment k = gaussianBf16(arena, (long) b * h * f, 0.5, r);
                MemorySegment v = gaussianBf16(arena, (long) b * h * dh, 1, r);
                long qd = upload(q, 2L * b * h * f);
                long kd = upload(k, 2L * b * h * f);
                long vd = upload(v, 2L * b * h * dh);
                long layoutD = uploadLayout(arena, new int[b]);
                long stateBytes = 4 * (sValues + zValues);
                int copies = (int) Math.max(1, (COLD_BYTES + stateBytes - 1) / stateBytes);
                long[] ss = new long[copies];
                long[] zs = new long[copies];
                for (int c = 0; c < copies; c++) {
                    ss[c] = upload(s0, 4 * sValues);
                    zs[c] = upload(z0, 4 * zValues);
                }
                long outBytes = 2L * b * h * dh;
                long out = alloc(outBytes);
                long sCheck = alloc(4 * sValues);
                long zCheck = alloc(4 * zValues);
                // the state the check starts from, apart from the copies the timed calls advance
                long sInit = upload(s0, 4 * sValues);
                long zInit = upload(z0, 4 * zValues);
                double[][] want = linearDecodeReference(s, s0, z0, q, k, v);
                double bytes = 2.0 * stateBytes + outBytes + 2.0 * b * h * (2 * f + dh);
                for (int ver = 1; ver <= Kernels.LINEAR_DECODE_VERSIONS; ver++) {
                    int version = ver;
                    cu.copyDtoDAsync(sCheck, sInit, 4 * sValues, stream);
                    cu.copyDtoDAsync(zCheck, zInit, 4 * zValues, stream);
                    cu.memsetD8Async(out, 0, outBytes, stream);
                    kernels.linearAttentionDecode(version, Precision.BF16, qd, kd, vd, sCheck, zCheck, layoutD, out, b,
                            h, f, dh, 1e-6f);
                    double errorOut = maxError(download(arena, out, outBytes), want[0]);
                    double errorState = maxFloatError(download(arena, sCheck, 4 * sValues), want[1]);
                    double error = Math.max(errorOut, errorState * (GEMV_BOUND / STATE_BOUND));
                    double ms = time(copies, c -> kernels.linearAttentionDecode(version, Precision.BF16, qd, kd, vd,
                            ss[c], zs[c], layoutD, out, b, h, f, dh, 1e-6f));
                    String name = "v" + version + (version == kernels.linearDecodeVersion((long) b * h, dh) ? " (used)"
                            : "");
                    results.add(new Result("linearAttentionDecode", shape, name, ms, bytes / (ms * 1e-3) / 1e9, error,
                            GEMV_BOUND));
                }
                // the deferred form: a step with nothing waiting that only reads the state (its output checked),
                // timed as steps run, each copy's tokens waiting until every 8th call on it writes them in (the
                // positions such that no write falls earlier); and steps that each write (version 4's work)
                int steps = Kernels.LINEAR_DEFER_DEFAULT;
                if (Kernels.linearDeferFits(f, dh, steps, sInit)) {
                    long pendBytes = 4L * b * h * (steps - 1) * (f + dh);
                    long[] pends = new long[copies];
                    long[] counts = new long[copies];
                    long[] works = new long[copies];
                    for (int c = 0; c < copies; c++) {
                        pends[c] = alloc(pendBytes);
                        counts[c] = alloc(4L * b * h);
                        works[c] = alloc(4L * b * h * Kernels.linearDeferWorkFloats(f, dh));
                    }
                    for (int round = 0; round < 2 * Kernels.LINEAR_DEFER_VERSIONS; round++) {
                        int deferVersion = 1 + round / 2;
                        boolean writes = round % 2 == 1;
                        int[] at = new int[b];
                        for (int i = 0; i < b; i++) {
                            at[i] = Math.floorMod((writes ? steps - 1 : 0) - i, steps);
                        }
                        long layD = uploadLayout(arena, at);
                        cu.copyDtoDAsync(sCheck, sInit, 4 * sValues, stream);
                        cu.copyDtoDAsync(zCheck, zInit, 4 * zValues, stream);
                        cu.memsetD8Async(out, 0, outBytes, stream);
                        for (int c = 0; c < copies; c++) {
                            cu.memsetD8Async(counts[c], 0, 4L * b * h, stream);
                        }
                        kernels.linearAttentionDecodeDeferred(deferVersion, Precision.BF16, qd, kd, vd, sCheck, zCheck,
                                pends[0], counts[0], works[0], layD, out, b, h, f, dh, 1e-6f, steps);
                        double error = maxError(download(arena, out, outBytes), want[0]);
                        if (writes) {
                            double errorState = maxFloatError(download(arena, sCheck, 4 * sValues), want[1]);
                            error = Math.max(error, errorState * (GEMV_BOUND / STATE_BOUND));
                        }
                        cu.memsetD8Async(counts[0], 0, 4L * b * h, stream);
                        double ms = time(copies, c -> kernels.linearAttentionDecodeDeferred(deferVersion,
                                Precision.BF16, qd, kd, vd, ss[c], zs[c], pends[c], counts[c], works[c], layD, out, b,
                                h, f, dh, 1e-6f, steps));
                        double moved = (writes ? 2.0 : 1.0 + 1.0 / steps) * stateBytes + outBytes
                                + 2.0 * b * h * (2 * f + dh);
                        String used = deferVersion == kernels.linearDeferVersion() ? " (used)" : "";
                        results.add(new Result("linearAttentionDecode", shape, "deferred v" + deferVersion + used
                                + (writes ? ", every step writes" : ", a write in " + steps + " steps"), ms,
                                moved / (ms * 1e-3) / 1e9, error, GEMV_BOUND));
                        if (!writes) {
                            // as a decode runs them: a copy's calls take `steps` layouts of positions one step apart
                            // in turn, so that each sequence writes on one call in `steps` and a call's writes are
                            // spread over the batch, each call after the L2 cache is flushed (its small inputs, the
                            // counts and waiting tokens among them, cold as a step meets them after the weights of
                            // the layers before); the output's check is the round's above
                            long[] lays = new long[steps];
                            for (int t = 0; t < steps; t++) {
                                lays[t] = uploadLayout(arena, filledInts(b, t));
                            }
                            for (int c = 0; c < copies; c++) {
                                cu.memsetD8Async(counts[c], 0, 4L * b * h, stream);
                            }
                            int[] calls = new int[copies];
                            double cold = timeCold(copies, c -> kernels.linearAttentionDecodeDeferred(deferVersion,
                                    Precision.BF16, qd, kd, vd, ss[c], zs[c], pends[c], counts[c], works[c],
                                    lays[calls[c]++ % steps], out, b, h, f, dh, 1e-6f, steps));
                            results.add(new Result("linearAttentionDecode", shape, "deferred v" + deferVersion + used
                                    + ", steps as a decode runs them, caches flushed", cold,
                                    moved / (cold * 1e-3) / 1e9, error, GEMV_BOUND));
                        }
                    }
                }
            }
            freeAll();
        }
        return results;
    }

    /**
     * On the device: the layout of a decode step of sequences 0 .. n - 1 in slots of the same numbers, one token each,
     * sequence i at position {@code at[i]}.
     */
    private long uploadLayout(Arena arena, int[] at) {
        int n = at.length;
        int[] lay = CudaBackend.layoutOf(new io.based4j.backend.TokenBatch(java.util.stream.IntStream.range(0, n)
                .toArray(), at, filledInts(n, 1)));
        MemorySegment host = arena.allocate(4L * lay.length, 16);
        MemorySegment.copy(lay, 0, host, ValueLayout.JAVA_INT_UNALIGNED, 0, lay.length);
        return upload(host, 4L * lay.length);
    }

    private static int[] filledInts(int n, int value) {
        int[] a = new int[n];
        java.util.Arrays.fill(a, value);
        return a;
    }

    /** The largest |got - want| over the largest |want| (got float32). */
    private static double maxFloatError(MemorySegment got, double[] want) {
        return relativeError(want.length, i -> got.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i), i -> want[i]);
    }

    /**
     * The decode step in float64 from the same inputs: {outputs [b][h][dh], new S}. phi is the Taylor feature map of
     * the kernels ([1, x f^-1/4, then for i <= j: x_i x_i / sqrt(2f), x_i x_j / sqrt(f)]).
     */
    private static double[][] linearDecodeReference(LinearDecodeShape s, MemorySegment s0, MemorySegment z0,
                                                    MemorySegment q, MemorySegment k, MemorySegment v) {
        int b = s.batch();
        int h = s.heads();
        int f = s.f();
        int dh = s.dh();
        int e = s.expanded();
        double[] out = new double[b * h * dh];
        double[] state = new double[(int) ((long) b * h * e * dh)];
        for (int i = 0; i < b; i++) {
            for (int head = 0; head < h; head++) {
                int qk = (i * h + head) * f;
                double[] pk = taylor(k, qk, f);
                double[] pq = taylor(q, qk, f);
                int sh = i * h + head;
                double den = 0;
                for (int a = 0; a < e; a++) {
                    den += pq[a] * (z0.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, (long) sh * e + a) + pk[a]);
                }
                for (int c = 0; c < dh; c++) {
                    double vc = bf16(v, (long) sh * dh + c);
                    double num = 0;
                    for (int a = 0; a < e; a++) {
                        long at = ((long) sh * e + a) * dh + c;
                        double sv = s0.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, at) + pk[a] * vc;
                        state[(int) at] = sv;
                        num += pq[a] * sv;
                    }
                    out[sh * dh + c] = num / (den + 1e-6);
                }
            }
        }
        return new double[][] {out, state};
    }

    /** The Taylor feature map of the f bf16 values from {@code at}, in float64. */
    private static double[] taylor(MemorySegment x, int at, int f) {
        double[] phi = new double[MixerConfig.LinearAttention.expandedDim(f)];
        phi[0] = 1;
        double lin = Math.pow(f, -0.25);
        double diag = 1 / Math.sqrt(2.0 * f);
        double cross = 1 / Math.sqrt(f);
        int n = 1 + f;
        for (int i = 0; i < f; i++) {
            double xi = bf16(x, at + i);
            phi[1 + i] = xi * lin;
            phi[n++] = xi * xi * diag;
            for (int j = i + 1; j < f; j++) {
                phi[n++] = xi * bf16(x, at + j) * cross;
            }
        }
        return phi;
    }

    // ----------------------------------------------------------------------------------- linearAttentionPrefill

    /**
     * A prompt's linear attention: {@code batch} sequences of {@code seqLen} tokens, {@code heads} heads, feature dim
     * f, head dim dh.
     */
    record PrefillShape(String name, int batch, int seqLen, int heads, int f, int dh) {
        int expanded() {
            return MixerConfig.LinearAttention.expandedDim(f);
        }

        long rows() {
            return (long) batch * seqLen;
        }
    }

    /**
     * The setting of FlashAttention-2's and fla's comparisons (16 sequences of 8,192 and 16,384 tokens, 16 heads,
     * f 16, head dim 64), based-1b's prompts (16 heads of 112) at batch 128 and 1,536 tokens, and the few prompts of
     * small batches (based-1b's one of 1,536, based-360m's one and four of 2,048), where the scan kernel has few
     * blocks.
     */
    static final List<PrefillShape> PREFILL_SHAPES = List.of(
            new PrefillShape("B16 N8192", 16, 8192, 16, 16, 64),
            new PrefillShape("B16 N16384", 16, 16384, 16, 16, 64),
            new PrefillShape("based-1b B128 N1536", 128, 1536, 16, 16, 112),
            new PrefillShape("based-1b B1 N1536", 1, 1536, 16, 16, 112),
            new PrefillShape("based-360m B1 N2048", 1, 2048, 16, 16, 64),
            new PrefillShape("based-360m B4 N2048", 4, 2048, 16, 16, 64));

    /** The (sequence, head) pairs of a shape that are checked in float64: the first and the last. */
    private static int[][] checkedPairs(PrefillShape s) {
        return new int[][] {{0, 0}, {s.batch() - 1, s.heads() - 1}};
    }

    /**
     * A prompt's linear attention, normalised output and each sequence's final state (S and z, float32, the decode's
     * layout), on each of the kernels that do it in bf16: the scan kernel (one block walks a sequence and head, its
     * state on chip; f 16, head dims up to 72, wider heads split for it), in its variant compiled for the sizes where
     * there is one and in the one that takes them as arguments, and the chunk kernels (the chunk states summed on the
     * tensor cores, then a block a chunk), with, where the head dim suits it, the causal flash attention of the same shape as the
     * competitor (the paper's comparison). Inputs repeat a random block (q and k normal with sd 0.5, v with sd 1).
     *
     * <p>Checked in float64 on the first and the last (sequence, head) pair, each value against a bound of its own:
     * the tensor cores take phi(q) and phi(k) rounded to bf16 (2^-9 each) and the chunk's weights phi(q) phi(k)^T
     * rounded once more, so a numerator or normaliser is off by at most 2^-7 of the sum of its terms' magnitudes
     * (kept beside the float64 recurrence: |phi(q)| . sum |phi(k)| |v|); out = num / den then within
     * {@code (dnum + |out| dden) / (den - dden)} plus its rounding to bf16 (2^-8 of |out|). The final S and z are
     * sums of phi(k) v, phi(k) rounded once: within 2^-8 of their terms' magnitudes. Attention: softmax weights in
     * bf16 (2^-9) and the output's rounding, within 2^-7 of the largest |v| plus 2^-8 of |out|. The error reported is
     * the largest ratio of an error to its bound, so the bound is 1.
     */
    private List<Result> linearAttentionPrefill() {
        List<Result> results = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(17);
        float eps = 1e-6f;
        try (MixerTrainKernels mixers = new MixerTrainKernels(gpu.kernels())) {
            int defaultMinBlocks = mixers.scanForwardMinBlocks();  // the rule the backend follows (or the property's)
            int defaultShort = mixers.scanForwardShort();
            for (PrefillShape s : PREFILL_SHAPES) {
                int b = s.batch();
                int h = s.heads();
                int f = s.f();
                int dh = s.dh();
                int e = s.expanded();
                long rows = s.rows();
                String shape = String.format(Locale.ROOT, "%s (H %d, f %d, dh %d)", s.name(), h, f, dh);
                note.accept("linearAttentionPrefill " + shape);
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment qBlock = gaussianBf16(arena, DECODE_BLOCK, 0.5, r);
                    MemorySegment kBlock = gaussianBf16(arena, DECODE_BLOCK, 0.5, r);
                    MemorySegment vBlock = gaussianBf16(arena, DECODE_BLOCK, 1, r);
                    long qd = filled(qBlock, rows * h * f);
                    long kd = filled(kBlock, rows * h * f);
                    long vd = filled(vBlock, rows * h * dh);
                    long outBytes = 2 * rows * h * dh;
                    long out = alloc(outBytes);
                    long kvValues = (long) b * h * e * dh;
                    long kv = alloc(4 * kvValues);
                    long z = alloc(4L * b * h * e);
                    MemorySegment slotsHost = arena.allocate(4L * b, 16);
                    for (int i = 0; i < b; i++) {
                        slotsHost.setAtIndex(ValueLayout.JAVA_INT_UNALIGNED, i, i);
                    }
                    MixerTrainKernels.FinalState fin = new MixerTrainKernels.FinalState(kv, z, upload(slotsHost, 4L * b));
                    PrefillReference want = new PrefillReference(s, qBlock, kBlock, vBlock, eps);
                    double bytes = 2.0 * rows * h * (2 * f + 2 * dh) + 4.0 * b * h * e * (dh + 1);
                    List<PrefillVersion> versions = new ArrayList<>();
                    boolean scan = MixerTrainKernels.linearScan(Precision.BF16, f, dh);
                    int split = MixerTrainKernels.linearScanSplit(Precision.BF16, f, dh, h);
                    int part = split == 0 ? dh : dh / split;
                    boolean fixed = MixerTrainKernels.linearScanFixedSizes(f, part);
                    String scanName = (fixed ? "scan " + f + "x" + part : "scan")
                            + (split == 0 ? "" : " on heads split in " + split);
                    if (scan || split != 0) {
                        versions.add(new PrefillVersion(scanName, true, true, true));
                        if (fixed) {
                            versions.add(new PrefillVersion(split == 0 ? "scan" : "scan on heads split in " + split,
                                    true, false, true));
                        }
                    }
                    versions.add(new PrefillVersion("chunks", false, true, false));
                    String used = ((long) b * h * Math.max(1, split) >= defaultMinBlocks
                            || split != 0 && s.seqLen() <= defaultShort) && (scan || split != 0) ? scanName : "chunks";
                    for (PrefillVersion version : versions) {
                        mixers.scanForwardMinBlocks(version.scan() ? 1 : Integer.MAX_VALUE);
                        mixers.scanForwardShort(version.scan() ? defaultShort : 0);
                        mixers.scanFixedSizes(version.fixedSizes());
                        mixers.scanSplit(version.split());
                        java.util.function.IntConsumer call = c -> mixers.linearAttentionForward(Precision.BF16, qd, kd,
                                vd, out, b, s.seqLen(), h, f, dh, eps, fin);
                        cu.memsetD8Async(out, 0, outBytes, stream);
                        cu.memsetD8Async(kv, 0, 4 * kvValues, stream);
                        cu.memsetD8Async(z, 0, 4L * b * h * e, stream);
                        call.accept(0);
                        double error = want.error(download(arena, out, outBytes), download(arena, kv, 4 * kvValues),
                                download(arena, z, 4L * b * h * e));
                        double ms = time(1, call);
                        String name = version.name() + (version.name().equals(used) ? " (used)" : "");
                        results.add(new Result("linearAttentionPrefill", shape, name, ms, bytes / (ms * 1e-3) / 1e9,
                                error, 1));
                    }
                    freeAll();
                    if (MixerTrainKernels.attentionOnTensorCores(Precision.BF16, dh)) {
                        results.add(flashAttention(arena, s, shape, r));
                    }
                }
                freeAll();
            }
        }
        return results;
    }

    /**
     * A way of running a prompt's linear attention: on the scan forward wherever it serves or never (the chunk
     * kernels), whether its variant compiled for the sizes runs, whether heads too wide for it are split for it.
     */
    private record PrefillVersion(String name, boolean scan, boolean fixedSizes, boolean split) {
    }

    /** Causal flash attention (the training's forward, tensor cores) at a prefill shape, checked on a few rows. */
    private Result flashAttention(Arena arena, PrefillShape s, String shape, SplittableRandom r) {
        int h = s.heads();
        int dh = s.dh();
        long d = (long) h * dh;
        long rows = s.rows();
        MemorySegment block = gaussianBf16(arena, DECODE_BLOCK, 1, r);
        long qkv = filled(block, rows * 3 * d);
        long outBytes = 2 * rows * d;
        long out = alloc(outBytes);
        long lse = alloc(4 * rows * h);
        float scale = (float) (1 / Math.sqrt(dh));
        MixerTrainKernels mixers = gpu.mixers();
        java.util.function.IntConsumer call = c -> mixers.attentionForward(Precision.BF16, qkv, out, lse, s.batch(),
                s.seqLen(), h, dh, Integer.MAX_VALUE, 0, 10000, scale);
        call.accept(0);
        MemorySegment got = download(arena, out, outBytes);
        long blockValues = block.byteSize() / 2;
        double worst = 0;
        for (int[] pair : checkedPairs(s)) {
            for (int t : new int[] {0, 1, 777, s.seqLen() - 1}) {
                long base = (long) pair[0] * s.seqLen();
                double[] q = new double[dh];
                for (int c = 0; c < dh; c++) {
                    q[c] = bf16(block, ((base + t) * 3 * d + (long) pair[1] * dh + c) % blockValues);
                }
                double[] w = new double[t + 1];
                double max = Double.NEGATIVE_INFINITY;
                for (int j = 0; j <= t; j++) {
                    double dot = 0;
                    for (int c = 0; c < dh; c++) {
                        dot += q[c] * bf16(block, ((base + j) * 3 * d + d + (long) pair[1] * dh + c) % blockValues);
                    }
                    w[j] = dot * scale;
                    max = Math.max(max, w[j]);
                }
                double sum = 0;
                for (int j = 0; j <= t; j++) {
                    w[j] = Math.exp(w[j] - max);
                    sum += w[j];
                }
                for (int c = 0; c < dh; c++) {
                    double y = 0;
                    double vMax = 0;
                    for (int j = 0; j <= t; j++) {
                        double v = bf16(block, ((base + j) * 3 * d + 2 * d + (long) pair[1] * dh + c) % blockValues);
                        y += w[j] * v;
                        vMax = Math.max(vMax, Math.abs(v));
                    }
                    y /= sum;
                    double g = bf16(got, (base + t) * d + (long) pair[1] * dh + c);
                    double bound = 0x1p-7 * vMax + 0x1p-8 * Math.abs(y);
                    worst = Math.max(worst, Double.isFinite(g) ? Math.abs(g - y) / bound : Double.POSITIVE_INFINITY);
                }
            }
        }
        double ms = time(1, call);
        double bytes = 2.0 * rows * 4 * d;
        return new Result("linearAttentionPrefill", shape, "flash attention causal", ms, bytes / (ms * 1e-3) / 1e9,
                worst, 1);
    }

    /**
     * The prompt's linear attention in float64 on the checked pairs ({@link #checkedPairs}) over the bf16 inputs
     * (each array its block repeated), with the terms' magnitudes the bounds need.
     */
    private static final class PrefillReference {
        private final PrefillShape s;
        private final double[][] out;
        private final double[][] outBound;
        private final double[][] kv;
        private final double[][] kvMagnitude;
        private final double[][] z;
        private final double[][] zMagnitude;

        PrefillReference(PrefillShape s, MemorySegment qBlock, MemorySegment kBlock, MemorySegment vBlock, float eps) {
            this.s = s;
            int[][] pairs = checkedPairs(s);
            int n = s.seqLen();
            int h = s.heads();
            int f = s.f();
            int dh = s.dh();
            int e = s.expanded();
            out = new double[pairs.length][n * dh];
            outBound = new double[pairs.length][n * dh];
            kv = new double[pairs.length][e * dh];
            kvMagnitude = new double[pairs.length][e * dh];
            z = new double[pairs.length][e];
            zMagnitude = new double[pairs.length][e];
            long qkBlock = qBlock.byteSize() / 2;
            long vValues = vBlock.byteSize() / 2;
            double[] v = new double[dh];
            for (int p = 0; p < pairs.length; p++) {
                double[] st = kv[p];
                double[] stAbs = kvMagnitude[p];
                double[] zz = z[p];
                double[] zAbs = zMagnitude[p];
                for (int t = 0; t < n; t++) {
                    long row = (long) pairs[p][0] * n + t;
                    long qkAt = (row * h + pairs[p][1]) * f;
                    double[] pk = taylor(kBlock, (int) (qkAt % qkBlock), f);
                    double[] pq = taylor(qBlock, (int) (qkAt % qkBlock), f);
                    long vAt = (row * h + pairs[p][1]) * dh;
                    for (int c = 0; c < dh; c++) {
                        v[c] = bf16(vBlock, (vAt + c) % vValues);
                    }
                    double den = 0;
                    double denAbs = 0;
                    for (int a = 0; a < e; a++) {
                        zz[a] += pk[a];
                        zAbs[a] += Math.abs(pk[a]);
                        den += pq[a] * zz[a];
                        denAbs += Math.abs(pq[a]) * zAbs[a];
                    }
                    double dDen = 0x1p-7 * denAbs;
                    for (int c = 0; c < dh; c++) {
                        double num = 0;
                        double numAbs = 0;
                        for (int a = 0; a < e; a++) {
                            int at = a * dh + c;
                            st[at] += pk[a] * v[c];
                            stAbs[at] += Math.abs(pk[a] * v[c]);
                            num += pq[a] * st[at];
                            numAbs += Math.abs(pq[a]) * stAbs[at];
                        }
                        double y = num / (den + eps);
                        out[p][t * dh + c] = y;
                        // no bound where the normaliser's error could reach the normaliser: such a value fails
                        outBound[p][t * dh + c] = den + eps - dDen <= 0 ? Double.NaN
                                : (0x1p-7 * numAbs + Math.abs(y) * dDen) / (den + eps - dDen) + 0x1p-8 * Math.abs(y);
                    }
                }
            }
        }

        /** The largest ratio of an error to its bound over the checked pairs' outputs and final states. */
        double error(MemorySegment gotOut, MemorySegment gotKv, MemorySegment gotZ) {
            int[][] pairs = checkedPairs(s);
            int n = s.seqLen();
            int h = s.heads();
            int dh = s.dh();
            int e = s.expanded();
            double worst = 0;
            for (int p = 0; p < pairs.length; p++) {
                int pair = pairs[p][0] * h + pairs[p][1];
                for (int t = 0; t < n; t++) {
                    long at = (((long) pairs[p][0] * n + t) * h + pairs[p][1]) * dh;
                    for (int c = 0; c < dh; c++) {
                        worst = Math.max(worst, ratio(bf16(gotOut, at + c), out[p][t * dh + c],
                                outBound[p][t * dh + c]));
                    }
                }
                for (int i = 0; i < e * dh; i++) {
                    double g = gotKv.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, (long) pair * e * dh + i);
                    worst = Math.max(worst, ratio(g, kv[p][i], 0x1p-8 * kvMagnitude[p][i]));
                }
                for (int a = 0; a < e; a++) {
                    double g = gotZ.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, (long) pair * e + a);
                    worst = Math.max(worst, ratio(g, z[p][a], 0x1p-8 * zMagnitude[p][a]));
                }
            }
            return worst;
        }

        private static double ratio(double got, double want, double bound) {
            double err = Math.abs(got - want);
            if (!Double.isFinite(got) || Double.isNaN(bound)) {
                return Double.POSITIVE_INFINITY;
            }
            return err == 0 ? 0 : err / bound;
        }
    }

    // ------------------------------------------------------------------------------------------------ common

    /** How long the GPU is kept busy before the first timing, so that its clocks have left their idle values. */
    static final long WARM_UP_NANOS = 300_000_000L;

    /** Keeps the GPU busy writing device memory for {@link #WARM_UP_NANOS} (the first shape's timings run warm). */
    private void warmUp() {
        long bytes = 64L << 20;
        long buffer = alloc(bytes);
        long until = System.nanoTime() + WARM_UP_NANOS;
        while (System.nanoTime() < until) {
            for (int i = 0; i < 50; i++) {
                cu.memsetD8Async(buffer, i, bytes, stream);
            }
            cu.synchronize(stream);
        }
        freeAll();
    }

    /** Mean milliseconds of {@link #reps} calls taking the input copies in turn, after one warm-up call of each. */
    private double time(int copies, java.util.function.IntConsumer call) {
        return timed(copies, call, 0);
    }

    /**
     * As {@link #time}, with the L2 cache flushed before each call (a write of {@link #COLD_BYTES}), each call timed
     * alone by its own events: the mean of the calls.
     */
    private double timeCold(int copies, java.util.function.IntConsumer call) {
        return timed(copies, call, alloc(COLD_BYTES));
    }

    /**
     * Each copy's call once (a warm-up), then {@link #reps} calls in turn over the copies: one pair of events around
     * them all where {@code flush} is 0, else each call after a write of {@link #COLD_BYTES} at {@code flush}, timed
     * alone. Milliseconds a call.
     */
    private double timed(int copies, java.util.function.IntConsumer call, long flush) {
        for (int c = 0; c < copies; c++) {
            call.accept(c);
        }
        cu.synchronize(stream);
        long start = cu.createEvent();
        long end = cu.createEvent();
        try {
            double total = 0;
            int rounds = flush == 0 ? 1 : reps;
            for (int round = 0; round < rounds; round++) {
                if (flush != 0) {
                    cu.memsetD8Async(flush, round & 0xff, COLD_BYTES, stream);
                }
                cu.record(start, stream);
                for (int i = flush == 0 ? 0 : round; i < (flush == 0 ? reps : round + 1); i++) {
                    call.accept(i % copies);
                }
                cu.record(end, stream);
                cu.synchronizeEvent(end);
                total += cu.elapsedMillis(start, end);
            }
            return total / reps;
        } finally {
            cu.destroyEvent(start);
            cu.destroyEvent(end);
        }
    }

    /** The largest |got - want| over the largest |want| (got bf16). */
    private static double maxError(MemorySegment got, double[] want) {
        return relativeError(want.length,
                i -> Tensor.bf16ToFloat(got.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i)), i -> want[i]);
    }

    /**
     * The largest |got(i) - want(i)| over the largest |want(i)|, i below n (infinite where a got value is not
     * finite; the largest difference itself where every want is 0).
     */
    static double relativeError(int n, java.util.function.IntToDoubleFunction got,
                                java.util.function.IntToDoubleFunction want) {
        double worst = 0;
        double scale = 0;
        for (int i = 0; i < n; i++) {
            double g = got.applyAsDouble(i);
            double w = want.applyAsDouble(i);
            worst = Math.max(worst, Double.isFinite(g) ? Math.abs(g - w) : Double.POSITIVE_INFINITY);
            scale = Math.max(scale, Math.abs(w));
        }
        return scale == 0 ? worst : worst / scale;
    }

    /** bf16 values uniform in [-1, 1). */
    private static MemorySegment randomBf16(Arena arena, long count, SplittableRandom r) {
        MemorySegment seg = arena.allocate(2 * count, 16);
        for (long i = 0; i < count; i++) {
            seg.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Tensor.floatToBf16((float) r.nextDouble(-1, 1)));
        }
        return seg;
    }

    private long alloc(long bytes) {
        long p = cu.malloc(bytes);
        allocations.add(p);
        return p;
    }

    private long upload(MemorySegment host, long bytes) {
        long p = alloc(bytes);
        cu.copyHtoD(p, host, bytes);
        return p;
    }

    private MemorySegment download(Arena arena, long ptr, long bytes) {
        MemorySegment host = arena.allocate(bytes, 16);
        cu.synchronize(stream);
        cu.copyDtoH(host, ptr, bytes);
        return host;
    }

    private void freeAll() {
        cu.synchronize(stream);
        for (long p : allocations) {
            cu.free(p);
        }
        allocations.clear();
    }
}
