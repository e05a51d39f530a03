package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Which products the fused forms of gemv take ({@link Kernels#gemvFusedParts}): those version 3 takes in one row of W
 * a warp (one or two rows of x, a width of whole 16-byte pieces, aligned operands) in at most 4 parts, so that a
 * block holds a pair of SwiGLU's rows; and the parts are version 3's own, so that the sums are its own.
 */
class GemvFusedPartsTest {
    @ParameterizedTest
    @EnumSource(Precision.class)
    void theFusedFormsTakeVersion3sProductsOfFourPartsOrFewer(Precision p) {
        assertEquals(Kernels.gemv3Parts(p, 1, 7168, 1792), Kernels.gemvFusedParts(p, 1, 7168, 1792, 0, 0));
        assertEquals(Kernels.gemv3Parts(p, 2, 1792, 3584), Kernels.gemvFusedParts(p, 2, 1792, 3584, 256, 512));
        assertEquals(4, Kernels.gemvFusedParts(p, 1, 500, 1024, 0, 0));
        assertEquals(0, Kernels.gemvFusedParts(p, 3, 1792, 3584, 0, 0), "three rows");
        assertEquals(0, Kernels.gemvFusedParts(p, 0, 1792, 3584, 0, 0), "no rows");
        assertEquals(0, Kernels.gemvFusedParts(p, 1, 1792, 3580, 0, 0), "a width of 3580");
        assertEquals(0, Kernels.gemvFusedParts(p, 1, 1792, 3584, 8, 0), "x misaligned");
        assertEquals(0, Kernels.gemvFusedParts(p, 1, 1792, 3584, 0, 8), "w misaligned");
        // few outputs over a wide row: version 3 cuts it into 8 parts, which leave a block no pair of rows
        assertEquals(8, Kernels.gemv3Parts(p, 1, 8, 1 << 16));
        assertEquals(0, Kernels.gemvFusedParts(p, 1, 8, 1 << 16, 0, 0), "8 parts");
    }
}
