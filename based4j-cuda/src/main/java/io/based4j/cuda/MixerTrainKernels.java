package io.based4j.cuda;

import static io.based4j.cuda.Kernels.require;

/**
 * Launches the training kernels of the three sequence mixers ({@code src/main/cuda/train_conv.cuh},
 * {@code train_linear.cuh}, {@code train_attention.cuh}): each forward over whole sequences, keeping what its
 * backward needs, and each backward. They compute in float32 the functions of the float64 reference ops in
 * {@code based4j-train}: {@code DenseOps.baseConv/baseConvBackward}, {@code LinearAttentionOps.forward/backward},
 * {@code AttentionOps.forward/backward}.
 *
 * <h2>Conventions</h2>
 * As {@link Kernels} and {@link TrainKernels}: {@code NAME_f32} and {@code NAME_bf16} instantiations, pointers are
 * device addresses, rows row-major and contiguous, a call with no work launches nothing, all launches go to the
 * stream of the {@link Kernels}. A training pass is {@code batch} sequences of {@code seqLen} tokens packed as
 * {@code N = batch x seqLen} rows, sequence b in rows {@code [b seqLen, (b + 1) seqLen)}, each starting from an empty
 * state. Activations and their gradients ({@code u, convOut, out, dout, du, q, k, v, dq, dk, dv, qkv, dqkv}) are of
 * the precision's type A (float or bf16); weights of type W (the same); the tap gradient and the log-sum-exp are
 * float32. Forwards overwrite their outputs; every backward ADDS into its gradient outputs ({@code +=}). Sums are
 * float32 and taken in a fixed order: results are deterministic (no atomics).
 *
 * <h2>Kernels and launch shapes</h2>
 * <table>
 * <caption>mixer training kernels</caption>
 * <tr><th>kernel</th><th>grid x block</th><th>what</th></tr>
 * <tr><td>baseConvTrainForward</td><td>elementwise over N x inner</td>
 *     <td>{@code c = conv(u1)} kept in convOut, {@code out = silu(c) u2}</td></tr>
 * <tr><td>baseConvTrainBackwardInput</td><td>elementwise over N x inner</td>
 *     <td>{@code du2 += dout silu(c)}, {@code du1 += } the taps' transpose over dc (recomputed from c)</td></tr>
 * <tr><td>baseConvTrainBackwardTaps</td><td>ceil(inner / 32) x 256 (32 channels x 8 row groups)</td>
 *     <td>{@code dtaps += sum_t dc_t u1_{t-(k-1)+j}}, partial sums added in group order</td></tr>
 * <tr><td>linearAttentionTrainForward</td><td>(batch, H, tiles) x 256, dynamic shared memory</td>
 *     <td>recurrent: per (sequence, head, tile of dt value columns) the state tile {@code S [E][dt]} and z in
 *     shared memory, token by token {@code S += phi(k) v^T; z += phi(k); y = phi(q).S / (phi(q).z + eps)}</td></tr>
 * <tr><td>linearAttentionTrainBackwardDots</td><td>as the forward</td>
 *     <td>the forward recurrence again; per token the tile's part of {@code dout . y} into the scratch</td></tr>
 * <tr><td>linearAttentionTrainBackwardQ</td><td>as the forward</td>
 *     <td>the forward recurrence again; {@code D = phi(q).z + eps}, {@code r = -dout.y / D}, {@code g = dout / D};
 *     the tile's part of {@code dq = J^T (S g + z r)} into the scratch</td></tr>
 * <tr><td>linearAttentionTrainBackwardKV</td><td>as the forward</td>
 *     <td>reverse scan of {@code dS = sum_{t>=s} phi(q_t) g_t^T}, {@code dz = sum_{t>=s} phi(q_t) r_t}:
 *     {@code dv += dS^T phi(k)} (complete per tile), the tile's part of {@code dk = J^T (dS v + dz)}</td></tr>
 * <tr><td>linearAttentionTrainBackwardReduce</td><td>elementwise over N x H f</td>
 *     <td>{@code dq, dk += } the tiles' parts, in tile order</td></tr>
 * <tr><td>attentionTrainForward</td><td>(ceil(seqLen / 16), H, batch) x 128</td>
 *     <td>4 warps x 4 queries, lanes over the head dims; keys in shared tiles of 32 (rotated k, v); online
 *     softmax; {@code out} and {@code lse = max + log sum}</td></tr>
 * <tr><td>attentionTrainBackwardQ</td><td>as the forward</td>
 *     <td>per query {@code D = dout.out}; per key {@code p = exp(scale q.k - lse)},
 *     {@code dq += p (dout.v - D) scale k}; rotated back, added into dqkv's q</td></tr>
 * <tr><td>attentionTrainBackwardKV</td><td>(ceil(seqLen / 16), H, batch) x 128</td>
 *     <td>4 warps x 4 keys; the queries that see them in shared tiles of 32 (rotated q, dout, D, lse);
 *     {@code dv += p dout}, {@code dk += ds q}; added into dqkv's k and v</td></tr>
 * </table>
 *
 * <h2>Memory</h2>
 * Nothing is {@code L x L}. Linear attention keeps nothing besides its output and recomputes its states in the
 * backward (three recurrences: the per-token {@code dout . y} needs every value column before dq and dk can be
 * formed, and a tile of columns is all one block holds); its backward takes a float32 scratch of
 * {@link #linearAttentionBackwardScratchBytes} (linear in N), either given by the caller or owned by this instance
 * (allocated on first use, grown when a larger pass comes, freed by {@link #close}). Attention keeps one float32
 * log-sum-exp per (token, head). Shared memory per block: at most 33 KiB for attention (head dim at most
 * {@value #ATTENTION_MAX_HEAD_DIM}), {@link #linearSharedBytes} for linear attention (the tile dt is chosen so that
 * it stays within 48 KiB where it can: 46 KiB at f = 32, dt = 16; 21 KiB at f = 16, dt = 32).
 *
 * <h2>What a faster version would change</h2>
 * These kernels aim at exactness, not speed. Linear attention would run in the chunked form on tensor cores: the
 * in-chunk scores {@code 1 + s + s^2/2} as one {@code C x C} product per chunk, the state updates as
 * {@code [E, C] x [C, dh]} products, one state per chunk held in global memory so that the dot, dq and dk/dv passes
 * merge into one forward and one reverse pass. Attention would take query tiles of 64-128 on tensor cores (mma
 * over bf16 tiles instead of warp dot products), a rotary table in shared memory instead of double-precision
 * sin/cos, and dk/dv with dq accumulated by atomics in one kernel (FlashAttention-2's backward).
 *
 * <p>An instance shares the {@link Kernels}' argument list: not thread-safe.
 */
