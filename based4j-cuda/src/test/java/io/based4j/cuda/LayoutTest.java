package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import io.based4j.backend.TokenBatch;
import org.junit.jupiter.api.Test;

/** The batch layouts the kernels read (no GPU needed): a call's, and that of a part of its sequences. */
class LayoutTest {
    // slots 2, 0 and 3 from positions 0, 7 and 5, with 3, 1 and 2 tokens: rows 0-2, 3, 4-5
    static final TokenBatch CALL = new TokenBatch(new int[] {2, 0, 3}, new int[] {0, 7, 5}, new int[] {3, 1, 2});

    @Test
    void aCallsLayout() {
        assertArrayEquals(new int[] {2, 0, 3, 0, 7, 5, 3, 1, 2, 0, 3, 4, 6, 0, 0, 0, 1, 2, 2},
                CudaBackend.layoutOf(CALL));
    }

    @Test
    void aPartsLayoutKeepsItsRowsWhereTheyLieInTheCall() {
        // the first and the last sequence: their offsets in the call, the call's 6 rows, -1 for the middle one's row
        assertArrayEquals(new int[] {2, 3, 0, 5, 3, 2, 0, 4, 6, 0, 0, 0, -1, 1, 1},
                CudaBackend.layoutOf(CALL, new int[] {0, 2}));
        assertArrayEquals(CudaBackend.layoutOf(CALL), CudaBackend.layoutOf(CALL, new int[] {0, 1, 2}));
    }
}
