package io.based4j.cuda;

import io.based4j.config.MixerConfig;
import static io.based4j.cuda.Kernels.require;

import java.util.function.Consumer;

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
 * <tr><td>linearAttentionMmaStates (bf16)</td><td>(ceil(E / 64), H, batch) x 128, dynamic shared memory</td>
 *     <td>tensor cores: a block per 64 features of a (sequence, head) walks the chunks with the running state
 *     {@code sum phi(K_c)^T [V_c, 1]} in its float32 mma accumulators, writing each chunk's exclusive prefix sum
 *     before adding the chunk (no separate scan); run backwards over {@code (Q, G')} it writes the suffix sums
 *     {@code dS_c}</td></tr>
 * <tr><td>linearAttentionMmaForward (bf16)</td><td>(chunks, H, batch) x 128, dynamic shared memory</td>
 *     <td>as linearAttentionChunkForward on tensor cores: 4 warps of 16 rows; {@code Q K^T}, {@code A V'} and
 *     {@code phi(Q) S_c} (S_c in 64-feature bf16 tiles) as m16n8k16 products</td></tr>
 * <tr><td>linearAttentionMmaBackwardQ (bf16)</td><td>as the forward</td>
 *     <td>the forward again, {@code G'} (bf16) into the scratch, {@code dq += P K + J^T (G' S_c^T)}</td></tr>
 * <tr><td>linearAttentionMmaBackwardKV (bf16)</td><td>as the forward</td>
 *     <td>after the states kernel's suffix sums: {@code dv += A^T G' + phi(K) dS_c},
 *     {@code dk += P^T Q + J^T (V' dS_c^T)}</td></tr>
 * <tr><td>linearAttentionMmaRoundedStates, linearAttentionMmaRoundedBackwardQ, linearAttentionMmaRoundedBackwardKV
 *     (bf16, E up to {@value #LINEAR_SCAN_MAX_FEATURES} rounded up; where {@link #roundedStates} turns them on)</td>
 *     <td>as the states kernel and the two backward kernels</td>
 *     <td>the states kernel writes its sums rounded to bf16 ({@code [epad][dh + 8]} per chunk, rows of whole 16-byte
 *     pieces) as the backward kernels would round them; each backward block copies its chunk's whole rounded state
 *     into shared memory with its rows ({@code cp.async}, one wait) instead of reading the float32 state and
 *     rounding it 64 features at a time between barriers (twice on the query side): the same numbers bit for bit,
 *     with a third of the state traffic of the query side and no synchronous loads</td></tr>
 * <tr><td>linearAttentionMmaScanForward (bf16)</td><td>(H, batch) x 256, dynamic shared memory</td>
 *     <td>tensor cores, the running state on chip: a block per (sequence, head) walks its chunks in order; per chunk
 *     4 chunk warps take the products of linearAttentionMmaForward from the bf16 copy of the state in shared memory
 *     while 4 state warps add {@code phi(K_c)^T [V_c, 1]} into the float32 state in shared memory (feature tiles of
 *     16 each) and then round it into the bf16 copy; the chunk tiles double-buffered ({@code cp.async}); no states
 *     in global memory. Each scan kernel also comes compiled for f 16 and head dim 64 ({@code NAME16x64}), the
 *     forward ones for head dim 56 too ({@code NAME16x56}: based-1b's heads of 112 split in two for the forward,
 *     {@link #linearScanSplit}), taken where they apply ({@link #linearScanFixedSizes})</td></tr>
 * <tr><td>linearAttentionMmaScanBackwardQ (bf16)</td><td>as the scan forward</td>
 *     <td>the walk of the scan forward with the products of linearAttentionMmaBackwardQ: G' into the scratch,
 *     {@code dq += P K + J^T (G' S_c^T)}</td></tr>
 * <tr><td>linearAttentionMmaScanBackwardKV (bf16)</td><td>as the scan forward</td>
 *     <td>walks the chunks from the last with the suffix state {@code dS += phi(Q_c)^T G'_c} on chip, per chunk the
 *     products of linearAttentionMmaBackwardKV: {@code dv += A^T G' + phi(K) dS_c},
 *     {@code dk += P^T Q + J^T (V' dS_c^T)}</td></tr>
 * <tr><td>linearHeadRepeat (bf16)</td><td>elementwise over N x H s f</td>
 *     <td>the head split ({@link #linearHeadSplit}): q and k repeated for the {@code H s} virtual heads into the
 *     scratch ({@code qq, kk [N, H s f]}); for the backward also the copies' gradients ({@code dqq, dkk}) zeroed</td>
 *     </tr>
 * <tr><td>linearHeadSum (bf16)</td><td>elementwise over N x H f</td>
 *     <td>after the virtual heads' backward: {@code dq += sum_j dqq[:, (h s + j) f + c]} (the s copies summed in
 *     float32 in order, added to dq and rounded once), the same for dk</td></tr>
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
 * <tr><td>attentionRotateEights</td><td>(ceil(d / 4 / 256), min(N, 65536 / that)) x 256, rows strided</td>
 *     <td>the rotated q and k, rounded to bf16, into the scratch ({@code [N, 2d]}), eight neighbouring elements per
 *     thread (head dim a multiple of 8, rotary dim of 16, 16-byte aligned)</td></tr>
 * <tr><td>attentionRotatePairs</td><td>(ceil(d / 256), min(N, 65536 / that)) x 256, rows strided</td>
 *     <td>else two neighbouring elements per thread (head dim even, rotary dim a multiple of 4, 4-byte aligned);
 *     else attentionRotate, elementwise over N x 2d (all three give the same numbers)</td></tr>
 * <tr><td>attentionMmaForward{64,128}</td><td>(ceil(seqLen / 64), H, batch) x 128, dynamic shared memory</td>
 *     <td>4 warps x 16 queries; key tiles of 64 from {@code max(0, q0 - window)} to the diagonal, double-buffered
 *     ({@code cp.async}); {@code S = Q K^T} and {@code O += P V} by {@code mma.sync} m16n8k16 (bf16 in, float32
 *     accumulators), P kept in registers as the A operand; online softmax in base 2; head dims padded with zeros
 *     to 64 or 128</td></tr>
 * <tr><td>attentionRowDot</td><td>8 lanes per (row, head)</td>
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
 * <h2>Linear attention on tensor cores</h2>
 * In bf16, feature dims that are multiples of 8 up to {@value #LINEAR_MMA_MAX_FEATURE_DIM} and head dims that are
 * multiples of 8 from {@value #LINEAR_MMA_MIN_HEAD_DIM} to {@value #LINEAR_MMA_MAX_HEAD_DIM} (based-360m: f 16,
 * dh 64) run the linearAttentionMma kernels ({@code train_linear_mma.cuh}), and wider heads where they split into
 * such heads (see the head split below); float32, other shapes and arrays that are not 16-byte aligned run the
 * CUDA-core kernels (or, for head dims above {@value #LINEAR_MAX_HEAD_DIM}, the recurrent kernels), unchanged
 * (float32 results are bit for bit those of before).
 * The chunked algorithm is the same: chunks of 64 tokens, float32 chunk states {@code [E, dh + 1]} in the same
 * scratch. The products are {@code mma.sync.m16n8k16} with bf16 operands and float32 accumulation: phi is formed by
 * each lane straight into its A fragments (never stored), the in-chunk scores and their gradients stay in registers
 * from one product to the next, and a chunk state enters a product as a bf16 copy of a 64-feature tile. So phi(q),
 * phi(k), the scores, the state tiles, {@code G' = [g, r]} and the score gradients are rounded to bf16 (relative
 * 2^-8) as operands; every sum, the running states among them, is float32. Results differ from the CUDA-core
 * kernels' by a few bf16 roundings (normwise about 2^-8 of the largest value) and are deterministic. The states
 * kernel folds the scan into the walk over the chunks (a block per 64 features of a sequence and head), so a
 * forward is 2 launches and a backward 4, and the states are written once per pass instead of written, read and
 * rewritten by a scan. Chunks stay at 64 tokens: the in-chunk work per token grows with the chunk (C (f + dh) for
 * the scores and {@code A V'}) while the state work per token does not (E dh), and at 64 the two are comparable
 * (5k against 10k multiply-adds at f 16, dh 64) while the states take 1.25 MiB per sequence and head at 2048 tokens;
 * larger chunks would halve that memory and its traffic but double the in-chunk products. The transpose of the
 * feature map, {@code J^T}, stays on the CUDA cores (per warp, from a float32 tile of dphi).
 *
 * <p>Where {@link #linearScan} holds (the tensor-core cases with feature dims 8 or 16, E at most
 * {@value #LINEAR_SCAN_MAX_FEATURES} rounded up, and head dims up to {@value #LINEAR_SCAN_MAX_HEAD_DIM}; based-360m:
 * f 16, dh 64) the scan kernels ({@code train_linear_scan.cuh}) run instead: one block per (sequence, head) keeps
 * the running state (float32, with its bf16 copy for the products) in shared memory while it walks the chunks, so a
 * forward is one launch and a backward two, and no chunk state goes through global memory (at batch 8 x 2048 tokens,
 * 16 heads, f 16, dh 64 the chunk kernels write and read back 160 MiB of states per pass, and launch a states kernel
 * per pass). They take the same products in the same order, so their results are the chunk kernels' bit for bit.
 * Larger feature dims (the float32 state of E x (dh + 1) would outgrow shared memory) and wider heads run the chunk
 * kernels, as does a caller that turns them off ({@link #scan(boolean)}, for comparisons). The backward runs on
 * the scan kernels only where {@link #scanBackward} turns them on: measured on the H200 they are faster forward and
 * slower backward than the chunk kernels. Their backward's scratch is only G' (bf16 rows of dh + 8 at its start),
 * within {@link #linearAttentionBackwardScratchBytes}.
 *
 * <p>Where {@link #roundedStates} turns them on (the default), the chunk backward of feature dims
 * 8 and 16 (E at most {@value #LINEAR_SCAN_MAX_FEATURES} rounded up) at any of the tensor-core head dims runs the
 * rounded-state kernels: the states kernel writes bf16 states (which the chunk kernels round to bf16 anyway as they
 * read them, so nothing changes numerically: the results are the chunk kernels' bit for bit) into the float32
 * states' place in the scratch ({@code epad (dh + 8) 2} bytes a chunk, less than {@code E (dh + 1) 4}), and each
 * backward block copies its whole state into shared memory at its start ({@link #linearMmaRoundedSharedBytes}: 79
 * KiB at f 16, dh 64, 2 blocks per SM).
 *
 * <p>The head split ({@link #linearHeadSplit}): heads wider than {@value #LINEAR_MMA_MAX_HEAD_DIM} run in bf16 as
 * virtual heads that the tensor-core kernels take. Linear attention separates over the value columns:
 * {@code out[:, j] = phi(q).S[:, j] / (phi(q).z + eps)} with the normaliser z the same for every column j, so a head
 * of dh columns is exactly s heads of {@code dh / s} columns that share its q and k. The smallest {@code s >= 2}
 * whose {@code dh / s} the tensor-core kernels take is chosen (an MQAR model of one head of 128: 2 heads of 64,
 * which the scan forward serves at f 8 and 16; whole, such a head runs token by token on the recurrent kernels: on
 * the H200 an epoch of the MQAR model of width 128 and f 24 took 15.1 s that way, against 1.6 s for models of width
 * 64). v, out, dout
 * and dv are the virtual heads' arrays as they are ({@code [N, H dh] = [N, (H s) (dh / s)]}, so they must be 16-byte
 * aligned, else the heads run whole); linearHeadRepeat writes q and k repeated for the {@code H s} heads into the
 * scratch, the kernels above run on them, and the backward's gradients of the copies are summed into dq and dk by
 * linearHeadSum. Scratch (each part rounded up to 256 bytes, so every part is 16-byte aligned): the forward
 * {@code qq | kk | } the chunk states (where the chunk kernels run), the backward {@code qq | kk | dqq | dkk | } the
 * virtual heads' backward scratch ({@link #linearSplitScratchBytes}), 2 N H s f bytes a part. Out and dv are the
 * kernels' results for the virtual heads bit for bit, dq and dk the sums of theirs (each rounded to bf16 once more
 * before the sum), so the bounds of the tensor-core kernels hold. What each virtual head repeats (the in-chunk
 * scores {@code Q K^T}, forming phi and its transpose) is small beside the products with the values and the states,
 * which divide with the columns.
 *
 * <h2>Memory</h2>
 * Nothing is {@code L x L}. Linear attention keeps nothing besides its output. It runs in the chunked form: one
 * block per (chunk of 64 tokens, head, sequence), products of tiles in shared memory (float32 on the CUDA cores,
 * bf16 on the tensor cores), the states of the chunks ({@code [E, dh + 1]} float32 each) in global memory:
 * {@code batch H ceil(seqLen / 64) E (dh + 1)} floats, linear in N (1.25 MiB per sequence and head at seqLen 2048,
 * f 16, dh 64; 160 MiB for batch 8 x 16 heads). The forward keeps them in the scratch this instance owns; the
 * backward recomputes them and takes a scratch of {@link #linearAttentionBackwardScratchBytes} (the states plus
 * {@code [g, r]} per row and head: float32 {@code dh + 1}, or on tensor cores bf16 {@code dh + 8} after the states
 * rounded up to 16 bytes, which fits in the same bytes; for split heads the states and G' of the virtual heads after
 * the repeated q and k and their gradients), either given by the caller or owned by this instance
 * (allocated on first use, grown when a larger pass comes, freed by {@link #close}). Attention keeps one float32
 * log-sum-exp per (token, head); the tensor-core attention takes {@link #attentionScratchBytes} of that scratch
 * during a call: with rotary the table and the rotated q and k ({@code 4 N d} bytes), and for the backward D
 * ({@code 4 N H} bytes). Shared memory per block: at most 33 KiB for the scalar attention kernels (head dim at most
 * {@value #ATTENTION_MAX_HEAD_DIM}); for the tensor-core ones 45-55 KiB at head dims up to 64, 69-102 KiB up to 128
 * ({@link #attentionForwardSharedBytes} and the two backward sizes); {@link #linearSharedBytes} for linear attention
 * on the CUDA cores (108 KiB at f = 16, dh = 64; 161 KiB at f = 32, dh = 112) and {@link #linearMmaSharedBytes} on
 * tensor cores (29 KiB forward and 62 KiB backward at f 16, dh 64; 48 and 92 KiB at f 32, dh 112; the states
 * kernel 28 and 44 KiB); {@link #linearScanSharedBytes} for the scan kernels (108 KiB forward, 152 KiB backward at
 * f 16, dh 64; at most 157 KiB).
 *
 * <h2>What a faster version would change</h2>
 * Linear attention: the tensor-core kernels leave {@code J^T} on the CUDA cores and read each state tile twice in
 * the query-side backward (once for the outputs, once for dphi); bf16 state tiles in the scratch would halve the
 * state traffic at the price of rounding the stored sums, and a chunk of 128 tokens would halve the states' memory
 * at twice the in-chunk work. Attention in bf16 runs on the tensor cores (FlashAttention-2's scheme with
 * {@code mma.sync}); on sm_90 the asynchronous warpgroup products ({@code wgmma}, with TMA copies) and query tiles
 * of 128 would raise its throughput further, and one backward kernel with dq summed by atomics would read K and V
 * once (at the price of determinism). Float32 keeps the CUDA-core kernels of both.
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
     * strips of 16. Wider heads run the recurrent kernels ({@link RecurrentLinearTrain}), except in bf16 where they
     * split into virtual heads for the tensor-core kernels ({@link #linearHeadSplit}).
     */
    public static final int LINEAR_MAX_HEAD_DIM = 127;
    /** Tokens per chunk of the linear-attention kernels (LIN_CHUNK of train_linear.cuh). */
    static final int LINEAR_CHUNK = 64;
    private static final int LINEAR_THREADS = 256;
    /** The tensor-core kernels' largest feature dim (q and k rows of at most 32 in dx fragments of 4 tiles). */
    static final int LINEAR_MMA_MAX_FEATURE_DIM = 32;
    /** Their head dims: multiples of 8, so that the normaliser opens an 8-column tile, up to 16 tiles of 8. */
    static final int LINEAR_MMA_MIN_HEAD_DIM = 16;
    static final int LINEAR_MMA_MAX_HEAD_DIM = 120;
    /** Threads of a tensor-core block: 4 warps of 16 rows (LMM_THREADS). */
    private static final int LINEAR_MMA_THREADS = 128;
    /** Threads of a scan block: 4 chunk warps and 4 state warps (LMS_THREADS). */
    private static final int LINEAR_SCAN_THREADS = 256;
    /** Features per block of the tensor-core states kernel (LMM_SLAB). */
    private static final int LINEAR_MMA_SLAB = 64;
    /**
     * The most dynamic shared memory a linear-attention block may take: the opt-in limit of sm_90 (227 KiB). sm_80
     * offers 163 KiB, enough for feature dims up to 32 at any head dim (164,684 bytes at f 32, dh 112 to 127).
     */
    private static final int LINEAR_MAX_SHARED = 227 * 1024;
    private static final int MAX_GRID_YZ = 65535;

    /** The scan kernels' largest feature count E rounded up to 16 (LMS_MAX_FEATURES): feature dims 8 and 16. */
    static final int LINEAR_SCAN_MAX_FEATURES = 160;
    /** The scan kernels' largest head dim (LMS_MAX_HEAD: 10 value tiles of 8 over dh + 1 columns). */
    static final int LINEAR_SCAN_MAX_HEAD_DIM = 72;

    private final Kernels k;
    private final RecurrentLinearTrain recurrent;
    private final Consumer<Runnable> freeLater;
    private long ownedScratch;
    private long ownedScratchBytes;
    private boolean tensorCores = true;
    /** The fewest (sequence, head) pairs the scan forward takes by default ({@link #scanForward}). */
    static final int SCAN_FORWARD_MIN_BLOCKS = 128;
    private boolean scan = true;
    /**
     * The system property that sets the fewest (sequence, head) pairs the scan forward takes
     * ({@code -Dbased4j.cuda.scanForwardMinBlocks=1}: wherever it serves), for comparisons.
     */
    static final String SCAN_FORWARD_MIN_BLOCKS_PROPERTY = "based4j.cuda.scanForwardMinBlocks";
    private int scanForwardMinBlocks = scanForwardMinBlocks(System.getProperty(SCAN_FORWARD_MIN_BLOCKS_PROPERTY));
    /** The longest prompts on split heads the scan forward takes at any number of (sequence, head) pairs. */
    static final int SCAN_FORWARD_SHORT = 2048;
    /**
     * The system property that sets the longest prompts on split heads the scan forward takes whatever their number
     * ({@code 0}: none; only {@value #SCAN_FORWARD_MIN_BLOCKS_PROPERTY} decides), for comparisons.
     */
    static final String SCAN_FORWARD_SHORT_PROPERTY = "based4j.cuda.scanForwardShort";
    private int scanForwardShort = scanForwardShort(System.getProperty(SCAN_FORWARD_SHORT_PROPERTY));
    private boolean scanBackward = false;
    private boolean roundedStates = true;
    private boolean scanFixedSizes = true;
    private boolean scanSplit = true;

    /** Launches on the stream of {@code kernels}; replaced scratch is freed at once. */
    public MixerTrainKernels(Kernels kernels) {
        this(kernels, Runnable::run);
    }

    /**
     * Launches on the stream of {@code kernels}; {@code freeLater} runs the free of replaced scratch when nothing
     * recorded can read it any more ({@link CudaBackend#freeLater}).
     */
    MixerTrainKernels(Kernels kernels, Consumer<Runnable> freeLater) {
        this.k = kernels;
        this.freeLater = freeLater;
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
     * convOut A {@code [N, inner]} (kept for the backward; 0 where nothing is kept, such as a prompt's forward) and
     * {@code out = silu(c) u2} A {@code [N, inner]}. In bf16 with {@link #convByRows} by rows (the same operations
     * per element).
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
        baseConvBackward(p, u, taps, convOut, dout, du, dtaps, batch, seqLen, inner, kernel, false);
    }

    /**
     * {@link #baseConvBackward}; with {@code fresh} (only where {@link #convByRows} holds) du is written, not added
     * into: its old values are not read (the caller had it zeroed as a whole).
     */
    public void baseConvBackward(Precision p, long u, long taps, long convOut, long dout, long du, long dtaps,
                                 int batch, int seqLen, int inner, int kernel, boolean fresh) {
        checkConv("baseConvBackward", batch, seqLen, inner, kernel);
        long n = rows(batch, seqLen);
        if (n * inner == 0) {
            return;
        }
        if (convByRows(p, n, inner, kernel, u, taps, convOut, dout, du)) {
            int parts = (int) convRowBlocks(n);
            long partial = ownedScratch(4L * parts * inner * kernel);
            k.args.reset().ptr(u).ptr(taps).ptr(convOut).ptr(dout).ptr(du).ptr(partial).i32(seqLen).i64(n)
                    .i32(inner).i32(fresh ? 1 : 0);
            k.launch(k.function("baseConvRowsBackwardK" + kernel, p), convChannelBlocks(inner), parts, 1,
                    Kernels.THREADS, 0);
            TrainKernels.columnPartsSum(k, partial, dtaps, parts, (long) inner * kernel);
            return;
        }
        require(!fresh, "baseConvBackward: a fresh du only where the rows kernel runs");
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
        int e = MixerConfig.LinearAttention.expandedDim(f);
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
        long e = MixerConfig.LinearAttention.expandedDim(featureDim);
        long perHead = Math.multiplyExact(e, headDim + 1L);
        return Math.multiplyExact(Math.multiplyExact((long) batch * heads, (long) linearChunks(seqLen)), perHead);
    }

    /**
     * Bytes of scratch {@link #linearAttentionBackward} needs, in either precision: for the chunked kernels the
     * float32 chunk states ({@code batch H ceil(seqLen / 64) E (dh + 1)} floats, E = 1 + f + f(f+1)/2) and per
     * (row, head) the gradients of the numerator and denominator {@code [g, r]} ({@code N H (dh + 1)} floats); for
     * the recurrent kernels (head dims above {@value #LINEAR_MAX_HEAD_DIM}) {@link RecurrentLinearTrain}'s; and where
     * the bf16 head split applies to the shape ({@link #linearHeadSplit}), at least {@link #linearSplitScratchBytes}.
     * Linear in N.
     */
    public static long linearAttentionBackwardScratchBytes(int batch, int seqLen, int heads, int featureDim,
                                                           int headDim) {
        long whole = wholeHeadsBackwardScratchBytes(batch, seqLen, heads, featureDim, headDim);
        int split = linearHeadSplit(Precision.BF16, featureDim, headDim, heads);
        return split == 0 ? whole
                : Math.max(whole, linearSplitScratchBytes(batch, seqLen, heads, featureDim, headDim, split));
    }

    /** The backward scratch of the heads as they are (no split): the chunked kernels' or the recurrent kernels'. */
    private static long wholeHeadsBackwardScratchBytes(int batch, int seqLen, int heads, int featureDim,
                                                       int headDim) {
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            return RecurrentLinearTrain.backwardScratchBytes(rows(batch, seqLen), heads, featureDim, headDim);
        }
        long cells = Math.multiplyExact(rows(batch, seqLen), (long) heads);
        long g = Math.multiplyExact(cells, headDim + 1L);
        return Math.multiplyExact(4L, Math.addExact(linearStateFloats(batch, seqLen, heads, featureDim, headDim), g));
    }

    /**
     * Bytes of scratch the scan kernels' backward takes (within {@link #linearAttentionBackwardScratchBytes}): G',
     * bf16 rows of dh + 8 per (row, head). The owned scratch of {@link #linearAttentionBackward} is this where they
     * run.
     */
    static long linearScanScratchBytes(int batch, int seqLen, int heads, int headDim) {
        return Math.multiplyExact(Math.multiplyExact(rows(batch, seqLen), (long) heads), 2L * (headDim + 8));
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

    /** Chunk states of k and v, then their exclusive prefix sums over the chunks (in place). */
    private void linearStates(Precision p, long k, long v, long states, int batch, int seqLen, int heads,
                              int featureDim, int headDim, int shared) {
        this.k.args.reset().ptr(k).ptr(v).ptr(states).i32(seqLen).i32(heads).i32(featureDim).i32(headDim);
        this.k.launch(this.k.function("linearAttentionChunkStates", p, shared), linearChunks(seqLen), heads, batch,
                LINEAR_THREADS, shared);
        linearScan(p, states, batch, seqLen, heads, featureDim, headDim, false);
    }

    /** Exclusive scan of the chunk states over the chunks: prefix sums, or suffix sums when reverse. */
    private void linearScan(Precision p, long states, int batch, int seqLen, int heads, int featureDim, int headDim,
                            boolean reverse) {
        int e = MixerConfig.LinearAttention.expandedDim(featureDim);
        int perHead = e * (headDim + 1);
        long count = (long) batch * heads * perHead;
        this.k.args.reset().ptr(states).i64(count).i32(linearChunks(seqLen)).i32(perHead).i32(reverse ? 1 : 0);
        this.k.elementwise(this.k.function("linearAttentionScan", p), count);
    }

    /**
     * Taylor linear attention forward ({@code LinearAttentionOps.forward}): q, k A {@code [N, H f]}, v A
     * {@code [N, H dh]}; writes out A {@code [N, H dh]}. Keeps nothing else; the chunk states live in the scratch
     * owned by this instance (allocated on first use, grown when a larger pass comes), except on the scan kernels
     * ({@link #linearScan}), which keep them on chip and take no scratch. Heads split into virtual heads
     * ({@link #linearHeadSplit}) keep their repeated q and k in that scratch too, before the states.
     */
    public void linearAttentionForward(Precision p, long q, long k, long v, long out, int batch, int seqLen,
                                       int heads, int featureDim, int headDim, float eps) {
        linearAttentionForward(p, q, k, v, out, batch, seqLen, heads, featureDim, headDim, eps, null);
    }

    /**
     * Where a prompt's forward also leaves each sequence's whole state for the decode that follows
     * ({@code LmmFinal} in train_linear_mma.cuh): S {@code [slot][heads][E][dh]} at kv and z {@code [slot][heads][E]}
     * at z, float32, the recurrent kernels' layout, sequence i's slot the int at {@code slots + 4 i}. Its values are
     * the chunk states' sums (phi rounded to bf16 as the tensor-core products take it), not the recurrent kernels'
     * bit for bit.
     */
    record FinalState(long kv, long z, long slots) {
    }

    /**
     * {@link #linearAttentionForward} that also writes the sequences' whole states where {@code fin} is given; only
     * where {@link #leavesFinalState} holds for the same arguments.
     */
    void linearAttentionForward(Precision p, long q, long k, long v, long out, int batch, int seqLen, int heads,
                                int featureDim, int headDim, float eps, FinalState fin) {
        int shared = linearLaunchCheck("linearAttentionForward", batch, seqLen, heads, featureDim, headDim, eps);
        if (fin != null && !leavesFinalState(p, q, k, v, out, batch, seqLen, heads, featureDim, headDim)) {
            throw new IllegalStateException("linearAttentionForward: this forward does not leave the final state");
        }
        if (rows(batch, seqLen) == 0) {
            return;
        }
        ForwardSplit split = forwardSplit(p, batch, seqLen, fin != null, heads, featureDim, headDim, v, out);
        if (split.parts() != 0) {
            splitForward(q, k, v, out, batch, seqLen, heads, featureDim, headDim, eps, split.parts(), fin,
                    fin != null && split.forScan());
            return;
        }
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            recurrent.forward(p, q, k, v, out, batch, seqLen, heads, featureDim, headDim, eps);
            return;
        }
        long bytes = chunkedForwardScratchBytes(p, batch, seqLen, false, heads, featureDim, headDim, q, k, v, out);
        chunkedForward(p, q, k, v, out, batch, seqLen, heads, featureDim, headDim, eps, shared,
                bytes == 0 ? 0 : ownedScratch(bytes), fin, heads, 1, false);
    }

    /**
     * Whether {@link #linearAttentionForward} with a {@link FinalState} serves these arguments: where it runs on the
     * tensor-core kernels (directly or on split heads): the scan kernel goes on through the last chunk and writes
     * each sequence's whole state, as does the states kernel of the chunk kernels; not the CUDA-core or the recurrent
     * kernels.
     */
    boolean leavesFinalState(Precision p, long q, long k, long v, long out, int batch, int seqLen, int heads,
                             int featureDim, int headDim) {
        ForwardSplit split = forwardSplit(p, batch, seqLen, true, heads, featureDim, headDim, v, out);
        if (split.parts() != 0) {
            // the repeated q and k are in the owned scratch (aligned): v and out decide, as in splitForward; a
            // prompt's short rule where the heads are split for the scan (not for the tensor cores' widths)
            int parts = split.parts();
            return scanForward(Precision.BF16, batch, seqLen, split.forScan(), heads * parts, featureDim,
                    headDim / parts, v, out) || mma(Precision.BF16, featureDim, headDim / parts, v, out);
        }
        return headDim <= LINEAR_MAX_HEAD_DIM && (scanForward(p, batch, seqLen, false, heads, featureDim, headDim, q,
                k, v, out) || mma(p, featureDim, headDim, q, k, v, out));
    }

    /**
     * Bytes of scratch the chunked forward takes: none on the scan kernels (for the given q, k, v and out, a prompt's
     * on split heads or not: {@link #scanForward}), else the float32 chunk states.
     */
    private long chunkedForwardScratchBytes(Precision p, int batch, int seqLen, boolean shortPrompt, int heads,
                                            int featureDim, int headDim, long... pointers) {
        return scanForward(p, batch, seqLen, shortPrompt, heads, featureDim, headDim, pointers) ? 0
                : 4L * linearStateFloats(batch, seqLen, heads, featureDim, headDim);
    }

    /**
     * The forward on the chunked kernels (head dims up to {@value #LINEAR_MAX_HEAD_DIM}): the scan kernels where they
     * serve, else the tensor-core or the CUDA-core chunk kernels with the chunk states at {@code states}
     * ({@link #chunkedForwardScratchBytes}). {@code shortPrompt}: a prompt's forward on heads split for the scan,
     * which takes the scan where its sequences are short ({@link #scanForward}).
     */
    private void chunkedForward(Precision p, long q, long k, long v, long out, int batch, int seqLen, int heads,
                                int featureDim, int headDim, float eps, int shared, long states, FinalState fin,
                                int realHeads, int split, boolean shortPrompt) {
        if (scanForward(p, batch, seqLen, shortPrompt, heads, featureDim, headDim, q, k, v, out)) {
            this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(out).i32(seqLen).i32(heads).i32(featureDim).i32(headDim)
                    .f32(eps);
            if (fin != null) {
                this.k.args.ptr(fin.kv()).ptr(fin.z()).ptr(fin.slots()).i32(realHeads).i32(split);
            }
            launchScan(fin != null ? "linearAttentionMmaScanForwardFinal" : "linearAttentionMmaScanForward", heads,
                    batch, featureDim, headDim, linearScanSharedBytes(featureDim, headDim, false));
            return;
        }
        if (mma(p, featureDim, headDim, q, k, v, out, states)) {
            if (fin != null) {
                int e = MixerConfig.LinearAttention.expandedDim(featureDim);
                this.k.args.reset().ptr(k).ptr(v).i64((long) heads * headDim).i32(headDim).i32(headDim).ptr(states)
                        .i32(seqLen).i32(heads).i32(featureDim).i32(headDim).ptr(fin.kv()).ptr(fin.z())
                        .ptr(fin.slots()).i32(realHeads).i32(split);
                launchMma("linearAttentionMmaStatesFinal", headDim, (e + LINEAR_MMA_SLAB - 1) / LINEAR_MMA_SLAB,
                        heads, batch, linearMmaStatesSharedBytes(featureDim, headDim));
            } else {
                linearMmaStates("linearAttentionMmaStates", k, v, (long) heads * headDim, headDim, headDim, true,
                        states, batch, seqLen, heads, featureDim, headDim);
            }
            this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(states).ptr(out).i32(seqLen).i32(heads).i32(featureDim)
                    .i32(headDim).f32(eps);
            launchMma("linearAttentionMmaForward", headDim, linearChunks(seqLen), heads, batch,
                    linearMmaSharedBytes(featureDim, headDim, false));
            return;
        }
        linearStates(p, k, v, states, batch, seqLen, heads, featureDim, headDim, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(states).ptr(out).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim).f32(eps);
        this.k.launch(this.k.function("linearAttentionChunkForward", p, shared), linearChunks(seqLen), heads, batch,
                LINEAR_THREADS, shared);
    }

    /**
     * Linear attention backward ({@code LinearAttentionOps.backward}) with scratch owned by this instance: dout A
     * {@code [N, H dh]}; {@code dq, dk += } (A {@code [N, H f]}), {@code dv += } (A {@code [N, H dh]}). The first
     * call, and a call for a larger pass than any before, allocates {@link #linearAttentionBackwardScratchBytes}
     * of device memory, or on the scan kernels only {@link #linearScanScratchBytes}, or for heads split into
     * virtual heads ({@link #linearHeadSplit}) the repeated q and k and their gradients before the virtual heads'
     * scratch (waiting for the device when it replaces a smaller one).
     */
    public void linearAttentionBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv,
                                        int batch, int seqLen, int heads, int featureDim, int headDim, float eps) {
        linearLaunchCheck("linearAttentionBackward", batch, seqLen, heads, featureDim, headDim, eps);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        int split = headSplit(p, featureDim, headDim, heads, v, dout, dv);
        long bytes = split != 0
                ? splitScratchBytes(batch, seqLen, heads, featureDim, split, backwardScratchBytes(p, batch,
                        seqLen, heads * split, featureDim, headDim / split, v, dout, dv))
                : backwardScratchBytes(p, batch, seqLen, heads, featureDim, headDim, q, k, v, dout, dq, dk,
                        dv);
        long scratch = ownedScratch(bytes);
        linearAttentionBackward(p, q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps,
                scratch);
    }

    /**
     * {@link #linearAttentionBackward} with the caller's scratch: {@link #linearAttentionBackwardScratchBytes} of
     * device memory (any contents; overwritten), not used by anything else until the backward has run. The
     * tensor-core kernels need it 16-byte aligned, as the allocator gives it (otherwise the CUDA-core kernels run).
     */
    public void linearAttentionBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv,
                                        int batch, int seqLen, int heads, int featureDim, int headDim, float eps,
                                        long scratch) {
        int shared = linearLaunchCheck("linearAttentionBackward", batch, seqLen, heads, featureDim, headDim, eps);
        if (rows(batch, seqLen) == 0) {
            return;
        }
        int split = headSplit(p, featureDim, headDim, heads, v, dout, dv, scratch);
        if (split != 0) {
            splitBackward(q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, split, scratch);
            return;
        }
        if (headDim > LINEAR_MAX_HEAD_DIM) {
            recurrent.backward(p, q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, scratch);
            return;
        }
        chunkedBackward(p, q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, shared,
                scratch);
    }

    /**
     * Bytes of scratch the backward of the heads as they are (no split) takes as this instance is set: on the scan
     * kernels (where {@link #scanBackward} turns them on and they serve the given arrays)
     * {@link #linearScanScratchBytes}, else the chunk kernels' or the recurrent kernels'.
     */
    private long backwardScratchBytes(Precision p, int batch, int seqLen, int heads, int featureDim,
                                             int headDim, long... pointers) {
        return scanBackward && scan(p, featureDim, headDim, pointers)
                ? linearScanScratchBytes(batch, seqLen, heads, headDim)
                : wholeHeadsBackwardScratchBytes(batch, seqLen, heads, featureDim, headDim);
    }

    /**
     * The backward on the chunked kernels (head dims up to {@value #LINEAR_MAX_HEAD_DIM}) with the scratch
     * {@link #backwardScratchBytes}: the scan kernels where {@link #scanBackward} turns them on and they serve,
     * else the tensor-core or the CUDA-core chunk kernels.
     */
    private void chunkedBackward(Precision p, long q, long k, long v, long dout, long dq, long dk, long dv, int batch,
                                 int seqLen, int heads, int featureDim, int headDim, float eps, int shared,
                                 long scratch) {
        if (scanBackward && scan(p, featureDim, headDim, q, k, v, dout, dq, dk, dv, scratch)) {
            linearScanBackward(q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, scratch);
            return;
        }
        long states = scratch;
        long g = states + 4L * linearStateFloats(batch, seqLen, heads, featureDim, headDim);
        int chunks = linearChunks(seqLen);
        if (mma(p, featureDim, headDim, q, k, v, dout, dq, dk, dv, scratch)) {
            linearMmaBackward(q, k, v, dout, dq, dk, dv, batch, seqLen, heads, featureDim, headDim, eps, states,
                    (g + 15) & ~15L);
            return;
        }
        linearStates(p, k, v, states, batch, seqLen, heads, featureDim, headDim, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(states).ptr(g).ptr(dq).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim).f32(eps);
        this.k.launch(this.k.function("linearAttentionChunkBackwardQ", p, shared), chunks, heads, batch,
                LINEAR_THREADS, shared);
        linearScan(p, states, batch, seqLen, heads, featureDim, headDim, true);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(g).ptr(states).ptr(dk).ptr(dv).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim);
        this.k.launch(this.k.function("linearAttentionChunkBackwardKV", p, shared), chunks, heads, batch,
                LINEAR_THREADS, shared);
    }

    // ------------------------------------------------------------------------------------------------ tensor cores

    /**
     * Whether linear attention runs on the tensor-core kernels ({@code train_linear_mma.cuh}): bf16, feature dims
     * that are multiples of 8 up to {@value #LINEAR_MMA_MAX_FEATURE_DIM} (whole 16-byte pieces of q and k rows) and
     * head dims that are multiples of 8 from {@value #LINEAR_MMA_MIN_HEAD_DIM} to {@value #LINEAR_MMA_MAX_HEAD_DIM}.
     * The launches also need q, k, v, dout, the outputs and the scratch 16-byte aligned (as the allocator gives them)
     * and take the CUDA-core kernels otherwise.
     */
    static boolean linearTensorCores(Precision p, int featureDim, int headDim) {
        return p == Precision.BF16 && featureDim % 8 == 0 && featureDim <= LINEAR_MMA_MAX_FEATURE_DIM
                && headDim % 8 == 0 && headDim >= LINEAR_MMA_MIN_HEAD_DIM && headDim <= LINEAR_MMA_MAX_HEAD_DIM;
    }

    /**
     * Whether this instance may take the tensor-core kernels (the default) or keeps to the CUDA-core kernels, for
     * comparisons of the two.
     */
    void tensorCores(boolean enabled) {
        tensorCores = enabled;
    }

    private boolean mma(Precision p, int featureDim, int headDim, long... pointers) {
        return tensorCores && linearTensorCores(p, featureDim, headDim) && aligned(pointers);
    }

    /**
     * Whether linear attention runs on the tensor-core scan kernels ({@code train_linear_scan.cuh}): the tensor-core
     * kernels' cases ({@link #linearTensorCores}) with E rounded up to 16 at most
     * {@value #LINEAR_SCAN_MAX_FEATURES} (feature dims 8 and 16) and head dims up to
     * {@value #LINEAR_SCAN_MAX_HEAD_DIM}; the rest of the tensor-core cases run the chunk kernels.
     */
    static boolean linearScan(Precision p, int featureDim, int headDim) {
        int e = MixerConfig.LinearAttention.expandedDim(featureDim);
        return linearTensorCores(p, featureDim, headDim) && (e + 15) / 16 * 16 <= LINEAR_SCAN_MAX_FEATURES
                && headDim <= LINEAR_SCAN_MAX_HEAD_DIM;
    }

    /**
     * Whether this instance may take the scan kernels where they apply (the default) or keeps to the tensor-core
     * chunk kernels, for comparisons of the two.
     */
    /** Whether the scan kernels may run at all (both directions), for comparisons. */
    void scan(boolean enabled) {
        scan = enabled;
        scanBackward = enabled;
    }

    /**
     * Whether the backward runs on the scan kernels where they serve (off by default: on the H200 at batch 8 x 2048
     * tokens, 16 heads, f 16, dh 64, their backward took 2.61 ms to the chunk kernels' 2.05 ms, while their forward
     * took 0.26 ms to 0.49). {@link #scan(boolean) scan(false)} turns both off.
     */
    void scanBackward(boolean enabled) {
        scanBackward = enabled;
    }

    /**
     * Whether the tensor-core chunk backward takes the rounded-state kernels where they serve
     * ({@link #linearRoundedStates}); on by default (measured on the H200 at batch 8, 16 heads, f 16, dh 64: as fast
     * as the float32 states at 2048 tokens, 1.73 ms, and 1.20x faster at 8192, 6.69 against 8.03 ms). The results
     * are the same bit for bit.
     */
    void roundedStates(boolean enabled) {
        roundedStates = enabled;
    }

    /**
     * Whether the rounded-state backward kernels serve a shape: the tensor-core cases ({@link #linearTensorCores})
     * with E rounded up to 16 at most {@value #LINEAR_SCAN_MAX_FEATURES} (feature dims 8 and 16), whose whole bf16
     * state fits in shared memory beside the chunk's tiles.
     */
    static boolean linearRoundedStates(Precision p, int featureDim, int headDim) {
        int e = MixerConfig.LinearAttention.expandedDim(featureDim);
        return linearTensorCores(p, featureDim, headDim) && (e + 15) / 16 * 16 <= LINEAR_SCAN_MAX_FEATURES;
    }

    /**
     * Whether the forward of sequences of {@code seqLen} tokens runs on the scan kernel: where it serves
     * ({@link #scan(Precision, int, int, long...)}) and there are at least {@value #SCAN_FORWARD_MIN_BLOCKS}
     * (sequence, head) pairs, its blocks, or {@code shortPrompt} (prompts, whose forward leaves the final states
     * ({@link FinalState}), on heads split for the scan: {@link #forwardSplit}) and the sequences are at most
     * {@value #SCAN_FORWARD_SHORT} tokens long (unless {@link #scanForwardMinBlocks(int)} and
     * {@link #scanForwardShort(int)} say otherwise). Fewer blocks each walking a long sequence keep too little of the
     * GPU busy, and the chunk kernels (a block per chunk once the states are summed) take them. On the H200,
     * based-360m's training at 2 x 8192 tokens (32 blocks): the scan forward 1.14 ms a layer, the states and chunk
     * kernels 0.83; 190,221 tokens/s against 188,758 with the scan, in one run. A short prompt of wide heads is
     * quicker on the scan kernel at any batch, against the chunk kernels on the whole heads: based-1b's prefill of one
     * prompt of 1,536 tokens 0.86 against 1.42 ms of linear attention on the device's clock (7 layers), 149,219 and
     * 143,181 tokens/s against 134,345 and 130,328. For whole heads (based-360m's of 64) the chunk kernels stay: its
     * prefill of one prompt of 2,048 tokens was slower on the scan (180,197 and 190,309 tokens/s against 283,717 and
     * 265,209) although its linear attention took 0.74 against 0.81 ms on the device's clock. The results are the
     * same bit for bit.
     */
    private boolean scanForward(Precision p, int batch, int seqLen, boolean shortPrompt, int heads, int featureDim,
                                int headDim, long... pointers) {
        return ((long) batch * heads >= scanForwardMinBlocks || shortPrompt && seqLen <= scanForwardShort)
                && scan(p, featureDim, headDim, pointers);
    }

    /**
     * The value of {@value #SCAN_FORWARD_SHORT_PROPERTY}: {@value #SCAN_FORWARD_SHORT} where unset, else a whole number
     * from 0.
     *
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static int scanForwardShort(String value) {
        return Kernels.atLeast(SCAN_FORWARD_SHORT_PROPERTY, value, 0, SCAN_FORWARD_SHORT, "a number of tokens");
    }

    /** The longest prompts on split heads the scan forward takes whatever their number (0: none; the same results). */
    void scanForwardShort(int tokens) {
        scanForwardShort = tokens;
    }

    /** The longest prompts on split heads the scan forward takes whatever their number, now. */
    int scanForwardShort() {
        return scanForwardShort;
    }

    /**
     * The value of {@value #SCAN_FORWARD_MIN_BLOCKS_PROPERTY}: {@value #SCAN_FORWARD_MIN_BLOCKS} where unset, else a
     * whole number from 1.
     *
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static int scanForwardMinBlocks(String value) {
        return Kernels.atLeast(SCAN_FORWARD_MIN_BLOCKS_PROPERTY, value, 1, SCAN_FORWARD_MIN_BLOCKS,
                "a number of (sequence, head) pairs");
    }

    /** The fewest (sequence, head) pairs the scan forward takes (the results are the same either way). */
    void scanForwardMinBlocks(int blocks) {
        scanForwardMinBlocks = blocks;
    }

    /** The fewest (sequence, head) pairs the scan forward takes now. */
    int scanForwardMinBlocks() {
        return scanForwardMinBlocks;
    }

    private boolean scan(Precision p, int featureDim, int headDim, long... pointers) {
        return scan && tensorCores && linearScan(p, featureDim, headDim) && aligned(pointers);
    }

    private static boolean aligned(long... pointers) {
        for (long ptr : pointers) {
            if ((ptr & 15) != 0) {
                return false;
            }
        }
        return true;
    }

    /** Row stride, in bf16 elements, of the tensor-core kernels' q and k tiles (mirrors LmmDims.ldX). */
    private static int mmaFeatureStride(int f) {
        return (f + 15) / 16 * 16 + 8;
    }

    /** Row stride of their V', G' and state tiles: the dh + 1 columns in k-steps of 16, plus 8 (LmmDims.ldV). */
    private static int mmaValueStride(int dh) {
        return 16 * ((dh + 16) / 16) + 8;
    }

    /**
     * Bytes of dynamic shared memory of a tensor-core chunk block (mirrors lmmChunkSmemBytes): the feature table
     * (8 bytes per feature, E rounded up to 16), q and k rows, V' and a state tile in bf16, and for the backward G',
     * a float32 dphi tile of 16 x 72 per warp and dq or dk of the warp's rows.
     */
    static int linearMmaSharedBytes(int f, int dh, boolean backward) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int bytes = 8 * ((e + 15) / 16 * 16) + 256 * mmaFeatureStride(f) + 256 * mmaValueStride(dh);
        if (backward) {
            bytes += 128 * mmaValueStride(dh) + 4 * 64 * 72 + 4 * 64 * ((f + 15) / 16 * 16);
        }
        return bytes;
    }

    /**
     * Bytes of dynamic shared memory of a rounded-state backward kernel (mirrors lmmChunkSmemBytes with epad state
     * rows): those of the backward chunk kernel with the whole bf16 state ({@code [epad][ldV]}) in place of its
     * 64-feature tile. At f 16, dh 64: 80,640 bytes.
     */
    static int linearMmaRoundedSharedBytes(int f, int dh) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int epad = (e + 15) / 16 * 16;
        return linearMmaSharedBytes(f, dh, true) + 2 * (epad - LINEAR_MMA_SLAB) * mmaValueStride(dh);
    }

    /** Bytes of dynamic shared memory of the tensor-core states kernel: two buffers of x rows and of V' or G'. */
    static int linearMmaStatesSharedBytes(int f, int dh) {
        return 256 * mmaFeatureStride(f) + 256 * mmaValueStride(dh);
    }

    /**
     * Bytes of dynamic shared memory of a scan kernel (mirrors lmsSmemBytes): the feature table, two sets of chunk
     * tiles (q and k rows, V', and for the backward G'), for the backward the per-warp dphi and dx tiles, the state
     * in bf16 ({@code [epad][ldV]}) and in float32 (epad x 8 nt floats, nt = dh / 8 + 1). At f 16, dh 64: 108 KiB
     * forward, 152 KiB backward (within the 163 KiB of sm_80 and the 227 KiB of sm_90).
     */
    static int linearScanSharedBytes(int f, int dh, boolean backward) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int epad = (e + 15) / 16 * 16;
        int fpad = (f + 15) / 16 * 16;
        int set = 256 * mmaFeatureStride(f) + 128 * mmaValueStride(dh) * (backward ? 2 : 1);
        int bytes = 8 * epad + 2 * set + 2 * epad * mmaValueStride(dh) + 4 * epad * 8 * (dh / 8 + 1);
        if (backward) {
            bytes += 4 * 64 * 72 + 4 * 64 * fpad;
        }
        return bytes;
    }

    /**
     * Whether the scan kernels have a variant compiled for these sizes ({@code NAME16x64} and {@code NAME16x56}:
     * feature dim 16, head dim 64 (based-360m) or 56 (based-1b's heads split in two), every stride and loop bound
     * fixed; the same operations in the same order as the kernel that takes the sizes as arguments, so the same
     * numbers).
     */
    static boolean linearScanFixedSizes(int featureDim, int headDim) {
        return linearScanFixedSizes(featureDim, headDim, false);
    }

    /** {@link #linearScanFixedSizes(int, int)} for the forward or the backward kernels (only 64 for the latter). */
    static boolean linearScanFixedSizes(int featureDim, int headDim, boolean backward) {
        return featureDim == 16 && (headDim == 64 || headDim == 56 && !backward);
    }

    /**
     * Whether the scan kernels take their variant compiled for the sizes where there is one (the default) or the one
     * that takes the sizes as arguments, for comparisons.
     */
    void scanFixedSizes(boolean enabled) {
        scanFixedSizes = enabled;
    }

    /** A scan kernel: one block of 8 warps per (head, sequence). */
    private void launchScan(String name, int heads, int batch, int featureDim, int headDim, int shared) {
        boolean backward = name.startsWith("linearAttentionMmaScanBackward");
        boolean fixed = scanFixedSizes && linearScanFixedSizes(featureDim, headDim, backward);
        long fn = k.function(fixed ? name + featureDim + "x" + headDim : name, Precision.BF16);
        k.optIn(fn, shared);
        k.launch(fn, heads, batch, 1, LINEAR_SCAN_THREADS, shared);
    }

    /**
     * The scan backward: the query side with the prefix state on chip, writing G' (bf16 rows of dh + 8 at the start
     * of the scratch) and dq; then the key and value side walking the chunks from the last with the suffix state
     * dS on chip.
     */
    private void linearScanBackward(long q, long k, long v, long dout, long dq, long dk, long dv, int batch,
                                    int seqLen, int heads, int featureDim, int headDim, float eps, long gbuf) {
        int shared = linearScanSharedBytes(featureDim, headDim, true);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(gbuf).ptr(dq).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim).f32(eps);
        launchScan("linearAttentionMmaScanBackwardQ", heads, batch, featureDim, headDim, shared);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(gbuf).ptr(dk).ptr(dv).i32(seqLen).i32(heads).i32(featureDim)
                .i32(headDim);
        launchScan("linearAttentionMmaScanBackwardKV", heads, batch, featureDim, headDim, shared);
    }

    /** The tensor-core kernel NAME72 (head dims up to 72: 10 value tiles of 8 held) or NAME120 (16 tiles). */
    private void launchMma(String name, int headDim, int gx, int gy, int gz, int shared) {
        String variant = name + (headDim <= 72 ? "72" : "120");
        long fn = k.function(variant, Precision.BF16);
        k.optIn(fn, shared);
        k.launch(fn, gx, gy, gz, LINEAR_MMA_THREADS, shared);
    }

    /**
     * The chunk states by the tensor-core states kernel: x (k or q rows) against r (v with a column of ones, or G'
     * from the scratch, rows rStride apart, head h at column h rHead, rWidth columns), exclusive prefix sums over the
     * chunks (suffix sums when reverse) into states.
     */
    private void linearMmaStates(String name, long x, long r, long rStride, int rHead, int rWidth, boolean ones,
                                 long states, int batch, int seqLen, int heads, int featureDim, int headDim) {
        boolean reverse = !ones;
        int e = MixerConfig.LinearAttention.expandedDim(featureDim);
        k.args.reset().ptr(x).ptr(r).i64(rStride).i32(rHead).i32(rWidth).i32(ones ? 1 : 0).ptr(states).i32(seqLen)
                .i32(heads).i32(featureDim).i32(headDim).i32(reverse ? 1 : 0);
        launchMma(name, headDim, (e + LINEAR_MMA_SLAB - 1) / LINEAR_MMA_SLAB, heads, batch,
                linearMmaStatesSharedBytes(featureDim, headDim));
    }

    /**
     * The tensor-core backward: the states (prefix sums), the query side writing G' (bf16 rows of dh + 8 at gbuf,
     * 16-byte aligned after the states) and dq, the states of (q, G') as suffix sums, the key and value side. On the
     * rounded-state kernels where {@link #roundedStates} turns them on and they serve the shape (the states bf16, in
     * the float32 states' place).
     */
    private void linearMmaBackward(long q, long k, long v, long dout, long dq, long dk, long dv, int batch,
                                   int seqLen, int heads, int featureDim, int headDim, float eps, long states,
                                   long gbuf) {
        boolean rounded = roundedStates && linearRoundedStates(Precision.BF16, featureDim, headDim);
        String prefix = rounded ? "linearAttentionMmaRounded" : "linearAttentionMma";
        int chunks = linearChunks(seqLen);
        int shared = rounded ? linearMmaRoundedSharedBytes(featureDim, headDim)
                : linearMmaSharedBytes(featureDim, headDim, true);
        int gRow = headDim + 8;
        linearMmaStates(prefix + "States", k, v, (long) heads * headDim, headDim, headDim, true, states, batch, seqLen,
                heads, featureDim, headDim);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(dout).ptr(states).ptr(gbuf).ptr(dq).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim).f32(eps);
        launchMma(prefix + "BackwardQ", headDim, chunks, heads, batch, shared);
        linearMmaStates(prefix + "States", q, gbuf, (long) heads * gRow, gRow, gRow, false, states, batch, seqLen,
                heads, featureDim, headDim);
        this.k.args.reset().ptr(q).ptr(k).ptr(v).ptr(gbuf).ptr(states).ptr(dk).ptr(dv).i32(seqLen).i32(heads)
                .i32(featureDim).i32(headDim);
        launchMma(prefix + "BackwardKV", headDim, chunks, heads, batch, shared);
    }

    // ------------------------------------------------------------------------------------------------ head split

    /**
     * The split of linear-attention heads wider than the tensor-core kernels take into virtual heads that they do
     * take: for head dims above {@value #LINEAR_MMA_MAX_HEAD_DIM}, the smallest {@code s >= 2} that divides the head
     * dim into {@code headDim / s} columns for which {@link #linearTensorCores} holds (multiples of 8 from
     * {@value #LINEAR_MMA_MIN_HEAD_DIM} to {@value #LINEAR_MMA_MAX_HEAD_DIM}, bf16, feature dims multiples of 8 up to
     * {@value #LINEAR_MMA_MAX_FEATURE_DIM}), with {@code heads s} at most 65535 (a grid dimension); 0 where there is
     * none (float32 always, and head dims such as 121 to 127 or 136). One head of 128 (an MQAR model of width 128):
     * 2 heads of 64.
     */
    static int linearHeadSplit(Precision p, int featureDim, int headDim, int heads) {
        if (headDim <= LINEAR_MMA_MAX_HEAD_DIM || !linearTensorCores(p, featureDim, LINEAR_MMA_MIN_HEAD_DIM)) {
            return 0;  // narrow enough already, or no virtual head would run on the tensor cores
        }
        return smallestSplit(headDim, heads, part -> linearTensorCores(p, featureDim, part));
    }

    /**
     * The smallest {@code s >= 2} that divides headDim into virtual heads of {@code headDim / s} (at least
     * {@value #LINEAR_MMA_MIN_HEAD_DIM}) that {@code serves} takes, with {@code heads s} at most 65535 (a grid
     * dimension); 0 where there is none.
     */
    private static int smallestSplit(int headDim, int heads, java.util.function.IntPredicate serves) {
        for (int s = 2; headDim / s >= LINEAR_MMA_MIN_HEAD_DIM; s++) {
            if (headDim % s == 0 && serves.test(headDim / s)) {
                return (long) heads * s <= MAX_GRID_YZ ? s : 0;
            }
        }
        return 0;
    }

    /**
     * The split this instance takes: {@link #linearHeadSplit}, where the tensor-core kernels are on
     * ({@link #tensorCores}) and the arrays the virtual heads' kernels read and write as they are (v, out or dout,
     * dv, the caller's scratch) are 16-byte aligned; 0 otherwise (the heads run whole, as before).
     */
    private int headSplit(Precision p, int featureDim, int headDim, int heads, long... pointers) {
        int split = tensorCores ? linearHeadSplit(p, featureDim, headDim, heads) : 0;
        return split != 0 && aligned(pointers) ? split : 0;
    }

    /**
     * The split the forward takes: {@link #headSplit}, or, where the heads run whole on the chunk kernels but split
     * ones would run on the scan kernels ({@link #linearScanSplit}: based-1b's heads of 112 as two of 56), that split.
     * Each value column is summed alone, so the split heads' numbers are the whole heads' (the q and k repeated, the
     * normaliser's column computed in each virtual head the same way).
     */
    private ForwardSplit forwardSplit(Precision p, int batch, int seqLen, boolean prompt, int heads, int featureDim,
                                      int headDim, long v, long out) {  // prompt: a forward leaving the final states
        int split = headSplit(p, featureDim, headDim, heads, v, out);
        if (split != 0 || !scanSplit || !tensorCores || headDim > LINEAR_MAX_HEAD_DIM) {
            return new ForwardSplit(split, false);
        }
        int s = linearScanSplit(p, featureDim, headDim, heads);
        // the repeated q and k are in the owned scratch (aligned): v and out decide
        return s != 0 && scanForward(p, batch, seqLen, prompt, heads * s, featureDim, headDim / s, v, out)
                ? new ForwardSplit(s, true) : new ForwardSplit(0, false);
    }

    /**
     * How the forward splits its heads: into {@code parts} virtual heads (0: whole), for the scan kernels' widths
     * where {@code forScan} (a prompt's short rule then holds there), else for the tensor cores' ({@link #headSplit}).
     */
    private record ForwardSplit(int parts, boolean forScan) {
    }

    /**
     * The fewest virtual heads a head of headDim splits into that the scan kernels take ({@link #linearScan}) where
     * the whole head is too wide for them; 0 where it is not, or no split serves.
     */
    static int linearScanSplit(Precision p, int featureDim, int headDim, int heads) {
        return linearScan(p, featureDim, headDim) ? 0
                : smallestSplit(headDim, heads, part -> linearScan(p, featureDim, part));
    }

    /**
     * Whether the forward may split heads too wide for the scan kernels into ones they take (the default), or runs
     * them whole on the chunk kernels, for comparisons.
     */
    void scanSplit(boolean enabled) {
        scanSplit = enabled;
    }

    /** The parts of the split backward's scratch before the virtual heads' own: qq, kk, dqq and dkk. */
    private static final int SPLIT_PARTS = 4;

    /** Bytes of one repeated array, bf16 {@code [N, virtualHeads f]}, rounded up to {@value #SCRATCH_ALIGN}. */
    private static long splitPartBytes(int batch, int seqLen, int virtualHeads, int featureDim) {
        return aligned(Math.multiplyExact(rows(batch, seqLen), 2L * virtualHeads * featureDim));
    }

    private static long splitScratchBytes(int batch, int seqLen, int heads, int featureDim, int split,
                                          long virtualBytes) {
        long parts = Math.multiplyExact(splitPartBytes(batch, seqLen, heads * split, featureDim), (long) SPLIT_PARTS);
        return Math.addExact(parts, virtualBytes);
    }

    /**
     * Bytes of scratch the split backward takes at most: the repeated q and k and their gradients
     * ({@code 4 x 2 N H s f} bytes, each part rounded up to {@value #SCRATCH_ALIGN}), then the chunk kernels' scratch
     * of the {@code H s} heads of {@code dh / s} columns.
     */
    static long linearSplitScratchBytes(int batch, int seqLen, int heads, int featureDim, int headDim, int split) {
        return splitScratchBytes(batch, seqLen, heads, featureDim, split, wholeHeadsBackwardScratchBytes(batch,
                seqLen, heads * split, featureDim, headDim / split));
    }

    /**
     * qq and kk ({@code [N, H s f]}): q and k repeated for the {@code H s} virtual heads; where dqq is not 0, dqq and
     * dkk (the same shape) zeroed for the backward to add into.
     */
    private void repeatHeads(long q, long k, long qq, long kk, long dqq, long dkk, long n, int heads, int split,
                             int featureDim) {
        this.k.args.reset().ptr(q).ptr(k).ptr(qq).ptr(kk).ptr(dqq).ptr(dkk).i64(n).i32(heads).i32(split)
                .i32(featureDim);
        this.k.elementwise(this.k.function("linearHeadRepeat", Precision.BF16), n * heads * split * featureDim);
    }

    /**
     * The forward on {@code H s} virtual heads of {@code dh / s} columns: q and k repeated into the owned scratch
     * ({@code qq | kk}, then the chunk states where the chunk kernels run), the chunked forward over the repeated q
     * and k and over v and out as they are.
     */
    private void splitForward(long q, long k, long v, long out, int batch, int seqLen, int heads, int featureDim,
                              int headDim, float eps, int split, FinalState fin, boolean shortPrompt) {
        int virtualHeads = heads * split;
        int virtualDim = headDim / split;
        long n = rows(batch, seqLen);
        long part = splitPartBytes(batch, seqLen, virtualHeads, featureDim);
        // qq and kk are 16-byte aligned in the scratch, so v and out decide between the scan and the chunk kernels
        long states = chunkedForwardScratchBytes(Precision.BF16, batch, seqLen, shortPrompt, virtualHeads, featureDim,
                virtualDim, v, out);
        long qq = ownedScratch(Math.addExact(2 * part, states));
        long kk = qq + part;
        repeatHeads(q, k, qq, kk, 0, 0, n, heads, split, featureDim);
        chunkedForward(Precision.BF16, qq, kk, v, out, batch, seqLen, virtualHeads, featureDim, virtualDim, eps,
                linearSharedBytes(featureDim, virtualDim), kk + part, fin, heads, split, shortPrompt);
    }

    /**
     * The backward on {@code H s} virtual heads of {@code dh / s} columns, in the scratch
     * {@code qq | kk | dqq | dkk | the virtual heads' scratch}: q and k repeated and dqq, dkk zeroed (one launch), the
     * chunked backward adding into dqq, dkk and dv (whose layout is the virtual heads' already), then the copies'
     * gradients summed into dq and dk.
     */
    private void splitBackward(long q, long k, long v, long dout, long dq, long dk, long dv, int batch, int seqLen,
                               int heads, int featureDim, int headDim, float eps, int split, long scratch) {
        int virtualHeads = heads * split;
        int virtualDim = headDim / split;
        long n = rows(batch, seqLen);
        long part = splitPartBytes(batch, seqLen, virtualHeads, featureDim);
        long qq = scratch;
        long kk = qq + part;
        long dqq = kk + part;
        long dkk = dqq + part;
        repeatHeads(q, k, qq, kk, dqq, dkk, n, heads, split, featureDim);
        chunkedBackward(Precision.BF16, qq, kk, v, dout, dqq, dkk, dv, batch, seqLen, virtualHeads, featureDim,
                virtualDim, eps, linearSharedBytes(featureDim, virtualDim), dkk + part);
        this.k.args.reset().ptr(dqq).ptr(dkk).ptr(dq).ptr(dk).i64(n).i32(heads).i32(split).i32(featureDim);
        this.k.elementwise(this.k.function("linearHeadSum", Precision.BF16), n * heads * featureDim);
    }

    private long ownedScratch(long bytes) {
        if (bytes > ownedScratchBytes) {
            CudaDriver cu = CudaDriver.get();
            if (ownedScratch != 0) {
                long old = ownedScratch;
                freeLater.accept(() -> {
                    cu.synchronizeContext();  // earlier launches may still read it
                    cu.free(old);
                });
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
        if (headDim % 8 == 0 && rotaryDim % 16 == 0 && qkv % 16 == 0 && qk % 16 == 0 && table % 16 == 0) {
            launchRotate("attentionRotateEights", d / 4, n);  // a thread per 8 of the 2d values of q and k
        } else if (headDim % 2 == 0 && rotaryDim % 4 == 0 && qkv % 4 == 0 && qk % 4 == 0) {
            launchRotate("attentionRotatePairs", d, n);  // a thread per pair
        } else {
            k.elementwise(k.function("attentionRotate", Precision.BF16), n * 2 * d);
        }
        return new QueryKeys(qk, qk + 2 * d, 2 * d, table);
    }

    /** A rotary pre-pass by rows: {@code threads} threads a row, rows strided over the blocks of the grid's y. */
    private void launchRotate(String name, long threads, long n) {
        int perRow = (int) ((threads + Kernels.THREADS - 1) / Kernels.THREADS);
        int rowBlocks = (int) Math.min(n, Math.max(1, Kernels.MAX_ELEMENTWISE_BLOCKS / perRow));
        k.launch(k.function(name, Precision.BF16), perRow, Math.min(rowBlocks, 65535), 1, Kernels.THREADS, 0);
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
        k.launch(k.function("attentionMmaForward" + padded, Precision.BF16, shared), mmaBlocksOf(seqLen),
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
        k.elementwise(k.function("attentionRowDot", Precision.BF16), cells * 8);  // 8 lanes a cell
        long d = (long) heads * headDim;
        int padded = attentionPaddedHeadDim(headDim);
        String[] names = {"attentionMmaBackwardQ", "attentionMmaBackwardKV"};
        int[] shared = {attentionBackwardQSharedBytes(padded), attentionBackwardKVSharedBytes(padded)};
        for (int i = 0; i < 2; i++) {
            k.args.reset().ptr(qk.q()).ptr(qk.k()).i64(qk.stride()).ptr(qkv + 2 * 2 * d).i64(3 * d).ptr(dout)
                    .ptr(lse).ptr(rowDots).ptr(qk.rotary()).ptr(dqkv).i32(seqLen).i32(heads).i32(headDim).i32(window)
                    .i32(rotaryDim).f32(softmaxScale);
            k.launch(k.function(names[i] + padded, Precision.BF16, shared[i]), mmaBlocksOf(seqLen), heads,
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
