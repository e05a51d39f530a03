package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.based4j.backend.TokenBatch;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The streamed forms of gemv version 3 (gemv.cuh's gemvStream and gemvPairedStream: fewer blocks, each taking version
 * 3's blocks in turn with the next one's weights loaded early) against version 3 launched with a block for each of its
 * blocks, on the same inputs: bit for bit, as they promise. Grids of one block (every block's work in one), a few
 * (turns that end short: some blocks take one more), and one short of version 3's blocks; based-1b's and based-360m's
 * shapes and awkward ones (parts of 1 to 8, outputs that leave the last block part-filled, widths of one piece of 8
 * values); one and two rows of x; with and without a bias; float32 and rounded outputs; W's first loads before the
 * wait and after; both precisions. The fused forms: {@link Kernels#gemvSwiglu} and {@link Kernels#gemvConv}, the
 * outputs and the conv history after. And the launchers' own choice ({@link Kernels#gemv}, {@link Kernels#gemvSwiglu}
 * with a device of two multiprocessors said, one block each): streamed, the same numbers.
 */
@GpuTest
class GemvStreamTest {
    static Stream<Arguments> precisions() {
        return Stream.of(Arguments.of(Precision.BF16), Arguments.of(Precision.F32));
    }

    /** The grids tried against a launch of {@code blocks} blocks. */
    private static int[] grids(int blocks) {
        return new int[] {1, 3, Math.max(1, blocks / 2 + 1), Math.max(1, blocks - 1)};
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("precisions")
    void streamedIsVersionThree(Precision p) {
        SplittableRandom r = new SplittableRandom(11);
        // outputs, width
        int[][] shapes = {{7168, 1792}, {1792, 3584}, {256, 1792}, {4096, 1024}, {1024, 2048}, {37, 1000}, {1, 8},
            {300, 2056}, {13, 8192}, {5, 20480}};
        try (KernelRig rig = new KernelRig()) {
            rig.kernels.gemvStreamBlocks(0);  // gemv(3, ...) the plain form, whatever the rig knows of the device
            int checked = 0;
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int n = s[0];
                    int k = s[1];
                    boolean bias = r.nextBoolean();
                    boolean outF32 = r.nextBoolean();
                    rig.kernels.weightsFixed(r.nextBoolean());
                    long xd = rig.values(p, gaussian(r, m * k, 1));
                    long wd = rig.values(p, gaussian(r, n * k, 1.0 / Math.sqrt(k)));
                    long bd = bias ? rig.values(p, gaussian(r, n, 1)) : 0;
                    int bytes = outF32 ? 4 : p.bytes();
                    long plain = rig.zeros((long) m * n * bytes);
                    rig.kernels.gemv(3, p, xd, wd, bd, plain, outF32, m, n, k);
                    float[] want = outF32 ? rig.floats(plain, m * n) : rig.values(p, plain, m * n);
                    String what = p + " " + m + "x" + k + " . " + k + "x" + n + (bias ? " + bias" : "")
                            + (outF32 ? " (float32 out)" : "");
                    for (int grid : grids(Kernels.gemv3Blocks(p, m, n, k))) {
                        long streamed = rig.zeros((long) m * n * bytes);
                        rig.kernels.gemvStream(p, xd, wd, bd, streamed, outF32, m, n, k, grid);
                        float[] got = outF32 ? rig.floats(streamed, m * n) : rig.values(p, streamed, m * n);
                        assertArrayEquals(want, got, what + " on " + grid + " blocks");
                        checked++;
                    }
                    // the launcher's own route: two multiprocessors said, one block each, so gemv(3, ...) streams
                    rig.kernels.multiprocessors(2);
                    rig.kernels.gemvStreamBlocks(1);
                    long routed = rig.zeros((long) m * n * bytes);
                    rig.kernels.gemv(3, p, xd, wd, bd, routed, outF32, m, n, k);
                    rig.kernels.multiprocessors(0);
                    rig.kernels.gemvStreamBlocks(0);
                    assertArrayEquals(want, outF32 ? rig.floats(routed, m * n) : rig.values(p, routed, m * n),
                            what + ", streamed by gemv's own launcher");
                }
            }
            assertEquals(shapes.length * Kernels.GEMV_FUSED_MAX_ROWS * 4, checked);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("precisions")
    void streamedSwigluIsTheFusedKernel(Precision p) {
        SplittableRandom r = new SplittableRandom(13);
        // h, width
        int[][] shapes = {{3584, 1792}, {2048, 1024}, {100, 72}, {1, 8}, {37, 1000}, {600, 2056}};
        try (KernelRig rig = new KernelRig()) {
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int h = s[0];
                    int k = s[1];
                    boolean bias = r.nextBoolean();
                    rig.kernels.weightsFixed(r.nextBoolean());
                    long xd = rig.values(p, gaussian(r, m * k, 1));
                    long wd = rig.values(p, gaussian(r, 2 * h * k, 1.0 / Math.sqrt(k)));
                    long bd = bias ? rig.values(p, gaussian(r, 2 * h, 1)) : 0;
                    long plain = rig.zeros((long) m * h * p.bytes());
                    int blocks = pairedBlocks(p, m, h, k);
                    rig.kernels.gemvSwiglu(p, xd, wd, bd, plain, m, h, k, blocks);
                    float[] want = rig.values(p, plain, m * h);
                    for (int grid : grids(blocks)) {
                        long streamed = rig.zeros((long) m * h * p.bytes());
                        rig.kernels.gemvSwiglu(p, xd, wd, bd, streamed, m, h, k, grid);
                        assertArrayEquals(want, rig.values(p, streamed, m * h), p + " " + m + "x" + k + " . " + k
                                + "x" + 2 * h + (bias ? " + bias" : "") + " on " + grid + " blocks");
                    }
                    rig.kernels.multiprocessors(2);  // the launcher's own route: streamed on two blocks
                    rig.kernels.gemvStreamBlocks(1);
                    long routed = rig.zeros((long) m * h * p.bytes());
                    rig.kernels.gemvSwiglu(p, xd, wd, bd, routed, m, h, k);
                    rig.kernels.multiprocessors(0);
                    assertArrayEquals(want, rig.values(p, routed, m * h), p + " " + m + "x" + k + " . " + k + "x"
                            + 2 * h + ", streamed by gemvSwiglu's own launcher");
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("precisions")
    void streamedConvIsTheFusedKernel(Precision p) {
        SplittableRandom r = new SplittableRandom(17);
        // inner width, width of x, conv kernel
        int[][] shapes = {{3584, 1792, 3}, {2048, 1024, 3}, {100, 56, 4}, {1, 8, 1}, {33, 1000, 6}};
        int slots = 3;
        try (KernelRig rig = new KernelRig()) {
            for (int[] s : shapes) {
                for (int m = 1; m <= Kernels.GEMV_FUSED_MAX_ROWS; m++) {
                    int inner = s[0];
                    int k = s[1];
                    int kernel = s[2];
                    TokenBatch batch = m == 1 ? new TokenBatch(new int[] {2}, new int[] {7}, new int[] {1})
                            : new TokenBatch(new int[] {2, 0}, new int[] {7, 0}, new int[] {1, 1});
                    boolean bias = r.nextBoolean();
                    rig.kernels.weightsFixed(r.nextBoolean());
                    long xd = rig.values(p, gaussian(r, m * k, 1));
                    long wd = rig.values(p, gaussian(r, 2 * inner * k, 1.0 / Math.sqrt(k)));
                    long bd = bias ? rig.values(p, gaussian(r, 2 * inner, 1)) : 0;
                    long td = rig.values(p, gaussian(r, inner * kernel, 1));
                    float[] hist = gaussian(r, slots * Math.max(1, kernel - 1) * inner, 1);
                    long layout = rig.ints(CudaBackend.layoutOf(batch));
                    int blocks = pairedBlocks(p, m, inner, k);
                    long histPlain = rig.values(p, hist);
                    long plain = rig.zeros((long) m * inner * p.bytes());
                    rig.kernels.gemvConv(p, xd, wd, bd, td, histPlain, layout, plain, m, inner, k, kernel, blocks);
                    float[] want = rig.values(p, plain, m * inner);
                    float[] wantHist = rig.values(p, histPlain, hist.length);
                    for (int grid : grids(blocks)) {
                        long histStreamed = rig.values(p, hist);
                        long streamed = rig.zeros((long) m * inner * p.bytes());
                        rig.kernels.gemvConv(p, xd, wd, bd, td, histStreamed, layout, streamed, m, inner, k, kernel,
                                grid);
                        String what = p + " " + m + "x" + k + " . " + k + "x" + 2 * inner + (bias ? " + bias" : "")
                                + ", kernel " + kernel + " on " + grid + " blocks";
                        assertArrayEquals(want, rig.values(p, streamed, m * inner), what + ": outputs");
                        assertArrayEquals(wantHist, rig.values(p, histStreamed, hist.length), what + ": history");
                    }
                }
            }
        }
    }

    /** Blocks of a paired gemv's own launch, by the parts version 3 gives its rows. */
    private static int pairedBlocks(Precision p, int m, int h, int k) {
        return Kernels.gemvPairedBlocks(Kernels.gemv3Parts(p, m, 2 * h, k), h);
    }

    private static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (scale * r.nextGaussian());
        }
        return out;
    }
}
