package io.based4j.cuda;

import java.util.SplittableRandom;

/**
 * Times the Taylor linear-attention training kernels of {@link MixerTrainKernels} on GPU 0 with CUDA events: the
 * forward and the backward at batch 8, 16 heads, feature dim 16, head dim 64, sequences of 2048 and 8192 tokens, in
 * both precisions (or the ones named as arguments: {@code f32}, {@code bf16}); bf16 on the CUDA-core kernels, on the
 * tensor-core chunk kernels, on the chunk kernels with rounded states ({@link MixerTrainKernels#roundedStates}: the
 * backward differs, the forward is the chunk kernels') and on the tensor-core scan kernels (the running state on
 * chip), side by side with the speed-ups. Prints milliseconds per call, the mean of {@value #REPS} calls after one
 * warm-up call.
 *
 * <p>Run from the test classes (the kernels must be built, i.e. without {@code -Dbased4j.skipKernels}), from the
 * repository root: {@code ./build test -pl based4j-cuda -am -DskipTests}, then
 * {@code java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp <classpath>
 * io.based4j.cuda.LinearAttentionBench [f32|bf16]...} with the classpath {@code based4j-cuda/target/classes},
 * {@code based4j-cuda/target/test-classes}, {@code based4j-core/target/classes},
 * {@code based4j-train/target/classes} and the JUnit jars.
 */
public final class LinearAttentionBench {
    private static final int BATCH = 8;
    private static final int HEADS = 16;
    private static final int FEATURE_DIM = 16;
    private static final int HEAD_DIM = 64;
    private static final int[] SEQ_LENS = {2048, 8192};
    private static final int REPS = 10;
    private static final float EPS = 1e-6f;

    private LinearAttentionBench() {
    }

    public static void main(String[] args) {
        Precision[] precisions = args.length == 0 ? Precision.values() : new Precision[args.length];
        for (int i = 0; i < args.length; i++) {
            precisions[i] = switch (args[i]) {
                case "f32" -> Precision.F32;
                case "bf16" -> Precision.BF16;
                default -> throw new IllegalArgumentException("precision '" + args[i] + "' is neither f32 nor bf16");
            };
        }
        try (KernelRig rig = new KernelRig(); MixerTrainKernels mk = new MixerTrainKernels(rig.kernels)) {
            for (Precision p : precisions) {
                for (int len : SEQ_LENS) {
                    time(rig, mk, p, len);
                }
            }
        }
    }

    private static void time(KernelRig rig, MixerTrainKernels mk, Precision p, int len) {
        mk.tensorCores(false);
        double[] cudaCores = time(rig, mk, p, len, "CUDA cores");
        mk.tensorCores(true);
        if (MixerTrainKernels.linearTensorCores(p, FEATURE_DIM, HEAD_DIM)) {
            mk.scan(false);
            double[] chunks = time(rig, mk, p, len, "tensor cores, chunk kernels");
            System.out.printf("  tensor-core chunk kernels / CUDA cores: forward %.1fx, backward %.1fx faster%n",
                    cudaCores[0] / chunks[0], cudaCores[1] / chunks[1]);
            if (MixerTrainKernels.linearRoundedStates(p, FEATURE_DIM, HEAD_DIM)) {
                mk.roundedStates(true);
                double[] rounded = time(rig, mk, p, len, "tensor cores, chunk kernels with rounded states");
                mk.roundedStates(false);
                System.out.printf("  rounded states / chunk kernels: backward %.2fx faster%n",
                        chunks[1] / rounded[1]);
            }
            mk.scan(true);
            if (MixerTrainKernels.linearScan(p, FEATURE_DIM, HEAD_DIM)) {
                double[] scan = time(rig, mk, p, len, "tensor cores, scan kernels");
                System.out.printf("  scan kernels / chunk kernels: forward %.2fx, backward %.2fx faster%n",
                        chunks[0] / scan[0], chunks[1] / scan[1]);
            }
        }
    }

    /** Milliseconds of the forward and the backward. */
    private static double[] time(KernelRig rig, MixerTrainKernels mk, Precision p, int len, String kernels) {
        SplittableRandom r = new SplittableRandom(1);
        int n = BATCH * len;
        long q = rig.values(p, Near.gaussian(r, n * HEADS * FEATURE_DIM, 1));
        long k = rig.values(p, Near.gaussian(r, n * HEADS * FEATURE_DIM, 1));
        long v = rig.values(p, Near.gaussian(r, n * HEADS * HEAD_DIM, 1));
        long dout = rig.values(p, Near.gaussian(r, n * HEADS * HEAD_DIM, 1));
        long out = rig.zeros((long) n * HEADS * HEAD_DIM * p.bytes());
        long dq = rig.zeros((long) n * HEADS * FEATURE_DIM * p.bytes());
        long dk = rig.zeros((long) n * HEADS * FEATURE_DIM * p.bytes());
        long dv = rig.zeros((long) n * HEADS * HEAD_DIM * p.bytes());
        double forward = BenchTimer.millis(rig, REPS, () -> mk.linearAttentionForward(p, q, k, v, out, BATCH, len,
                HEADS, FEATURE_DIM, HEAD_DIM, EPS));
        double backward = BenchTimer.millis(rig, REPS, () -> mk.linearAttentionBackward(p, q, k, v, dout, dq, dk, dv,
                BATCH, len, HEADS, FEATURE_DIM, HEAD_DIM, EPS));
        System.out.printf("linear attention %s on %s, batch %d, seqLen %d, heads %d, f %d, dh %d: forward %.3f ms, "
                + "backward %.3f ms%n", p.suffix(), kernels, BATCH, len, HEADS, FEATURE_DIM, HEAD_DIM, forward,
                backward);
        return new double[] {forward, backward};
    }
}
