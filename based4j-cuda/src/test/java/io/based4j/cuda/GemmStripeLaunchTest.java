package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/**
 * Which products the stripe kernel ({@link Kernels#gemmStripe}, gemm_stripe.cuh) takes and what a block of it holds:
 * on the CPU, since these are the launcher's decisions ({@code GemmStripeTest} checks the numbers on the GPU).
 */
class GemmStripeLaunchTest {
    @Test
    void aBlockTakesEightStagesAndOneFitsAMultiprocessor() {
        // gemm_stripe.cuh's GS_SMEM: 8 stages of W's 64 rows and x's 128, 64 bf16 a row, and 1 KiB of alignment
        assertEquals(8 * (64 + 128) * 64 * 2 + 1024, Kernels.GEMM_STRIPE_SMEM);
        assertTrue(Kernels.GEMM_STRIPE_SMEM <= 227 * 1024, "an H100's or H200's opt-in limit");
        // the bf16 output tile (128 rows of x by 64 outputs, a row of 72) fits in the stages it reuses
        assertTrue(128 * 72 * 2 <= Kernels.GEMM_STRIPE_SMEM - 1024);
    }

    @Test
    void itTakesTheWideProductsOfADecodeStepFrom33To128Rows() {
        int sms = 132;
        int least = Kernels.GEMM_STRIPE_MIN_ROWS;
        // based-1b at 128 sequences: the MLP's and BaseConv's in-projections (112 stripes), the window's q, k, v (84)
        assertTrue(Kernels.gemmStripeTakes(128, 7168, least, sms));
        assertTrue(Kernels.gemmStripeTakes(128, 5376, least, sms));
        assertTrue(Kernels.gemmStripeTakes(33, 7168, least, sms));
        assertTrue(Kernels.gemmStripeTakes(64, 7168, least, sms));
        // based-360m's MLP in-projection (64 stripes)
        assertTrue(Kernels.gemmStripeTakes(128, 4096, least, sms));
        // the narrow products leave most multiprocessors idle: the out-projections (28 stripes), the feature maps
        assertFalse(Kernels.gemmStripeTakes(128, 1792, least, sms));
        assertFalse(Kernels.gemmStripeTakes(128, 2304, least, sms));
        // more stripes than multiprocessors (a second wave): the head
        assertFalse(Kernels.gemmStripeTakes(128, 50304, least, sms));
        assertTrue(Kernels.gemmStripeTakes(128, 50304, least, 0), "the multiprocessors not yet known");
        // rows outside 33 to 128: gemmRows, gemv or cuBLASLt
        assertFalse(Kernels.gemmStripeTakes(32, 7168, least, sms));
        assertFalse(Kernels.gemmStripeTakes(129, 7168, least, sms));
        assertTrue(Kernels.gemmStripeTakes(9, 7168, 9, sms), "a lower bound where asked");
        // outputs that are no whole number of stripes
        assertFalse(Kernels.gemmStripeTakes(128, 7168 + 32, least, sms));
    }

    @Test
    void itTakesBf16OperandsOfWholeStripesAndStages() {
        assertTrue(Kernels.gemmStripeFits(1, 64, 64, 0, 16, 32));
        assertTrue(Kernels.gemmStripeFits(128, 7168, 1792, 256, 512, 1024));
        assertFalse(Kernels.gemmStripeFits(0, 64, 64, 0, 0, 0), "no rows");
        assertFalse(Kernels.gemmStripeFits(129, 64, 64, 0, 0, 0), "more rows than wgmma's n");
        assertFalse(Kernels.gemmStripeFits(8, 96, 64, 0, 0, 0), "a stripe and a half");
        assertFalse(Kernels.gemmStripeFits(8, 64, 96, 0, 0, 0), "a stage and a half");
        assertFalse(Kernels.gemmStripeFits(8, 64, 64, 0, 8, 0), "w not 16-byte aligned");
        assertFalse(Kernels.gemmStripeFits(8, 64, 64, 0, 0, 2), "out not 16-byte aligned");
    }

    @Test
    void itRunsOnlyOnAnSm90aDeviceAndNotWhereSwitchedOff() {
        String[] properties = {Kernels.GEMM_STRIPE_PROPERTY, Kernels.GEMM_STRIPE_MIN_ROWS_PROPERTY};
        String[] before = {System.getProperty(properties[0]), System.getProperty(properties[1])};
        try {
            System.clearProperty(properties[0]);
            System.clearProperty(properties[1]);
            Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
            assertFalse(k.gemmStripePays(128, 7168), "not before the device is known to run wgmma");
            k.computeCapability(9, 0);
            k.sharedOptInLimit(99 * 1024);
            assertFalse(k.gemmStripePays(128, 7168), "a block's 193 KiB do not fit");
            Kernels newer = new Kernels(null, 0, 0);
            newer.computeCapability(10, 0);
            newer.sharedOptInLimit(227 * 1024);
            assertFalse(newer.gemmStripePays(128, 7168), "compute capability 10: no sm_90a binary");
            System.setProperty(properties[0], "maybe");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Kernels(null, 0, 0));
            assertTrue(e.getMessage().contains(properties[0]) && e.getMessage().contains("'maybe'"), e.getMessage());
            System.clearProperty(properties[0]);
            System.setProperty(properties[1], "0");
            e = assertThrows(IllegalArgumentException.class, () -> new Kernels(null, 0, 0));
            assertTrue(e.getMessage().contains(properties[1]) && e.getMessage().contains("'0'"), e.getMessage());
        } finally {
            for (int i = 0; i < properties.length; i++) {
                if (before[i] == null) {
                    System.clearProperty(properties[i]);
                } else {
                    System.setProperty(properties[i], before[i]);
                }
            }
        }
    }
}
