package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.U_BF16;
import static io.based4j.cuda.Near.abs;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static io.based4j.cuda.Near.toDouble;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.DenseOps;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaBackend#matmul} and {@link CudaBackend#matmulBackward} through cuBLASLt (the bias in the epilogue, the
 * bias gradient in the weight gradient's product) against the float64 reference of {@link DenseOps}, in both
 * precisions, with bf16 and float32 outputs, at shapes that are multiples of nothing (m, n, k of 1, 5, 7, 29, 33, 37,
 * 45, 77, 130, 257, 1000) and at aligned ones where the fused routes must be taken.
 *
 * <p>The reference runs on exactly the values the GPU holds (bf16 values in bf16), so every difference is rounding.
 * Allowances, per element, from the magnitude {@code mag} (the reference run on absolute values, plus the bias, or
 * the gradient added into): a float32 sum of K products errs by at most {@code K u mag} in any order ({@link Near#U
 * u} = 2^-24; split-K and tensor-core blocks only reorder); tensor cores may truncate instead of rounding, which at
 * most doubles that, and the bias and the addition into a gradient are two terms more: {@code 2 (K + 2) u mag}. A bf16
 * result is rounded once more, {@link Near#U_BF16} of its size; where a kernel adds the bias after the product, the
 * product (the result less the bias) is rounded to bf16 too, and so is the product added into a bf16 gradient; 1% on
 * top covers the second-order terms. TF32 would err
 * by about 2^-11 per term, hundreds of times these float32 allowances, so float32 runs also show TF32 is not used.
 */
@GpuTest
class CublasLtMatmulTest {
    /**
     * n (rows), k (input width), m (output width): n = 1, m = 1, odd sizes, k past several tiles; and products of
     * one or two rows with k a multiple of 8, which the gemv kernel (version 3) takes whatever the widths (1 x 1792 .
     * 1792 x 37, 2 x 64 . 64 x 129: outputs wider than the width), and products of 3 to 128 rows, which gemmRows takes
     * in bf16 where it was measured faster (3 to 8 rows, and 2 rows into more than 4,096 outputs) and the width is a
     * multiple of 64 (3 x 64 . 64 x 129, 3 x 1024 . 1024 x 129, 8 x 256 . 256 x 1, 5 x 64 . 64 x 17,
     * 2 x 128 . 128 x 4200) and cuBLAS elsewhere (20 x 384 . 384 x 100).
     */
    private static final int[][] SHAPES = {{1, 7, 5}, {33, 45, 29}, {130, 77, 1}, {257, 1000, 37}, {64, 96, 48},
        {1, 1792, 37}, {3, 64, 129}, {8, 256, 1}, {5, 8, 17}, {3, 1024, 129}, {5, 64, 17}, {2, 64, 129},
        {100, 192, 300}, {20, 384, 100}, {2, 128, 4200}};

    static CudaBackend f32;
    static CudaBackend bf16;
    final SplittableRandom random = new SplittableRandom(SEED);

    @BeforeAll
    static void open() {
        f32 = CudaBackend.open("cuda", Precision.F32);
        bf16 = CudaBackend.open("cuda", Precision.BF16);
    }

    @AfterAll
    static void close() {
        if (f32 != null) {
            f32.close();
        }
        if (bf16 != null) {
            bf16.close();
        }
    }

    static CudaBackend gpu(Precision p) {
        return p == Precision.F32 ? f32 : bf16;
    }

    /** The types a result may have: the precision's, and float32 (the residual stream, some gradients). */
    static Precision[] outputTypes(Precision p) {
        return p == Precision.F32 ? new Precision[] {Precision.F32} : new Precision[] {p, Precision.F32};
    }

    @Test
    void theHandleSaysWhichLibraryItRunsOn() {
        CublasLt lt = bf16.cublasLt();
        assertTrue(lt.libraryPath().contains("libcublasLt"), lt.libraryPath());
        // cuBLASLt 12 or later: the epilogues and the heuristic preferences used here are all there
        assertTrue(lt.version() >= 120000, "cuBLASLt version " + lt.version());
    }

    // ------------------------------------------------------------------ forward

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matmulWithAndWithoutBiasMatchesTheReference(Precision p) {
        CudaBackend gpu = gpu(p);
        for (int[] s : SHAPES) {
            for (boolean withBias : new boolean[] {false, true}) {
                for (Precision out : outputTypes(p)) {
                    forward(gpu, p, s[0], s[1], s[2], withBias, out);
                }
            }
        }
    }

    /** One product against the reference; checks the route too: the epilogue adds a bias of the output's type. */
    private void forward(CudaBackend gpu, Precision p, int n, int k, int m, boolean withBias, Precision outType) {
        String what = String.format("matmul %s n %d, k %d, m %d, %s, %s output", p.suffix(), n, k, m,
                withBias ? "bias" : "no bias", outType.suffix());
        float[] wv = stored(p, gaussian(random, m * k, 1 / Math.sqrt(k)));
        float[] bv = withBias ? stored(p, gaussian(random, m, 0.5)) : null;
        Buffer x = gpu.upload(gaussian(random, n * k, 1), n, k);
        float[] xv = gpu.download(x); // the values the GPU holds
        Weight w = gpu.weight(Tensor.ofFloats(wv, m, k));
        Weight b = withBias ? gpu.weight(Tensor.ofFloats(bv, m)) : null;
        Buffer out = outType == p ? gpu.upload(gaussian(random, n * m, 3), n, m) : gpu.allocateF32(n, m);

        GemmRoutes before = gpu.gemmRoutes().copy();
        gpu.matmul(x, w, b, out);
        float[] got = gpu.download(out);
        GemmRoutes after = gpu.gemmRoutes();

        double[] want = new double[n * m];
        DenseOps.matmul(toDouble(xv), n, k, toDouble(wv), m, withBias ? toDouble(bv) : null, want);
        double[] mag = new double[n * m];
        DenseOps.matmul(abs(toDouble(xv)), n, k, abs(toDouble(wv)), m, withBias ? abs(toDouble(bv)) : null, mag);
        double[] bound = new double[n * m];
        for (int i = 0; i < bound.length; i++) {
            bound[i] = 2 * (k + 2) * U * mag[i];
            if (outType != Precision.F32) {
                double product = want[i] - (withBias ? bv[i % m] : 0);
                bound[i] += 1.01 * U_BF16 * (Math.abs(want[i]) + Math.abs(product));
            }
        }
        Near.within(what, want, got, bound);

        long products = after.lt + after.ltBias + after.gemmEx + after.gemv + after.gemmRows + after.gemmWg
                - before.lt - before.ltBias - before.gemmEx - before.gemv - before.gemmRows - before.gemmWg;
        assertEquals(1, products, what + ": one product [" + after + "]");
        // gemmWg only where -Dbased4j.cuda.gemmWg=true asks for it (device allocations are 16-byte aligned)
        boolean wg = p == Precision.BF16 && k % Kernels.GEMM_WG_STAGE == 0 && gpu.kernels().gemmWgPays(n);
        boolean rows = !wg && p == Precision.BF16 && n <= Kernels.GEMM_ROWS_MAX && k % Kernels.GEMM_ROWS_STAGE == 0
                && gpu.kernels().gemmRowsPays(n, m, k);
        assertEquals(wg ? 1 : 0, after.gemmWg - before.gemmWg, what + ": gemmWg where asked [" + after + "]");
        boolean gemv = !wg && !rows && k % 8 == 0 && n <= Kernels.GEMV_MAX_ROWS && gpu.kernels().gemvPays(n, m, k);
        assertEquals(gemv ? 1 : 0, after.gemv - before.gemv, what + ": the gemv kernel takes a few rows [" + after
                + "]");
        assertEquals(rows ? 1 : 0, after.gemmRows - before.gemmRows, what
                + ": gemmRows takes a decode step's rows of a batch [" + after + "]");
        if (withBias) {
            boolean fusable = outType == p;
            assertEquals(1, after.ltBias - before.ltBias + after.biasKernel - before.biasKernel + after.gemvBias
                    - before.gemvBias + after.gemmRowsBias - before.gemmRowsBias + after.gemmWgBias
                    - before.gemmWgBias, what + ": the bias is added once [" + after + "]");
            if (!fusable && !gemv && !rows && !wg) {
                assertEquals(1, after.biasKernel - before.biasKernel,
                        what + ": a bf16 bias with a float32 output is added by a kernel [" + after + "]");
            }
        } else {
            assertEquals(before.biasKernel, after.biasKernel, what + ": no bias kernel");
            assertEquals(before.ltBias, after.ltBias, what + ": no bias epilogue");
        }
        for (Buffer buf : new Buffer[] {x, out}) {
            gpu.release(buf);
        }
    }

    /**
     * A product split along k into a strided batch ({@link CublasLt#matmulBatched}): 128 x 3584 . 3584 x 1792 (a
     * based-1b MLP out-projection at 128 sequences) in 7 parts, and an awkward 37 x 96 . 96 x 45 in 2: each part's
     * float32 slab is the product of its k-th of x and W against float64, within float32's sum bound for its own
     * width, and no slab spills into the next.
     */
    @Test
    void aProductSplitAlongKIntoABatchGivesEachPartsSums() {
        CudaBackend gpu = bf16;
        for (int[] s : new int[][] {{128, 3584, 1792, 7}, {37, 96, 45, 2}}) {
            int n = s[0];
            int k = s[1];
            int m = s[2];
            int split = s[3];
            int part = k / split;
            String what = String.format("matmulBatched n %d, k %d in %d, m %d", n, k, split, m);
            float[] wv = stored(Precision.BF16, gaussian(random, m * k, 1 / Math.sqrt(k)));
            Buffer x = gpu.upload(gaussian(random, n * k, 1), n, k);
            float[] xv = gpu.download(x);
            CudaWeight w = (CudaWeight) gpu.weight(Tensor.ofFloats(wv, m, k));
            Buffer out = gpu.allocateF32(split * n + 1, m);  // a row past the slabs, to see that none spills
            float[] before = gpu.download(out);
            assertTrue(gpu.cublasLt().matmulBatched(Cublas.OP_T, Cublas.OP_N, m, n, part, 1f, w.ptr, Cublas.R_16BF, k,
                    part, ((CudaBuffer) x).ptr, Cublas.R_16BF, k, part, 0f, ((CudaBuffer) out).ptr, Cublas.R_32F, m,
                    (long) m * n, split, Cublas.COMPUTE_32F), what + ": cuBLASLt has an algorithm");
            float[] got = gpu.download(out);
            for (int q = 0; q < split; q++) {
                double[] xs = new double[n * part];
                double[] ws = new double[m * part];
                for (int r = 0; r < n; r++) {
                    for (int j = 0; j < part; j++) {
                        xs[r * part + j] = xv[r * k + q * part + j];
                    }
                }
                for (int r = 0; r < m; r++) {
                    for (int j = 0; j < part; j++) {
                        ws[r * part + j] = wv[r * k + q * part + j];
                    }
                }
                double[] want = new double[n * m];
                DenseOps.matmul(xs, n, part, ws, m, null, want);
                double[] bound = new double[n * m];
                DenseOps.matmul(abs(xs), n, part, abs(ws), m, null, bound);
                for (int i = 0; i < bound.length; i++) {
                    bound[i] *= 2 * (part + 2) * U;
                }
                Near.within(what + " part " + q, want, Arrays.copyOfRange(got, q * n * m, (q + 1) * n * m), bound);
            }
            assertTrue(Arrays.equals(before, split * n * m, (split * n + 1) * m, got, split * n * m,
                    (split * n + 1) * m), what + ": nothing written past the last slab");
            gpu.release(x);
            gpu.release(out);
        }
    }

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matmulRowsMatchesTheReference(Precision p) {
        CudaBackend gpu = gpu(p);
        int n = 41;
        int k = 70;
        int m = 23;
        int[] rows = {40, 0, 7, 7, 19};
        float[] wv = stored(p, gaussian(random, m * k, 0.1));
        Buffer x = gpu.upload(gaussian(random, n * k, 1), n, k);
        float[] xv = gpu.download(x);
        Buffer out = gpu.allocateF32(rows.length, m);
        gpu.matmulRows(x, rows, gpu.weight(Tensor.ofFloats(wv, m, k)), out);
        float[] picked = new float[rows.length * k];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(xv, rows[r] * k, picked, r * k, k);
        }
        double[] want = new double[rows.length * m];
        DenseOps.matmul(toDouble(picked), rows.length, k, toDouble(wv), m, null, want);
        double[] mag = new double[rows.length * m];
        DenseOps.matmul(abs(toDouble(picked)), rows.length, k, abs(toDouble(wv)), m, null, mag);
        double[] bound = mag.clone();
        for (int i = 0; i < bound.length; i++) {
            bound[i] *= 2 * (k + 2) * U;
        }
        Near.within("matmulRows " + p.suffix() + " rows " + Arrays.toString(rows), want, gpu.download(out), bound);
    }

    // ------------------------------------------------------------------ backward

    @ParameterizedTest
    @EnumSource(Precision.class)
    void matmulBackwardMatchesTheReference(Precision p) {
        CudaBackend gpu = gpu(p);
        for (int[] s : SHAPES) {
            for (Precision dxType : outputTypes(p)) {
                backward(gpu, p, s[0], s[1], s[2], dxType, true);
            }
            backward(gpu, p, s[0], s[1], s[2], p, false);
        }
    }

    /**
     * {@code dx += dout w}, {@code dw += dout^T x}, {@code db += colsum(dout)} (db when {@code withBias}) into random
     * gradients, against the reference; dw and db are float32, as the trainer keeps them.
     */
    private void backward(CudaBackend gpu, Precision p, int n, int k, int m, Precision dxType, boolean withBias) {
        String what = String.format("matmulBackward %s n %d, k %d, m %d, %s dx, %s", p.suffix(), n, k, m,
                dxType.suffix(), withBias ? "bias" : "no bias");
        Buffer x = gpu.upload(gaussian(random, n * k, 1), n, k);
        float[] xv = gpu.download(x);
        float[] wv = stored(p, gaussian(random, m * k, 1 / Math.sqrt(k)));
        Weight w = gpu.weight(Tensor.ofFloats(wv, m, k));
        Buffer dout = gpu.upload(gaussian(random, n * m, 1), n, m);
        float[] gv = gpu.download(dout);
        Buffer dx = dxType == p ? gpu.upload(gaussian(random, n * k, 0.5), n, k) : f32Buffer(gpu, n, k, 0.5);
        float[] dx0 = gpu.download(dx);
        Buffer dw = f32Buffer(gpu, m, k, 0.5);
        float[] dw0 = gpu.download(dw);
        Buffer db = withBias ? f32Buffer(gpu, 1, m, 0.5) : null;
        float[] db0 = withBias ? gpu.download(db) : null;

        GemmRoutes before = gpu.gemmRoutes().copy();
        gpu.matmulBackward(x, w, dout, dx, dw, db);
        GemmRoutes after = gpu.gemmRoutes();

        double[] wantDx = toDouble(dx0);
        double[] wantDw = toDouble(dw0);
        double[] wantDb = withBias ? toDouble(db0) : null;
        DenseOps.matmulBackward(toDouble(xv), n, k, toDouble(wv), m, toDouble(gv), wantDx, wantDw, wantDb);
        double[] magDx = abs(toDouble(dx0));
        double[] magDw = abs(toDouble(dw0));
        double[] magDb = withBias ? abs(toDouble(db0)) : null;
        DenseOps.matmulBackward(abs(toDouble(xv)), n, k, abs(toDouble(wv)), m, abs(toDouble(gv)), magDx, magDw,
                magDb);
        double[] boundDx = new double[magDx.length];
        for (int i = 0; i < boundDx.length; i++) {
            // a bf16 gradient added into: the product may be rounded to bf16 before dx is added (the kernel's
            // epilogue works in the output's type), as summing bf16 gradients rounds each part
            double product = wantDx[i] - dx0[i];
            boundDx[i] = 2 * (m + 2) * U * magDx[i] + (dxType == Precision.F32 ? 0 : 1.01 * U_BF16
                    * (Math.abs(wantDx[i]) + Math.abs(product)));
        }
        Near.within(what + ": dx", wantDx, gpu.download(dx), boundDx);
        Near.within(what + ": dw", wantDw, gpu.download(dw), scaled(magDw, 2 * (n + 2) * U));
        if (withBias) {
            Near.within(what + ": db", wantDb, gpu.download(db), scaled(magDb, 2 * (n + 2) * U));
            assertEquals(1, after.biasGradientKernel - before.biasGradientKernel,
                    what + ": the bias gradient is summed once [" + after + "]");
        } else {
            assertEquals(before.biasGradientKernel, after.biasGradientKernel, what + ": no bias gradient");
        }
        for (Buffer buf : new Buffer[] {x, dout, dx, dw, db}) {
            if (buf != null) {
                gpu.release(buf);
            }
        }
    }

    /** A float32 buffer of Gaussian values in either precision (a parameter's float32 master values). */
    private Buffer f32Buffer(CudaBackend gpu, int rows, int cols, double sigma) {
        return gpu.parameter(Tensor.ofFloats(gaussian(random, rows * cols, sigma), rows, cols));
    }

    // ------------------------------------------------------------------ routes and plans

    /**
     * At sizes that are multiples of 128 (like a training step's), in bf16, the bias goes into the forward's epilogue
     * and the bias gradient into the weight gradient's product (in float32, which only tests use, the results must be
     * right whichever route cuBLASLt allows); a second call of the same shape builds no plan, and a plan made with one
     * bias takes another bias the next time (the pointer is set per call).
     */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void alignedShapesTakeTheFusedRoutesAndReusePlans(Precision p) {
        CudaBackend gpu = gpu(p);
        CublasLt lt = gpu.cublasLt();
        int n = Kernels.GEMM_WG_ON_MAX + 128;  // more rows than -Dbased4j.cuda.gemmWg sends to gemmWg
        int k = 128;
        int m = 384;
        float[] wv = stored(p, gaussian(random, m * k, 1 / Math.sqrt(k)));
        Weight w = gpu.weight(Tensor.ofFloats(wv, m, k));
        Buffer x = gpu.upload(gaussian(random, n * k, 1), n, k);
        float[] xv = gpu.download(x);
        Buffer out = gpu.allocate(n, m);
        GemmRoutes before = gpu.gemmRoutes().copy();
        long builds = -1;
        for (int round = 0; round < 3; round++) {
            float[] bv = stored(p, gaussian(random, m, 1));
            gpu.matmul(x, w, gpu.weight(Tensor.ofFloats(bv, m)), out);
            double[] want = new double[n * m];
            DenseOps.matmul(toDouble(xv), n, k, toDouble(wv), m, toDouble(bv), want);
            double[] mag = new double[n * m];
            DenseOps.matmul(abs(toDouble(xv)), n, k, abs(toDouble(wv)), m, abs(toDouble(bv)), mag);
            double[] bound = scaled(mag, 2 * (k + 2) * U);
            for (int i = 0; i < bound.length; i++) {
                bound[i] += p == Precision.F32 ? 0 : 1.01 * U_BF16 * Math.abs(want[i]);
            }
            Near.within("matmul " + p.suffix() + " with bias " + round, want, gpu.download(out), bound);
            if (round == 0) {
                builds = lt.planBuilds();
            } else {
                assertEquals(builds, lt.planBuilds(), "round " + round + " of the same product builds no plan");
            }
        }
        LtGemm forward = LtGemm.of(Cublas.OP_T, Cublas.OP_N, m, n, k, 256, cublasType(p), k, 256, cublasType(p), k,
                false, 256, cublasType(p), m, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_BIAS, 256);
        assertTrue(lt.planned(forward), "the forward's plan is kept under its key");
        boolean fused = p == Precision.BF16;
        GemmRoutes after = gpu.gemmRoutes().copy();
        if (fused) {
            assertNull(lt.noAlgorithmReason(forward), "cuBLASLt has an algorithm for the forward with its bias");
            assertEquals(3, after.ltBias - before.ltBias, "the bias is added in the epilogue [" + after + "]");
            assertEquals(before.biasKernel, after.biasKernel, "no bias kernel [" + after + "]");
        }

        Buffer dout = gpu.upload(gaussian(random, n * m, 1), n, m);
        Buffer dw = f32Buffer(gpu, m, k, 0);
        Buffer db = f32Buffer(gpu, 1, m, 0);
        gpu.matmulBackward(x, w, dout, null, dw, db);
        LtGemm weightGradient = LtGemm.of(Cublas.OP_N, Cublas.OP_T, k, m, n, 256, cublasType(p), k, 256,
                cublasType(p), m, true, 256, Cublas.R_32F, k, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0);
        assertTrue(lt.planned(weightGradient), "the weight gradient's plan is kept under its key");
        GemmRoutes last = gpu.gemmRoutes();
        if (fused) {
            assertNull(lt.noAlgorithmReason(weightGradient), "cuBLASLt has an algorithm for dw");
            assertEquals(1, last.biasGradientKernel - after.biasGradientKernel, "the column-sum kernel [" + last
                    + "]");
            assertEquals(after.gemmEx, last.gemmEx, "no cublasGemmEx [" + last + "]");
        }
        float[] gv = gpu.download(dout);
        double[] wantDb = new double[m];
        double[] magDb = new double[m];
        for (int i = 0; i < n * m; i++) {
            wantDb[i % m] += gv[i];
            magDb[i % m] += Math.abs(gv[i]);
        }
        Near.within("db " + p.suffix(), wantDb, gpu.download(db), scaled(magDb,
                2 * (n + 2) * U));
    }

    private static int cublasType(Precision p) {
        return p == Precision.F32 ? Cublas.R_32F : Cublas.R_16BF;
    }

    private static double[] scaled(double[] v, double factor) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i] * factor;
        }
        return out;
    }
}
