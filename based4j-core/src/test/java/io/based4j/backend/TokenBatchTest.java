package io.based4j.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** What a batch of packed sequences accepts: its sizes, and each sequence's own slot. */
class TokenBatchTest {
    @Test
    void sequencesInSlotsOfTheirOwnArePacked() {
        TokenBatch b = new TokenBatch(new int[] {2, 0, 5}, new int[] {7, 0, 3}, new int[] {1, 4, 2});
        assertEquals(3, b.size());
        assertEquals(7, b.totalTokens());
        assertEquals(4, b.longest());
        assertEquals(5, b.offset(2));
    }

    @Test
    void twoSequencesInOneSlotAreRefusedNamingTheSlot() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TokenBatch.step(new int[] {3, 1, 3}, new int[] {10, 4, 12}));
        assertTrue(e.getMessage().contains("slot 3") && e.getMessage().contains("[3, 1, 3]"), e.getMessage());
    }

    @Test
    void aNegativeSlotOrEmptySequenceIsRefused() {
        assertThrows(IllegalArgumentException.class, () -> new TokenBatch(new int[] {-1}, new int[] {0},
                new int[] {1}));
        assertThrows(IllegalArgumentException.class, () -> new TokenBatch(new int[] {0}, new int[] {0},
                new int[] {0}));
    }
}
