package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.U;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Products whose algorithm is chosen by timing ({@link CudaBackend#timeProducts}): the timing runs on a scratch output,
 * so a product that adds into its output (a weight gradient, beta 1 into itself) or reads a residual (C apart from D)
 * still gives one product's result (against the float64 reference, allowances as {@link CublasLtMatmulTest}'s: a
 * second addition into dw would be off by the whole product); the choice is kept in the file, and a handle of a later
 * process takes it without timing and gives the same bits.
 */
@GpuTest
class GemmTimingTest {
    /** n rows, k inputs, m outputs: 2^30 multiply-adds, the least that is timed. */
    private static final int N = 1024;
    private static final int K = 1024;
    private static final int M = 1024;

    @TempDir
    Path dir;

    /** The values one run starts from. */
    private record Inputs(float[] x, float[] w, float[] dout, float[] dw0, float[] r) {
    }

    @Test
    void timedProductsGiveOneProductAndTheKeptChoiceGivesTheSameBits() throws IOException {
        Inputs in = inputs();
        Path file = dir.resolve("gemm-choices.tsv");
        GemmChoices first = GemmChoices.unshared(file);
        float[][] got;
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            gpu.timeProducts(first);
            got = run(gpu, in);
            assertEquals(2, gpu.cublasLt().timedPlans(), "both products were timed");
        }
        checkAgainstReference(in, got);
        assertEquals(2, first.size());
        assertEquals(2, Files.readAllLines(file).size(), "the choices are in the file");

        GemmChoices later = GemmChoices.unshared(file);  // as a later process finds them
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            gpu.timeProducts(later);
            float[][] again = run(gpu, in);
            assertEquals(0, gpu.cublasLt().timedPlans(), "the kept choices are taken, not timed again");
            assertArrayEquals(got[0], again[0], "dw: the same algorithm gives the same bits");
            assertArrayEquals(got[1], again[1], "x w^T + r: the same algorithm gives the same bits");
        }
    }

    @Test
    void coldTimingGivesOneProductAndKeepsItsChoicesApart() throws IOException {
        Inputs in = inputs();
        Path file = dir.resolve("gemm-choices-cold.tsv");
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            // each candidate's launches after the L2 cache is flushed, as inference's timing runs them
            gpu.cublasLt().timing(GemmChoices.unshared(file), "a device", true);
            float[][] got = run(gpu, in);
            assertEquals(2, gpu.cublasLt().timedPlans(), "both products were timed");
            checkAgainstReference(in, got);
        }
        List<String> lines = Files.readAllLines(file);
        assertEquals(2, lines.size());
        assertTrue(lines.stream().allMatch(line -> line.startsWith("a device|") && line.contains("|cold|")),
                "cold choices are kept under keys of their own: " + lines);
    }

    /** The values both tests start from: 2^30 multiply-adds a product, the least that is timed. */
    private static Inputs inputs() {
        assertTrue((long) N * K * M >= CublasLt.TIMED_MIN_MULTIPLY_ADDS);
        SplittableRandom random = new SplittableRandom(SEED);
        return new Inputs(stored(Precision.BF16, gaussian(random, N * K, 1)),
                stored(Precision.BF16, gaussian(random, M * K, 1 / Math.sqrt(K))),
                stored(Precision.BF16, gaussian(random, N * M, 1)), gaussian(random, M * K, 0.5),
                gaussian(random, N * M, 0.5));
    }

    /** dw += dout^T x (float32, into itself) and x w^T + r (float32, r apart from the output): both results. */
    private static float[][] run(CudaBackend gpu, Inputs in) {
        Buffer x = gpu.upload(in.x(), N, K);
        Weight w = gpu.weight(Tensor.ofFloats(in.w(), M, K));
        Buffer dout = gpu.upload(in.dout(), N, M);
        Buffer dw = gpu.parameter(Tensor.ofFloats(in.dw0(), M, K));
        gpu.matmulBackward(x, w, dout, null, dw, null);
        Buffer r = gpu.parameter(Tensor.ofFloats(in.r(), N, M));
        Buffer out = gpu.allocateF32(N, M);
        gpu.matmulAdd(x, w, null, r, out);
        assertArrayEquals(in.r(), gpu.download(r), "the residual is read, not written");
        return new float[][] {gpu.download(dw), gpu.download(out)};
    }

    private static void checkAgainstReference(Inputs in, float[][] got) {
        double[][] dw = reference(in.dw0(), transposed(in.dout(), N, M), transposed(in.x(), N, K), M, K, N);
        double[][] out = reference(in.r(), in.x(), in.w(), N, M, K);
        double[] wantDw = dw[0];
        double[] magDw = dw[1];
        double[] wantOut = out[0];
        double[] magOut = out[1];
        // a float32 sum of n products and one addend, tensor cores truncating: 2 (n + 2) u of the magnitude
        Near.within("dw += dout^T x (timed)", wantDw, got[0], scaled(magDw, 2 * (N + 2) * U));
        Near.within("x w^T + r (timed)", wantOut, got[1], scaled(magOut, 2 * (K + 2) * U));
    }

    /**
     * {@code c0 + p q^T} in float64 (p [rows, inner], q [cols, inner], row-major) and the same over absolute values
     * (the magnitude the allowance scales with).
     */
    private static double[][] reference(float[] c0, float[] p, float[] q, int rows, int cols, int inner) {
        double[] want = new double[rows * cols];
        double[] mag = new double[rows * cols];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                double s = c0[r * cols + c];
                double a = Math.abs(s);
                for (int t = 0; t < inner; t++) {
                    double term = (double) p[r * inner + t] * q[c * inner + t];
                    s += term;
                    a += Math.abs(term);
                }
                want[r * cols + c] = s;
                mag[r * cols + c] = a;
            }
        }
        return new double[][] {want, mag};
    }

    /** v [rows, cols] transposed to [cols, rows]. */
    private static float[] transposed(float[] v, int rows, int cols) {
        float[] t = new float[v.length];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                t[c * rows + r] = v[r * cols + c];
            }
        }
        return t;
    }

    private static double[] scaled(double[] v, double f) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i] * f;
        }
        return out;
    }
}
