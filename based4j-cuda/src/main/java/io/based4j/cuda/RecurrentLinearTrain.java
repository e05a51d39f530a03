package io.based4j.cuda;

import io.based4j.config.MixerConfig;
import static io.based4j.cuda.Kernels.require;

/**
 * The recurrent form of the linear-attention training kernels ({@code train_linear_recurrent.cuh}): each block walks
 * its sequences token by token with the state in shared memory, one block per (sequence, head, tile of dt value
 * columns). Slower than the chunked kernels of {@link MixerTrainKernels}, but for any head dim: it serves the heads
 * wider than {@link MixerTrainKernels#LINEAR_MAX_HEAD_DIM} (a one-head MQAR model of width 128, say) in float32, and
 * in bf16 those that do not split into tensor-core heads ({@link MixerTrainKernels#linearHeadSplit}).
 *
 * <p>Backward scratch (float32): per (row, head) one {@code dout . y} part per tile, D, and a part of dq and of dk
 * per tile ({@code f} each): {@code 4 N H (tiles (1 + 2 f) + 1)} bytes.
 */
final class RecurrentLinearTrain {
    private static final int THREADS = 256;
    private static final int DEFAULT_SHARED = 48 * 1024;
    /** Dynamic shared memory a block may take (fits sm_80 and sm_90 opt-in limits). */
    private static final int MAX_SHARED = 96 * 1024;
    private static final int MAX_GRID_YZ = 65535;

    private final Kernels k;

    RecurrentLinearTrain(Kernels k) {
        this.k = k;
    }

    /** Floats of dynamic shared memory of a block (mirrors linearTrainSmemFloats in the kernels). */
    private static int sharedFloats(int f, int dt) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return e * dt + 4 * e + 2 * dt + 2 * f + THREADS + 4;
    }

    /** Value columns per block: 32, halved (down to 8) for a small head or while the block needs more than 48 KiB. */
    static int tile(int f, int dh) {
        int dt = dh <= 8 ? 8 : dh <= 16 ? 16 : 32;
        while (dt > 8 && 4L * sharedFloats(f, dt) > DEFAULT_SHARED) {
            dt /= 2;
        }
        return dt;
    }

    static int sharedBytes(int f, int dh) {
        return 4 * sharedFloats(f, tile(f, dh));
    }

    private static int tiles(int f, int dh) {
        int dt = tile(f, dh);
        return (dh + dt - 1) / dt;
    }

    static long backwardScratchBytes(long rows, int heads, int featureDim, int headDim) {
        long cells = Math.multiplyExact(rows, (long) heads);
        long tiles = tiles(featureDim, headDim);
        return Math.multiplyExact(4L * cells, tiles * (1 + 2L * featureDim) + 1);
    }

    private int check(String op, int f, int dh) {
        int shared = sharedBytes(f, dh);
        require(shared <= MAX_SHARED, op + ": feature dim " + f + " needs " + shared
                + " bytes of shared memory per block, more than " + MAX_SHARED);
        require(tiles(f, dh) <= MAX_GRID_YZ, op + ": head dim " + dh + " is too large");
        return shared;
    }

    void forward(Precision p, long q, long kk, long v, long out, int batch, int seqLen, int heads, int featureDim,
                 int headDim, float eps) {
        int shared = check("linearAttentionForward", featureDim, headDim);
        k.args.reset().ptr(q).ptr(kk).ptr(v).ptr(out).i32(seqLen).i32(heads).i32(featureDim).i32(headDim).f32(eps)
                .i32(tile(featureDim, headDim));
        k.launch(k.function("linearAttentionTrainForward", p, shared), batch, heads, tiles(featureDim, headDim),
                THREADS, shared);
    }

    void backward(Precision p, long q, long kk, long v, long dout, long dq, long dk, long dv, int batch, int seqLen,
                  int heads, int featureDim, int headDim, float eps, long scratch) {
        int shared = check("linearAttentionBackward", featureDim, headDim);
        int dt = tile(featureDim, headDim);
        int tiles = tiles(featureDim, headDim);
        long cells = (long) batch * seqLen * heads;
        long dots = scratch;
        long denominators = dots + 4L * tiles * cells;
        long dqPart = denominators + 4L * cells;
        long dkPart = dqPart + 4L * tiles * cells * featureDim;
        k.args.reset().ptr(q).ptr(kk).ptr(v).ptr(dout).ptr(dots).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim).f32(eps).i32(dt);
        k.launch(k.function("linearAttentionTrainBackwardDots", p, shared), batch, heads, tiles, THREADS, shared);
        k.args.reset().ptr(q).ptr(kk).ptr(v).ptr(dout).ptr(dots).ptr(denominators).ptr(dqPart).i32(seqLen)
                .i32(heads).i32(featureDim).i32(headDim).f32(eps).i32(dt);
        k.launch(k.function("linearAttentionTrainBackwardQ", p, shared), batch, heads, tiles, THREADS, shared);
        k.args.reset().ptr(q).ptr(kk).ptr(v).ptr(dout).ptr(dots).ptr(denominators).ptr(dkPart).ptr(dv)
                .i32(seqLen).i32(heads).i32(featureDim).i32(headDim).i32(dt);
        k.launch(k.function("linearAttentionTrainBackwardKV", p, shared), batch, heads, tiles, THREADS, shared);
        long count = cells * featureDim;
        k.args.reset().ptr(dqPart).ptr(dkPart).ptr(dq).ptr(dk).i64(count).i32(tiles);
        k.elementwise(k.function("linearAttentionTrainBackwardReduce", p), count);
    }
}
