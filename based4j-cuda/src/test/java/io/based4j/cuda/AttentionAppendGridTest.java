package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** How many blocks the key/value append launches: a block a kept token where that is fewer than one a token. */
class AttentionAppendGridTest {
    @Test
    void aShortWindowOverLongPromptsTakesABlockAKeptToken() {
        // based-1b's window of 64 over 10 prompts of 1,536: 640 blocks instead of 15,360
        assertEquals(64, Kernels.appendRowsPerSequence(15360, 10, 64, 1536));
        // ragged prompts: each sequence's last min(length, 64) tokens; the longest decides the blocks a sequence
        assertEquals(64, Kernels.appendRowsPerSequence(1000 + 30 + 200, 3, 64, 1000));
    }

    @Test
    void whereBlocksForTheKeptTokensAreNoFewerATokenEachStays() {
        assertEquals(0, Kernels.appendRowsPerSequence(128, 128, 64, 1));            // a decode step
        assertEquals(0, Kernels.appendRowsPerSequence(15360, 10, 4096, 1536));      // full attention's cache
        assertEquals(0, Kernels.appendRowsPerSequence(100 + 1 + 1, 3, 64, 100));    // 3 x 64 > 102 tokens
        assertEquals(0, Kernels.appendRowsPerSequence(40 * 10, 10, 64, 40));      // prompts within the window
        assertEquals(0, Kernels.appendRowsPerSequence(0, 0, 64, 0));
    }

    @Test
    void aLongestThatCannotBeIsRefused() {
        for (int[] bad : new int[][] {{100, 2, 64, 49}, {100, 2, 64, 101}, {0, 0, 64, 3}}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Kernels.appendRowsPerSequence(bad[0], bad[1], bad[2], bad[3]));
            assertTrue(e.getMessage().contains("longest sequence of " + bad[3]), e.getMessage());
        }
    }
}