public final class MixerTrainKernels implements AutoCloseable {
    /** The largest attention head dim: 32 lanes x 4 elements. */
    public static final int ATTENTION_MAX_HEAD_DIM = 128;
    private static final int ATTENTION_THREADS = 128;
    private static final int ATTENTION_ROWS = 16;
    private static final int CONV_TAP_CHANNELS = 32;
    private static final int LINEAR_THREADS = 256;
    private static final int DEFAULT_SHARED = 48 * 1024;
    /** The most dynamic shared memory a linear-attention block may take (fits sm_80 and sm_90 opt-in limits). */
    private static final int LINEAR_MAX_SHARED = 96 * 1024;
    private static final int MAX_GRID_YZ = 65535;

    private final Kernels k;
    private long ownedScratch;
    private long ownedScratchBytes;

    /** Launches on the stream of {@code kernels}. */
    public MixerTrainKernels(Kernels kernels) {
        this.k = kernels;
    }

    private static long rows(int batch, int seqLen) {
        return (long) batch * seqLen;
    }

    // ------------------------------------------------------------------------------------------------ BaseConv

    private static void checkConv(String op, int batch, int seqLen, int inner, int kernel) {
        require(batch >= 0 && seqLen >= 0 && inner >= 0, op + ": batch " + batch + ", seqLen " + seqLen + ", inner "
                + inner + " must not be negative");
        require(kernel >= 1, op + ": kernel " + kernel + " must be at least 1");
    }

    /**
     * BaseConv forward ({@code DenseOps.baseConv}): u A {@code [N, 2 inner]} ({@code u1 | u2}), taps W
     * {@code [inner, kernel]} (tap {@code kernel - 1} meets the current token); writes the conv output c into
     * convOut A {@code [N, inner]} (kept for the backward) and {@code out = silu(c) u2} A {@code [N, inner]}.
     */
    public void baseConvForward(Precision p, long u, long taps, long convOut, long out, int batch, int seqLen,
                                int inner, int kernel) {
        checkConv("baseConvForward", batch, seqLen, inner, kernel);
        long n = rows(batch, seqLen);
        if (n * inner == 0) {
            return;
        }
        k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(out).i32(seqLen).i64(n).i32(inner).i32(kernel);
        k.elementwise(k.function("baseConvTrainForward", p), n * inner);
    }

