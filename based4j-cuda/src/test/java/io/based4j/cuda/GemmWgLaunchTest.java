package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * How the decode step's wgmma product ({@link Kernels#gemmWg}) is launched and which products it takes: on the CPU,
 * since these are the launcher's decisions ({@code GemmWgTest} checks the numbers on the GPU).
 */
class GemmWgLaunchTest {
    @Test
    void aBlockTakesSixStagesOfBothOperandsAndOneFitsAMultiprocessor() {
        // gemm_wgmma.cuh's GW_SMEM: 6 stages of 128 rows of W and 128 of x, 64 bf16 a row, and 1 KiB of alignment
        assertEquals(6 * 2 * 128 * 64 * 2 + 1024, Kernels.GEMM_WG_SMEM);
        assertTrue(Kernels.GEMM_WG_SMEM <= 227 * 1024, "an H100's or H200's opt-in limit");
        // the float32 tile of the sums (128 outputs by 128 rows, a row of 132) fits in the stages it reuses
        assertTrue(Kernels.GEMM_WG_FEATURES * (Kernels.GEMM_WG_ROWS + 4) * 4 <= Kernels.GEMM_WG_SMEM - 1024);
    }

    @Test
    void blocksAreTilesOfOutputsByRowsAndTheWidthIsSharedAsGemmRowsSharesIt() {
        assertEquals(56, Kernels.gemmWgBlocks(128, 7168));
        assertEquals(1, Kernels.gemmWgBlocks(1, 1));
        assertEquals(8 * 3, Kernels.gemmWgBlocks(300, 1000));
        int sms = 132;
        // based-1b's MLP in (56 tiles, 28 stages of 64): 2 blocks a tile, 112 blocks
        assertEquals(2, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, 7168), 1792, sms));
        // its MLP out (14 tiles, 56 stages): 8, 112 blocks
        assertEquals(8, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, 1792), 3584, sms));
        // its qkv (42 tiles): 2, 84 blocks
        assertEquals(2, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, 5376), 1792, sms));
        // based-360m's MLP in (32 tiles): 2, 64 blocks (4 was the slower, measured)
        assertEquals(2, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, 4096), 1024, sms));
        // two blocks of rows count as twice the tiles
        assertEquals(1, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(256, 7168), 1792, sms));
        // the head (393 tiles) fills the device alone
        assertEquals(1, Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, 50264), 1792, sms));
        // a narrow width keeps two stages a block
        assertEquals(2, Kernels.gemmWgSplit(1L, 256, sms));
        assertEquals(1, Kernels.gemmWgSplit(1L, 64, sms));
        for (int n : new int[] {1, 256, 1792, 5376, 7168, 50264}) {
            for (int k : new int[] {64, 128, 1024, 1792, 3584}) {
                int split = Kernels.gemmWgSplit(Kernels.gemmWgBlocks(128, n), k, sms);
                assertTrue(split == 1 || split == 2 || split == 4 || split == 8, n + " x " + k + ": " + split);
                assertTrue(split == 1 || k / Kernels.GEMM_WG_STAGE / split >= 2, n + " x " + k + ": " + split);
                assertEquals(Kernels.gemmRowsSplit(n, k, sms, true), split, "gemmRows' choice for its tiles");
            }
        }
    }

    @Test
    void itTakesBf16RowsOfAWidthOfWholeStages() {
        assertTrue(Kernels.gemmWgFits(1, 64, 0, 16));
        assertTrue(Kernels.gemmWgFits(1024, 3584, 256, 512), "more rows than a block takes: more blocks");
        assertFalse(Kernels.gemmWgFits(0, 1792, 0, 0));
        assertFalse(Kernels.gemmWgFits(8, 96, 0, 0), "a width of a stage and a half");
        assertFalse(Kernels.gemmWgFits(8, 1792, 0, 8), "w not 16-byte aligned");
    }

    @Test
    void itTakesNoProductUnlessAskedAndThenOnlyOnAnSm90aDevice() {
        String before = System.getProperty(Kernels.GEMM_WG_PROPERTY);
        try {
            System.clearProperty(Kernels.GEMM_WG_PROPERTY);
            Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
            k.computeCapability(9, 0);
            k.sharedOptInLimit(227 * 1024);
            assertTrue(k.wgmmaFits());
            assertFalse(k.gemmWgPays(128), "off by default: it made whole decode steps slower");
            System.setProperty(Kernels.GEMM_WG_PROPERTY, "true");
            Kernels on = new Kernels(null, 0, 0);
            assertFalse(on.gemmWgPays(128), "not before the device is known to run wgmma");
            on.computeCapability(9);
            assertFalse(on.gemmWgPays(128), "compute capability 9 of unknown minor: not sm_90a");
            on.computeCapability(9, 0);
            on.sharedOptInLimit(227 * 1024);
            assertTrue(on.gemmWgPays(1));
            assertTrue(on.gemmWgPays(128));
            assertTrue(on.gemmWgPays(Kernels.GEMM_WG_ON_MAX));
            assertFalse(on.gemmWgPays(Kernels.GEMM_WG_ON_MAX + 1), "a prefill's rows: the library");
            Kernels newer = new Kernels(null, 0, 0);
            newer.computeCapability(10, 0);
            assertFalse(newer.gemmWgPays(128), "compute capability 10: no sm_90a binary");
            Kernels small = new Kernels(null, 0, 0);
            small.computeCapability(9, 0);
            small.sharedOptInLimit(99 * 1024);
            assertFalse(small.gemmWgPays(128), "a block's 193 KiB do not fit");
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.GEMM_WG_PROPERTY);
            } else {
                System.setProperty(Kernels.GEMM_WG_PROPERTY, before);
            }
        }
    }

    @Test
    void itsPropertyNamesWhatIsWrong() {
        String before = System.getProperty(Kernels.GEMM_WG_PROPERTY);
        System.setProperty(Kernels.GEMM_WG_PROPERTY, "fast");
        try {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Kernels(null, 0, 0));
            assertTrue(e.getMessage().contains(Kernels.GEMM_WG_PROPERTY) && e.getMessage().contains("'fast'"),
                    e.getMessage());
        } finally {
            if (before == null) {
                System.clearProperty(Kernels.GEMM_WG_PROPERTY);
            } else {
                System.setProperty(Kernels.GEMM_WG_PROPERTY, before);
            }
        }
    }
}
