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
 * <tr><td>baseConvTrainBackwardTaps</td><td>(ceil(inner / 32), parts) x 256 (32 channels x 8 row groups)</td>
 *     <td>per part of rows {@code sum_t dc_t u1_{t-(k-1)+j}} for every tap, group sums in order; then
 *     rmsNormWeightGrad_f32 adds the parts in order into dtaps</td></tr>
 * <tr><td>baseConvRowsForwardKk, baseConvRowsBackwardKk (bf16, kernel k &lt;= 4, inner a multiple of 8)</td>
 *     <td>(ceil(inner / 256), ceil(N / 128)) x 256</td>
 *     <td>the bf16 forms ({@link #convByRows}): a lane takes 8 channels and a run of 16 rows, keeping the k - 1
 *     neighbouring rows in registers; the backward is the input and tap kernels in one pass (dc once per element),
 *     its tap sums one part per block row, added by columnPartsSum_f32</td></tr>
 * <tr><td>linearAttentionChunkStates</td><td>(chunks, H, batch) x 256, dynamic shared memory</td>
 *     <td>per chunk of 64 tokens {@code U_c = phi(K_c)^T [V_c, 1]} ({@code [E, dh + 1]}: S's and z's part) into the
 *     scratch, phi formed on chip 64 features at a time</td></tr>
 * <tr><td>linearAttentionScan</td><td>elementwise over batch x H x E x (dh + 1)</td>
 *     <td>exclusive prefix (forward) or suffix (backward) sums of the chunk states over the chunks, in place</td></tr>
 * <tr><td>linearAttentionChunkForward</td><td>as the chunk states</td>
 *     <td>{@code [num | den] = phi(Q_c) S_c + A_c [V_c, 1]} with the in-chunk scores
 *     {@code A_ts = 1 + s + s^2/2} (causal, no feature map), {@code y = num / (den + eps)}</td></tr>
 * <tr><td>linearAttentionChunkBackwardQ</td><td>as the chunk states</td>
 *     <td>the forward again; {@code D = den + eps}, {@code g = dout / D}, {@code r = -dout.y / D} kept as
 *     {@code G' = [g, r]} in the scratch; {@code dq += J^T (S_c G') + } the in-chunk score gradients; the chunk's
 *     state replaced by {@code W_c = phi(Q_c)^T G'_c}</td></tr>
 * <tr><td>linearAttentionChunkBackwardKV</td><td>as the chunk states</td>
 *     <td>after the suffix scan of W ({@code dS_c}): {@code dv += A_c^T g + dS_c^T phi(k)},
 *     {@code dk += J^T (dS_c [v, 1]) + } the in-chunk score gradients</td></tr>
 * <tr><td>attentionTrainForward</td><td>(ceil(seqLen / 16), H, batch) x 128</td>
 *     <td>scalar (f32, and bf16 where the tensor-core kernels do not apply): 4 warps x 4 queries, lanes over the
 *     head dims; keys in shared tiles of 32 (rotated k, v); online softmax; {@code out} and
 *     {@code lse = max + log sum}</td></tr>
 * <tr><td>attentionTrainBackwardQ</td><td>as the forward</td>
 *     <td>scalar: per query {@code D = dout.out}; per key {@code p = exp(scale q.k - lse)},
 *     {@code dq += p (dout.v - D) scale k}; rotated back, added into dqkv's q</td></tr>
 * <tr><td>attentionTrainBackwardKV</td><td>(ceil(seqLen / 16), H, batch) x 128</td>
 *     <td>scalar: 4 warps x 4 keys; the queries that see them in shared tiles of 32 (rotated q, dout, D, lse);
 *     {@code dv += p dout}, {@code dk += ds q}; added into dqkv's k and v</td></tr>
 * <tr><td>attentionRotaryTable</td><td>elementwise over seqLen x rotaryDim / 2</td>
 *     <td>tensor cores (bf16), with rotary: cos and sin of the angles (the scalar kernels' numbers) into the
 *     scratch</td></tr>
 * <tr><td>attentionRotate</td><td>elementwise over N x 2d</td>
 *     <td>the rotated q and k, rounded to bf16, into the scratch ({@code [N, 2d]})</td></tr>
 * <tr><td>attentionMmaForward{64,128}</td><td>(ceil(seqLen / 64), H, batch) x 128, dynamic shared memory</td>
 *     <td>4 warps x 16 queries; key tiles of 64 from {@code max(0, q0 - window)} to the diagonal, double-buffered
 *     ({@code cp.async}); {@code S = Q K^T} and {@code O += P V} by {@code mma.sync} m16n8k16 (bf16 in, float32
 *     accumulators), P kept in registers as the A operand; online softmax in base 2; head dims padded with zeros
 *     to 64 or 128</td></tr>
 * <tr><td>attentionRowDot</td><td>one warp per (row, head)</td>
 *     <td>{@code D = dout.out} (float32) into the scratch</td></tr>
 * <tr><td>attentionMmaBackwardQ{64,128}</td><td>as the forward</td>
 *     <td>per key tile {@code S = Q K^T}, {@code dP = dout V^T}, {@code dS = P (dP - D)}, {@code dQ += dS K};
 *     scaled, rotated back, added into dqkv's q</td></tr>
 * <tr><td>attentionMmaBackwardKV{64,128}</td><td>(ceil(seqLen / 64), H, batch) x 128, dynamic shared memory</td>
 *     <td>4 warps x 16 keys; the queries that see them in tiles of 64 (32 at head dims over 64):
 *     {@code S^T = K Q^T}, {@code dV += P^T dout}, {@code dP^T = V dout^T}, {@code dK += dS^T Q}; added into dqkv's k
 *     (rotated back) and v</td></tr>
 * </table>
 *
 * <h2>Which attention kernels run</h2>
 * In bf16, head dims that are multiples of 16 up to 128, with 16-byte aligned {@code qkv}, {@code out} and
 * {@code dout}, attention runs on the tensor cores ({@link #attentionOnTensorCores}); everything else, float32
 * always, on the scalar kernels. The tensor-core kernels round what they multiply to bf16: the rotated q and k, the
 * probabilities P and their gradients dS (float32 accumulation, softmax statistics and D in float32), so their
 * results differ from the scalar kernels' by a few bf16 roundings (AttentionMmaKernelsTest states the bounds).
 * Neither uses atomics: both are deterministic.
 *
 * <h2>Memory</h2>
 * Nothing is {@code L x L}. Linear attention keeps nothing besides its output. It runs in the chunked form: one
 * block per (chunk of 64 tokens, head, sequence), products of float32 tiles in shared memory, the states of the
 * chunks ({@code [E, dh + 1]} float32 each) in global memory: {@code batch H ceil(seqLen / 64) E (dh + 1)} floats,
 * linear in N (1.25 MiB per sequence and head at seqLen 2048, f 16, dh 64; 160 MiB for batch 8 x 16 heads). The
 * forward keeps them in the scratch this instance owns; the backward recomputes them and takes a float32 scratch of
 * {@link #linearAttentionBackwardScratchBytes} (the states plus {@code [g, r]} per row and head), either given by
 * the caller or owned by this instance (allocated on first use, grown when a larger pass comes, freed by
 * {@link #close}). Attention keeps one float32 log-sum-exp per (token, head). The tensor-core attention takes
 * {@link #attentionScratchBytes} of that scratch during a call: with rotary the table and the rotated q and k
 * ({@code 4 N d} bytes), and for the backward D ({@code 4 N H} bytes). Shared memory per block: at most 33 KiB for
 * the scalar attention kernels (head dim at most {@value #ATTENTION_MAX_HEAD_DIM}); for the tensor-core ones
 * 45-55 KiB at head dims up to 64, 69-102 KiB up to 128 ({@link #attentionForwardSharedBytes} and the two
 * backward sizes); {@link #linearSharedBytes} for linear attention (108 KiB at f = 16, dh = 64; 161 KiB at f = 32,
 * dh = 112).
 *
 * <h2>What a faster version would change</h2>
 * The linear-attention tiles are float32 products on the CUDA cores; on tensor cores (bf16 operands, float32
 * accumulation) the state and output products would run several times faster, at the price of rounding phi and
 * the values to bf16. Attention in bf16 already runs on the tensor cores (FlashAttention-2's scheme with
 * {@code mma.sync}); on sm_90 the asynchronous warpgroup products ({@code wgmma}, with TMA copies) and query tiles of
 * 128 would raise its throughput further, and one backward kernel with dq summed by atomics would read K and V once
 * (at the price of determinism). Float32 attention keeps the scalar kernels (warp dot products), which recompute
 * the rotary angles in double precision on every tile load.
 *
 * <p>An instance shares the {@link Kernels}' argument list: not thread-safe.
 */
public final class MixerTrainKernels implements AutoCloseable {
    /** The largest attention head dim: 32 lanes x 4 elements. */
    public static final int ATTENTION_MAX_HEAD_DIM = 128;
    private static final int ATTENTION_THREADS = 128;
    private static final int ATTENTION_ROWS = 16;
    /** Queries (or keys) per block of the tensor-core attention kernels (ATM_BLOCK), 16 per warp. */
    private static final int ATTENTION_MMA_BLOCK = 64;
    /** The tensor-core attention kernels take head dims that are multiples of this (whole k-steps of an mma). */
    static final int ATTENTION_MMA_HEAD_DIM_STEP = 16;
    /** Alignment of the parts of a scratch (bytes). */
    private static final long SCRATCH_ALIGN = 256;
    private static final int CONV_TAP_CHANNELS = 32;
    /** Taps the tap gradient keeps per thread (CONV_TAP_MAX_K in train_conv.cuh). */
    static final int CONV_TAP_MAX_KERNEL = 8;
    /**
     * The largest linear-attention head dim of the chunked kernels: dh + 1 columns (values and the normaliser) in 8
     * strips of 16. Wider heads run the recurrent kernels ({@link RecurrentLinearTrain}).
     */
    public static final int LINEAR_MAX_HEAD_DIM = 127;
    /** Tokens per chunk of the linear-attention kernels (LIN_CHUNK of train_linear.cuh). */
    static final int LINEAR_CHUNK = 64;
    private static final int LINEAR_THREADS = 256;
    private static final int DEFAULT_SHARED = 48 * 1024;
    /**
     * The most dynamic shared memory a linear-attention block may take: the opt-in limit of sm_90 (227 KiB). sm_80
     * offers 163 KiB, enough for feature dims up to 32 at any head dim (164,684 bytes at f 32, dh 112 to 127).
     */
    private static final int LINEAR_MAX_SHARED = 227 * 1024;
    private static final int MAX_GRID_YZ = 65535;

    private final Kernels k;
    private final RecurrentLinearTrain recurrent;
    private long ownedScratch;
    private long ownedScratchBytes;

    /** Launches on the stream of {@code kernels}. */
    public MixerTrainKernels(Kernels kernels) {
        this.k = kernels;
        this.recurrent = new RecurrentLinearTrain(kernels);
    }

    private static long rows(int batch, int seqLen) {
        return (long) batch * seqLen;
    }

    // ------------------------------------------------------------------------------------------------ BaseConv

    private static void checkConv(String op, int batch, int seqLen, int inner, int kernel) {
        require(batch >= 0 && seqLen >= 0 && inner >= 0, op + ": batch " + batch + ", seqLen " + seqLen + ", inner "
                + inner + " must not be negative");
        require(kernel >= 1 && kernel <= CONV_TAP_MAX_KERNEL, op + ": kernel " + kernel + " is outside [1, "
                + CONV_TAP_MAX_KERNEL + "]");
    }

    /** Rows one part of the tap gradient sums: enough parts to fill the GPU, at least 64 rows each. */
    static int convTapRowsPerPart(long n) {
        return (int) Math.max(64, (n + 255) / 256);
    }

    /** Rows a block of the bf16 conv kernels covers: 8 warps, a run of 16 rows each (CONV_WARPS x CONV_ROWS). */
    static final int CONV_ROWS_PER_BLOCK = 128;
    /** The largest kernel of the bf16 conv kernels (CONV_ROWS_MAX_K). */
    static final int CONV_ROWS_MAX_KERNEL = 4;

    /**
     * Whether the bf16 conv kernels apply: bf16, kernel at most {@value #CONV_ROWS_MAX_KERNEL}, inner a multiple of
     * 8, at most 65535 blocks of {@value #CONV_ROWS_PER_BLOCK} rows, the pointers 16-byte aligned. The scalar
     * kernels run otherwise (and in float32 always).
     */
    static boolean convByRows(Precision p, long n, int inner, int kernel, long... pointers) {
        return kernel <= CONV_ROWS_MAX_KERNEL && convRowBlocks(n) <= MAX_GRID_YZ
                && Kernels.vectorRows(p, inner, pointers);
    }

    private static long convRowBlocks(long n) {
        return (n + CONV_ROWS_PER_BLOCK - 1) / CONV_ROWS_PER_BLOCK;
    }

    /** Blocks of 256 channels (32 lanes of 8) of the bf16 conv kernels. */
    private static int convChannelBlocks(int inner) {
        return (inner + 255) / 256;
    }

    /**
     * BaseConv forward ({@code DenseOps.baseConv}): u A {@code [N, 2 inner]} ({@code u1 | u2}), taps W
     * {@code [inner, kernel]} (tap {@code kernel - 1} meets the current token); writes the conv output c into
     * convOut A {@code [N, inner]} (kept for the backward) and {@code out = silu(c) u2} A {@code [N, inner]}. In bf16
     * with {@link #convByRows} by rows (the same operations per element).
     */
    public void baseConvForward(Precision p, long u, long taps, long convOut, long out, int batch, int seqLen,
                                int inner, int kernel) {
        checkConv("baseConvForward", batch, seqLen, inner, kernel);
        long n = rows(batch, seqLen);
        if (n * inner == 0) {
            return;
        }
        if (convByRows(p, n, inner, kernel, u, taps, convOut, out)) {
            k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(out).i32(seqLen).i64(n).i32(inner);
            k.launch(k.function("baseConvRowsForwardK" + kernel, p), convChannelBlocks(inner), (int) convRowBlocks(n),
                    1, Kernels.THREADS, 0);
            return;
        }
        k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(out).i32(seqLen).i64(n).i32(inner).i32(kernel);
        k.elementwise(k.function("baseConvTrainForward", p), n * inner);
    }

    /**
     * BaseConv backward ({@code DenseOps.baseConvBackward}) from the kept convOut: dout A {@code [N, inner]};
     * {@code du += } (A {@code [N, 2 inner]}), {@code dtaps += } (F32 {@code [inner, kernel]}). In bf16 with
     * {@link #convByRows} one pass over the rows and the parts' sum (two launches), else three launches.
     */
    public void baseConvBackward(Precision p, long u, long taps, long convOut, long dout, long du, long dtaps,
                                 int batch, int seqLen, int inner, int kernel) {
        checkConv("baseConvBackward", batch, seqLen, inner, kernel);
        long n = rows(batch, seqLen);
        if (n * inner == 0) {
            return;
        }
        if (convByRows(p, n, inner, kernel, u, taps, convOut, dout, du)) {
            int parts = (int) convRowBlocks(n);
            long partial = ownedScratch(4L * parts * inner * kernel);
            k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(dout).ptr(du).ptr(partial).i32(seqLen).i64(n)
                    .i32(inner);
            k.launch(k.function("baseConvRowsBackwardK" + kernel, p), convChannelBlocks(inner), parts, 1,
                    Kernels.THREADS, 0);
            TrainKernels.columnPartsSum(k, partial, dtaps, parts, (long) inner * kernel);
            return;
        }
        k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(dout).ptr(du).i32(seqLen).i64(n).i32(inner).i32(kernel);
        k.elementwise(k.function("baseConvTrainBackwardInput", p), n * inner);
        int rows = convTapRowsPerPart(n);
        int parts = (int) ((n + rows - 1) / rows);
        long partial = ownedScratch(4L * parts * inner * kernel);
        k.args.reset().ptr(u).ptr(convOut).ptr(dout).ptr(partial).i32(seqLen).i64(n).i32(inner).i32(kernel)
                .i32(rows);
        k.launch(k.function("baseConvTrainBackwardTaps", p), (inner + CONV_TAP_CHANNELS - 1) / CONV_TAP_CHANNELS,
                parts, 1, Kernels.THREADS, 0);
        k.args.reset().ptr(partial).ptr(dtaps).i32(parts).i32(inner * kernel);
        k.elementwise(k.function("rmsNormWeightGrad_f32"), (long) inner * kernel);
    }

    // ------------------------------------------------------------------------------------------------ linear attention

    /** Floats of dynamic shared memory of the linear-attention kernels (mirrors linChunkSmemFloats). */
    static int linearSharedFloats(int f, int dh) {
        int e = 1 + f + f * (f + 1) / 2;
        int ld = linearRowStride(dh);
        return 2 * LINEAR_CHUNK * (f + 1) + 3 * LINEAR_CHUNK * ld + 2 * LINEAR_CHUNK * (LINEAR_CHUNK + 1)
                + LINEAR_CHUNK * f + 2 * LINEAR_CHUNK + 3 * e;
    }

    /** Row length of the kernels' [chunk, dh + 1] tiles: whole strips of 16 columns, plus one (mirrors linLd). */
    private static int linearRowStride(int dh) {
        return (dh + 1 + 15) / 16 * 16 + 1;
    }

    /** Bytes of dynamic shared memory one linear-attention block takes for feature dim f and head dim dh. */
    public static int linearSharedBytes(int f, int dh) {
        return 4 * linearSharedFloats(f, dh);
    }

    /** Chunks of {@link #LINEAR_CHUNK} tokens per sequence (the last one ragged). */
    static int linearChunks(int seqLen) {
        return (seqLen + LINEAR_CHUNK - 1) / LINEAR_CHUNK;
    }

    /** Floats of the chunk states: one {@code [E, dh + 1]} state (S with z as its last column) per chunk. */
    static long linearStateFloats(int batch, int seqLen, int heads, int featureDim, int headDim) {
        long e = 1 + featureDim + (long) featureDim * (featureDim + 1) / 2;
        long perHead = Math.multiplyExact(e, headDim + 1L);
        return Math.multiplyExact(Math.multiplyExact((long) batch * heads, (long) linearChunks(seqLen)), perHead);
    }

    /**
     * Bytes of float32 scratch {@link #linearAttentionBackward} needs: the chunk states
     * ({@code batch H ceil(seqLen / 64) E (dh + 1)} floats, E = 1 + f + f(f+1)/2) and per (row, head) the
     * gradients of the numerator and denominator {@code [g, r]} ({@code N H (dh + 1)} floats): linear in N.
     */
    public static long linearAttentionBackwardScratchBytes(int batch, int seqLen, int heads, int featureDim,
                                                           int headDim) {
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            return RecurrentLinearTrain.backwardScratchBytes(rows(batch, seqLen), heads, featureDim, headDim);
        }
        long cells = Math.multiplyExact(rows(batch, seqLen), (long) heads);
        long g = Math.multiplyExact(cells, headDim + 1L);
        return Math.multiplyExact(4L, Math.addExact(linearStateFloats(batch, seqLen, heads, featureDim, headDim), g));
    }

    private int linearLaunchCheck(String op, int batch, int seqLen, int heads, int f, int dh, float eps) {
        require(batch >= 0 && batch <= MAX_GRID_YZ && seqLen >= 0, op + ": batch " + batch + " (at most "
                + MAX_GRID_YZ + "), seqLen " + seqLen);
        require(f >= 1 && f <= 64, op + ": feature dim " + f + " is outside [1, 64]");
        require(dh >= 1, op + ": head dim " + dh + " must be positive");
        require(heads >= 1 && heads <= MAX_GRID_YZ, op + ": " + heads + " heads (1 to " + MAX_GRID_YZ + ")");
        require(eps >= 0 && Float.isFinite(eps), op + ": eps " + eps + " must be finite and >= 0");
        if (dh > LINEAR_MAX_HEAD_DIM) {
            return 0; // the recurrent kernels check their own needs
        }
        int shared = linearSharedBytes(f, dh);
        require(shared <= LINEAR_MAX_SHARED, op + ": feature dim " + f + " and head dim " + dh + " need " + shared
                + " bytes of shared memory per block, more than " + LINEAR_MAX_SHARED);
        return shared;
    }

    /** The function {@code name} of precision p, opted in to {@code shared} bytes of dynamic shared memory. */
    private long functionWithShared(String name, Precision p, int shared) {
        long fn = k.function(name, p);
        if (shared > DEFAULT_SHARED) {
            CudaDriver.get().funcSetMaxDynamicSharedMemory(fn, shared);
        }
        return fn;
    }

    /** A linear-attention kernel, opted in to its shared memory. */
    private long linearFunction(String name, Precision p, int shared) {
        return functionWithShared(name, p, shared);
    }

    /** Chunk states of k and v, then their exclusive prefix sums over the chunks (in place). */
    private void linearStates(Precision p, long k, long v, long states, int batch, int seqLen, int heads,
                              int featureDim, int headDim, int shared) {
        this.k.args.reset().ptr(k).ptr(v).ptr(states).i32(seqLen).i32(heads).i32(featureDim).i32(headDim);
        this.k.launch(linearFunction("linearAttentionChunkStates", p, shared), linearChunks(seqLen), heads, batch,
                LINEAR_THREADS, shared);
        linearScan(p, states, batch, seqLen, heads, featureDim, headDim, false);
    }

    /** Exclusive scan of the chunk states over the chunks: prefix sums, or suffix sums when reverse. */
    private void linearScan(Precision p, long states, int batch, int seqLen, int heads, int featureDim, int headDim,
                            boolean reverse) {
        int e = 1 + featureDim + featureDim * (featureDim + 1) / 2;
        int perHead = e * (headDim + 1);
        long count = (long) batch * heads * perHead;
        this.k.args.reset().ptr(states).i64(count).i32(linearChunks(seqLen)).i32(perHead).i32(reverse ? 1 : 0);
        this.k.elementwise(this.k.function("linearAttentionScan", p), count);
    }

    /**
     * Taylor linear attention forward ({@code LinearAttentionOps.forward}): q, k A {@code [N, H f]}, v A
     * {@code [N, H dh]}; writes out A {@code [N, H dh]}. Keeps nothing else; the chunk states live in the scratch
     * owned by this instance (allocated on first use, grown when a larger pass comes).
     */
    public void linearAttentionForward(Precision p, long q, long k, long v, long out, int batch, int seqLen,
                                       int heads, int featureDim, int headDim, float eps) {
        int shared = linearLaunchCheck("linearAttentionForward", batch, seqLen, heads, featureDim, headDim, eps);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            recurrent.forward(p, q, k, v, out, batch, seqLen, heads, featureDim, headDim, eps);
            return;
        }
        long states = ownedScratch(4L * linearStateFloats(batch, seqLen, heads, featureDim, headDim));
        linearStates(p, k, v, states, batch, seqLen, heads, featureDim, headDim, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(states).ptr(out).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim).f32(eps);
        this.k.launch(linearFunction("linearAttentionChunkForward", p, shared), linearChunks(seqLen), heads, batch,
                LINEAR_THREADS, shared);
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
        if (rows(batch, seqLen) == 0) {
            return;
        }
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            recurrent.backward(p, q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, scratch);
            return;
        }
        long states = scratch;
        long g = states + 4L * linearStateFloats(batch, seqLen, heads, featureDim, headDim);
        int chunks = linearChunks(seqLen);
        linearStates(p, k, v, states, batch, seqLen, heads, featureDim, headDim, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(states).ptr(g).ptr(dq).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim).f32(eps);
        this.k.launch(linearFunction("linearAttentionChunkBackwardQ", p, shared), chunks, heads, batch,
                LINEAR_THREADS, shared);
        linearScan(p, states, batch, seqLen, heads, featureDim, headDim, true);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(g).ptr(states).ptr(dk).ptr(dv).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim);
        this.k.launch(linearFunction("linearAttentionChunkBackwardKV", p, shared), chunks, heads, batch,
                LINEAR_THREADS, shared);
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

    /** Bytes of device memory this instance holds (the scratch of linear attention and tensor-core attention). */
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
     * angles of {@code RotaryAngles}, computed on the GPU. Runs on the tensor cores where
     * {@link #attentionOnTensorCores} says so (taking this instance's scratch), else on the scalar kernels.
     */
    public void attentionForward(Precision p, long qkv, long out, long lse, int batch, int seqLen, int heads,
                                 int headDim, int window, int rotaryDim, double rotaryBase, float softmaxScale) {
        if (attentionOnTensorCores(p, headDim, qkv, out)) {
            mmaAttentionForward(qkv, out, lse, batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                    softmaxScale);
        } else {
            scalarAttentionForward(p, qkv, out, lse, batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                    softmaxScale);
        }
    }

    /**
     * Attention backward ({@code AttentionOps.backward}) from the kept out and lse: dout A {@code [N, d]};
     * {@code dqkv += } (A {@code [N, 3d]}). The probabilities are recomputed from lse, two kernels: one per block
     * of queries (dq), one per block of keys (dk, dv). Tensor cores or scalar kernels as the forward.
     */
    public void attentionBackward(Precision p, long qkv, long out, long lse, long dout, long dqkv, int batch,
                                  int seqLen, int heads, int headDim, int window, int rotaryDim, double rotaryBase,
                                  float softmaxScale) {
        if (attentionOnTensorCores(p, headDim, qkv, out, dout)) {
            mmaAttentionBackward(qkv, out, lse, dout, dqkv, batch, seqLen, heads, headDim, window, rotaryDim,
                    rotaryBase, softmaxScale);
        } else {
            scalarAttentionBackward(p, qkv, out, lse, dout, dqkv, batch, seqLen, heads, headDim, window, rotaryDim,
                    rotaryBase, softmaxScale);
        }
    }

    /**
     * Whether attention runs on the tensor-core kernels: precision bf16, a head dim that is a multiple of
     * {@value #ATTENTION_MMA_HEAD_DIM_STEP} (at most {@link #ATTENTION_MAX_HEAD_DIM}), and the given activation
     * addresses 16-byte aligned (the kernels copy rows in 16-byte pieces). Float32 always runs the scalar kernels.
     */
    static boolean attentionOnTensorCores(Precision p, int headDim, long... addresses) {
        if (p != Precision.BF16 || headDim % ATTENTION_MMA_HEAD_DIM_STEP != 0 || headDim > ATTENTION_MAX_HEAD_DIM) {
            return false;
        }
        for (long a : addresses) {
            if (a % 16 != 0) {
                return false;
            }
        }
        return true;
    }

    /** The scalar forward kernel (both precisions): 4 warps x 4 queries, lanes over the head dims. */
    void scalarAttentionForward(Precision p, long qkv, long out, long lse, int batch, int seqLen, int heads,
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

    /** The scalar backward kernels (both precisions). */
    void scalarAttentionBackward(Precision p, long qkv, long out, long lse, long dout, long dqkv, int batch,
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

    // ------------------------------------------------------------------------------------------------ attention, mma

    /** The head dim the tensor-core kernels are compiled for that a head of {@code headDim} is padded to. */
    static int attentionPaddedHeadDim(int headDim) {
        return headDim <= 64 ? 64 : ATTENTION_MAX_HEAD_DIM;
    }

    private static int attentionRowStride(int paddedHeadDim) {
        return paddedHeadDim + 8;
    }

    /** Queries per tile of the keys-and-values backward (atmQueryTile). */
    private static int attentionQueryTile(int paddedHeadDim) {
        return paddedHeadDim <= 64 ? 64 : 32;
    }

    /** Dynamic shared memory of the tensor-core forward (atmForwardShared): Q and two buffers of K and V. */
    static int attentionForwardSharedBytes(int paddedHeadDim) {
        return (ATTENTION_MMA_BLOCK + 4 * ATTENTION_MMA_BLOCK) * attentionRowStride(paddedHeadDim) * 2;
    }

    /** Of the tensor-core backward over queries (atmBackwardQShared): Q, dout and two buffers of K and V. */
    static int attentionBackwardQSharedBytes(int paddedHeadDim) {
        return (2 * ATTENTION_MMA_BLOCK + 4 * ATTENTION_MMA_BLOCK) * attentionRowStride(paddedHeadDim) * 2;
    }

    /** Of the backward over keys (atmBackwardKVShared): K, V and two buffers of Q, dout, lse and D. */
    static int attentionBackwardKVSharedBytes(int paddedHeadDim) {
        int qt = attentionQueryTile(paddedHeadDim);
        return (2 * ATTENTION_MMA_BLOCK + 4 * qt) * attentionRowStride(paddedHeadDim) * 2 + 4 * qt * 4;
    }

    private static long aligned(long bytes) {
        return (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
    }

    /** Bytes of the rotary table: cos and sin, float32 {@code [seqLen, rotaryDim / 2]} each. */
    private static long rotaryTableBytes(int seqLen, int rotaryDim) {
        return aligned(4L * seqLen * rotaryDim);
    }

    /** Bytes of the rotated q and k, bf16 {@code [N, 2d]}; none without rotary (the kernels then read qkv). */
    private static long rotatedBytes(int batch, int seqLen, int heads, int headDim, int rotaryDim) {
        return rotaryDim == 0 ? 0 : aligned(Math.multiplyExact(rows(batch, seqLen), 4L * heads * headDim));
    }

    /**
     * Bytes of scratch the tensor-core attention takes from this instance: the rotary table and the rotated q and k
     * (with rotary), and for the backward D = dout . out, float32 {@code [N, heads]}. Linear in N.
     */
    static long attentionScratchBytes(int batch, int seqLen, int heads, int headDim, int rotaryDim,
                                      boolean backward) {
        long bytes = rotaryTableBytes(seqLen, rotaryDim) + rotatedBytes(batch, seqLen, heads, headDim, rotaryDim);
        return backward ? bytes + aligned(Math.multiplyExact(rows(batch, seqLen), 4L * heads)) : bytes;
    }

    /** Where the tensor-core kernels read q and k: the rotated copy in the scratch, or qkv itself. */
    private record QueryKeys(long q, long k, long stride, long rotary) {
    }

    /** Writes the rotary table and the rotated q and k into the scratch (when rotaryDim > 0). */
    private QueryKeys rotated(long qkv, long scratch, int batch, int seqLen, int heads, int headDim, int rotaryDim,
                              double rotaryBase) {
        long d = (long) heads * headDim;
        if (rotaryDim == 0) {
            return new QueryKeys(qkv, qkv + 2 * d, 3 * d, 0);
        }
        long table = scratch;
        long qk = scratch + rotaryTableBytes(seqLen, rotaryDim);
        k.args.reset().ptr(table).i32(seqLen).i32(rotaryDim).i64(Double.doubleToRawLongBits(rotaryBase));
        k.elementwise(k.function("attentionRotaryTable", Precision.BF16), (long) seqLen * (rotaryDim / 2));
        long n = rows(batch, seqLen);
        k.args.reset().ptr(qkv).ptr(table).ptr(qk).i64(n).i32(seqLen).i32(heads).i32(headDim).i32(rotaryDim);
        k.elementwise(k.function("attentionRotate", Precision.BF16), n * 2 * d);
        return new QueryKeys(qk, qk + 2 * d, 2 * d, table);
    }

    /**
     * The tensor-core forward (bf16 only; {@link #attentionOnTensorCores} must hold): the rotary pre-pass, then one
     * block per 64 queries of a (sequence, head).
     */
    void mmaAttentionForward(long qkv, long out, long lse, int batch, int seqLen, int heads, int headDim,
                             int window, int rotaryDim, double rotaryBase, float softmaxScale) {
        checkAttention("attentionForward", batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                softmaxScale);
        require(attentionOnTensorCores(Precision.BF16, headDim, qkv, out), "attentionForward: head dim " + headDim
                + " or the addresses do not suit the tensor-core kernels");
        if (rows(batch, seqLen) == 0) {
            return;
        }
        long scratch = attentionScratch(batch, seqLen, heads, headDim, rotaryDim, false);
        QueryKeys qk = rotated(qkv, scratch, batch, seqLen, heads, headDim, rotaryDim, rotaryBase);
        long d = (long) heads * headDim;
        int padded = attentionPaddedHeadDim(headDim);
        k.args.reset().ptr(qk.q()).ptr(qk.k()).i64(qk.stride()).ptr(qkv + 2 * 2 * d).i64(3 * d).ptr(out).ptr(lse)
                .i32(seqLen).i32(heads).i32(headDim).i32(window).f32(softmaxScale);
        int shared = attentionForwardSharedBytes(padded);
        k.launch(functionWithShared("attentionMmaForward" + padded, Precision.BF16, shared), mmaBlocksOf(seqLen),
                heads, batch, ATTENTION_THREADS, shared);
    }

    /**
     * The tensor-core backward (bf16 only): the rotary pre-pass, D, then the kernel over query blocks (dq) and the
     * one over key blocks (dk, dv).
     */
    void mmaAttentionBackward(long qkv, long out, long lse, long dout, long dqkv, int batch, int seqLen, int heads,
                              int headDim, int window, int rotaryDim, double rotaryBase, float softmaxScale) {
        checkAttention("attentionBackward", batch, seqLen, heads, headDim, window, rotaryDim, rotaryBase,
                softmaxScale);
        require(attentionOnTensorCores(Precision.BF16, headDim, qkv, out, dout), "attentionBackward: head dim "
                + headDim + " or the addresses do not suit the tensor-core kernels");
        if (rows(batch, seqLen) == 0) {
            return;
        }
        long scratch = attentionScratch(batch, seqLen, heads, headDim, rotaryDim, true);
        QueryKeys qk = rotated(qkv, scratch, batch, seqLen, heads, headDim, rotaryDim, rotaryBase);
        long rowDots = scratch + rotaryTableBytes(seqLen, rotaryDim)
                + rotatedBytes(batch, seqLen, heads, headDim, rotaryDim);
        long cells = rows(batch, seqLen) * heads;
        k.args.reset().ptr(dout).ptr(out).ptr(rowDots).i64(cells).i32(headDim);
        k.elementwise(k.function("attentionRowDot", Precision.BF16), cells * 32);
        long d = (long) heads * headDim;
        int padded = attentionPaddedHeadDim(headDim);
        String[] names = {"attentionMmaBackwardQ", "attentionMmaBackwardKV"};
        int[] shared = {attentionBackwardQSharedBytes(padded), attentionBackwardKVSharedBytes(padded)};
        for (int i = 0; i < 2; i++) {
            k.args.reset().ptr(qk.q()).ptr(qk.k()).i64(qk.stride()).ptr(qkv + 2 * 2 * d).i64(3 * d).ptr(dout)
                    .ptr(lse).ptr(rowDots).ptr(qk.rotary()).ptr(dqkv).i32(seqLen).i32(heads).i32(headDim).i32(window)
                    .i32(rotaryDim).f32(softmaxScale);
            k.launch(functionWithShared(names[i] + padded, Precision.BF16, shared[i]), mmaBlocksOf(seqLen), heads,
                    batch, ATTENTION_THREADS, shared[i]);
        }
    }

    private long attentionScratch(int batch, int seqLen, int heads, int headDim, int rotaryDim, boolean backward) {
        long bytes = attentionScratchBytes(batch, seqLen, heads, headDim, rotaryDim, backward);
        return bytes == 0 ? 0 : ownedScratch(bytes);
    }

    private static int mmaBlocksOf(int seqLen) {
        return (seqLen + ATTENTION_MMA_BLOCK - 1) / ATTENTION_MMA_BLOCK;
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
