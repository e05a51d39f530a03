package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The key of a cuBLASLt plan: what makes two products share a plan, and the messages that name a product. */
class LtGemmTest {
    private static final long BASE = 0x7f00_0000_0000L; // 256-byte aligned, like every cuMemAlloc address

    /** out^T [m, n] = w [m, k]^T-op x^T, the forward product of a 16384 x 1024 -> 4096 layer, with a bias. */
    private static LtGemm forward(long a, long b, long c, long bias, float beta) {
        return LtGemm.of(Cublas.OP_T, Cublas.OP_N, 4096, 16384, 1024, a, Cublas.R_16BF, 1024, b, Cublas.R_16BF, 1024,
                beta != 0f, c, Cublas.R_16BF, 4096, Cublas.COMPUTE_32F,
                bias == 0 ? CublasLt.EPILOGUE_DEFAULT : CublasLt.EPILOGUE_BIAS, bias);
    }

    @Test
    void alignmentIsTheLowestSetBitUpTo256() {
        assertEquals(256, LtGemm.alignment(BASE));
        assertEquals(256, LtGemm.alignment(BASE + 512));
        assertEquals(128, LtGemm.alignment(BASE + 128));
        assertEquals(16, LtGemm.alignment(BASE + 48));
        assertEquals(2, LtGemm.alignment(BASE + 2));
        assertEquals(1, LtGemm.alignment(BASE + 3));
        assertEquals(256, LtGemm.alignment(0));
    }

    @Test
    void productsThatDifferOnlyInWhereTheirDataIsShareAPlan() {
        LtGemm one = forward(BASE, BASE + (1 << 20), BASE + (2 << 20), BASE + (3 << 20), 0f);
        LtGemm other = forward(BASE + (8 << 20), BASE + 4096, BASE + 256, BASE + 768, 0f);
        assertEquals(one, other);
        assertEquals(one.hashCode(), other.hashCode());
    }

    @Test
    void alignmentBetaAndEpilogueEachGetTheirOwnPlan() {
        LtGemm base = forward(BASE, BASE, BASE, BASE, 0f);
        assertNotEquals(base, forward(BASE + 16, BASE, BASE, BASE, 0f), "A less aligned");
        assertNotEquals(base, forward(BASE, BASE + 2, BASE, BASE, 0f), "B less aligned");
        assertNotEquals(base, forward(BASE, BASE, BASE + 64, BASE, 0f), "C less aligned");
        assertNotEquals(base, forward(BASE, BASE, BASE, BASE + 2, 0f), "bias less aligned");
        assertNotEquals(base, forward(BASE, BASE, BASE, BASE, 1f), "beta nonzero");
        assertEquals(forward(BASE, BASE, BASE, BASE, 1f), forward(BASE, BASE, BASE, BASE, 0.5f), "any nonzero beta");
        assertNotEquals(base, forward(BASE, BASE, BASE, 0, 0f), "no bias");
    }

    @Test
    void layoutsFollowTheTransposes() {
        // dw^T [k, m] += x^T [k, n] dout [n, m]: A is k x n as stored, B is m x n stored and read transposed
        LtGemm dw = LtGemm.of(Cublas.OP_N, Cublas.OP_T, 1024, 4096, 16384, BASE, Cublas.R_16BF, 1024, BASE,
                Cublas.R_16BF, 4096, true, BASE, Cublas.R_32F, 1024, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_BGRADB,
                BASE);
        assertEquals(1024, dw.aRows());
        assertEquals(16384, dw.aCols());
        assertEquals(4096, dw.bRows());
        assertEquals(16384, dw.bCols());
        LtGemm fw = forward(BASE, BASE, BASE, 0, 0f);
        assertEquals(1024, fw.aRows());
        assertEquals(4096, fw.aCols());
        assertEquals(1024, fw.bRows());
        assertEquals(16384, fw.bCols());
    }

    @Test
    void theDescriptionNamesShapeTypesAndEpilogue() {
        assertEquals("cublasLtMatmul(TN, m=4096, n=16384, k=1024, types A/B/C bf16/bf16/bf16, lda=1024, ldb=1024,"
                + " ldc=4096, compute 32F, epilogue BIAS, beta 0)", forward(BASE, BASE, BASE, BASE, 0f).describe());
        LtGemm f32 = LtGemm.of(Cublas.OP_N, Cublas.OP_N, 7, 1, 3, BASE, Cublas.R_32F, 7, BASE, Cublas.R_32F, 3, true,
                BASE, Cublas.R_32F, 7, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0);
        assertEquals("cublasLtMatmul(NN, m=7, n=1, k=3, types A/B/C f32/f32/f32, lda=7, ldb=3, ldc=7, compute 32F,"
                + " epilogue DEFAULT, beta nonzero)", f32.describe());
    }