    /**
     * BaseConv backward ({@code DenseOps.baseConvBackward}) from the kept convOut: dout A {@code [N, inner]};
     * {@code du += } (A {@code [N, 2 inner]}), {@code dtaps += } (F32 {@code [inner, kernel]}).
     */
    public void baseConvBackward(Precision p, long u, long taps, long convOut, long dout, long du, long dtaps,
                                 int batch, int seqLen, int inner, int kernel) {
        checkConv("baseConvBackward", batch, seqLen, inner, kernel);
        long n = rows(batch, seqLen);
        if (n * inner == 0) {
            return;
        }
        k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(dout).ptr(du).i32(seqLen).i64(n).i32(inner).i32(kernel);
        k.elementwise(k.function("baseConvTrainBackwardInput", p), n * inner);
        k.args.reset().ptr(u).ptr(convOut).ptr(dout).ptr(dtaps).i32(seqLen).i64(n).i32(inner).i32(kernel);
        k.launch(k.function("baseConvTrainBackwardTaps", p), (inner + CONV_TAP_CHANNELS - 1) / CONV_TAP_CHANNELS, 1,
                1, Kernels.THREADS, 0);
    }

    // ------------------------------------------------------------------------------------------------ linear attention

    /** Floats of dynamic shared memory of the linear-attention kernels (mirrors linearTrainSmemFloats). */
    static int linearSharedFloats(int f, int dt) {
        int e = 1 + f + f * (f + 1) / 2;
        return e * dt + 4 * e + 2 * dt + 2 * f + LINEAR_THREADS + 4;
    }

    /** Value columns per block: 32, halved (down to 8) for a small head or while the block needs more than 48 KiB. */
    static int linearTile(int f, int dh) {
        int dt = dh <= 8 ? 8 : dh <= 16 ? 16 : 32;
        while (dt > 8 && 4L * linearSharedFloats(f, dt) > DEFAULT_SHARED) {
            dt /= 2;
        }
        return dt;
    }

    /** Bytes of dynamic shared memory one linear-attention block takes for feature dim f and head dim dh. */
    public static int linearSharedBytes(int f, int dh) {
        return 4 * linearSharedFloats(f, linearTile(f, dh));
    }

    private static int linearTiles(int f, int dh) {
        int dt = linearTile(f, dh);
        return (dh + dt - 1) / dt;
    }

    /**
     * Bytes of float32 scratch {@link #linearAttentionBackward} needs: per (row, head) one {@code dout . y} part per
     * tile, D, and a part of dq and of dk per tile ({@code f} each): {@code 4 N H (tiles (1 + 2 f) + 1)}.
     */
    public static long linearAttentionBackwardScratchBytes(int batch, int seqLen, int heads, int featureDim,
                                                           int headDim) {
        long cells = Math.multiplyExact(rows(batch, seqLen), (long) heads);
        long tiles = linearTiles(featureDim, headDim);
        return Math.multiplyExact(4L * cells, tiles * (1 + 2L * featureDim) + 1);
    }

    private int linearLaunchCheck(String op, int batch, int seqLen, int heads, int f, int dh, float eps) {
        require(batch >= 0 && seqLen >= 0, op + ": batch " + batch + ", seqLen " + seqLen);
        require(f >= 1 && f <= 64, op + ": feature dim " + f + " is outside [1, 64]");
        require(dh >= 1, op + ": head dim " + dh + " must be positive");
        require(heads >= 1 && heads <= MAX_GRID_YZ, op + ": " + heads + " heads (1 to " + MAX_GRID_YZ + ")");
        require(eps >= 0 && Float.isFinite(eps), op + ": eps " + eps + " must be finite and >= 0");
        int shared = linearSharedBytes(f, dh);
        require(shared <= LINEAR_MAX_SHARED, op + ": feature dim " + f + " needs " + shared
                + " bytes of shared memory per block, more than " + LINEAR_MAX_SHARED);
        require(linearTiles(f, dh) <= MAX_GRID_YZ, op + ": head dim " + dh + " is too large");
        return shared;
    }

