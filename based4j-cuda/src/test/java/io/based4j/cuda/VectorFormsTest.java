package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * Where the launchers take the vector forms of a decode step's ops (no GPU needed): the residual add and norm's
 * ({@link Kernels#addRmsNormVecFits}: bf16, a width that is a multiple of 8 up to 8 values a thread of its block,
 * 16-byte aligned pointers) and BaseConv's step's ({@link Kernels#convStepVec}: at most 4 taps, a width that is a
 * multiple of 8, its inputs, taps, history and output 16-byte aligned).
 */
class VectorFormsTest {
    static final long A = 0x7f00_0000_0000L;  // an address as allocations give them (256-byte aligned)

    @Test
    void theNormsVectorForm() {
        assertTrue(Kernels.addRmsNormVecFits(Precision.BF16, 1792, A, A + 4096, A + 8192, A + 12288));
        assertTrue(Kernels.addRmsNormVecFits(Precision.BF16, 2048, A, A, A, A));
        assertTrue(Kernels.addRmsNormVecFits(Precision.BF16, 8, A, A, A, A));
        assertFalse(Kernels.addRmsNormVecFits(Precision.BF16, 2056, A, A, A, A), "past 8 values a thread");
        assertFalse(Kernels.addRmsNormVecFits(Precision.BF16, 100, A, A, A, A), "not a multiple of 8");
        assertFalse(Kernels.addRmsNormVecFits(Precision.F32, 1792, A, A, A, A), "float32 keeps the scalar kernel");
        assertFalse(Kernels.addRmsNormVecFits(Precision.BF16, 1792, A, A + 8, A, A), "a pointer 8 bytes off");
    }

    @Test
    void theConvStepsVectorForm() {
        for (int k = 1; k <= Kernels.CONV_VEC_TAPS; k++) {
            assertTrue(Kernels.convStepVec(3584, k, A, A + 512, A + 1024, A + 2048), "kernel " + k);
        }
        assertFalse(Kernels.convStepVec(3584, Kernels.CONV_VEC_TAPS + 1, A, A, A, A), "past its taps");
        assertFalse(Kernels.convStepVec(100, 3, A, A, A, A), "not a multiple of 8");
        assertFalse(Kernels.convStepVec(3584, 3, A, A + 8, A, A), "the taps 8 bytes off");
        assertFalse(Kernels.convStepVec(3584, 3, A, A, A + 4, A), "the history 4 bytes off");
    }
}
