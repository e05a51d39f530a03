package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** How a growing region groups the pieces a call needs into runs, each mapped by one call (no GPU needed). */
class GrowingRegionRunsTest {
    private static int[][] runs(String pieces) {
        boolean[] needed = new boolean[pieces.length()];
        for (int i = 0; i < needed.length; i++) {
            needed[i] = pieces.charAt(i) == '#';
        }
        List<int[]> r = CudaStates.GrowingRegion.runsOf(needed);
        return r.toArray(new int[0][]);
    }

    @Test
    void neighbouringPiecesAreOneRun() {
        assertArrayEquals(new int[][] {{0, 3}}, runs("###...."));
        assertArrayEquals(new int[][] {{2, 2}, {5, 1}, {7, 3}}, runs("..##.#.###"));
        assertArrayEquals(new int[][] {{0, 1}, {2, 1}}, runs("#.#"));
    }

    @Test
    void nothingNeededIsNoRunAndEverythingIsOne() {
        assertEquals(0, runs("......").length);
        assertEquals(0, runs("").length);
        assertArrayEquals(new int[][] {{0, 6}}, runs("######"));
    }
}
