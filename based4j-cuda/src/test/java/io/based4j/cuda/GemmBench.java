package io.based4j.cuda;

import java.util.Locale;

/**
 * Times the products of a linear layer with a bias on GPU 0 with CUDA events, the way {@link CudaBackend} ran them
 * before ({@code cublasGemmEx}, then a kernel for the bias; a column-sum kernel for the bias gradient) against
 * cuBLASLt (the bias in the epilogue; the bias gradient in the weight gradient's product, {@code BGRADB}), in bf16,
 * at the shapes of a based-360m training step: 16384 rows, 1024 -> 4096 and 2048 -> 1024. Prints milliseconds per
 * call, the mean of {@value #REPS} calls after one warm-up call, and says where cuBLASLt had no algorithm.
 *
 * <p>Run from the test classes (the kernels must be built, i.e. without {@code -Dbased4j.skipKernels}):
 * {@code java -cp based4j-cuda/target/classes:based4j-cuda/target/test-classes:<dependencies>
 * io.based4j.cuda.GemmBench}.
 */
public final class GemmBench {
    private static final int ROWS = 16384;
    /** Input and output widths: an in-projection and an out-projection of based-360m. */
    private static final int[][] LAYERS = {{1024, 4096}, {2048, 1024}};
    private static final int REPS = 20;
    private static final long WORKSPACE = 32L << 20;
    /** Every byte of the inputs: bf16 and float32 values near 0.0115, none a NaN or subnormal. */
    private static final int FILL = 0x3C;
    private static final int BF16 = Cublas.R_16BF;
    private static final int F32 = Cublas.R_32F;

    private GemmBench() {
    }

    public static void main(String[] args) {
        try (KernelRig rig = new KernelRig()) {
            long workspace = rig.zeros(WORKSPACE);
            try (Cublas blas = Cublas.create(rig.stream, workspace, WORKSPACE);
                 CublasLt lt = CublasLt.create(rig.stream, workspace, WORKSPACE)) {
                System.out.printf("cuBLASLt %d from %s%n", lt.version(), lt.libraryPath());
                for (int[] layer : LAYERS) {
                    new GemmBench.Layer(rig, blas, lt, ROWS, layer[0], layer[1]).run();
                }
            }
        }
    }

