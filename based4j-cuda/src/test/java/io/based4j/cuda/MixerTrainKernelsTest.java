package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.config.MixerConfig;
import org.junit.jupiter.api.Test;

/**
 * The launch arithmetic of {@link MixerTrainKernels} that needs no GPU: tiles, shared memory, scratch sizes and which
 * kernels apply (which attention kernels run, which BaseConv kernels).
 */
class MixerTrainKernelsTest {
    @Test
    void linearAttentionBlocksFitTheSharedMemoryOfTheSupportedGpus() {
        // sm_80 lets a block opt in to 163 KiB (166,912 bytes), sm_90 to 227 KiB: feature dims up to 32 fit both
        for (int f : new int[] {1, 8, 16, 24, 32}) {
            for (int dh : new int[] {1, 16, 64, 112, MixerTrainKernels.LINEAR_MAX_HEAD_DIM}) {
                int bytes = MixerTrainKernels.linearSharedBytes(f, dh);
                assertTrue(bytes <= 166_912, "f " + f + ", dh " + dh + ": " + bytes + " bytes");
            }
        }
        // f 32 (E 561), dh 64 (rows of 81 floats): q and k rows, V', G' and a state tile, scores and a feature
        // tile of 64 x 65, dx, D and r, the feature table
        assertEquals(4 * (2 * 64 * 33 + 3 * 64 * 81 + 2 * 64 * 65 + 64 * 32 + 2 * 64 + 3 * 561),
                MixerTrainKernels.linearSharedBytes(32, 64));
    }