    private long linearFunction(String name, Precision p, int shared) {
        long fn = k.function(name, p);
        if (shared > DEFAULT_SHARED) {
            CudaDriver.get().funcSetMaxDynamicSharedMemory(fn, shared);
        }
        return fn;
    }

    /**
     * Taylor linear attention forward ({@code LinearAttentionOps.forward}): q, k A {@code [N, H f]}, v A
     * {@code [N, H dh]}; writes out A {@code [N, H dh]}. Keeps nothing else.
     */
    public void linearAttentionForward(Precision p, long q, long k, long v, long out, int batch, int seqLen,
                                       int heads, int featureDim, int headDim, float eps) {
        int shared = linearLaunchCheck("linearAttentionForward", batch, seqLen, heads, featureDim, headDim, eps);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        long fn = linearFunction("linearAttentionTrainForward", p, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(out).i32(seqLen).i32(heads).i32(featureDim).i32(headDim)
                .f32(eps).i32(linearTile(featureDim, headDim));
        this.k.launch(fn, batch, heads, linearTiles(featureDim, headDim), LINEAR_THREADS, shared);
    }

    /**
     * Linear attention backward ({@code LinearAttentionOps.backward}) with scratch owned by this instance: dout A
     * {@code [N, H dh]}; {@code dq, dk += } (A {@code [N, H f]}), {@code dv += } (A {@code [N, H dh]}). The first
     * call, and a call for a larger pass than any before, allocates {@link #linearAttentionBackwardScratchBytes}
     * of device memory (waiting for the device when it replaces a smaller one).
     */
    public void linearAttentionBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv,
                                        int batch, int seqLen, int heads, int featureDim, int headDim, float eps) {
        linearLaunchCheck("linearAttentionBackward", batch, seqLen, heads, featureDim, headDim, eps);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        long scratch = ownedScratch(linearAttentionBackwardScratchBytes(batch, seqLen, heads, featureDim, headDim));
        linearAttentionBackward(p, q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps,
                scratch);
    }

