package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Which decode steps {@link Kernels#attentionDecodeWindow} takes, and its switch's values (no GPU needed). */
class WindowDecodeShapeTest {
    @Test
    void aBlockTakesFourKeysALaneGroup() {
        // lanes of 8 dims, groups of the power of 2 at or above dh / 8, 256 threads a block
        assertEquals(512, Kernels.windowDecodeKeys(16));
        assertEquals(256, Kernels.windowDecodeKeys(32));
        assertEquals(128, Kernels.windowDecodeKeys(48));
        assertEquals(128, Kernels.windowDecodeKeys(64));
        assertEquals(64, Kernels.windowDecodeKeys(96));
        assertEquals(64, Kernels.windowDecodeKeys(112));
        assertEquals(64, Kernels.windowDecodeKeys(128));
    }

    @Test
    void windowsThatARingAndABlockHoldAreTaken() {
        assertTrue(Kernels.windowDecodeShape(112, 64, 64), "based-1b's window");
        assertTrue(Kernels.windowDecodeShape(64, 1, 1));
        assertTrue(Kernels.windowDecodeShape(64, 0, 1), "only the query's own key");
        assertFalse(Kernels.windowDecodeShape(112, 65, 65), "more keys than a block holds");
        assertFalse(Kernels.windowDecodeShape(64, 64, 63), "a ring shorter than the window");
        assertFalse(Kernels.windowDecodeShape(64, 0, 0), "no ring");
        assertFalse(Kernels.windowDecodeShape(120, 8, 8), "a head dim that is not a multiple of 16");
        assertFalse(Kernels.windowDecodeShape(144, 8, 8), "a head dim past 128");
        assertFalse(Kernels.windowDecodeShape(64, Integer.MAX_VALUE, 2048), "full attention");
    }

    @Test
    void twoStagesOfSharedMemoryAndAsManyBlocksAsTheMultiprocessorsHold() {
        // based-1b's window in bf16: 64 keys and 64 values of 112, the token's q, k and v, 128 floats of cos and sin
        int shared = Kernels.windowDecodeShared(64, 112, Precision.BF16);
        assertEquals(2 * (131 * 112 * 2 + 512), shared);
        assertEquals(10752, Kernels.WINDOW_DECODE_STATIC_SHARED, "ptxas: 10752 bytes smem");
        // an H200: 132 multiprocessors of 228 KiB hold 3 such blocks each
        assertEquals(3 * 132, Kernels.windowDecodeGrid(128 * 16, shared, 132, 233472));
        assertEquals(40, Kernels.windowDecodeGrid(40, shared, 132, 233472), "fewer items than that: a block each");
        assertEquals(2048, Kernels.windowDecodeGrid(2048, shared, 0, 0), "sizes unknown: a block an item");
        // small blocks: as many as the registers allow
        assertEquals(Kernels.WINDOW_DECODE_BLOCKS * 2, Kernels.windowDecodeGrid(10_000, Kernels.windowDecodeShared(1, 16, Precision.BF16), 2,
                233472));
        // a block that does not fit beside another still gets one a multiprocessor
        assertEquals(5, Kernels.windowDecodeGrid(100, 200_000, 5, 100_000));
    }

    @Test
    void theStaticSharedMemoryCountsForTheLimit() {
        // 45 keys of 112 in bf16: 42,688 bytes of stages, under 48 KiB alone but not with the 10,752 static ones
        // (the launch opts in to its dynamic memory whatever its size: AttentionDecodeWindowTest runs this window)
        assertEquals(42_688, Kernels.windowDecodeShared(45, 112, Precision.BF16));
        // a device that lets a block have 99 KiB takes based-1b's window in bf16, not heads of 128 over 64 keys in f32
        assertTrue(Kernels.windowDecodeSharedFits(Kernels.windowDecodeShared(64, 112, Precision.BF16), 101_376));
        assertFalse(Kernels.windowDecodeSharedFits(Kernels.windowDecodeShared(64, 128, Precision.F32), 101_376));
        assertTrue(Kernels.windowDecodeSharedFits(Kernels.windowDecodeShared(64, 128, Precision.F32), 0),
                "the limit not known");
    }

    @Test
    void theSwitchIsTrueOrFalseAndNamesABadValue() {
        assertEquals(Boolean.TRUE, Kernels.onOff(Kernels.WINDOW_DECODE_PROPERTY, "true"));
        assertEquals(Boolean.FALSE, Kernels.onOff(Kernels.WINDOW_DECODE_PROPERTY, "false"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Kernels.onOff(Kernels.WINDOW_DECODE_PROPERTY, "sometimes"));
        assertTrue(e.getMessage().contains("-D" + Kernels.WINDOW_DECODE_PROPERTY)
                && e.getMessage().contains("'sometimes'"), e.getMessage());
    }
}
