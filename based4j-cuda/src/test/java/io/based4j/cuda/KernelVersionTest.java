package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The system properties that pick a kernel's version: their values and a clear error for a bad one. */
class KernelVersionTest {
    private static final String[] PROPERTIES = {Kernels.DECODE_VERSION_PROPERTY,
        Kernels.LINEAR_DECODE_VERSION_PROPERTY, Kernels.GEMV_VERSION_PROPERTY};
    private static final int[] VERSIONS = {Kernels.DECODE_VERSIONS, Kernels.LINEAR_DECODE_VERSIONS,
        Kernels.GEMV_VERSIONS};
    private static final int[] DEFAULTS = {Kernels.DECODE_DEFAULT, Kernels.LINEAR_DECODE_DEFAULT,
        Kernels.GEMV_VERSION};

    @Test
    void theDefaultIsTheMeasuredOneAndEachVersionCanBeNamed() {
        for (int i = 0; i < PROPERTIES.length; i++) {
            assertTrue(DEFAULTS[i] >= 1 && DEFAULTS[i] <= VERSIONS[i], PROPERTIES[i]);
            assertEquals(DEFAULTS[i], Kernels.version(PROPERTIES[i], null, VERSIONS[i], DEFAULTS[i]));
            for (int v = 1; v <= VERSIONS[i]; v++) {
                assertEquals(v, Kernels.version(PROPERTIES[i], " " + v + " ", VERSIONS[i], DEFAULTS[i]));
            }
        }
    }

