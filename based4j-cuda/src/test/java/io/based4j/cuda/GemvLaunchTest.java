package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * How gemv version 3 is laid out on the GPU ({@link Kernels#gemv3Parts}) and which products it takes
 * ({@link Kernels#gemvPays}): on the CPU, since these are the launcher's decisions, not the kernel's numbers
 * ({@code GemvVersionsTest} checks those on the GPU).
 */
class GemvLaunchTest {
    @Test
    void eachPartOfARowIsOneRoundOfLoadsWhereEightPartsSuffice() {
        for (Precision p : Precision.values()) {
            for (int m = 1; m <= Kernels.GEMV_MAX_ROWS; m++) {
                int rows = Kernels.gemvRowsPerWarp(m);
                int round = 32 * (p == Precision.BF16 ? 8 : 4) / rows;
                for (int n : new int[] {1, 7, 1024, 1792, 5376, 7168, 50264}) {
                    for (int k : new int[] {8, 1024, 1792, 3584, 4104, 16384}) {
                        int parts = Kernels.gemv3Parts(p, m, n, k);
                        String what = p + " " + m + " x " + k + " . " + k + " x " + n + ": " + parts + " parts";
                        assertTrue(parts == 1 || parts == 2 || parts == 4 || parts == 8, what);
                        int pieces = k / 8;
                        int perPart = (pieces + parts - 1) / parts;
                        assertTrue(perPart <= round || parts == 8, what + " leave " + perPart + " pieces a part");
                        if (parts > 1) {
                            // a part is split only to fit a round or to give the GPU warps enough, never below 32
                            // pieces a part for the warps' sake
                            int half = parts / 2;
                            boolean fitsWithHalf = (pieces + half - 1) / half <= round;
                            assertTrue(!fitsWithHalf || pieces / parts >= 32, what);
                        }
                    }
                }
            }
        }
        // based-1b's decode products at one row: one part where a row is a round, two for the MLP's out-projection
        assertEquals(1, Kernels.gemv3Parts(Precision.BF16, 1, 7168, 1792));
        assertEquals(2, Kernels.gemv3Parts(Precision.BF16, 1, 1792, 3584));
    }

    @Test
    void versionThreeTakesOneOrTwoRowsAtEveryShapeTheOthersTheWideProducts() {
        assertEquals(3, Kernels.GEMV_VERSION, "the default version");
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        for (int n : new int[] {1, 1792, 7168, 50264}) {
            for (int width : new int[] {8, 1792, 3584}) {
                for (int rows = 1; rows <= Kernels.GEMV_MAX_ROWS; rows++) {
                    String what = k.gemvVersion() + ": " + rows + " rows, " + n + " outputs, width " + width;
                    if (k.gemvVersion() == 3) {
                        assertEquals(rows <= 2, k.gemvPays(rows, n, width), what);
                    } else {  // -Dbased4j.cuda.gemv=1 or 2: the out-projections' rule
                        assertEquals(width >= 2 * n, k.gemvPays(rows, n, width), what);
                    }
                }
            }
        }
    }
}
