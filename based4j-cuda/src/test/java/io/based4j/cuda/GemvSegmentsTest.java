package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend.Buffer;
import io.based4j.backend.Backend.Weight;
import io.based4j.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link CudaBackend#matmulEach} against one {@code matmul} a product on the same backend: the same numbers bit for bit.
 * One launch ({@link Kernels#gemvSegments}) takes based-1b's linear-attention q, k and v projections (256, 256 and
 * 1,792 outputs of width 1,792: 4, 4 and 2 parts of a row), two products, and outputs that leave a block part-filled,
 * at one and two rows, in both precisions, counted once a launch; three rows, and {@code
 * -Dbased4j.cuda.gemvSegments=false}, take the products one by one.
 */
@GpuTest
class GemvSegmentsTest {
    private static final int[][] SHAPES = {{1792, 256, 256, 1792}, {1792, 256, 1792}, {96, 40, 8, 200}, {1024, 3, 5}};

    @ParameterizedTest
    @EnumSource(Precision.class)
    void oneLaunchIsTheProductsApart(Precision p) {
        try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
            SplittableRandom r = new SplittableRandom(7);
            for (int[] shape : SHAPES) {
                for (int m : new int[] {1, 2, 3}) {
                    long launches = gpu.gemmRoutes().gemvSegments;
                    check(gpu, m, shape, r);
                    assertEquals(launches + (m <= 2 ? 1 : 0), gpu.gemmRoutes().gemvSegments, m + " rows, width "
                            + shape[0] + ": " + (m <= 2 ? "one launch" : "the products one by one"));
                }
            }
            assertThrows(IllegalArgumentException.class, () -> gpu.matmulEach(gpu.allocate(1, 8),
                    new Weight[] {gpu.weight(Tensor.ofFloats(new float[64], 8, 8))}, new Buffer[0]));
        }
    }

    @Test
    void theSwitchTakesTheProductsOneByOne() {
        String before = System.getProperty(Kernels.GEMV_SEGMENTS_PROPERTY);
        System.setProperty(Kernels.GEMV_SEGMENTS_PROPERTY, "false");
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            check(gpu, 1, SHAPES[0], new SplittableRandom(3));
            assertEquals(0, gpu.gemmRoutes().gemvSegments);
            assertTrue(gpu.gemmRoutes().gemv >= 3, "the three products on gemv, one launch each");
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.GEMV_SEGMENTS_PROPERTY);
            } else {
                System.setProperty(Kernels.GEMV_SEGMENTS_PROPERTY, before);
            }
        }
    }

    /** Products of m rows of width shape[0] into shape[1..] outputs both ways: equal bit for bit. */
    private static void check(CudaBackend gpu, int m, int[] shape, SplittableRandom r) {
        int k = shape[0];
        int count = shape.length - 1;
        Buffer x = gpu.upload(gaussian(r, m * k, 1), m, k);
        Weight[] ws = new Weight[count];
        Buffer[] apart = new Buffer[count];
        Buffer[] together = new Buffer[count];
        for (int i = 0; i < count; i++) {
            int n = shape[i + 1];
            ws[i] = gpu.weight(Tensor.ofFloats(gaussian(r, n * k, 1 / Math.sqrt(k)), n, k));
            apart[i] = gpu.allocate(m, n);
            together[i] = gpu.allocate(m, n);
            gpu.matmul(x, ws[i], null, apart[i]);
        }
        gpu.matmulEach(x, ws, together);
        for (int i = 0; i < count; i++) {
            assertArrayEquals(gpu.download(apart[i]), gpu.download(together[i]), m + " rows, width " + k
                    + ", product " + i);
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
