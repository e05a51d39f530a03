package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TrainingBackend;
import org.junit.jupiter.api.Test;

/**
 * The host-side parts of the training launchers: the embedding groups, the scratch sizes and which kernels apply (no
 * GPU needed).
 */
class TrainKernelsTest {
    @Test
    void embeddingGroupsListEachIdsPositionsInOrder() {
        int[] ids = {5, 2, 5, 0, 2, 5};
        TrainKernels.EmbeddingGroups g = TrainKernels.embeddingGroups(ids, 6);
        assertEquals(3, g.groups());
        // the count, the starts of the groups of ids 0, 2, 5 (then n for the rest of the n + 1), then the positions
        assertArrayEquals(new int[] {3, 0, 1, 3, 6, 6, 6, 6, 3, 1, 4, 0, 2, 5}, g.layout());
    }

    @Test
    void embeddingGroupsAreThoseOfASortOfIdAndPosition() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(7);
        int n = 1000;
        int rows = 50;
        int[] ids = r.ints(n, 0, rows).toArray();
        long[] keys = new long[n];
        for (int i = 0; i < n; i++) {
            keys[i] = ((long) ids[i] << 32) | i;
        }
        java.util.Arrays.sort(keys);
        int[] layout = TrainKernels.embeddingGroups(ids, rows).layout();
        int groups = layout[0];
        int g = 0;
        for (int i = 0; i < n; i++) {
            assertEquals((int) keys[i], layout[n + 2 + i], "position " + i + " in (id, position) order");
            if (i == 0 || (keys[i] >>> 32) != (keys[i - 1] >>> 32)) {
                assertEquals(i, layout[1 + g++], "start of group " + g);
            }
        }
        assertEquals(g, groups);
        assertEquals(n, layout[1 + groups]);
    }

    @Test
    void embeddingGroupsOfNoIdsAreEmpty() {
        TrainKernels.EmbeddingGroups g = TrainKernels.embeddingGroups(new int[0], 10);
        assertEquals(0, g.groups());
        assertArrayEquals(new int[] {0, 0}, g.layout());
    }

    @Test
    void scoredRowsListThePositionsWithTargetsThenTheirTargets() {
        int i = TrainingBackend.IGNORE_INDEX;
        assertArrayEquals(new int[] {1, 4, 5, 7, 0, 3}, CudaBackend.scoredRows(new int[] {i, 7, i, i, 0, 3}));
        assertArrayEquals(new int[0], CudaBackend.scoredRows(new int[] {i, i}));
    }

    @Test
    void stepScalarsPackAsTheKernelsReadThem() {
        int[] p = TrainKernels.packStepScalars(3e-3, 0.9, 0.95, 5_000_000_000L);
        assertEquals(Double.doubleToRawLongBits(3e-3), (p[0] & 0xffffffffL) | ((long) p[1] << 32), "lr");
        assertEquals(5_000_000_000L, (p[2] & 0xffffffffL) | ((long) p[3] << 32), "update");
        assertEquals((float) (1 - Math.pow(0.9, 5_000_000_000L)), Float.intBitsToFloat(p[4]), "c1");
        assertEquals((float) (1 - Math.pow(0.95, 5_000_000_000L)), Float.intBitsToFloat(p[5]), "c2");
    }

    @Test
    void anIdOutsideTheTableIsNamed() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TrainKernels.embeddingGroups(new int[] {1, 7, 3}, 7));
        assertEquals("ids[1] = 7 is outside the table [0, 7)", e.getMessage());
    }

    @Test
    void rmsNormBackwardUsesAtMostOneThousandBlocksOfAtLeastEightRows() {
        assertEquals(8, TrainKernels.rmsNormRowsPerBlock(77));
        assertEquals(10, TrainKernels.rmsNormRowsPerBlock(10_000)); // ceil(10000 / 1024)
        // 77 rows: 10 blocks of partial sums, d floats each
        assertEquals(4L * 10 * 112, TrainKernels.rmsNormBackwardScratchBytes(77, 112));
        assertEquals(4L * 1000 * 64, TrainKernels.rmsNormBackwardScratchBytes(10_000, 64));
    }

    @Test
    void rmsNormRowKernelsTakeBf16RowsThatARegisterBlockHolds() {
        assertTrue(TrainKernels.rmsNormByRows(Precision.BF16, 1024, 256, 512));
        assertTrue(TrainKernels.rmsNormByRows(Precision.BF16, 1792));
        assertTrue(TrainKernels.rmsNormByRows(Precision.BF16, 2048));
        assertFalse(TrainKernels.rmsNormByRows(Precision.F32, 1024), "float32 keeps the scalar kernels' order");
        assertFalse(TrainKernels.rmsNormByRows(Precision.BF16, 1026), "not a multiple of 4");
        assertFalse(TrainKernels.rmsNormByRows(Precision.BF16, 2052), "wider than 16 float4 a lane");
        assertFalse(TrainKernels.rmsNormByRows(Precision.BF16, 1024, 256, 520), "a pointer off 16-byte alignment");
    }

    @Test
    void rmsNormRowKernelPartsFitTheScalarKernelsScratch() {
        // based-360m's step: 528 blocks at most, 32 rows each (4 a warp), so 512 partial rows
        assertEquals(32, TrainKernels.rmsNormRowsPerRowBlock(16_384));
        assertEquals(3, TrainKernels.rmsNormRowsPerRowBlock(3));
        for (int n = 1; n <= 40_000; n += n < 600 ? 1 : 97) {
            int rows = TrainKernels.rmsNormRowsPerRowBlock(n);
            int blocks = (n + rows - 1) / rows;
            int scalarRows = TrainKernels.rmsNormRowsPerBlock(n);
            assertTrue(blocks <= TrainKernels.RMS_ROW_BLOCKS && blocks <= (n + scalarRows - 1) / scalarRows,
                    n + " rows: " + blocks + " blocks");
            assertTrue((long) rows * (blocks - 1) < n, n + " rows: no empty block");
        }
    }

    @Test
    void vectorColumnSumPartsFitTheScalarKernelsScratch() {
        for (int n = 1; n <= 40_000; n += n < 300 ? 1 : 131) {
            for (int m : new int[] {8, 264, 1024, 4096, 8192}) {
                int rows = TrainKernels.columnSumVecRowsPerPart(n, m);
                int parts = (n + rows - 1) / rows;
                int scalarRows = TrainKernels.columnSumRowsPerPart(n);
                assertTrue(parts <= (n + scalarRows - 1) / scalarRows, n + " x " + m + ": " + parts + " parts");
                assertTrue(4L * parts * m <= TrainKernels.columnSumScratchBytes(n, m));
            }
        }
        // 16,384 x 4096 (BaseConv's in-projection bias): 16 column blocks x 33 parts of 497 rows
        assertEquals(497, TrainKernels.columnSumVecRowsPerPart(16_384, 4096));
    }

    @Test
    void lossScratchHoldsTheRowStateAndOneChunkOfLogits() {
        // 200 rows: 16 bytes of state each (3200, aligned to 3328); chunks of 67 rows x 4096 float logits (1097728,
        // a multiple of 256)
        assertEquals(3328 + 1_097_728, TrainKernels.crossEntropyScratchBytes(Precision.F32, 200, 67, 4096));
        // bf16 adds the chunk's gradients in bf16 (548864)
        assertEquals(3328 + 1_097_728 + 548_864, TrainKernels.crossEntropyScratchBytes(Precision.BF16, 200, 67, 4096));
        // a chunk longer than the rows holds only the rows
        assertEquals(3328 + 4 * 200 * 4096, TrainKernels.crossEntropyScratchBytes(Precision.F32, 200, 1000, 4096));
    }

    @Test
    void normPartialsFollowTheCountUpToTheLimit() {
        assertEquals(0, TrainKernels.normPartials(0));
        assertEquals(1, TrainKernels.normPartials(1));
        assertEquals(391, TrainKernels.normPartials(100_003));
        assertEquals(TrainKernels.NORM_MAX_PARTIALS, TrainKernels.normPartials(1L << 40));
    }
}