    @Test
    void linearAttentionScratchIsLinearInTheTokens() {
        // f 16 (E 153), dh 112, seqLen 128: 2 chunks of 64 per sequence, each an [E, dh + 1] state, and [g, r] per row and head
        long one = MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 128, 3, 16, 112);
        assertEquals(4L * (2 * 3 * 2 * 153 * 113 + 2 * 128 * 3 * 113), one);
        assertEquals(2 * one, MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 256, 3, 16, 112));
        assertEquals(0, MixerTrainKernels.linearAttentionBackwardScratchBytes(0, 130, 3, 16, 112));
        // a ragged last chunk takes a whole state
        assertEquals(4L * (2 * 3 * 3 * 153 * 113 + 2 * 130 * 3 * 113),
                MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 130, 3, 16, 112));
    }

    @Test
    void attentionRunsOnTheTensorCoresInBf16WithWholeStepsOf16HeadDims() {
        for (int dh : new int[] {16, 48, 64, 112, 128}) {
            assertTrue(MixerTrainKernels.attentionOnTensorCores(Precision.BF16, dh, 0, 256, 1 << 20), "dh " + dh);
            assertFalse(MixerTrainKernels.attentionOnTensorCores(Precision.F32, dh, 0, 256), "f32 dh " + dh);
        }
        for (int dh : new int[] {8, 40, 100, 144}) {
            assertFalse(MixerTrainKernels.attentionOnTensorCores(Precision.BF16, dh, 0), "dh " + dh);
        }
        // rows are copied in 16-byte pieces: an address off that grid takes the scalar kernels
        assertFalse(MixerTrainKernels.attentionOnTensorCores(Precision.BF16, 64, 0, 8));
        assertEquals(64, MixerTrainKernels.attentionPaddedHeadDim(16));
        assertEquals(64, MixerTrainKernels.attentionPaddedHeadDim(64));
        assertEquals(128, MixerTrainKernels.attentionPaddedHeadDim(80));
        assertEquals(128, MixerTrainKernels.attentionPaddedHeadDim(112));
    }

    @Test
    void tensorCoreAttentionBlocksFitTheSharedMemoryOfTheSupportedGpus() {
        for (int padded : new int[] {64, 128}) {
            for (int bytes : new int[] {MixerTrainKernels.attentionForwardSharedBytes(padded),
                MixerTrainKernels.attentionBackwardQSharedBytes(padded),
                MixerTrainKernels.attentionBackwardKVSharedBytes(padded)}) {
                assertTrue(bytes <= 166_912, "padded head dim " + padded + ": " + bytes + " bytes");
            }
        }
        // rows of 64 + 8 bf16: Q and two buffers of K and V; Q, dout and the K, V buffers; K, V, two buffers of
        // Q and dout of 64 rows, and of lse and D
        assertEquals(5 * 64 * 72 * 2, MixerTrainKernels.attentionForwardSharedBytes(64));
        assertEquals(6 * 64 * 72 * 2, MixerTrainKernels.attentionBackwardQSharedBytes(64));
        assertEquals((2 * 64 + 4 * 64) * 72 * 2 + 4 * 64 * 4, MixerTrainKernels.attentionBackwardKVSharedBytes(64));
        // at 128 the backward over keys takes query tiles of 32
        assertEquals((2 * 64 + 4 * 32) * 136 * 2 + 4 * 32 * 4, MixerTrainKernels.attentionBackwardKVSharedBytes(128));
    }

    @Test
    void tensorCoreAttentionScratchIsLinearInTheTokens() {
        // rotary table (cos, sin: 4 L rd bytes), rotated q and k (bf16 [N, 2d]), D for the backward; 256-byte parts
        assertEquals(2048 * 64 * 4 + 16384L * 2 * 1024 * 2,
                MixerTrainKernels.attentionScratchBytes(8, 2048, 16, 64, 64, false));
        assertEquals(2048 * 64 * 4 + 16384L * 2 * 1024 * 2 + 16384L * 16 * 4,
                MixerTrainKernels.attentionScratchBytes(8, 2048, 16, 64, 64, true));
        // without rotary the kernels read q and k from qkv: the backward needs D only
        assertEquals(0, MixerTrainKernels.attentionScratchBytes(8, 2048, 16, 64, 0, false));
        assertEquals(256, MixerTrainKernels.attentionScratchBytes(1, 3, 2, 64, 0, true));
    }

    @Test
    void convRowKernelsTakeBf16WidthsOfEightsAndKernelsUpToFour() {
        assertTrue(MixerTrainKernels.convByRows(Precision.BF16, 16_384, 2048, 3, 256, 512));
        assertTrue(MixerTrainKernels.convByRows(Precision.BF16, 5, 8, 1));
        assertTrue(MixerTrainKernels.convByRows(Precision.BF16, 5, 8, 4));
        assertFalse(MixerTrainKernels.convByRows(Precision.F32, 16_384, 2048, 3), "float32 keeps the scalar kernels");
        assertFalse(MixerTrainKernels.convByRows(Precision.BF16, 16_384, 2044, 3), "inner not a multiple of 8");
        assertFalse(MixerTrainKernels.convByRows(Precision.BF16, 16_384, 2048, 5), "kernel above 4");
        assertFalse(MixerTrainKernels.convByRows(Precision.BF16, 16_384, 2048, 3, 258), "an unaligned pointer");
        // 65535 blocks of 128 rows at most in the grid's y
        assertTrue(MixerTrainKernels.convByRows(Precision.BF16, 65_535L * 128, 8, 3));
        assertFalse(MixerTrainKernels.convByRows(Precision.BF16, 65_535L * 128 + 1, 8, 3));
    }

    @Test
    void tensorCoresServeBf16WithWholeTiles() {
        assertTrue(MixerTrainKernels.linearTensorCores(Precision.BF16, 16, 64));
        assertTrue(MixerTrainKernels.linearTensorCores(Precision.BF16, 32, 112));
        assertTrue(MixerTrainKernels.linearTensorCores(Precision.BF16, 8, 16));
        assertTrue(MixerTrainKernels.linearTensorCores(Precision.BF16, 24, 120));
        // float32 keeps the CUDA-core kernels; so do rows that are not whole 16-byte pieces or too wide
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.F32, 16, 64));
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.BF16, 12, 64));
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.BF16, 40, 64));
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.BF16, 8, 127));
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.BF16, 16, 128));
        assertFalse(MixerTrainKernels.linearTensorCores(Precision.BF16, 16, 8));
    }

    @Test
    void wideHeadsSplitIntoTheSmallestNumberOfTensorCoreHeads() {
        // one head of 128 (an MQAR model of width 128) at the feature dims of the recall study: 2 heads of 64
        for (int f = 8; f <= MixerTrainKernels.LINEAR_MMA_MAX_FEATURE_DIM; f += 8) {
            assertEquals(2, MixerTrainKernels.linearHeadSplit(Precision.BF16, f, 128, 1), "f " + f);
            assertEquals(2, MixerTrainKernels.linearHeadSplit(Precision.BF16, f, 128, 2), "f " + f + ", 2 heads");
        }
        assertEquals(2, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 192, 1));  // 96
        assertEquals(2, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 240, 1));  // 120, the widest
        assertEquals(4, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 256, 1));  // 128 is too wide: 64
        assertEquals(3, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 264, 1));  // 88
        assertEquals(16, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 1024, 1));  // 64
        // heads the tensor-core kernels take whole, or the CUDA-core chunk kernels (no split: 121 to 127 are not
        // multiples of 8)
        for (int dh : new int[] {16, 64, 120, 121, 127}) {
            assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, dh, 1), "dh " + dh);
        }
        // no split into multiples of 8 from 16 to 120: 136 = 8 x 17, and 130 is no multiple of 8
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 136, 1));
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 130, 1));
        // float32 keeps whole heads; so do feature dims the tensor-core kernels do not take
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.F32, 16, 128, 1));
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 12, 128, 1));
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 40, 128, 1));
        // H s virtual heads are a grid dimension: at most 65535
        assertEquals(2, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 128, 32_767));
        assertEquals(0, MixerTrainKernels.linearHeadSplit(Precision.BF16, 16, 128, 32_768));
    }

    @Test
    void splitHeadsScratchHoldsTheRepeatedRowsAndTheVirtualHeadsScratch() {
        // batch 2 x 100 tokens, one head of 128, f 16: 2 virtual heads of 64; qq, kk, dqq and dkk of 200 rows x 32
        // bf16 (12,800 bytes each, a multiple of 256), then the chunk kernels' scratch of 2 heads of 64: 2 chunks
        // per sequence of [153, 65] float32 states and [g, r] of 65 floats per row and virtual head
        long virtual = 4L * (2 * 2 * 2 * 153 * 65 + 200 * 2 * 65);
        assertEquals(4 * 12_800 + virtual, MixerTrainKernels.linearSplitScratchBytes(2, 100, 1, 16, 128, 2));
        // more than the recurrent kernels take (float32: 4 tiles of 32 columns, f 16), so that bytes for either
        assertTrue(4 * 12_800 + virtual > 4L * 200 * (4 * 33 + 1));
        assertEquals(4 * 12_800 + virtual, MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 100, 1, 16, 128));
        // each part rounded up to 256 bytes: 2 x 3 rows x 2 virtual heads x 8 features x 2 bytes = 192 -> 256
        assertEquals(4 * 256 + MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 3, 2, 8, 64),
                MixerTrainKernels.linearSplitScratchBytes(2, 3, 1, 8, 128, 2));
        // where no split applies, the recurrent kernels' scratch as before (136: 5 tiles of 32 columns)
        assertEquals(4L * 200 * (5 * 33 + 1), MixerTrainKernels.linearAttentionBackwardScratchBytes(2, 100, 1, 16,
                136));
    }

    @Test
    void tensorCoreBlocksFitTheSharedMemoryOfTheSupportedGpus() {
        // f 16 (E 153 -> a table of 160), dh 64 (q, k rows of 24 bf16, value rows of 88): table, q, k, V', a state
        // tile; the backward adds G', 4 warps' dphi (16 x 72 floats each) and dx (16 x 16 floats each)
        assertEquals(8 * 160 + 2 * 64 * 2 * 24 + 2 * 64 * 2 * 88,
                MixerTrainKernels.linearMmaSharedBytes(16, 64, false));
        assertEquals(29_952 + 2 * 64 * 88 + 4 * 64 * 72 + 4 * 64 * 16,
                MixerTrainKernels.linearMmaSharedBytes(16, 64, true));
        // the states kernel: two buffers of k rows and of V'
        assertEquals(2 * 2 * 64 * 24 + 2 * 2 * 64 * 88, MixerTrainKernels.linearMmaStatesSharedBytes(16, 64));
        // f 32 (E 561 -> 576), dh 112 (rows of 40 and 136)
        assertEquals(8 * 576 + 256 * 40 + 256 * 136, MixerTrainKernels.linearMmaSharedBytes(32, 112, false));
        for (int f = 8; f <= MixerTrainKernels.LINEAR_MMA_MAX_FEATURE_DIM; f += 8) {
            for (int dh = MixerTrainKernels.LINEAR_MMA_MIN_HEAD_DIM; dh <= MixerTrainKernels.LINEAR_MMA_MAX_HEAD_DIM;
                 dh += 8) {
                assertTrue(MixerTrainKernels.linearMmaSharedBytes(f, dh, true) <= 166_912, "f " + f + ", dh " + dh);
                assertTrue(MixerTrainKernels.linearMmaStatesSharedBytes(f, dh) <= 166_912, "f " + f + ", dh " + dh);
            }
        }
    }

    @Test
    void scanKernelsServeFeatureDimsUpToSixteenAndHeadDimsUpTo72() {
        assertTrue(MixerTrainKernels.linearScan(Precision.BF16, 16, 64));
        assertTrue(MixerTrainKernels.linearScan(Precision.BF16, 8, 72));
        assertTrue(MixerTrainKernels.linearScan(Precision.BF16, 16, 16));
        // E 325 (f 24) or 561 (f 32), dh past 72: the tensor-core chunk kernels; float32: the CUDA-core kernels
        assertFalse(MixerTrainKernels.linearScan(Precision.BF16, 24, 64));
        assertFalse(MixerTrainKernels.linearScan(Precision.BF16, 32, 64));
        assertFalse(MixerTrainKernels.linearScan(Precision.BF16, 16, 80));
        assertFalse(MixerTrainKernels.linearScan(Precision.BF16, 16, 112));
        assertFalse(MixerTrainKernels.linearScan(Precision.F32, 16, 64));
    }

    @Test
    void scanBlocksFitTheSharedMemoryOfTheSupportedGpus() {
        // f 16 (E 153 -> 160 features), dh 64 (q, k rows of 24 bf16, value rows of 88, 9 value tiles of 8): the
        // table, two sets of q, k and V' (and G', backward), the bf16 state [160][88], the float32 state 160 x 72;
        // the backward adds 4 warps' dphi (16 x 72 floats) and dx (16 x 16 floats)
        int set = 2 * 2 * 64 * 24 + 2 * 64 * 88;
        int state = 2 * 160 * 88 + 4 * 160 * 72;
        assertEquals(8 * 160 + 2 * set + state, MixerTrainKernels.linearScanSharedBytes(16, 64, false));
        assertEquals(8 * 160 + 2 * (set + 2 * 64 * 88) + 4 * 64 * 72 + 4 * 64 * 16 + state,
                MixerTrainKernels.linearScanSharedBytes(16, 64, true));
        for (int f = 8; f <= 16; f += 8) {
            for (int dh = MixerTrainKernels.LINEAR_MMA_MIN_HEAD_DIM; dh <= MixerTrainKernels.LINEAR_SCAN_MAX_HEAD_DIM;
                 dh += 8) {
                assertTrue(MixerTrainKernels.linearScan(Precision.BF16, f, dh), "f " + f + ", dh " + dh);
                // sm_80's 163 KiB of opt-in shared memory per block (sm_90: 227 KiB)
                assertTrue(MixerTrainKernels.linearScanSharedBytes(f, dh, true) <= 166_912, "f " + f + ", dh " + dh);
            }
        }
    }

    @Test
    void scanScratchIsTheGradientRowsWithinTheChunkKernelsScratch() {
        // G' in bf16 rows of dh + 8: at batch 8 x 2048 tokens, 16 heads, dh 64 that is 36 MiB
        assertEquals(8L * 2048 * 16 * 2 * 72, MixerTrainKernels.linearScanScratchBytes(8, 2048, 16, 64));
        for (int f = 8; f <= 16; f += 8) {
            for (int dh = MixerTrainKernels.LINEAR_MMA_MIN_HEAD_DIM; dh <= MixerTrainKernels.LINEAR_SCAN_MAX_HEAD_DIM;
                 dh += 8) {
                for (int seqLen : new int[] {1, 64, 65, 2048}) {
                    assertTrue(MixerTrainKernels.linearScanScratchBytes(2, seqLen, 3, dh)
                            <= MixerTrainKernels.linearAttentionBackwardScratchBytes(2, seqLen, 3, f, dh),
                            "f " + f + ", dh " + dh + ", seqLen " + seqLen);
                }
            }
        }
    }

    @Test
    void roundedStatesServeFeatureDimsUpToSixteenAndFitTheFloatStates() {
        assertTrue(MixerTrainKernels.linearRoundedStates(Precision.BF16, 16, 64));
        assertTrue(MixerTrainKernels.linearRoundedStates(Precision.BF16, 8, 120));
        assertFalse(MixerTrainKernels.linearRoundedStates(Precision.BF16, 24, 64));
        assertFalse(MixerTrainKernels.linearRoundedStates(Precision.F32, 16, 64));
        // f 16, dh 64: the backward chunk block (63,744 bytes) with the whole bf16 state [160][88] in place of its
        // tile [64][88]: 80,640 bytes, two blocks per SM on sm_90
        assertEquals(MixerTrainKernels.linearMmaSharedBytes(16, 64, true) + 2 * (160 - 64) * 88,
                MixerTrainKernels.linearMmaRoundedSharedBytes(16, 64));
        assertEquals(80_640, MixerTrainKernels.linearMmaRoundedSharedBytes(16, 64));
        for (int f = 8; f <= 16; f += 8) {
            int e = MixerConfig.LinearAttention.expandedDim(f);
            int epad = (e + 15) / 16 * 16;
            for (int dh = MixerTrainKernels.LINEAR_MMA_MIN_HEAD_DIM; dh <= MixerTrainKernels.LINEAR_MMA_MAX_HEAD_DIM;
                 dh += 8) {
                String what = "f " + f + ", dh " + dh;
                assertTrue(MixerTrainKernels.linearRoundedStates(Precision.BF16, f, dh), what);
                // sm_80's 163 KiB of opt-in shared memory per block
                assertTrue(MixerTrainKernels.linearMmaRoundedSharedBytes(f, dh) <= 166_912, what);
                // a rounded state, bf16 [epad][dh + 8], within the bytes of a float32 state [E][dh + 1], so that the
                // rounded states take the float32 states' place and G' keeps its own
                assertTrue(2L * epad * (dh + 8) <= 4L * e * (dh + 1), what);
            }
        }
    }

    @Test
    void tensorCoreGradientRowsFitTheScratchAfterTheAlignedStates() {
        // G' in bf16 rows of dh + 8 after the float32 states rounded up to 16 bytes, within the float32 [g, r] bytes
        for (int f = 8; f <= MixerTrainKernels.LINEAR_MMA_MAX_FEATURE_DIM; f += 8) {
            for (int dh = MixerTrainKernels.LINEAR_MMA_MIN_HEAD_DIM; dh <= MixerTrainKernels.LINEAR_MMA_MAX_HEAD_DIM;
                 dh += 8) {
                for (int seqLen : new int[] {1, 5, 64, 65, 130}) {
                    for (int heads = 1; heads <= 3; heads++) {
                        long states = 4 * MixerTrainKernels.linearStateFloats(1, seqLen, heads, f, dh);
                        long need = (states + 15) / 16 * 16 + 2L * seqLen * heads * (dh + 8);
                        assertTrue(need <= MixerTrainKernels.linearAttentionBackwardScratchBytes(1, seqLen, heads, f,
                                dh), "f " + f + ", dh " + dh + ", seqLen " + seqLen + ", heads " + heads);
                    }
                }
            }
        }
    }

    @Test
    void headsTooWideForTheScanAreSplitForItsForwardAndTheFixedSizesAreTheCompiledOnes() {
        // based-1b's heads of 112 in two of 56; 96 in two of 48; heads the scan takes whole are not split
        assertEquals(2, MixerTrainKernels.linearScanSplit(Precision.BF16, 16, 112, 16));
        assertEquals(2, MixerTrainKernels.linearScanSplit(Precision.BF16, 16, 96, 1));
        assertEquals(2, MixerTrainKernels.linearScanSplit(Precision.BF16, 8, 112, 1));
        assertEquals(0, MixerTrainKernels.linearScanSplit(Precision.BF16, 16, 64, 16), "the scan takes 64 whole");
        assertEquals(0, MixerTrainKernels.linearScanSplit(Precision.BF16, 16, 72, 16), "the scan takes 72 whole");
        // no split serves: f 32 (E 561, more features than the scan holds), float32, more virtual heads than a grid
        assertEquals(0, MixerTrainKernels.linearScanSplit(Precision.BF16, 32, 112, 16));
        assertEquals(0, MixerTrainKernels.linearScanSplit(Precision.F32, 16, 112, 16));
        assertEquals(0, MixerTrainKernels.linearScanSplit(Precision.BF16, 16, 112, 65535));  // a grid's most
        // the variants compiled for fixed sizes: f 16 with heads of 64 both ways, 56 only forward
        assertTrue(MixerTrainKernels.linearScanFixedSizes(16, 64, false));
        assertTrue(MixerTrainKernels.linearScanFixedSizes(16, 64, true));
        assertTrue(MixerTrainKernels.linearScanFixedSizes(16, 56, false));
        assertFalse(MixerTrainKernels.linearScanFixedSizes(16, 56, true));
        assertFalse(MixerTrainKernels.linearScanFixedSizes(8, 64, false));
        assertFalse(MixerTrainKernels.linearScanFixedSizes(16, 72, false));
    }

    @Test
    void badShapesAreRefusedBeforeAnyLaunch() {
        // the argument checks run before the kernels are looked up, so no GPU is needed to see them
        MixerTrainKernels mk = new MixerTrainKernels(null);
        IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.attentionForward(Precision.F32, 0, 0, 0, 1, 4, 2, 160, 3, 0, 10000, 0.1f));
        assertEquals("attentionForward: head dim 160 is outside [1, 128]", e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.linearAttentionForward(Precision.F32, 0, 0, 0, 0, 1, 4, 2, 65, 64, 1e-6f));
        assertEquals("linearAttentionForward: feature dim 65 is outside [1, 64]", e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.linearAttentionBackward(Precision.F32, 0, 0, 0, 0, 0, 0, 0, 1, 4, 2, 16, 0, 1e-6f));
        assertEquals("linearAttentionBackward: head dim 0 must be positive", e.getMessage());
        e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> mk.baseConvForward(Precision.F32, 0, 0, 0, 0, 1, 4, 8, 0));
        assertEquals("baseConvForward: kernel 0 is outside [1, 8]", e.getMessage());
    }
}
