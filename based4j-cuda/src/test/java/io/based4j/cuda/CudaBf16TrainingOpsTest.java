package io.based4j.cuda;

import static io.based4j.cuda.Near.SEED;
import static io.based4j.cuda.Near.gaussian;
import static io.based4j.cuda.Near.stored;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.TrainingBackend.Parameter;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The training ops of a bf16 {@link CudaBackend} where they take float32 and bf16 buffers without converting them:
 * a float32 addend added as it is, the RMSNorm backward's bf16 copy of dx read by the next product (and forgotten
 * when anything but a zero of another buffer comes between), and the SwiGLU backward over bf16 buffers. Each is
 * held to what the conversions gave before, bit for bit. Float32 buffers with given values are parameters' master
 * values.
 */
@GpuTest
class CudaBf16TrainingOpsTest {
    static CudaBackend gpu;
    final SplittableRandom random = new SplittableRandom(SEED);

    @BeforeAll
    static void open() {
        gpu = CudaBackend.open("cuda", Precision.BF16);
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

    /** A float32 {@code rows x cols} buffer holding {@code v}. */
    static Parameter f32(float[] v, int rows, int cols) {
        return gpu.parameter(Tensor.ofFloats(v, rows, cols));
    }

    @Test
    void addInPlaceAddsFloat32AddendsUnrounded() {
        int rows = 9;
        int cols = 123;
        float[] acc = gaussian(random, rows * cols, 1);
        float[] x = gaussian(random, rows * cols, 1);
        Parameter a = f32(acc, rows, cols);
        gpu.addInPlace(a, f32(x, rows, cols));
        float[] want = new float[acc.length];
        for (int i = 0; i < acc.length; i++) {
            want[i] = acc[i] + x[i];
        }
        assertArrayEquals(want, gpu.download(a), "float32 + float32 in float32");
        Parameter b = f32(acc, rows, cols);
        gpu.addInPlace(b, gpu.upload(x, rows, cols));
        float[] xs = stored(Precision.BF16, x);
        for (int i = 0; i < acc.length; i++) {
            want[i] = acc[i] + xs[i];
        }
        assertArrayEquals(want, gpu.download(b), "float32 + bf16 in float32");
    }

    /** What comes between the norm's backward and the product: given dx. */
    @FunctionalInterface
    private interface Between {
        void accept(Buffer dx);
    }

    /**
     * What one rmsNormBackward into a float32 dx, {@code between}, and a product reading dx leave: dx, dw, and the
     * product's dx, dw and db.
     */
    private float[][] normThenProduct(Buffer x, Parameter w, Buffer rstd, Buffer dout, float[] dx0, Buffer x2,
                                      Parameter w2, Between between) {
        int n = x.rows();
        int d = x.cols();
        int k = x2.cols();
        Parameter dx = f32(dx0, n, d);
        Buffer dw = gpu.allocateF32(1, d);
        Buffer dx2 = gpu.allocate(n, k);
        Buffer dw2 = gpu.allocateF32(d, k);
        Buffer db2 = gpu.allocateF32(1, d);
        gpu.rmsNormBackward(x, w, rstd, dout, dx, dw);
        between.accept(dx);
        gpu.matmulBackward(x2, w2, dx, dx2, dw2, db2);
        return new float[][] {gpu.download(dx), gpu.download(dw), gpu.download(dx2), gpu.download(dw2),
            gpu.download(db2)};
    }

    @Test
    void theProductReadsTheNormsBf16CopyOfDxOnlyWhileItHolds() {
        int n = 67;
        int d = 96;
        int k = 40;
        Buffer x = f32(gaussian(random, n * d, 2), n, d);
        float[] wv = gaussian(random, d, 0.1);
        for (int i = 0; i < d; i++) {
            wv[i] += 1;
        }
        Parameter w = gpu.parameter(Tensor.ofFloats(wv, d));
        float[] rv = new float[n];
        for (int i = 0; i < n; i++) {
            rv[i] = 0.5f + random.nextFloat();
        }
        Buffer rstd = f32(rv, n, 1);
        Buffer dout = gpu.upload(gaussian(random, n * d, 1), n, d);
        float[] dx0 = gaussian(random, n * d, 1);
        Buffer x2 = gpu.upload(gaussian(random, n * k, 1), n, k);
        Parameter w2 = gpu.parameter(Tensor.ofFloats(gaussian(random, d * k, 0.2), d, k));
        Buffer other = gpu.allocate(n, k);

        // a zero of another buffer keeps the copy; a download (any other op) drops it and the product converts dx
        float[][] kept = normThenProduct(x, w, rstd, dout, dx0, x2, w2, dx -> gpu.zero(other));
        float[][] converted = normThenProduct(x, w, rstd, dout, dx0, x2, w2, dx -> gpu.download(gpu.view(other, 1)));
        String[] names = {"dx", "dw", "the product's dx", "the product's dw", "the product's db"};
        for (int i = 0; i < names.length; i++) {
            assertArrayEquals(converted[i], kept[i], names[i] + ": the same with the copy as with a conversion");
        }
        // a zero of dx itself drops the copy: the product reads zeros and adds nothing
        float[][] zeroed = normThenProduct(x, w, rstd, dout, dx0, x2, w2, gpu::zero);
        assertArrayEquals(new float[n * d], zeroed[0], "dx zeroed");
        for (int i = 2; i < names.length; i++) {
            assertArrayEquals(new float[zeroed[i].length], zeroed[i], names[i] + " after dx was zeroed");
        }
    }

    @Test
    void swigluBackwardOverBf16BuffersGivesTheFloat32PathRoundedBack() {
        int n = 13;
        for (int h : new int[] {41, 48}) {
            Buffer a = gpu.upload(gaussian(random, n * 2 * h, 1.5), n, 2 * h);
            float[] g = stored(Precision.BF16, gaussian(random, n * h, 1));
            float[] da0 = stored(Precision.BF16, gaussian(random, n * 2 * h, 0.5));
            Buffer da = gpu.upload(da0, n, 2 * h);
            gpu.swigluBackward(a, gpu.upload(g, n, h), da);
            Parameter daF = f32(da0, n, 2 * h);
            gpu.swigluBackward(a, f32(g, n, h), daF);
            assertArrayEquals(stored(Precision.BF16, gpu.download(daF)), gpu.download(da), "h " + h
                    + " [-Dbased4j.seed=" + SEED + "]");
        }
    }

    @Test
    void inferenceRmsNormIsTheTrainingOneWithoutRstd() {
        int n = 5;
        for (int d : new int[] {64, 1792, 781}) {
            Buffer x = f32(gaussian(random, n * d, 2), n, d);
            Parameter w = gpu.parameter(Tensor.ofFloats(gaussian(random, d, 1), d));
            Buffer out = gpu.allocate(n, d);
            Buffer kept = gpu.allocate(n, d);
            gpu.rmsNorm(x, w, 1e-5, out, null);
            gpu.rmsNorm(x, w, 1e-5, kept, gpu.allocateF32(n, 1));
            assertArrayEquals(gpu.download(kept), gpu.download(out), "d " + d);
        }
    }
}