    @Test
    void attributesAreNamedInMessages() {
        assertEquals("CUBLASLT_MATMUL_DESC_BIAS_POINTER", CublasLt.descAttributeName(CublasLt.DESC_BIAS_POINTER));
        assertEquals("CUBLASLT_MATMUL_DESC_EPILOGUE", CublasLt.descAttributeName(7));
        assertEquals("cublasLtMatmulDescAttributes_t 99", CublasLt.descAttributeName(99));
        assertEquals("CUBLASLT_MATMUL_PREF_IMPL_MASK", CublasLt.preferenceAttributeName(12));
        assertEquals("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES", CublasLt.preferenceAttributeName(8));
    }

    @Test
    void impossibleProductsAreRefusedWithTheirShape() {
        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class, () -> LtGemm.of(Cublas.OP_N,
                Cublas.OP_N, 5, 0, 3, BASE, Cublas.R_32F, 5, BASE, Cublas.R_32F, 3, false, BASE, Cublas.R_32F, 5,
                Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0));
        assertTrue(zero.getMessage().startsWith("cublasLtMatmul(NN, m=5, n=0, k=3,")
                && zero.getMessage().endsWith("m, n and k must be positive"), zero.getMessage());
        IllegalArgumentException ld = assertThrows(IllegalArgumentException.class, () -> LtGemm.of(Cublas.OP_T,
                Cublas.OP_N, 5, 2, 3, BASE, Cublas.R_32F, 2, BASE, Cublas.R_32F, 3, false, BASE, Cublas.R_32F, 5,
                Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0));
        assertTrue(ld.getMessage().contains("lda=2") && ld.getMessage().contains("3/3/5 rows"), ld.getMessage());
        IllegalArgumentException noBias = assertThrows(IllegalArgumentException.class, () -> LtGemm.of(Cublas.OP_T,
                Cublas.OP_N, 4, 4, 4, BASE, Cublas.R_32F, 4, BASE, Cublas.R_32F, 4, false, BASE, Cublas.R_32F, 4,
                Cublas.COMPUTE_32F, CublasLt.EPILOGUE_BIAS, 0));
        assertTrue(noBias.getMessage().endsWith("epilogue BIAS needs a bias vector"), noBias.getMessage());
        IllegalArgumentException stray = assertThrows(IllegalArgumentException.class, () -> LtGemm.of(Cublas.OP_T,
                Cublas.OP_N, 4, 4, 4, BASE, Cublas.R_32F, 4, BASE, Cublas.R_32F, 4, false, BASE, Cublas.R_32F, 4,
                Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, BASE));
        assertTrue(stray.getMessage().endsWith("a bias vector needs a bias epilogue"), stray.getMessage());
    }

    @Test
    void aBatchSplitAlongKIsAPlanOfItsOwnWithTheStridesAlignment() {
        // 128 x 3584 . 3584 x 1792 as 7 products along k (512 each) into float32 slabs of 1792 x 128
        LtGemm one = LtGemm.of(Cublas.OP_T, Cublas.OP_N, 1792, 128, 512, BASE, Cublas.R_16BF, 3584, BASE,
                Cublas.R_16BF, 3584, false, BASE, Cublas.R_32F, 1792, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0);
        LtGemm seven = one.batched(7, 512, 512, 1792L * 128);
        assertNotEquals(one, seven);
        assertEquals(256, seven.alignA(), "512 bf16 values: 1024 bytes between products");
        assertEquals(256, seven.alignC());
        assertNotEquals(one.key(), seven.key());
        assertTrue(seven.key().startsWith(one.key() + ",batch 7,"), seven.key());
        assertTrue(seven.describe().endsWith(", batch 7 strided 512/512/229376)"), seven.describe());
        // a part of 8 values apart (16 bytes) is only that aligned, as are the later products' addresses
        assertEquals(16, one.batched(2, 8, 8, 1792L * 128).alignA());
        assertEquals(one.key(), one.batched(1, 0, 0, 0).key(), "a batch of one is the product itself");
        // B: 128 columns of 512 read from rows 3584 apart, in bf16; the seventh part starts 6 x 512 further
        assertEquals(2L * (3584L * 127 + 512), one.bBytes());
        assertEquals(2L * (3584L * 127 + 512 + 512L * 6), seven.bBytes());
        // C: float32 slabs of 1792 x 128, seven of them back to back
        assertEquals(4L * 1792 * 128, one.cBytes());
        assertEquals(4L * 1792 * 128 * 7, seven.cBytes());
    }

    @Test
    void aBatchWhoseOutputsOverlapIsRefused() {
        LtGemm one = LtGemm.of(Cublas.OP_T, Cublas.OP_N, 64, 8, 32, BASE, Cublas.R_16BF, 64, BASE, Cublas.R_16BF, 64,
                false, BASE, Cublas.R_32F, 64, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0);
        IllegalArgumentException overlap = assertThrows(IllegalArgumentException.class,
                () -> one.batched(2, 32, 32, 64L * 8 - 1));
        assertTrue(overlap.getMessage().contains("a batch of 2 with strides 32/32/511"), overlap.getMessage());
        assertThrows(IllegalArgumentException.class, () -> one.batched(0, 32, 32, 512));
    }
}
