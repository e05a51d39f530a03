package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The launch arithmetic of {@link MixerTrainKernels} that needs no GPU: tiles, shared memory and scratch sizes. */
class MixerTrainKernelsTest {
    @Test
    void linearAttentionBlocksStayWithinTheDefaultSharedMemory() {
        // 48 KiB needs no opt-in on any GPU; the brief's limit for the mixers is 96 KiB
        for (int f : new int[] {1, 8, 16, 24, 32}) {
            for (int dh : new int[] {1, 16, 64, 112, 128, 256}) {
                int bytes = MixerTrainKernels.linearSharedBytes(f, dh);
                assertTrue(bytes <= 48 * 1024, "f " + f + ", dh " + dh + ": " + bytes + " bytes");
            }
        }
        assertEquals(32, MixerTrainKernels.linearTile(16, 112), "f 16 keeps 32 columns per block");
        assertEquals(16, MixerTrainKernels.linearTile(32, 112), "f 32 halves the tile to stay within 48 KiB");
        assertEquals(4 * (561 * 16 + 4 * 561 + 2 * 16 + 2 * 32 + 256 + 4), MixerTrainKernels.linearSharedBytes(32, 64));
    }

    @Test
    void linearAttentionScratchIsLinearInTheTokens() {
        // f 16, dh 112: 4 tiles of 32 columns; per (row, head): 4 dots, D, and 4 x 16 floats each of dq and dk
        long one = MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 130, 3, 16, 112);
        assertEquals(4L * 2 * 130 * 3 * (4 * (1 + 2 * 16) + 1), one);
        assertEquals(2 * one, MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 260, 3, 16, 112));
        assertEquals(0, MixerTrainKernels.linearAttentionBackwardScratchBytes(0, 130, 3, 16, 112));
    }

    @Test
    void badShapesAreRefusedBeforeAnyLaunch() {
        // the argument checks run before the kernels are looked up, so no GPU is needed to see them
        MixerTrainKernels mk = new MixerTrainKernels(null);
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.attentionForward(Precision.F32, 0, 0, 0, 1, 4, 2, 160, 3, 0, 10000, 0.1f));
        assertEquals("attentionForward: head dim 160 is outside [1, 128]", e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.linearAttentionForward(Precision.F32, 0, 0, 0, 0, 1, 4, 2, 65, 64, 1e-6f));
        assertEquals("linearAttentionForward: feature dim 65 is outside [1, 64]", e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.baseConvForward(Precision.F32, 0, 0, 0, 0, 1, 4, 8, 0));
        assertEquals("baseConvForward: kernel 0 must be at least 1", e.getMessage());
    }
}