    @Test
    void aVersionThatDoesNotExistIsNamedInTheError() {
        for (int i = 0; i < PROPERTIES.length; i++) {
            String property = PROPERTIES[i];
            int versions = VERSIONS[i];
            int fallback = DEFAULTS[i];
            for (String bad : new String[] {"0", String.valueOf(versions + 1), "two", ""}) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> Kernels.version(property, bad, versions, fallback));
                assertTrue(e.getMessage().contains("-D" + property) && e.getMessage().contains("'" + bad + "'")
                        && e.getMessage().contains("1 to " + versions), e.getMessage());
            }
        }
    }

    @Test
    void theChoicesOfTheScanForwardAndOfTimedProductsTakeTheirValuesOrNameABadOne() {
        assertEquals(MixerTrainKernels.SCAN_FORWARD_MIN_BLOCKS, MixerTrainKernels.scanForwardMinBlocks(null));
        assertEquals(1, MixerTrainKernels.scanForwardMinBlocks(" 1 "));
        for (String bad : new String[] {"0", "-3", "many", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MixerTrainKernels.scanForwardMinBlocks(bad));
            assertTrue(e.getMessage().contains("-D" + MixerTrainKernels.SCAN_FORWARD_MIN_BLOCKS_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
        assertEquals(MixerTrainKernels.SCAN_FORWARD_SHORT, MixerTrainKernels.scanForwardShort(null));
        assertEquals(0, MixerTrainKernels.scanForwardShort("0"));
        for (String bad : new String[] {"-1", "long", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> MixerTrainKernels.scanForwardShort(bad));
            assertTrue(e.getMessage().contains("-D" + MixerTrainKernels.SCAN_FORWARD_SHORT_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
        assertEquals(CudaBackend.FUSED_NORM_ROWS, CudaBackend.fusedNormRows(null));
        assertEquals(0, CudaBackend.fusedNormRows("0"));
        for (String bad : new String[] {"-1", "some", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> CudaBackend.fusedNormRows(bad));
            assertTrue(e.getMessage().contains("-D" + CudaBackend.FUSED_NORM_ROWS_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'") && e.getMessage().contains("at least 0"),
                    e.getMessage());
        }
        assertEquals(null, CudaBackend.gemmTiming(null));
        assertEquals(Boolean.TRUE, CudaBackend.gemmTiming("true"));
        assertEquals(Boolean.FALSE, CudaBackend.gemmTiming(" false"));
        for (String bad : new String[] {"yes", "1", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> CudaBackend.gemmTiming(bad));
            assertTrue(e.getMessage().contains("-D" + CudaBackend.GEMM_TIMING_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }

    @Test
    void linearAttentionsDecodeTakesTheVersionMeasuredForItsHeads() {
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        assertTrue(Kernels.LINEAR_DECODE_WIDE_DEFAULT >= 1
                && Kernels.LINEAR_DECODE_WIDE_DEFAULT <= Kernels.LINEAR_DECODE_VERSIONS);
        k.multiprocessors(132);
        assertEquals(Kernels.LINEAR_DECODE_WIDE_DEFAULT, k.linearDecodeVersion(128 * 16, 112), "based-1b's heads");
        assertEquals(Kernels.LINEAR_DECODE_FEW_DEFAULT, k.linearDecodeVersion(16, 112), "one sequence of them");
        assertEquals(Kernels.LINEAR_DECODE_FEW_DEFAULT, k.linearDecodeVersion(132, 112), "a block a multiprocessor");
        assertEquals(Kernels.LINEAR_DECODE_WIDE_DEFAULT, k.linearDecodeVersion(133, 112));
        assertEquals(Kernels.LINEAR_DECODE_DEFAULT, k.linearDecodeVersion(16, 64), "based-360m's heads");
        assertEquals(Kernels.LINEAR_DECODE_DEFAULT, k.linearDecodeVersion(256 * 16, 64));
        assertEquals(Kernels.LINEAR_DECODE_WIDE_DEFAULT, k.linearDecodeVersion(4096, Kernels.LINEAR_DECODE_WIDE_HEAD));
        assertEquals(Kernels.LINEAR_DECODE_DEFAULT, k.linearDecodeVersion(16, Kernels.LINEAR_DECODE_WIDE_HEAD - 8));
        assertEquals(Kernels.LINEAR_DECODE_WIDE_DEFAULT, new Kernels(null, 0, 0).linearDecodeVersion(16, 112),
                "the device's multiprocessors not known");
        assertEquals("linearAttentionDecode4", Kernels.linearDecodeKernel(4, 112, 0x4000));
    }

    @Test
    void aVersionFallsBackToTheFirstWhereItsLoadsDoNotFit() {
        assertEquals("attentionDecode2", Kernels.decodeKernel(2, 0x1000, 0x2000, 0x3000));
        assertEquals("attentionDecode3", Kernels.decodeKernel(3, 0x1000, 0x2000, 0x3000));
        assertEquals("attentionDecode", Kernels.decodeKernel(3, 0x1000, 0x2000, 0x3004), "a cache not aligned");
        assertEquals("attentionDecode", Kernels.decodeKernel(2, 0x1008, 0x2000, 0x3000), "qkv not 16-byte aligned");
        assertEquals("attentionDecode", Kernels.decodeKernel(1, 0x1000, 0x2000, 0x3000));
        assertEquals("attentionDecode6", Kernels.decodeKernel(6, 0x1000, 0x2000, 0x3000));
        // version 6's blocks: a lane group a head (16 lanes at dh 112, 8 at 64, 2 at 16), in whole warps
        assertEquals(256, Kernels.decode6Threads(16, 112), "attn-1b's 16 heads of 112");
        assertEquals(64, Kernels.decode6Threads(5, 64));
        assertEquals(32, Kernels.decode6Threads(3, 16));
        assertEquals(Kernels.DECODE6_MAX_THREADS, Kernels.decode6Threads(32, 128));
        assertEquals(640, Kernels.decode6Threads(40, 112), "past DECODE6_MAX_THREADS");
        assertEquals(2, Kernels.decodeLaunchVersion(6, 40, 112), "version 2 runs there");
        assertEquals(2, Kernels.decodeLaunchVersion(7, 40, 112));
        assertEquals(6, Kernels.decodeLaunchVersion(6, 32, 128), "512 threads: version 6");
        assertEquals(7, Kernels.decodeLaunchVersion(7, 16, 112));
        assertEquals(5, Kernels.decodeLaunchVersion(5, 40, 112), "the other versions take any heads");
        assertEquals("linearAttentionDecode3", Kernels.linearDecodeKernel(3, 112, 0x4000));
        assertEquals("linearAttentionDecode", Kernels.linearDecodeKernel(3, 66, 0x4000), "dh not a multiple of 4");
        assertEquals("linearAttentionDecode", Kernels.linearDecodeKernel(2, 64, 0x4004), "S not 16-byte aligned");
    }

    @Test
    void theTensorCopiesL2PromotionIsNamedInBytesAndABadOneIsNamedInTheError() {
        assertEquals(3, Kernels.promotion(null));  // 256 bytes where unset
        assertEquals(0, Kernels.promotion("none"));
        assertEquals(1, Kernels.promotion(" 64 "));
        assertEquals(2, Kernels.promotion("128"));
        assertEquals(3, Kernels.promotion("256"));
        for (String bad : new String[] {"512", "0", "L2_256B", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Kernels.promotion(bad));
            assertTrue(e.getMessage().contains("-D" + Kernels.GEMM_TMA_PROMOTION_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'") && e.getMessage().contains("none, 64, 128, 256"),
                    e.getMessage());
        }
    }

    @Test
    void programmaticLaunchesOnlyWhereTheCodeWaitsForThem() {
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        k.computeCapability(8);
        assertFalse(k.programmatic());
        assertFalse(k.programmaticSteps(), "the sm_80 code has no waits");
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> k.programmatic(true));
        assertTrue(e.getMessage().contains("compute capability 9"), e.getMessage());
        k.computeCapability(9);
        Boolean setting = Kernels.programmaticSetting(System.getProperty(Kernels.PROGRAMMATIC_PROPERTY));
        assertEquals(setting == Boolean.TRUE, k.programmatic(), "off unless asked for");
        assertEquals(setting != Boolean.FALSE, k.programmaticSteps(), "recorded decode steps: on unless refused");
        k.programmaticStepsAllowed(false);
        assertFalse(k.programmaticSteps(), "the backend's programmaticLaunches(false) turns them off too");
        k.programmaticStepsAllowed(true);
        k.programmatic(true);
        assertTrue(k.programmatic());
        k.programmatic(false);
        assertFalse(k.programmatic());
    }

    @Test
    void theProgrammaticLaunchSettingTakesTrueOrFalseOrNamesABadValue() {
        assertEquals(null, Kernels.programmaticSetting(null));
        assertEquals(Boolean.TRUE, Kernels.programmaticSetting(" true"));
        assertEquals(Boolean.FALSE, Kernels.programmaticSetting("false"));
        for (String bad : new String[] {"yes", "", "1"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Kernels.programmaticSetting(bad));
            assertTrue(e.getMessage().contains("-D" + Kernels.PROGRAMMATIC_PROPERTY) && e.getMessage().contains("'"
                    + bad + "'"), e.getMessage());
        }
    }

    @Test
    void theWindowsHeadsFormIsAskedForByNameAndTakesWhatOneSplitAndOneBlockHold() {
        assertNull(Kernels.windowForm(null), "unset: by the batch");
        assertNull(Kernels.windowForm(""));
        assertEquals(Boolean.FALSE, Kernels.windowForm("items"));
        assertEquals(Boolean.TRUE, Kernels.windowForm(" heads "));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Kernels.windowForm("both"));
        assertTrue(e.getMessage().contains(Kernels.WINDOW_FORM_PROPERTY) && e.getMessage().contains("'both'"),
                e.getMessage());
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        assertTrue(k.windowHeadsRuns(Kernels.WINDOW_HEADS_MIN_BATCH, 16, 112, 64), "by default from this batch");
        assertFalse(k.windowHeadsRuns(Kernels.WINDOW_HEADS_MIN_BATCH - 1, 16, 112, 64), "below it the items' form");
        assertFalse(k.windowHeadsRuns(1024, 40, 112, 64), "more heads than a block");
        k.windowHeads(false);
        assertFalse(k.windowHeadsRuns(1024, 16, 112, 64), "the items' form asked for");
        k.windowHeads(true);
        assertTrue(k.windowHeadsRuns(1, 16, 112, 64), "the heads' form asked for, one sequence");
        assertFalse(k.windowHeadsRuns(70_000, 16, 112, 64), "more sequences than a grid's second dimension");
        k.windowHeads(null);
        assertNull(k.windowHeadsAsked());
        assertFalse(k.windowHeadsRuns(70_000, 16, 112, 64), "nor by default");
        assertTrue(k.windowHeadsRuns(128, 16, 112, 64), "based-1b's window");
        assertTrue(k.windowHeadsRuns(1024, 16, 64, 128), "based-360m's");
        assertFalse(k.windowHeadsRuns(128, 16, 16, 512), "more keys than one split");
        assertFalse(k.windowHeadsRuns(128, 40, 112, 64), "more heads than a block");
    }

    /**
     * The heads' form asks the L2 cache for each next chunk where its blocks are resident at once (at most two a
     * multiprocessor), unless -Dbased4j.cuda.windowPrefetch says; a bad value names the property.
     */
    @Test
    void windowPrefetchByBatch() {
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the choice
        assertFalse(k.windowPrefetchRuns(128), "the multiprocessors unknown: never by default");
        k.multiprocessors(132);
        assertTrue(k.windowPrefetchRuns(128), "based-1b's decode at batch 128");
        assertTrue(k.windowPrefetchRuns(2 * 132), "one wave of two blocks a multiprocessor");
        assertFalse(k.windowPrefetchRuns(2 * 132 + 1), "past one wave");
        assertFalse(k.windowPrefetchRuns(1024), "batch 1,024");
        k.windowPrefetch(true);
        assertTrue(k.windowPrefetchRuns(1024), "asked for");
        k.windowPrefetch(false);
        assertFalse(k.windowPrefetchRuns(1), "not asked for");
        k.windowPrefetch(null);
        assertNull(k.windowPrefetchAsked());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Kernels.onOff(Kernels.WINDOW_PREFETCH_PROPERTY, "yes"));
        assertTrue(e.getMessage().contains(Kernels.WINDOW_PREFETCH_PROPERTY) && e.getMessage().contains("'yes'"),
                e.getMessage());
    }

    /**
     * Version 3 of gemv is streamed unless -Dbased4j.cuda.gemvStream says false (true, the default: 4 blocks a
     * multiprocessor; or 1 to 4), and only where its blocks are more than the streamed grid holds and the
     * multiprocessors are known; a bad value names the property.
     */
    @Test
    void gemvStreamsWhereAskedAndWhereItsBlocksPassOneGrid() {
        assertEquals(Kernels.GEMV_STREAM_BLOCKS, Kernels.gemvStreamSetting(null), "streamed by default");
        assertEquals(0, Kernels.gemvStreamSetting("false"));
        assertEquals(Kernels.GEMV_STREAM_BLOCKS, Kernels.gemvStreamSetting("true"));
        assertEquals(2, Kernels.gemvStreamSetting(" 2 "));
        for (String bad : new String[] {"0", "5", "yes", ""}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Kernels.gemvStreamSetting(bad));
            assertTrue(e.getMessage().contains("-D" + Kernels.GEMV_STREAM_PROPERTY)
                    && e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
        // version 3's own blocks, which the grid is held against: 8 warps a block, a warp R rows of W in P parts
        assertEquals(896, Kernels.gemv3Blocks(Precision.BF16, 1, 7168, 1792), "based-1b's MLP in: a row a warp");
        assertEquals(672, Kernels.gemv3Blocks(Precision.BF16, 1, 5376, 1792), "its qkv");
        assertEquals(448, Kernels.gemv3Blocks(Precision.BF16, 1, 1792, 3584), "its MLP out: rows in 2 parts");
        assertEquals(6283, Kernels.gemv3Blocks(Precision.BF16, 2, 50264, 1792), "its head at two rows");
        assertEquals(224, Kernels.gemv3Blocks(Precision.BF16, 8, 1792, 1792), "8 rows of x: 4 rows a warp, 4 parts");
        assertEquals(896, Kernels.gemvPairedBlocks(1, 3584), "the MLP in paired for SwiGLU: 4 pairs a block");
        assertEquals(1792, Kernels.gemvPairedBlocks(2, 3584), "2 parts: 2 pairs a block");
        Kernels k = new Kernels(null, 0, 0);  // no launches here: only the grid
        k.gemvStreamBlocks(4);
        assertEquals(896, k.gemvStreamGrid(896), "the multiprocessors unknown: version 3's own blocks");
        k.multiprocessors(132);
        assertEquals(528, k.gemvStreamGrid(896), "based-1b's MLP in-projection at one row: 4 blocks a multiprocessor");
        assertEquals(500, k.gemvStreamGrid(500), "blocks that fit at once: launched as they are");
        k.gemvStreamBlocks(1);
        assertEquals(132, k.gemvStreamGrid(896));
        k.gemvStreamBlocks(0);
        assertEquals(896, k.gemvStreamGrid(896), "not streamed");
        assertThrows(IllegalArgumentException.class, () -> k.gemvStreamBlocks(5));
    }
}