    /**
     * {@link #linearAttentionBackward} with the caller's scratch: {@link #linearAttentionBackwardScratchBytes} of
     * device memory (any contents; overwritten), not used by anything else until the backward has run.
     */
    public void linearAttentionBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv,
                                        int batch, int seqLen, int heads, int featureDim, int headDim, float eps,
                                        long scratch) {
        int shared = linearLaunchCheck("linearAttentionBackward", batch, seqLen, heads, featureDim, headDim, eps);
        long n = rows(batch, seqLen);
        if (n == 0) {
            return;
        }
        int dt = linearTile(featureDim, headDim);
        int tiles = linearTiles(featureDim, headDim);
        long cells = n * heads;
        long dots = scratch;
        long denominators = dots + 4L * tiles * cells;
        long dqPart = denominators + 4L * cells;
        long dkPart = dqPart + 4L * tiles * cells * featureDim;

        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(dots).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim).f32(eps).i32(dt);
        this.k.launch(linearFunction("linearAttentionTrainBackwardDots", p, shared), batch, heads, tiles,
                LINEAR_THREADS, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(dots).ptr(denominators).ptr(dqPart).i32(seqLen)
                .i32(heads).i32(featureDim).i32(headDim).f32(eps).i32(dt);
        this.k.launch(linearFunction("linearAttentionTrainBackwardQ", p, shared), batch, heads, tiles,
                LINEAR_THREADS, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(dots).ptr(denominators).ptr(dkPart).ptr(dv)
                .i32(seqLen).i32(heads).i32(featureDim).i32(headDim).i32(dt);
        this.k.launch(linearFunction("linearAttentionTrainBackwardKV", p, shared), batch, heads, tiles,
                LINEAR_THREADS, shared);
        long count = cells * featureDim;
        this.k.args.reset().ptr(dqPart).ptr(dkPart).ptr(dq).ptr(dk).i64(count).i32(tiles);
        this.k.elementwise(this.k.function("linearAttentionTrainBackwardReduce", p), count);
    }

    private long ownedScratch(long bytes) {
        if (bytes > ownedScratchBytes) {
            CudaDriver cu = CudaDriver.get();
            if (ownedScratch != 0) {
                cu.synchronizeContext();  // earlier launches may still read it
                cu.free(ownedScratch);
                ownedScratch = 0;
                ownedScratchBytes = 0;
            }
            ownedScratch = cu.malloc(bytes);
            ownedScratchBytes = bytes;
        }
        return ownedScratch;
    }

    /** Bytes of device memory this instance holds (the linear-attention backward's scratch). */
    public long ownedBytes() {
        return ownedScratchBytes;
    }

    // ------------------------------------------------------------------------------------------------ attention

    private static void checkAttention(String op, int batch, int seqLen, int heads, int headDim, int window,
                                       int rotaryDim, double rotaryBase, float scale) {
        require(batch >= 0 && batch <= MAX_GRID_YZ && seqLen >= 0, op + ": batch " + batch + " (at most "
                + MAX_GRID_YZ + "), seqLen " + seqLen);
        require(heads >= 1 && heads <= MAX_GRID_YZ, op + ": " + heads + " heads (1 to " + MAX_GRID_YZ + ")");
        require(headDim >= 1 && headDim <= ATTENTION_MAX_HEAD_DIM, op + ": head dim " + headDim + " is outside [1, "
                + ATTENTION_MAX_HEAD_DIM + "]");
        require(window >= 0, op + ": window " + window + " must be >= 0");
        require(rotaryDim >= 0 && rotaryDim <= headDim && rotaryDim % 2 == 0, op + ": rotary dim " + rotaryDim
                + " must be even and in [0, " + headDim + "]");
        require(rotaryDim == 0 || (rotaryBase > 0 && Double.isFinite(rotaryBase)), op + ": rotary base "
                + rotaryBase + " must be finite and positive");
        require(Float.isFinite(scale), op + ": softmax scale " + scale + " is not finite");
    }

    /**
     * Causal or sliding-window attention forward ({@code AttentionOps.forward}): qkv A {@code [N, 3d]}
     * ({@code q | k | v}, d = heads x headDim); writes out A {@code [N, d]} and lse F32 {@code [N, heads]} (kept for
     * the backward). The query at t attends keys {@code max(0, t - window) ..= t} ({@code Integer.MAX_VALUE} or any
     * window {@code >= seqLen}: all earlier keys); q and k turn on their first rotaryDim dims ("rotate half") by the
     * angles of {@code RotaryAngles}, computed in the kernels.
     */
    public void attentionForward(Precision p, long qkv, long out, long lse, int batch, int seqLen, int heads,
                                 int headDim, int window, int rotaryDim, double rotaryBase, float softmaxScale) {
        checkAttention("attentionForward", batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                softmaxScale);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        k.args.reset().ptr(qkv).ptr(out).ptr(lse).i32(seqLen).i32(heads).i32(headDim).i32(window).i32(rotaryDim)
                .i64(Double.doubleToRawLongBits(rotaryBase)).f32(softmaxScale);
        k.launch(k.function("attentionTrainForward", p), blocksOf(seqLen), heads, batch, ATTENTION_THREADS, 0);
    }

    /**
     * Attention backward ({@code AttentionOps.backward}) from the kept out and lse: dout A {@code [N, d]};
     * {@code dqkv += } (A {@code [N, 3d]}). The probabilities are recomputed from lse, two kernels: one per block
     * of queries (dq), one per block of keys (dk, dv).
     */
    public void attentionBackward(Precision p, long qkv, long out, long lse, long dout, long dqkv, int batch,
                                  int seqLen, int heads, int headDim, int window, int rotaryDim, double rotaryBase,
                                  float softmaxScale) {
        checkAttention("attentionBackward", batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                softmaxScale);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        for (String name : new String[] {"attentionTrainBackwardQ", "attentionTrainBackwardKV"}) {
            k.args.reset().ptr(qkv).ptr(out).ptr(lse).ptr(dout).ptr(dqkv).i32(seqLen).i32(heads).i32(headDim)
                    .i32(window).i32(rotaryDim).i64(Double.doubleToRawLongBits(rotaryBase)).f32(softmaxScale);
            k.launch(k.function(name, p), blocksOf(seqLen), heads, batch, ATTENTION_THREADS, 0);
        }
    }

    private static int blocksOf(int seqLen) {
        return (seqLen + ATTENTION_ROWS - 1) / ATTENTION_ROWS;
    }

    /** Frees the scratch this instance allocated (waiting for the device first). */
    @Override
    public void close() {
        if (ownedScratch != 0) {
            CudaDriver cu = CudaDriver.get();
            cu.synchronizeContext();
            cu.free(ownedScratch);
            ownedScratch = 0;
            ownedScratchBytes = 0;
        }
    }
}
