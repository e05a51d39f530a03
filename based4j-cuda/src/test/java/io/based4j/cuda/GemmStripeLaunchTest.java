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
    void wideProductsTakeAStripeABlockAndNarrowOnesSplitTheirWidth() {
        int sms = 132;
        // based-1b: the MLP's and BaseConv's in-projections (112 stripes), the window's q, k, v (84): a block a stripe
        assertEquals(1, Kernels.gemmStripeSplit(7168, 1792, sms));
        assertEquals(1, Kernels.gemmStripeSplit(5376, 1792, sms));
        // based-360m's MLP in-projection (64 stripes)
        assertEquals(1, Kernels.gemmStripeSplit(4096, 1024, sms));
        // based-1b's out-projections (28 stripes of widths 3,584 and 1,792): 4 blocks a stripe, 112 blocks
        assertEquals(4, Kernels.gemmStripeSplit(1792, 3584, sms));
        assertEquals(4, Kernels.gemmStripeSplit(1792, 1792, sms));
        // linear attention's q, k and v as one product (36 stripes): 2, 72 blocks (4 would be 144)
        assertEquals(2, Kernels.gemmStripeSplit(2304, 1792, sms));
        // based-360m's out-projections (16 stripes): 4, 64 blocks
        assertEquals(4, Kernels.gemmStripeSplit(1024, 2048, sms));
        // too few stripes even at 4, more than the multiprocessors at 1 (the head), widths not of whole stages
        assertEquals(0, Kernels.gemmStripeSplit(256, 1792, sms));
        assertEquals(0, Kernels.gemmStripeSplit(50304, 1792, sms));
        assertEquals(1, Kernels.gemmStripeSplit(50304, 1792, 0), "the multiprocessors not yet known");
        assertEquals(0, Kernels.gemmStripeSplit(1792, 192, sms), "192 is no 4 or 2 parts of whole stages");
        for (int n : new int[] {64, 1024, 1792, 2304, 4096, 5376, 7168, 50304}) {
            for (int k : new int[] {64, 192, 1024, 1792, 3584}) {
                int split = Kernels.gemmStripeSplit(n, k, sms);
                if (split > 0) {
                    long blocks = (long) n / Kernels.GEMM_STRIPE_OUTPUTS * split;
                    assertTrue(blocks >= Kernels.GEMM_STRIPE_MIN_BLOCKS && blocks <= sms, n + " x " + k);
                    assertEquals(0, k % (64 * split), n + " x " + k + ": whole stages a block");
                }
            }
        }
    }

    @Test
    void itsPropertyNamesItsForms() {
        assertEquals(java.util.Set.of("wide", "narrow", "swiglu"), Kernels.stripeForms("all"));
        assertEquals(java.util.Set.of(), Kernels.stripeForms("none"));
        assertEquals(java.util.Set.of("narrow", "swiglu"), Kernels.stripeForms(" narrow, swiglu "));
        assertEquals(Kernels.stripeForms(Kernels.GEMM_STRIPE_DEFAULT), Kernels.stripeForms(null));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Kernels.stripeForms("wide,fast"));
        assertTrue(e.getMessage().contains(Kernels.GEMM_STRIPE_PROPERTY) && e.getMessage().contains("'wide,fast'"),
                e.getMessage());
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
    void itRunsOnlyWhereAskedOnAnSm90aDevice() {
        String[] properties = {Kernels.GEMM_STRIPE_PROPERTY, Kernels.GEMM_STRIPE_MIN_ROWS_PROPERTY};
        String[] before = {System.getProperty(properties[0]), System.getProperty(properties[1])};
        try {
            System.setProperty(properties[0], "all");
            System.clearProperty(properties[1]);
            Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
            assertFalse(k.gemmStripePays(128, 7168, 1792), "not before the device is known to run wgmma");
            k.computeCapability(9, 0);
            k.sharedOptInLimit(99 * 1024);
            assertFalse(k.gemmStripePays(128, 7168, 1792), "a block's 193 KiB do not fit");
            assertFalse(k.gemmStripeSwigluPays(128, 3584), "a block's 193 KiB do not fit");
            Kernels newer = new Kernels(null, 0, 0);
            newer.computeCapability(10, 0);
            newer.sharedOptInLimit(227 * 1024);
            assertFalse(newer.gemmStripePays(128, 7168, 1792), "compute capability 10: no sm_90a binary");
            System.setProperty(properties[1], "0");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Kernels(null, 0, 0));
            assertTrue(e.getMessage().contains(properties[1]) && e.getMessage().contains("'0'"), e.getMessage());
            System.clearProperty(properties[1]);
            System.setProperty(properties[0], "fast");
            e = assertThrows(IllegalArgumentException.class, () -> new Kernels(null, 0, 0));
            assertTrue(e.getMessage().contains(properties[0]) && e.getMessage().contains("'fast'"), e.getMessage());
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
