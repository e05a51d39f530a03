package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The workbench's residual add and RMSNorm: every version at every shape within its bound against float64, the
 * residual's sums the float32 adds exactly (an error of infinity otherwise), and timed; and BaseConv's decode step:
 * every version within its bound, the history shifted by one token bit for bit, and timed.
 */
@GpuTest
class KernelWorkbenchTest {
    @Test
    void everyNormVersionIsChecked() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            List<KernelWorkbench.Result> results = KernelWorkbench.run(gpu, "addRmsNorm", 2, note -> { });
            // three versions at each shape (every width here a multiple of 8 up to 2,048)
            assertEquals(3 * KernelWorkbench.NORM_SHAPES.size(), results.size(), results.toString());
            for (KernelWorkbench.Result r : results) {
                assertTrue(r.ok(), r.toString());
                assertTrue(r.millis() > 0, r.toString());
            }
        }
    }

    @Test
    void everyConvStepVersionIsChecked() {
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            List<KernelWorkbench.Result> results = KernelWorkbench.run(gpu, "baseConvStep", 2, note -> { });
            // three versions at each shape (every width a multiple of 8, 3 taps)
            assertEquals(3 * KernelWorkbench.CONV_SHAPES.size(), results.size(), results.toString());
            for (KernelWorkbench.Result r : results) {
                assertTrue(r.ok(), r.toString());
                assertTrue(r.millis() > 0, r.toString());
            }
        }
    }
}
