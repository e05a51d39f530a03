package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * How the decode step's tensor-core product ({@link Kernels#gemmRows}) is launched and which products it takes: on the
 * CPU, since these are the launcher's decisions ({@code GemmRowsTest} checks the numbers on the GPU).
 */
class GemmRowsLaunchTest {
    @Test
    void aBlockTakesThePowerOfTwoAtOrAboveTheRowsAndTwoFitAMultiprocessor() {
        assertEquals(8, Kernels.gemmRowsBlockRows(1));
        assertEquals(8, Kernels.gemmRowsBlockRows(8));
        assertEquals(16, Kernels.gemmRowsBlockRows(9));
        assertEquals(64, Kernels.gemmRowsBlockRows(33));
        assertEquals(128, Kernels.gemmRowsBlockRows(100));
        assertEquals(128, Kernels.gemmRowsBlockRows(128));
        for (int mp = 8; mp <= Kernels.GEMM_ROWS_MAX; mp *= 2) {
            int smem = Kernels.gemmRowsSmem(mp);
            // an H100's or H200's multiprocessor: 228 KiB, of which 1 KiB a block is the system's
            assertTrue(Kernels.GEMM_ROWS_BLOCKS_PER_SM * (smem + 1024) <= 228 * 1024, mp + " rows: " + smem);
            // the float32 tile of the sums fits in the stages' memory it reuses
            assertTrue(Kernels.GEMM_ROWS_FEATURES * (mp + 1) * 4 <= smem, mp + " rows");
        }
        assertEquals(110_592, Kernels.gemmRowsSmem(128), "3 stages of 128 outputs and 128 rows, 72 values a row");
    }

    @Test
    void theWidthIsSharedByTheFewestBlocksThatGiveThreeSeventhsOfABlockAMultiprocessor() {
        int sms = 132;
        // based-1b's MLP in (56 tiles of 128 outputs, 28 stages of 64): 2 blocks a tile, 112 blocks
        assertEquals(2, Kernels.gemmRowsSplit(7168, 1792, sms, true));
        // its MLP out (14 tiles, 56 stages): 8, 112 blocks (4 would give 56, below 57)
        assertEquals(8, Kernels.gemmRowsSplit(1792, 3584, sms, true));
        // the head (393 tiles) fills the device alone
        assertEquals(1, Kernels.gemmRowsSplit(50264, 1792, sms, true));
        // a narrow width keeps two stages a block: 4 stages in all give a split of 2 at most
        assertEquals(2, Kernels.gemmRowsSplit(128, 256, sms, true));
        assertEquals(1, Kernels.gemmRowsSplit(128, 64, sms, true));
        // no clusters (before sm_90): one block a tile
        assertEquals(1, Kernels.gemmRowsSplit(7168, 1792, sms, false));
        for (int n : new int[] {1, 256, 1792, 5376, 7168, 50264}) {
            for (int k : new int[] {64, 128, 1024, 1792, 3584}) {
                int split = Kernels.gemmRowsSplit(n, k, sms, true);
                assertTrue(split == 1 || split == 2 || split == 4 || split == 8, n + " x " + k + ": " + split);
                assertTrue(split == 1 || k / Kernels.GEMM_ROWS_STAGE / split >= 2, n + " x " + k + ": " + split);
            }
        }
    }

    @Test
    void itTakesBf16RowsOfAWidthOfWholeStages() {
        assertTrue(Kernels.gemmRowsFits(1, 64, 0, 16));
        assertTrue(Kernels.gemmRowsFits(128, 3584, 256, 512));
        assertFalse(Kernels.gemmRowsFits(129, 1792, 0, 0), "more rows than a block takes");
        assertFalse(Kernels.gemmRowsFits(0, 1792, 0, 0));
        assertFalse(Kernels.gemmRowsFits(8, 96, 0, 0), "a width of a stage and a half");
        assertFalse(Kernels.gemmRowsFits(8, 1792, 8, 0), "x not 16-byte aligned");
    }

    @Test
    void byDefaultItTakesTheProductsItWasMeasuredFasterAt() {
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        assertFalse(k.gemmRowsPays(8, 1792, 3584), "not before the device is known to run clusters");
        k.computeCapability(9);
        k.sharedOptInLimit(227 * 1024);  // an H100's or H200's
        assertFalse(k.gemmRowsPays(1, 7168, 1792), "one row stays with gemv");
        assertFalse(k.gemmRowsPays(2, 1792, 3584), "two rows into at most 4,096 outputs stay with gemv");
        assertTrue(k.gemmRowsPays(2, 7168, 1792), "two rows of based-1b's MLP in-projection");
        assertTrue(k.gemmRowsPays(2, 50264, 1792), "and its head");
        assertTrue(k.gemmRowsPays(3, 1792, 3584));
        assertTrue(k.gemmRowsPays(8, 1792, 3584), "based-1b's MLP out-projection at 8 rows");
        assertTrue(k.gemmRowsPays(8, 1792, 1792), "its projections");
        assertTrue(k.gemmRowsPays(8, 4096, 1024), "based-360m's MLP in-projection");
        assertFalse(k.gemmRowsPays(8, 7168, 1792), "based-1b's MLP in-projection: cuBLASLt");
        assertFalse(k.gemmRowsPays(8, 50264, 1792), "the head: cuBLASLt");
        assertFalse(k.gemmRowsPays(9, 1792, 3584), "from 9 rows: cuBLASLt");
        assertFalse(k.gemmRowsPays(32, 1792, 3584), "the MLP out-projection at 32 rows: cuBLASLt");
        assertFalse(k.gemmRowsPays(128, 1792, 3584), "a batch of 128: cuBLASLt");
        Kernels older = new Kernels(null, 0, 0);
        older.computeCapability(8);
        assertFalse(older.gemmRowsPays(8, 1792, 3584), "sm_80: no clusters, a block a tile: cuBLASLt");
        Kernels small = new Kernels(null, 0, 0);
        small.computeCapability(9);
        small.sharedOptInLimit(99 * 1024);
        assertTrue(small.gemmRowsPays(8, 1792, 3584), "8 rows take 81 KiB a block");
    }

    @Test
    void itsPropertiesNameWhatIsWrong() {
        assertEquals(0, Kernels.gemmRowsSplitSetting(null));
        assertEquals(4, Kernels.gemmRowsSplitSetting("4"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Kernels.gemmRowsSplitSetting("3"));
        assertTrue(e.getMessage().contains(Kernels.GEMM_ROWS_SPLIT_PROPERTY) && e.getMessage().contains("'3'"),
                e.getMessage());
        assertEquals("auto", Kernels.gemmRowsMode(null));
        assertEquals("off", Kernels.gemmRowsMode("off"));
        assertEquals("on", Kernels.gemmRowsMode(" on "));
        e = assertThrows(IllegalArgumentException.class, () -> Kernels.gemmRowsMode("yes"));
        assertTrue(e.getMessage().contains(Kernels.GEMM_ROWS_PROPERTY) && e.getMessage().contains("'yes'"),
                e.getMessage());
    }
}
