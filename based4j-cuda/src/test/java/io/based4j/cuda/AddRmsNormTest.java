package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaBackend#addRmsNorm}, one kernel for up to 1,024 rows (a decode step's), against the two ops it stands for
 * ({@code addInPlace}, then {@code rmsNorm}): the residual's sums bit for bit (the same float additions), the normed
 * output bit for bit in float32 (the same kernel's order), and in bf16 within one bf16 unit (the two ops' bf16 row
 * kernel sums the squares in another order, so the two float32 results may round to neighbouring bf16 values).
 * In bf16 the one kernel is the vector form (8 values a thread) where the width is a multiple of 8 up to 2,048 (1 and
 * 7 rows of 96; 1, 128 and 1,024 of 1,792), the scalar one elsewhere (100, 2,056): the same bound, the squares summed
 * in yet another order. More rows (1,030, 1,100, 1,300) take, in bf16, the row kernel that makes both ops' results in one pass over the residual:
 * those of the two ops' row kernels bit for bit, at widths of 96, 1024 (8 quads a lane) and 1792 (16); in float32
 * the two ops themselves.
 */
@GpuTest
class AddRmsNormTest {
    @ParameterizedTest
    @EnumSource(Precision.class)
    void oneOpIsTheTwo(Precision p) {
        SplittableRandom r = new SplittableRandom(3);
        try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
            for (int[] shape : new int[][] {{1, 96}, {7, 96}, {5, 100}, {1, 1792}, {128, 1792}, {1024, 1792},
                    {3, 2056}, {1030, 96}, {1100, 1024}, {1300, 1792}}) {
                int rows = shape[0];
                int d = shape[1];
                float[] r0 = gaussian(r, rows * d, 1);
                float[] br = gaussian(r, rows * d, 0.5);
                float[] w = new float[d];
                for (int i = 0; i < d; i++) {
                    w[i] = (float) r.nextDouble(0.6, 1.4);
                }
                Buffer branch = gpu.upload(br, rows, d);
                Weight weight = gpu.weight(Tensor.ofFloats(w, d));
                Buffer fused = gpu.allocateF32(rows, d);
                Buffer apart = gpu.allocateF32(rows, d);
                Buffer start = gpu.upload(r0, rows, d);
                gpu.addInPlace(fused, start);
                gpu.addInPlace(apart, start);
                Buffer outFused = gpu.allocate(rows, d);
                Buffer outApart = gpu.allocate(rows, d);
                gpu.addRmsNorm(fused, branch, weight, 1e-5, outFused);
                gpu.addInPlace(apart, branch);
                gpu.rmsNorm(apart, weight, 1e-5, outApart, null);
                assertArrayEquals(gpu.download(apart), gpu.download(fused), p + ", " + rows + " rows: the residual");
                float[] want = gpu.download(outApart);
                float[] got = gpu.download(outFused);
                if (p == Precision.F32 || rows > gpu.fusedNormRows()) {
                    assertArrayEquals(want, got, rows + " rows, d " + d + ": the normed rows");
                } else {
                    for (int i = 0; i < want.length; i++) {
                        double bound = Near.bf16Ulp(Math.max(Math.abs(want[i]), Math.abs(got[i])));
                        assertTrue(Math.abs(want[i] - got[i]) <= bound, rows + " rows, value " + i + ": " + got[i]
                                + ", the two ops " + want[i]);
                    }
                }
            }
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