    /** One layer's buffers and timings: x [n, k], w [m, k], bias [m], out and dout [n, m]. */
    private record Layer(KernelRig rig, Cublas blas, CublasLt lt, int n, int k, int m, long x, long w, long bias,
                         long out, long outF32, long dout, long dx, long dw, long db, long sums, long partial) {
        Layer(KernelRig rig, Cublas blas, CublasLt lt, int n, int k, int m) {
            this(rig, blas, lt, n, k, m, filled(rig, 2L * n * k), filled(rig, 2L * m * k), filled(rig, 2L * m),
                    filled(rig, 2L * n * m), filled(rig, 4L * n * m), filled(rig, 2L * n * m),
                    filled(rig, 2L * n * k), filled(rig, 4L * m * k), filled(rig, 4L * m), filled(rig, 4L * m),
                    filled(rig, TrainKernels.columnSumScratchBytes(n, m)));
        }

        void run() {
            String shape = String.format(Locale.ROOT, "%d x %d -> %d", n, k, m);
            report(shape, "forward + bias, bf16 out", millis(() -> {
                blas.gemm(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w, BF16, k, x, BF16, k, 0f, out, BF16, m,
                        Cublas.COMPUTE_32F);
                rig.kernels.addBias(Precision.BF16, out, bias, n, m);
            }), lt(() -> forward(out, BF16, CublasLt.EPILOGUE_BIAS, bias)));
            report(shape, "forward, bf16 out (no bias)", millis(() -> blas.gemm(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f,
                    w, BF16, k, x, BF16, k, 0f, out, BF16, m, Cublas.COMPUTE_32F)),
                    lt(() -> forward(out, BF16, CublasLt.EPILOGUE_DEFAULT, 0)));
            // a bf16 bias cannot go into the epilogue of a float32 output: both routes add it by a kernel
            report(shape, "forward + bias, f32 out", millis(() -> {
                blas.gemm(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w, BF16, k, x, BF16, k, 0f, outF32, F32, m,
                        Cublas.COMPUTE_32F);
                rig.kernels.addBiasF32(Precision.BF16, outF32, bias, n, m);
            }), lt(() -> {
                boolean ran = forward(outF32, F32, CublasLt.EPILOGUE_DEFAULT, 0);
                rig.kernels.addBiasF32(Precision.BF16, outF32, bias, n, m);
                return ran;
            }));
            report(shape, "dx += dout w, bf16", millis(() -> blas.gemm(Cublas.OP_N, Cublas.OP_N, k, n, m, 1f, w,
                    BF16, k, dout, BF16, m, 1f, dx, BF16, k, Cublas.COMPUTE_32F)),
                    lt(() -> lt.matmul(Cublas.OP_N, Cublas.OP_N, k, n, m, 1f, w, BF16, k, dout, BF16, m, 1f, dx,
                            BF16, k, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0)));
            double columnSumBefore = millis(() -> {
                weightGradient(false, CublasLt.EPILOGUE_DEFAULT, 0);
                rig.train.columnSum(Precision.BF16, dout, db, partial, n, m);
            });
            report(shape, "dw += dout^T x, db += colsum(dout)", columnSumBefore, lt(() -> {
                boolean ran = weightGradient(true, CublasLt.EPILOGUE_BGRADB, sums);
                rig.kernels.addInto(Precision.F32, db, sums, m);
                return ran;
            }));
            report(shape, "  the same, cuBLASLt dw + column-sum kernel", columnSumBefore, lt(() -> {
                boolean ran = weightGradient(true, CublasLt.EPILOGUE_DEFAULT, 0);
                rig.train.columnSum(Precision.BF16, dout, db, partial, n, m);
                return ran;
            }));
        }

        private boolean forward(long d, int dType, int epilogue, long b) {
            return lt.matmul(Cublas.OP_T, Cublas.OP_N, m, n, k, 1f, w, BF16, k, x, BF16, k, 0f, d, dType, m,
                    Cublas.COMPUTE_32F, epilogue, b);
        }

        /** dw^T [k, m] += x^T [k, n] dout [n, m]: through cuBLASLt (false where it has no algorithm), else gemmEx. */
        private boolean weightGradient(boolean viaLt, int epilogue, long b) {
            if (viaLt) {
                return lt.matmul(Cublas.OP_N, Cublas.OP_T, k, m, n, 1f, x, BF16, k, dout, BF16, m, 1f, dw, F32, k,
                        Cublas.COMPUTE_32F, epilogue, b);
            }
            blas.gemm(Cublas.OP_N, Cublas.OP_T, k, m, n, 1f, x, BF16, k, dout, BF16, m, 1f, dw, F32, k,
                    Cublas.COMPUTE_32F);
            return true;
        }

        /** A cuBLASLt route: its time, or NaN where cuBLASLt had no algorithm for it. */
        private double lt(java.util.function.BooleanSupplier call) {
            if (!call.getAsBoolean()) {
                return Double.NaN;
            }
            return millis(call::getAsBoolean);
        }

        private double millis(Runnable call) {
            return BenchTimer.millis(rig, REPS, call);
        }
    }

    private static void report(String shape, String what, double before, double after) {
        if (Double.isNaN(after)) {
            System.out.printf(Locale.ROOT, "%-16s %-44s gemmEx route %.3f ms, cuBLASLt: no algorithm%n", shape, what,
                    before);
        } else {
            System.out.printf(Locale.ROOT, "%-16s %-44s gemmEx route %.3f ms, cuBLASLt route %.3f ms (%+.3f ms)%n",
                    shape, what, before, after, after - before);
        }
    }

    /** {@code bytes} of device memory, every byte {@link #FILL}. */
    private static long filled(KernelRig rig, long bytes) {
        long ptr = rig.zeros(bytes);
        rig.cu.memsetD8Async(ptr, FILL, bytes, rig.stream);
        return ptr;
    }
}
