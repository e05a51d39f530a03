package io.based4j.cuda;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Times the bf16 softmax-attention training kernels of {@link MixerTrainKernels} on GPU 0 with CUDA events, the scalar
 * kernels against the tensor-core ones: forward and backward at batch 8, 16 heads of 64, sequences of 2048 tokens,
 * rotary on the whole head, window 64 (the sliding attention of based-360m) and full causal (attn-360m); or the
 * windows named as arguments ({@code full} or a number). Prints milliseconds per call (the mean of {@value #REPS}
 * calls after one warm-up call) and the largest difference between the two kernels' outputs.
 *
 * <p>Run from the test jar (the kernels must be built, i.e. without {@code -Dbased4j.skipKernels}):
 * {@code java -cp based4j-cuda/target/classes:based4j-cuda/target/test-classes:<dependencies>
 * io.based4j.cuda.AttentionBench [full|WINDOW]...}.
 */
public final class AttentionBench {
    private static final int BATCH = 8;
    private static final int HEADS = 16;
    private static final int HEAD_DIM = 64;
    private static final int SEQ_LEN = 2048;
    private static final int ROTARY_DIM = 64;
    private static final double ROTARY_BASE = 10000;
    private static final Precision P = Precision.BF16;
    private static final int REPS = 10;

    private AttentionBench() {
    }

    public static void main(String[] args) {
        int[] windows = args.length == 0 ? new int[] {64, Integer.MAX_VALUE} : new int[args.length];
        for (int i = 0; i < args.length; i++) {
            windows[i] = args[i].equals("full") ? Integer.MAX_VALUE : Integer.parseInt(args[i]);
        }
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (int window : windows) {
                time(rig, mk, window);
            }
        }
    }

    private static void time(KernelRig rig, MixerTrainKernels mk, int window) {
        SplittableRandom r = new SplittableRandom(1);
        int n = BATCH * SEQ_LEN;
        int d = HEADS * HEAD_DIM;
        float scale = (float) (1 / Math.sqrt(HEAD_DIM));
        long qkv = rig.values(P, Near.gaussian(r, n * 3 * d, 1));
        long dout = rig.values(P, Near.gaussian(r, n * d, 1));
        long[] out = {rig.zeros(2L * n * d), rig.zeros(2L * n * d)};
        long[] lse = {rig.zeros(4L * n * HEADS), rig.zeros(4L * n * HEADS)};
        long[] dqkv = {rig.zeros(2L * n * 3 * d), rig.zeros(2L * n * 3 * d)};
        double[] forward = {
            BenchTimer.millis(rig, REPS, () -> mk.scalarAttentionForward(P, qkv, out[0], lse[0], BATCH, SEQ_LEN,
                    HEADS, HEAD_DIM, window, ROTARY_DIM, ROTARY_BASE, scale)),
            BenchTimer.millis(rig, REPS, () -> mk.mmaAttentionForward(qkv, out[1], lse[1], BATCH, SEQ_LEN, HEADS,
                    HEAD_DIM, window, ROTARY_DIM, ROTARY_BASE, scale))};
        double[] backward = {
            BenchTimer.millis(rig, REPS, () -> mk.scalarAttentionBackward(P, qkv, out[0], lse[0], dout, dqkv[0],
                    BATCH, SEQ_LEN, HEADS, HEAD_DIM, window, ROTARY_DIM, ROTARY_BASE, scale)),
            BenchTimer.millis(rig, REPS, () -> mk.mmaAttentionBackward(qkv, out[1], lse[1], dout, dqkv[1], BATCH,
                    SEQ_LEN, HEADS, HEAD_DIM, window, ROTARY_DIM, ROTARY_BASE, scale))};
        String what = String.format(Locale.ROOT, "attention bf16 batch %d, seqLen %d, heads %d, dh %d, window %s",
                BATCH, SEQ_LEN, HEADS, HEAD_DIM, window == Integer.MAX_VALUE ? "full" : String.valueOf(window));
        System.out.printf(Locale.ROOT, "%s: forward scalar %.3f ms, tensor cores %.3f ms (%.1fx); backward scalar "
                + "%.3f ms, tensor cores %.3f ms (%.1fx)%n", what, forward[0], forward[1], forward[0] / forward[1],
                backward[0], backward[1], backward[0] / backward[1]);
        System.out.printf(Locale.ROOT, "%s: largest difference scalar vs tensor cores: out %.3g, lse %.3g%n", what,
                largestDifference(rig.values(P, out[0], n * d), rig.values(P, out[1], n * d)),
                largestDifference(rig.floats(lse[0], n * HEADS), rig.floats(lse[1], n * HEADS)));
    }

    private static double largestDifference(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }
}
