package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The host-side parts of the training launchers: the embedding groups and the scratch sizes (no GPU needed). */
class TrainKernelsTest {
    @Test
    void embeddingGroupsListEachIdsPositionsInOrder() {
        int[] ids = {5, 2, 5, 0, 2, 5};
        TrainKernels.EmbeddingGroups g = TrainKernels.embeddingGroups(ids, 6);
        assertEquals(3, g.groups());
        // starts of the groups of ids 0, 2, 5 (and the end), then their positions
        assertArrayEquals(new int[] {0, 1, 3, 6, 3, 1, 4, 0, 2, 5}, g.layout());
    }

    @Test
    void embeddingGroupsOfNoIdsAreEmpty() {
        TrainKernels.EmbeddingGroups g = TrainKernels.embeddingGroups(new int[0], 10);
        assertEquals(0, g.groups());
        assertArrayEquals(new int[] {0}, g.layout());
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
    void lossScratchHoldsTheRowStateAndOneChunkOfLogits() {
        // 67 rows: 16 bytes of state each (1072, aligned to 1280), 67 x 4096 float logits (1097728, a multiple of 256)
        assertEquals(1280 + 1_097_728, TrainKernels.crossEntropyScratchBytes(Precision.F32, 67, 4096));
        // bf16 adds the chunk's gradients in bf16 (548864)
        assertEquals(1280 + 1_097_728 + 548_864, TrainKernels.crossEntropyScratchBytes(Precision.BF16, 67, 4096));
    }

    @Test
    void normPartialsFollowTheCountUpToTheLimit() {
        assertEquals(0, TrainKernels.normPartials(0));
        assertEquals(1, TrainKernels.normPartials(1));
        assertEquals(391, TrainKernels.normPartials(100_003));
        assertEquals(TrainKernels.NORM_MAX_PARTIALS, TrainKernels.normPartials(1L << 40));
    }
}
