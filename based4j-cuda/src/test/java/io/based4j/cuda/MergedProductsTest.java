package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaBackend#matmulEach} over weights made together ({@link CudaBackend#weights}) at 3 to
 * {@link CudaBackend#MERGED_MAX_ROWS} rows: one product of the whole matrix, its columns split into each output. Each
 * output must be its columns of the whole matrix's product made as one weight ({@code matmul}, the same shape and
 * plan: bit for bit), and near the float64 product of its own matrix (within the output type's rounding and
 * float32 sums over k). Widths: based-1b's linear-attention q, k and v (256, 256 and 1,792 of 1,792), two products,
 * and widths that are no multiple of 8 (the split's copy a value at a time). One or two rows stay on gemv's one
 * launch, more than the bound, weights made one by one and {@code -Dbased4j.cuda.mergedProducts=false} take the
 * products one by one.
 */
@GpuTest
class MergedProductsTest {
    private static final int[][] SHAPES = {{1792, 256, 256, 1792}, {1792, 256, 1792}, {96, 40, 8, 200}, {64, 3, 5, 7}};

    @ParameterizedTest
    @EnumSource(Precision.class)
    void oneProductSplitIsEachProduct(Precision p) {
        try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
            SplittableRandom r = new SplittableRandom(11);
            for (int[] shape : SHAPES) {
                for (int m : new int[] {3, 37, 128, CudaBackend.MERGED_MAX_ROWS}) {
                    long before = gpu.gemmRoutes().merged;
                    check(gpu, m, shape, r, true);
                    assertEquals(before + shape.length - 1, gpu.gemmRoutes().merged, m + " rows, width " + shape[0]
                            + ": taken as one product");
                }
                for (int m : new int[] {1, 2, CudaBackend.MERGED_MAX_ROWS + 1}) {
                    long before = gpu.gemmRoutes().merged;
                    check(gpu, m, shape, r, true);
                    assertEquals(before, gpu.gemmRoutes().merged, m + " rows, width " + shape[0]
                            + ": the products apart");
                }
            }
        }
    }

    @Test
    void weightsMadeOneByOneOrTheSwitchOffTakeTheProductsApart() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            check(gpu, 128, SHAPES[0], new SplittableRandom(5), false);
            assertEquals(0, gpu.gemmRoutes().merged, "weights made one by one");
        }
        String before = System.getProperty(CudaBackend.MERGED_PRODUCTS_PROPERTY);
        System.setProperty(CudaBackend.MERGED_PRODUCTS_PROPERTY, "false");
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            check(gpu, 128, SHAPES[0], new SplittableRandom(5), true);
            assertEquals(0, gpu.gemmRoutes().merged, "the switch off");
        } finally {
            if (before == null) {
                System.clearProperty(CudaBackend.MERGED_PRODUCTS_PROPERTY);
            } else {
                System.setProperty(CudaBackend.MERGED_PRODUCTS_PROPERTY, before);
            }
        }
    }

    @Test
    void weightsOfDifferentWidthsAreMadeOneByOne() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            Weight[] ws = gpu.weights(Tensor.ofFloats(new float[8 * 16], 8, 16), Tensor.ofFloats(new float[8 * 24], 8, 24));
            assertNull(((CudaWeight) ws[0]).whole);
            assertNull(((CudaWeight) ws[1]).whole);
            Weight[] together = gpu.weights(Tensor.ofFloats(new float[8 * 16], 8, 16),
                    Tensor.ofFloats(new float[4 * 16], 4, 16));
            CudaWeight whole = ((CudaWeight) together[0]).whole;
            assertNotNull(whole);
            assertEquals(12, whole.rows());
            assertEquals(whole.ptr + 8 * 16 * Precision.BF16.bytes(), ((CudaWeight) together[1]).ptr);
        }
    }

    /**
     * Products of m rows of width shape[0] into shape[1..] outputs through matmulEach, against the columns of one
     * product of the matrices stacked (bit for bit) and against float64 (near).
     */
    private static void check(CudaBackend gpu, int m, int[] shape, SplittableRandom r, boolean together) {
        int k = shape[0];
        int count = shape.length - 1;
        float[] xs = gaussian(r, m * k, 1);
        Buffer x = gpu.upload(xs, m, k);
        Tensor[] ts = new Tensor[count];
        float[][] wv = new float[count][];
        int total = 0;
        for (int i = 0; i < count; i++) {
            wv[i] = gaussian(r, shape[i + 1] * k, 1 / Math.sqrt(k));
            ts[i] = Tensor.ofFloats(wv[i], shape[i + 1], k);
            total += shape[i + 1];
        }
        Weight[] ws;
        if (together) {
            ws = gpu.weights(ts);
        } else {
            ws = new Weight[count];
            for (int i = 0; i < count; i++) {
                ws[i] = gpu.weight(ts[i]);
            }
        }
        float[] stacked = new float[total * k];
        int at = 0;
        for (float[] w : wv) {
            System.arraycopy(w, 0, stacked, at, w.length);
            at += w.length;
        }
        Buffer whole = gpu.allocate(m, total);
        gpu.matmul(x, gpu.weight(Tensor.ofFloats(stacked, total, k)), null, whole);
        float[] full = gpu.download(whole);
        Buffer[] outs = new Buffer[count];
        for (int i = 0; i < count; i++) {
            outs[i] = gpu.allocate(m, shape[i + 1]);
        }
        gpu.matmulEach(x, ws, outs);
        // the inputs as the backend holds them (bf16-rounded where it computes in bf16), for the float64 product
        float[] xh = gpu.download(x);
        boolean bf16 = gpu.precision() == Precision.BF16;
        float[][] wh = new float[count][];
        for (int i = 0; i < count; i++) {
            wh[i] = wv[i].clone();
            if (bf16) {
                for (int j = 0; j < wh[i].length; j++) {
                    wh[i][j] = Tensor.bf16ToFloat(Tensor.floatToBf16(wh[i][j]));
                }
            }
        }
        // the output's one rounding (2^-8 of a value in bf16, 2^-24 in float32) and float32 sums of k terms, whose
        // error is at most k 2^-24 times the sum of the terms' magnitudes
        double rel = bf16 ? Math.pow(2, -8) : Math.pow(2, -24);
        double sums = k * Math.pow(2, -24);
        int[] rows = m <= 40 ? java.util.stream.IntStream.range(0, m).toArray()
                : r.ints(32, 0, m).toArray();
        int col0 = 0;
        for (int i = 0; i < count; i++) {
            int n = shape[i + 1];
            float[] got = gpu.download(outs[i]);
            float[] columns = new float[m * n];
            for (int row = 0; row < m; row++) {
                System.arraycopy(full, row * total + col0, columns, row * n, n);
            }
            String what = m + " rows, width " + k + ", product " + i + " of " + n;
            boolean merged = together && m > Kernels.GEMV_FUSED_MAX_ROWS && m <= CudaBackend.MERGED_MAX_ROWS;
            if (merged) {
                assertArrayEquals(columns, got, what + ": the columns of the stacked product");
            }  // products apart may take other plans than the stacked one: near float64's below, as every one
            double worst = 0;
            for (int row : rows) {
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    double mag = 0;
                    for (int t = 0; t < k; t++) {
                        double term = (double) xh[row * k + t] * wh[i][j * k + t];
                        s += term;
                        mag += Math.abs(term);
                    }
                    double err = Math.abs(got[row * n + j] - s) - (rel * Math.abs(s) + sums * mag);
                    worst = Math.max(worst, err);
                }
            }
            assertTrue(worst <= 0, what + ": " + worst + " past the bound of float64's product");
            col0 += n;
        }
    }

    private static float[] gaussian(SplittableRandom r, int n, double std) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextGaussian() * std);
        }
        return out;
    }
}
