package io.based4j.cuda;

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
 * file (gemv: {@code gemv.cuh}, versions 1 and 2); the backend runs the one its launcher names
 * ({@link Kernels#GEMV_VERSION}) where it beats the library ({@link Kernels#gemvPays}), marked "(used)", and the
 * library (cuBLASLt) elsewhere.
 *
 * <p>Timing: the mean of {@code reps} calls between two events on the backend's stream, after a warm-up call. The
 * inputs of a memory-bound kernel are held in enough copies (at least {@value #COLD_BYTES} bytes in all, more than
 * the L2 cache) that the calls, which take the copies in turn, read them from device memory, as a decode step that
 * goes through all of a model's layers does.
 */
public final class KernelWorkbench {
    /** Kernels the workbench has versions of. */
    public static final List<String> KERNELS = List.of("gemv");
    /** Bytes of input copies the timed calls go through at least (more than an H200's 50 MiB L2 cache). */
    static final long COLD_BYTES = 256L << 20;

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

    /** based-1b's (d 1792) and based-360m's (d 1024) decode products at 1 and 8 rows. */
    static final List<GemvShape> GEMV_SHAPES = gemvShapes();

    private static List<GemvShape> gemvShapes() {
        int[][] nk = {{7168, 1792}, {1792, 3584}, {5376, 1792}, {1792, 1792}, {50264, 1792}, {4096, 1024},
                {1024, 2048}};
        String[] names = {"1b mlp in", "1b mlp out", "1b qkv", "1b proj", "1b head", "360m mlp in", "360m mlp out"};
        List<GemvShape> shapes = new ArrayList<>();
        for (int m : new int[] {1, 8}) {
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
            return w.gemv();
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
                double[] want = gemvReference(w, x, s);
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
                for (int v = 1; v <= Kernels.GEMV_VERSIONS; v++) {
                    int version = v;
                    boolean used = v == Kernels.GEMV_VERSION && Kernels.gemvPays(s.n(), s.k());
                    names.add("v" + v + (used ? " (used)" : ""));
                    calls.add(c -> kernels.gemv(version, Precision.BF16, xd, ws[c], 0, out, false, s.m(), s.n(),
                            s.k()));
                }
                for (int i = 0; i < names.size(); i++) {
                    java.util.function.IntConsumer call = calls.get(i);
                    cu.memsetD8Async(out, 0, outBytes, stream);
                    call.accept(0);
                    double error = maxError(download(arena, out, outBytes), want);
                    double ms = time(copies, call);
                    results.add(new Result("gemv", shape, names.get(i), ms, bytes / (ms * 1e-3) / 1e9, error,
                            GEMV_BOUND));
                }
            }
            freeAll();
        }
        return results;
    }

    /**
     * Largest error allowed against the float64 product, relative to the largest output: the result is rounded to
     * bf16 once (2^-8 of a value at most: 8 significant bits), after float32 sums whose own error at these widths
     * (k 2^-24 of the sum of |x w| at most, k up to 3584; about sqrt(k) times the output for random signs) stays
     * below 2^-12 of it.
     */
    static final double GEMV_BOUND = 0x1p-8 + 0x1p-12;

    /** {@code x w^T} in float64 from the bf16 inputs. */
    private static double[] gemvReference(MemorySegment w, MemorySegment x, GemvShape s) {
        int m = s.m();
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

    // ------------------------------------------------------------------------------------------------ common

    /** Mean milliseconds of {@link #reps} calls taking the input copies in turn, after one warm-up call of each. */
    private double time(int copies, java.util.function.IntConsumer call) {
        for (int c = 0; c < copies; c++) {
            call.accept(c);
        }
        cu.synchronize(stream);
        long start = cu.createEvent();
        long end = cu.createEvent();
        try {
            cu.record(start, stream);
            for (int i = 0; i < reps; i++) {
                call.accept(i % copies);
            }
            cu.record(end, stream);
            cu.synchronizeEvent(end);
            return cu.elapsedMillis(start, end) / reps;
        } finally {
            cu.destroyEvent(start);
            cu.destroyEvent(end);
        }
    }

    /** The largest |got - want| over the largest |want| (got bf16). */
    private static double maxError(MemorySegment got, double[] want) {
        double worst = 0;
        double scale = 0;
        for (int i = 0; i < want.length; i++) {
            double g = Tensor.bf16ToFloat(got.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i));
            worst = Math.max(worst, Double.isFinite(g) ? Math.abs(g - want[i]) : Double.POSITIVE_INFINITY);
            scale = Math.max(scale, Math.abs(want[i]));
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
