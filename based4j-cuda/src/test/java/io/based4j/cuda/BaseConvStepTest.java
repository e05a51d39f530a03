package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.backend.TokenBatch;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link Kernels#baseConvStep}, a decode step of BaseConv in one kernel, against {@link Kernels#baseConv} followed by
 * {@link Kernels#baseConvState} on the same history: the outputs and the new history bit for bit (the same float
 * operations in the same order), in each of its versions (1 the scalar kernel; 2 and 3 the vector forms, for any count
 * of taps and a kernel per count, where they fit), and through the backend's choice. Sequences in slots out of order,
 * a slot left out, kernels of 1 to 4 taps (the vector forms; in bf16 they read the 8 channels' taps as k pieces of 16
 * bytes) and of 6 and 9 (past them: the scalar form, tap by tap), both precisions.
 */
@GpuTest
class BaseConvStepTest {
    static Stream<Arguments> cases() {
        return Stream.of(Arguments.of(Precision.BF16, 3), Arguments.of(Precision.F32, 3),
                Arguments.of(Precision.BF16, 4), Arguments.of(Precision.F32, 1), Arguments.of(Precision.BF16, 1),
                Arguments.of(Precision.BF16, 2), Arguments.of(Precision.F32, 2), Arguments.of(Precision.F32, 4),
                Arguments.of(Precision.BF16, 6), Arguments.of(Precision.BF16, 9));
    }

    @ParameterizedTest(name = "{0}, kernel {1}")
    @MethodSource("cases")
    void oneKernelIsTheTwo(Precision p, int k) {
        int inner = 96;
        int slots = 4;
        // three sequences of one token each, in slots 2, 0 and 3 (slot 1 untouched)
        TokenBatch batch = new TokenBatch(new int[] {2, 0, 3}, new int[] {5, 0, 17}, new int[] {1, 1, 1});
        int b = batch.size();
        SplittableRandom r = new SplittableRandom(23 + k);
        float[] u = gaussian(r, b * 2 * inner);
        float[] w = gaussian(r, inner * k);
        float[] hist = gaussian(r, slots * Math.max(1, k - 1) * inner);
        try (KernelRig rig = new KernelRig()) {
            long ud = rig.values(p, u);
            long wd = rig.values(p, w);
            long layout = rig.ints(CudaBackend.layoutOf(batch));
            long histTwo = rig.values(p, hist);
            long outTwo = rig.zeros((long) b * inner * p.bytes());
            rig.kernels.baseConv(p, ud, wd, histTwo, layout, outTwo, b, b, inner, k);
            rig.kernels.baseConvState(p, ud, histTwo, layout, b, b, inner, k);
            float[] wantOut = rig.values(p, outTwo, b * inner);
            float[] wantHist = rig.values(p, histTwo, hist.length);
            boolean vec = k <= Kernels.CONV_VEC_TAPS;
            for (int version : vec ? new int[] {0, 1, 2, 3} : new int[] {0, 1}) {  // 0: the backend's choice
                long histOne = rig.values(p, hist);
                long outOne = rig.zeros((long) b * inner * p.bytes());
                if (version == 0) {
                    rig.kernels.baseConvStep(p, ud, wd, histOne, layout, outOne, b, inner, k);
                } else {
                    rig.kernels.baseConvStep(version, p, ud, wd, histOne, layout, outOne, b, inner, k);
                }
                String what = version == 0 ? "the backend's choice" : "version " + version;
                assertArrayEquals(wantOut, rig.values(p, outOne, b * inner), what + ": outputs");
                assertArrayEquals(wantHist, rig.values(p, histOne, hist.length), what + ": history");
            }
        }
    }

    private static float[] gaussian(SplittableRandom r, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) r.nextGaussian();
        }
        return out;
    }
}
