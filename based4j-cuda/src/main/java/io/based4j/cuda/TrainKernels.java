package io.based4j.cuda;

import static io.based4j.cuda.Kernels.require;

import java.util.Arrays;

/**
 * Launches the training kernels of {@code src/main/cuda/train_dense.cuh}, {@code train_loss.cuh} and
 * {@code train_adamw.cuh}: the backward of the dense ops, the head fused with cross-entropy, the gradient norm and
 * AdamW. Each computes in float32 the function of its float64 reference in {@code based4j-train}
 * ({@code io.based4j.train.cpu.DenseOps}, {@code CrossEntropyOps}, {@code CpuTrainBackend.adamw}), with the same
 * formulas in the same order.
 *
 * <h2>Conventions</h2>
 * As {@link Kernels}: {@code NAME_f32} and {@code NAME_bf16} instantiations, W the weights' and A the activations'
 * type, rows row-major and contiguous, pointers device addresses, a launch with no work launches nothing. Here all
 * gradients are float32 and every backward ADDS into them ({@code +=}: branches and micro-batches accumulate; callers
 * zero them). Kernels whose operands are all float32 whatever the precision exist once, as {@code NAME_f32}. All
 * launches go to the stream of the {@link Kernels} and of the {@link Cublas} handle given (which must be the same);
 * nothing waits for the host.
 *
 * <h2>Kernels and launch shapes</h2>
 * <table>
 * <caption>training kernels</caption>
 * <tr><th>kernel</th><th>grid x block</th><th>what</th></tr>
 * <tr><td>embeddingBackwardAtomic_f32</td><td>elementwise over n x d</td>
 *     <td>{@code dtable[ids[i]] += dout[i]} by atomicAdd: not bit-reproducible when ids repeat</td></tr>
 * <tr><td>embeddingBackwardGrouped_f32</td><td>min(G, 65536) x 256, one block per distinct id</td>
 *     <td>the same sum, deterministic: positions grouped by id on the host ({@link #embeddingGroups}), each group
 *     summed in position order, then added to its row</td></tr>
 * <tr><td>rmsNormRstd</td><td>as Kernels.rmsNorm</td><td>rmsNorm, also writing {@code rstd [n]}</td></tr>
 * <tr><td>rmsNormBackward</td><td>ceil(n / R) x 256, R = {@link #rmsNormRowsPerBlock}</td>
 *     <td>dx per row; per block the partial weight gradient of its rows, {@code [blocks, d]} scratch</td></tr>
 * <tr><td>rmsNormWeightGrad_f32</td><td>elementwise over d</td>
 *     <td>{@code dw += } the partial rows summed in order (no atomics)</td></tr>
 * <tr><td>rmsNormRowsQ, rmsNormBackwardRowsQ, rmsNormBackwardRowsFQ (bf16, Q 8 or 16)</td>
 *     <td>min(ceil(n / 8), 65536) x 256; backward {@link #RMS_ROW_BLOCKS} at most</td>
 *     <td>the bf16 forms ({@link #rmsNormByRows}): a warp per row held in registers, 16-byte accesses; the backward
 *     reads dout as bf16 or float32, can write the new dx rounded to bf16 too, and leaves one partial weight
 *     gradient per block</td></tr>
 * <tr><td>columnPartsSum_f32</td><td>ceil(cols / 32) x 1024</td>
 *     <td>{@code out += } the partial rows of the bf16 forms, 32 groups of parts per column summed in order, then
 *     the groups in order</td></tr>
 * <tr><td>columnSumPartial, columnSumVec (bf16, width a multiple of 8)</td><td>(ceil(m / 256), parts) x 256</td>
 *     <td>partial column sums of a bias gradient</td></tr>
 * <tr><td>swigluBackward</td><td>elementwise over n x h</td><td>{@code da += } (value first, gate second)</td></tr>
 * <tr><td>swigluBackwardVec (bf16)</td><td>elementwise over n x h / 8 (n x h when h is no multiple of 8)</td>
 *     <td>the same with dout and da in bf16 (rounded back as a conversion would), 8 columns a thread</td></tr>
 * <tr><td>crossEntropyRows</td><td>min(rows, 65536) x 512, one block per row</td>
 *     <td>a chunk of whole rows: online max / sum of exponentials / argmax / target logit per row, then
 *     {@code scale * (softmax - onehot)} as A</td></tr>
 * <tr><td>crossEntropyLoss_f32</td><td>1 x 1024</td><td>per-row losses summed in double into the loss, argmax</td></tr>
 * <tr><td>sumOfSquaresPartial_f32</td><td>min(ceil(count / 256), 1024) x 256</td>
 *     <td>per-block sums of g^2 in double</td></tr>
 * <tr><td>gradNormFinish_f32</td><td>1 x 32</td>
 *     <td>total, norm and clip factor into a {@link #GRAD_NORM_BYTES} record</td></tr>
 * <tr><td>adamw</td><td>elementwise over count</td><td>one parameter group's update, reading the clip factor</td></tr>
 * </table>
 *
 * <h2>Optimizer layout</h2>
 * Parameters, gradients and both moments are flat float32 arrays of one layout, the parameters that decay first and
 * those that do not after them; {@link #adamw} runs once per group (two launches a step) on the group's slice, with
 * that group's weight decay. The gradient norm covers the whole flat gradient ({@link #gradNorm}), or several arrays
 * ({@link #sumOfSquares} per array into consecutive partial slots, then {@link #gradNormFinish}); the result stays in
 * device memory, and adamw reads the clip factor from there.
 *
 * <p>An instance shares the {@link Kernels}' argument list: not thread-safe.
 */
public final class TrainKernels {
    /** A target that counts for nothing (as {@code CrossEntropyOps.IGNORE_INDEX}). */
    public static final int IGNORE_INDEX = -100;
    /** Bytes of the gradient-norm record: {@code double sumOfSquares; float norm; float scale}. */
    public static final int GRAD_NORM_BYTES = 16;
    /** Offset of {@code double sumOfSquares} in the gradient-norm record. */
    public static final int GRAD_NORM_SUM_OFFSET = 0;
    /** Offset of {@code float norm} in the gradient-norm record. */
    public static final int GRAD_NORM_NORM_OFFSET = 8;
    /** Offset of {@code float scale} (the clip factor, 1 when not clipped) in the gradient-norm record. */
    public static final int GRAD_NORM_SCALE_OFFSET = 12;
    /** The most partial sums one {@link #sumOfSquares} writes. */
    public static final int NORM_MAX_PARTIALS = 1024;

    private static final int RMS_MAX_BLOCKS = 1024;
    private static final int RMS_MIN_ROWS_PER_BLOCK = 8;
    /**
     * The most blocks of the bf16 RMSNorm backward, each leaving one partial weight gradient: four per SM of a
     * 132-SM GPU (as many as its registers hold at rows of up to 1024, where the kernel is held to 64 registers a
     * thread; it reads a row's x and dout again for dx rather than keeping them), enough warps in flight to keep the
     * memory busy while the second level has few parts to add. A constant, so that the summation order depends on n
     * alone.
     */
    static final int RMS_ROW_BLOCKS = 528;
    /** Rows per block of the bf16 RMSNorm kernels (a warp each), and the widest row they hold (16 float4 a lane). */
    private static final int RMS_ROW_WARPS = 8;
    private static final int RMS_ROW_MAX_WIDTH = 2048;
    /** Threads of columnPartsSum_f32: 32 columns x 32 groups of parts. */
    private static final int PARTS_THREADS = 1024;
    /** Column sums over rows: the most blocks (of 256 columns x a part of the rows) to aim at. */
    private static final int COLUMN_SUM_BLOCKS = 528;
    private static final int LOSS_THREADS = 1024;
    private static final int LOSS_ROW_THREADS = 512;
    private static final long STATS_BYTES_PER_ROW = 16;
    private static final long ALIGN = 256;

    private final Kernels k;
    private final Cublas blas;
    private final CublasLt lt;

    /**
     * Launches on the stream of {@code kernels}; {@code blas} and {@code lt} (null to make every product with
     * {@code blas}) must be bound to the same stream.
     */
    public TrainKernels(Kernels kernels, Cublas blas, CublasLt lt) {
        this.k = kernels;
        this.blas = blas;
        this.lt = lt;
    }

    // ------------------------------------------------------------------------------------------------ embedding

    /** {@code dtable[ids[i]] += dout[i]}: ids int {@code [n]}, dout F32 {@code [n, d]}, dtable F32; atomic adds. */
    public void embeddingBackwardAtomic(long ids, long dout, long dtable, int n, int d) {
        require(n >= 0 && d >= 0, "embeddingBackwardAtomic: n " + n + ", d " + d);
        if ((long) n * d == 0) {
            return;
        }
        k.args.reset().ptr(ids).ptr(dout).ptr(dtable).i32(n).i32(d);
        k.elementwise(k.function("embeddingBackwardAtomic_f32"), (long) n * d);
    }

    /**
     * Positions grouped by id for {@link #embeddingBackwardGrouped}, made on the host (where the ids are, so it can
     * be done while the GPU works): {@code layout = groups | starts[n + 1] | positions[n]} ({@code 2 n + 2} ints
     * whatever the number of groups), the positions of each distinct id in increasing order, the groups in
     * increasing id order; starts past the last group are {@code n}.
     */
    public record EmbeddingGroups(int[] layout, int groups) {
    }

    /**
     * Groups the positions of {@code ids} by id, as a sort of {@code (id, position)} keys would (and
     * {@code DenseOps.embeddingBackward} does): a counting sort over the {@code rows} ids, so a batch of tokens costs
     * {@code O(n + rows)}.
     *
     * @throws IllegalArgumentException naming the first id outside {@code [0, rows)}
     */
    public static EmbeddingGroups embeddingGroups(int[] ids, int rows) {
        int n = ids.length;
        int[] count = new int[rows + 1];
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= rows) {
                throw new IllegalArgumentException("ids[" + i + "] = " + ids[i] + " is outside the table [0, " + rows
                        + ")");
            }
            count[ids[i] + 1]++;
        }
        int[] layout = new int[2 * n + 2];
        int groups = 0;
        for (int id = 0; id < rows; id++) {
            if (count[id + 1] > 0) {
                layout[1 + groups++] = count[id];
            }
            count[id + 1] += count[id];  // now the start of the id's positions
        }
        for (int g = groups; g <= n; g++) {
            layout[1 + g] = n;
        }
        layout[0] = groups;
        for (int i = 0; i < n; i++) {
            layout[n + 2 + count[ids[i]]++] = i;  // positions in increasing order within each id
        }
        return new EmbeddingGroups(layout, groups);
    }

    /**
     * {@code dtable[ids[i]] += dout[i]}, deterministic: ids int {@code [n]}, groups the device copy of
     * {@link EmbeddingGroups#layout} of these ids, dout F32 {@code [n, d]}, dtable F32 of {@code rows} rows. The grid
     * does not depend on the number of groups (the kernel reads it), so a recorded launch serves any ids.
     */
    public void embeddingBackwardGrouped(long ids, long groups, int n, int rows, long dout, long dtable, int d) {
        require(n >= 0 && rows >= 0 && d >= 0, "embeddingBackwardGrouped: n " + n + ", rows " + rows + ", d " + d);
        if ((long) n * d * rows == 0) {
            return;
        }
        k.args.reset().ptr(ids).ptr(groups).i32(n).ptr(dout).ptr(dtable).i32(d);
        k.launch(k.function("embeddingBackwardGrouped_f32"), (int) Math.min(Math.min(n, rows),
                Kernels.MAX_ELEMENTWISE_BLOCKS), 1, 1, Kernels.THREADS, 0);
    }

    // ------------------------------------------------------------------------------------------------ RMSNorm

    /**
     * {@link Kernels#rmsNorm} that also writes {@code rstd} (F32 {@code [n]}) for {@link #rmsNormBackward}; rstd 0
     * writes none (the inference op). In bf16 with {@link #rmsNormByRows} the row kernel (a warp per row).
     */
    public void rmsNormRstd(Precision p, long x, long weight, long out, long rstd, int n, int d, float eps) {
        require(n >= 0 && d >= 0, "rmsNormRstd: n " + n + ", d " + d);
        if ((long) n * d == 0) {
            return;
        }
        if (rmsNormByRows(p, d, x, weight, out)) {
            k.args.reset().ptr(x).ptr(weight).ptr(out).ptr(rstd).i32(n).i32(d).f32(eps);
            k.launch(k.function("rmsNormRows" + rowQuads(d), p), rowBlocks(n), 1, 1, Kernels.THREADS, 0);
        } else if (rstd == 0) {
            k.rmsNorm(p, x, weight, out, n, d, eps);
        } else {
            k.args.reset().ptr(x).ptr(weight).ptr(out).ptr(rstd).i32(n).i32(d).f32(eps);
            k.launch(k.function("rmsNormRstd", p), (int) Math.min(n, Kernels.MAX_ELEMENTWISE_BLOCKS), 1, 1,
                    Kernels.THREADS, 0);
        }
    }

    /**
     * {@code x += branch} (x F32, the residual; branch bf16) then {@code out = rmsNorm(x)} without rstd, by rows in one
     * pass ({@code addRmsNormRowsQ}): the results of {@link Kernels#addInto} and {@link #rmsNormRstd} bit for bit.
     * Where {@link #rmsNormByRows} holds for d and every pointer.
     */
    public void addRmsNormRows(Precision p, long x, long branch, long weight, long out, int n, int d, float eps) {
        require(n >= 0 && d >= 0, "addRmsNormRows: n " + n + ", d " + d);
        require(rmsNormByRows(p, d, x, branch, weight, out), "addRmsNormRows: bf16, d a multiple of 4 up to "
                + RMS_ROW_MAX_WIDTH + " and 16-byte aligned pointers, got " + p + ", d " + d);
        if ((long) n * d == 0) {
            return;
        }
        k.args.reset().ptr(x).ptr(branch).ptr(weight).ptr(out).i32(n).i32(d).f32(eps);
        k.launch(k.function("addRmsNormRows" + rowQuads(d), p), rowBlocks(n), 1, 1, Kernels.THREADS, 0);
    }

    /**
     * Whether the bf16 row kernels of RMSNorm apply: bf16, d a multiple of 4 up to {@value #RMS_ROW_MAX_WIDTH}, the
     * pointers 16-byte aligned. They sum in another order than the scalar kernels (float32 keeps those); only they
     * read dout as bf16 and write a bf16 copy of dx ({@link #rmsNormBackward}).
     */
    public static boolean rmsNormByRows(Precision p, int d, long... pointers) {
        return p == Precision.BF16 && d > 0 && d % 4 == 0 && d <= RMS_ROW_MAX_WIDTH && Kernels.aligned(pointers);
    }

    /** Float4 per lane the row kernels are built for: 8 (d up to 1024) or 16. */
    private static int rowQuads(int d) {
        return d <= 1024 ? 8 : 16;
    }

    private static int rowBlocks(int n) {
        return (int) Math.min((n + RMS_ROW_WARPS - 1) / RMS_ROW_WARPS, Kernels.MAX_ELEMENTWISE_BLOCKS);
    }

    /** Rows per block of the bf16 RMSNorm backward: a warp per row, at most {@value #RMS_ROW_BLOCKS} blocks. */
    static int rmsNormRowsPerRowBlock(int n) {
        int blocks = Math.max(1, Math.min(RMS_ROW_BLOCKS, (n + RMS_ROW_WARPS - 1) / RMS_ROW_WARPS));
        return (n + blocks - 1) / blocks;
    }

    /** Rows per block of {@link #rmsNormBackward}: at least 8, and at most {@value #RMS_MAX_BLOCKS} blocks. */
    public static int rmsNormRowsPerBlock(int n) {
        return Math.max(RMS_MIN_ROWS_PER_BLOCK, (n + RMS_MAX_BLOCKS - 1) / RMS_MAX_BLOCKS);
    }

    /**
     * Bytes of the {@code partial} scratch {@link #rmsNormBackward} needs: {@code [blocks, d]} float32 (the scalar
     * kernel's blocks, never fewer than the row kernel's).
     */
    public static long rmsNormBackwardScratchBytes(int n, int d) {
        int r = rmsNormRowsPerBlock(n);
        return 4L * ((n + r - 1) / r) * d;
    }

    /**
     * Backward of {@link #rmsNormRstd} ({@code DenseOps.rmsNormBackward}): x F32 {@code [n, d]}, weight W, rstd F32
     * {@code [n]}, dout F32 {@code [n, d]}; {@code dx += } (F32 {@code [n, d]}, 0 to skip), {@code dw += } (F32
     * {@code [d]}); partial: {@link #rmsNormBackwardScratchBytes} of scratch.
     */
    public void rmsNormBackward(Precision p, long x, long weight, long rstd, long dout, long dx, long dw, long partial,
                                int n, int d) {
        rmsNormBackward(p, x, weight, rstd, dout, Precision.F32, dx, 0, dw, partial, n, d);
    }

    /**
     * {@link #rmsNormBackward} with dout of type {@code doutType} (F32, or A where {@link #rmsNormByRows}), and, where
     * dxCopy is not 0 (with dx; {@link #rmsNormByRows} only), the new dx also written rounded to A into dxCopy
     * ({@code [n, d]}): the operand of the product that reads dx next, without a conversion pass. In bf16 with
     * {@link #rmsNormByRows} the row kernel and columnPartsSum_f32 (whatever doutType), else the scalar kernels.
     */
    public void rmsNormBackward(Precision p, long x, long weight, long rstd, long dout, Precision doutType, long dx,
                                long dxCopy, long dw, long partial, int n, int d) {
        require(n >= 0 && d >= 0, "rmsNormBackward: n " + n + ", d " + d);
        boolean rows = rmsNormByRows(p, d, x, weight, dout, dx, dxCopy, partial);
        require(rows || (doutType == Precision.F32 && dxCopy == 0), "rmsNormBackward: dout in "
                + doutType.suffix() + (dxCopy == 0 ? "" : " and a copy of dx") + " need bf16, d a multiple of 4 up to "
                + RMS_ROW_MAX_WIDTH + " (d is " + d + ") and 16-byte aligned pointers");
        require(dxCopy == 0 || dx != 0, "rmsNormBackward: a copy of dx without dx");
        if ((long) n * d == 0) {
            return;
        }
        if (rows) {
            int perBlock = rmsNormRowsPerRowBlock(n);
            int blocks = (n + perBlock - 1) / perBlock;
            String name = "rmsNormBackwardRows" + (doutType == Precision.F32 ? "F" : "") + rowQuads(d);
            k.args.reset().ptr(x).ptr(weight).ptr(rstd).ptr(dout).ptr(dx).ptr(dxCopy).ptr(partial).i32(n).i32(d)
                    .i32(perBlock);
            k.launch(k.function(name, p), blocks, 1, 1, Kernels.THREADS, 0);
            columnPartsSum(k, partial, dw, blocks, d);
            return;
        }
        int rowsPerBlock = rmsNormRowsPerBlock(n);
        int blocks = (n + rowsPerBlock - 1) / rowsPerBlock;
        k.args.reset().ptr(x).ptr(weight).ptr(rstd).ptr(dout).ptr(dx).ptr(partial).i32(n).i32(d).i32(rowsPerBlock);
        k.launch(k.function("rmsNormBackward", p), blocks, 1, 1, Kernels.THREADS, 0);
        k.args.reset().ptr(partial).ptr(dw).i32(blocks).i32(d);
        k.elementwise(k.function("rmsNormWeightGrad_f32"), d);
    }

    /**
     * {@code out[j] += sum_p partial[p * cols + j]} over {@code parts} rows of float32 partial sums (the second level
     * of the bf16 kernels' column sums): per column 32 groups of parts, each summed in order, then the groups in
     * order. Deterministic; a different order from rmsNormWeightGrad_f32's, which the f32 precision keeps.
     */
    static void columnPartsSum(Kernels k, long partial, long out, int parts, long cols) {
        k.args.reset().ptr(partial).ptr(out).i32(parts).i64(cols);
        k.launch(k.function("columnPartsSum_f32"), (int) ((cols + 31) / 32), 1, 1, PARTS_THREADS, 0);
    }

    /** Rows one part of {@link #columnSum} sums: enough parts to fill the GPU, at least 64 rows each. */
    static int columnSumRowsPerPart(int n) {
        return Math.max(64, (n + 127) / 128);
    }

    /**
     * Rows per part of the bf16 column sum of {@code n x m}: about {@value #COLUMN_SUM_BLOCKS} blocks of 256 columns
     * in all, never more parts than {@link #columnSumRowsPerPart} makes (so the same scratch holds them).
     */
    static int columnSumVecRowsPerPart(int n, int m) {
        int most = (n + columnSumRowsPerPart(n) - 1) / columnSumRowsPerPart(n);
        int tiles = (m + 255) / 256;
        int parts = Math.max(1, Math.min(most, COLUMN_SUM_BLOCKS / tiles));
        return (n + parts - 1) / parts;
    }

    /** Bytes of scratch {@link #columnSum} needs for {@code n x m}. */
    public static long columnSumScratchBytes(int n, int m) {
        int rows = columnSumRowsPerPart(n);
        return 4L * ((n + rows - 1) / rows) * m;
    }

    /**
     * {@code out += colsum(x)}: x A {@code [n, m]}, out F32 {@code [m]} (a bias gradient), in two launches (parts of
     * rows, then the parts in order), deterministic; partial: {@link #columnSumScratchBytes} of scratch. In bf16 with
     * m a multiple of 8 and aligned pointers, columnSumVec and columnPartsSum_f32.
     */
    public void columnSum(Precision p, long x, long out, long partial, int n, int m) {
        require(n >= 0 && m >= 0, "columnSum: n " + n + ", m " + m);
        if ((long) n * m == 0) {
            return;
        }
        if (Kernels.vectorRows(p, m, x, partial)) {
            int rows = columnSumVecRowsPerPart(n, m);
            int parts = (n + rows - 1) / rows;
            k.args.reset().ptr(x).ptr(partial).i32(n).i32(m).i32(rows);
            k.launch(k.function("columnSumVec", p), (m + 255) / 256, parts, 1, Kernels.THREADS, 0);
            columnPartsSum(k, partial, out, parts, m);
            return;
        }
        int rows = columnSumRowsPerPart(n);
        int parts = (n + rows - 1) / rows;
        k.args.reset().ptr(x).ptr(partial).i32(n).i32(m).i32(rows);
        k.launch(k.function("columnSumPartial", p), (m + Kernels.THREADS - 1) / Kernels.THREADS, parts, 1,
                Kernels.THREADS, 0);
        k.args.reset().ptr(partial).ptr(out).i32(parts).i32(m);
        k.elementwise(k.function("rmsNormWeightGrad_f32"), m);
    }

    // ------------------------------------------------------------------------------------------------ SwiGLU

    /**
     * Backward of {@link Kernels#swiglu} ({@code DenseOps.swigluBackward}): a A {@code [n, 2h]} (value | gate), dout
     * F32 {@code [n, h]}, {@code da += } F32 {@code [n, 2h]}.
     */
    public void swigluBackward(Precision p, long a, long dout, long da, int n, int h) {
        require(n >= 0 && h >= 0, "swigluBackward: n " + n + ", h " + h);
        if ((long) n * h == 0) {
            return;
        }
        k.args.reset().ptr(a).ptr(dout).ptr(da).i32(n).i32(h);
        k.elementwise(k.function("swigluBackward", p), (long) n * h);
    }

    /**
     * {@link #swigluBackward} with dout ({@code [n, h]}) and {@code da += } ({@code [n, 2h]}) of type A, bf16 only: the
     * training pass's buffers read and rounded back directly, which gives what converting them to float32, the
     * float32 kernel and converting back give. 8 columns a thread where h is a multiple of 8 and the pointers are
     * 16-byte aligned, one otherwise.
     */
    public void swigluBackwardInA(Precision p, long a, long dout, long da, int n, int h, boolean overwrite) {
        require(p == Precision.BF16, "swigluBackwardInA: bf16 only, not " + p.suffix());
        require(n >= 0 && h >= 0, "swigluBackwardInA: n " + n + ", h " + h);
        if ((long) n * h == 0) {
            return;
        }
        boolean vector = Kernels.vectorRows(p, h, a, dout, da);
        k.args.reset().ptr(a).ptr(dout).ptr(da).i32(n).i32(h).i32((vector ? 1 : 0) | (overwrite ? 2 : 0));
        if (vector) {
            k.vectorwise(k.function("swigluBackwardVec", p), (long) n * h);
        } else {
            k.elementwise(k.function("swigluBackwardVec", p), (long) n * h);
        }
    }

    // ------------------------------------------------------------------------------------------------ loss

    private static long align(long bytes) {
        return (bytes + ALIGN - 1) / ALIGN * ALIGN;
    }

    /**
     * Bytes of scratch {@link #crossEntropy} needs for {@code n} rows, chunks of {@code chunk} rows and
     * {@code vocab} logits a row: 16 per row of state, a float32 {@code [chunk, vocab]} of logits, and in bf16 a
     * {@code [chunk, vocab]} of gradients, their rows {@link #logitsStride} apart.
     */
    public static long crossEntropyScratchBytes(Precision p, int n, int chunk, int vocab) {
        long cells = (long) Math.min(n, chunk) * logitsStride(vocab);
        long bytes = align(STATS_BYTES_PER_ROW * n) + align(4 * cells);
        return p == Precision.F32 ? bytes : bytes + align((long) p.bytes() * cells);
    }

    // ------------------------------------------------------------------------------------------------ fused loss

    /** Rows of x or of the head a block of the tensor-core loss takes (CEM_TILE of train_loss_mma.cuh). */
    private static final int CEM_TILE = 64;
    /** Blocks the tensor-core loss's kernels aim for (about four a multiprocessor of an H200), by splits. */
    private static final int CEM_BLOCKS = 528;
    private static final int CEM_THREADS = 128;

    /**
     * Whether {@link #crossEntropyMma} takes a loss: bf16, d a multiple of 16 up to 128 (the MQAR models' widths),
     * at most {@value #CEM_MAX_VOCAB} logits a row.
     */
    public static boolean crossEntropyMmaFits(Precision p, int d, int vocab) {
        return p == Precision.BF16 && d % 16 == 0 && d >= 16 && d <= 128 && vocab >= 1 && vocab <= CEM_MAX_VOCAB;
    }

    /** Largest vocabulary the tensor-core loss takes (its partial head gradients are {@code splits vocab d}). */
    static final int CEM_MAX_VOCAB = 1 << 16;

    /** Splits of the vocabulary for the rows kernel of {@code n} rows: enough blocks, at most one tile each. */
    static int crossEntropyMmaRowSplits(int n, int vocab) {
        int blocks = (n + CEM_TILE - 1) / CEM_TILE;
        int tiles = (vocab + CEM_TILE - 1) / CEM_TILE;
        return Math.max(1, Math.min(tiles, CEM_BLOCKS / Math.max(1, blocks)));
    }

    /** Splits of the rows for the head kernel: enough blocks, at most one tile of rows each. */
    static int crossEntropyMmaHeadSplits(int n, int vocab) {
        int blocks = (vocab + CEM_TILE - 1) / CEM_TILE;
        int tiles = (n + CEM_TILE - 1) / CEM_TILE;
        return Math.max(1, Math.min(tiles, CEM_BLOCKS / Math.max(1, blocks)));
    }

    /**
     * Quads of logits a thread of the rows kernel that holds its row in registers takes (crossEntropyRowsHeld*, 512
     * threads): the fewest of 1, 2, 4 and 8 that cover the vocabulary; 0 above 16,384 logits a row, which the kernel
     * that reads its row twice takes (crossEntropyRows). The held kernel makes one exponential a logit, the other
     * two or more (its online softmax rescales at each new maximum, then the gradient's pass makes them again).
     */
    static int heldQuads(int vocab) {
        for (int q = 1; q <= 8; q *= 2) {
            if (vocab <= 4 * LOSS_ROW_THREADS * q) {
                return q;
            }
        }
        return 0;
    }

    /**
     * Bytes of scratch {@link #crossEntropyMma} needs: 16 a row of state, 4 of base-2 log-sum-exp, the rows kernel's
     * partial states and outputs ({@code splits n (16 + 4 d)}) and the head kernel's partial gradients
     * ({@code splits vocab d} floats), each part 256-byte aligned.
     */
    public static long crossEntropyMmaScratchBytes(int n, int d, int vocab) {
        long rs = crossEntropyMmaRowSplits(n, vocab);
        long hs = crossEntropyMmaHeadSplits(n, vocab);
        return align(STATS_BYTES_PER_ROW * n) + align(4L * n) + align(16 * rs * n) + align(4 * rs * n * d)
                + align(4 * hs * vocab * d);
    }

    /**
     * {@link #crossEntropy} with a gradient, on the tensor cores without logits in memory (train_loss_mma.cuh): the
     * same loss added to {@code lossSum}, {@code dx} (float32 {@code [n, d]}) written (not added to) with
     * {@code scale} times its gradient, {@code scale} times the head's gradient added to {@code dhead} (float32
     * {@code [vocab, d]}). Requires {@link #crossEntropyMmaFits}, x and head 16-byte aligned, and
     * {@link #crossEntropyMmaScratchBytes} of scratch. Four products of {@code 2 n vocab d} FLOPs (the logits made
     * twice), nothing of {@code n x vocab} stored. In bf16 the products with the softmax read it rounded to bf16, as
     * {@link #crossEntropy} reads its gradient; its sum over the vocabulary is of the rounded values where it divides
     * the softmax-weighted head rows (so that the weights sum to one) and of the exact ones in the loss.
     */
    public void crossEntropyMma(long x, long head, int n, int d, int vocab, long targets, float scale, long dx,
                                long dhead, long lossSum, long scratch) {
        require(crossEntropyMmaFits(Precision.BF16, d, vocab), "crossEntropyMma: d " + d + ", vocab " + vocab
                + " (d a multiple of 16 from 16 to 128, vocab 1 to " + CEM_MAX_VOCAB + ")");
        require(n >= 0 && dx != 0 && dhead != 0, "crossEntropyMma: n " + n + " and both gradients needed");
        require(Float.isFinite(scale), "crossEntropyMma: scale " + scale + " is not finite");
        if (n == 0) {
            return;
        }
        int rs = crossEntropyMmaRowSplits(n, vocab);
        int hs = crossEntropyMmaHeadSplits(n, vocab);
        long stats = scratch;
        long lse2 = stats + align(STATS_BYTES_PER_ROW * n);
        long part = lse2 + align(4L * n);
        long partO = part + align(16L * rs * n);
        long partW = partO + align(4L * rs * n * d);
        int dhp = d <= 64 ? 64 : 128;
        int shared = (3 * CEM_TILE * (dhp + 8) * 2) + 2 * CEM_TILE * 8;

        long rows = k.function("crossEntropyMmaRows" + dhp + "_bf16");
        k.optIn(rows, shared);
        k.args.reset().ptr(x).ptr(head).ptr(targets).i32(n).i32(d).i32(vocab).ptr(part).ptr(partO);
        k.launch(rows, (n + CEM_TILE - 1) / CEM_TILE, rs, 1, CEM_THREADS, shared);

        k.args.reset().ptr(part).ptr(partO).ptr(head).ptr(targets).i32(n).i32(d).i32(rs).f32(scale).ptr(stats)
                .ptr(lse2).ptr(dx);
        k.launch(k.function("crossEntropyMmaMerge_bf16"), (int) Math.min((n + 7) / 8, Kernels.MAX_ELEMENTWISE_BLOCKS),
                1, 1, 256, 0);

        long headFn = k.function("crossEntropyMmaHead" + dhp + "_bf16");
        k.optIn(headFn, shared);
        k.args.reset().ptr(x).ptr(head).ptr(targets).ptr(lse2).i32(n).i32(d).i32(vocab).f32(scale).ptr(partW);
        k.launch(headFn, (vocab + CEM_TILE - 1) / CEM_TILE, hs, 1, CEM_THREADS, shared);

        long count = (long) vocab * d;
        k.args.reset().ptr(partW).ptr(dhead).i64(count).i32(hs);
        k.launch(k.function("crossEntropyMmaHeadSum_bf16"),
                (int) Math.min((count + 255) / 256, Kernels.MAX_ELEMENTWISE_BLOCKS), 1, 1, 256, 0);

        k.args.reset().ptr(targets).ptr(stats).ptr(0).ptr(lossSum).i32(n).i32(vocab);
        k.launch(k.function("crossEntropyLoss_f32"), 1, 1, 1, LOSS_THREADS, 0);
    }

    /**
     * The row stride of the loss's logits and gradients: vocab rounded up to a multiple of 8, so that every row
     * starts 16-byte aligned (the products' fast kernels need it: an odd stride, such as GPT-2's 50257, leaves
     * cuBLAS only its unaligned ones).
     */
    static int logitsStride(int vocab) {
        return (vocab + 7) / 8 * 8;
    }

    /**
     * The tied head fused with softmax cross-entropy, {@code CrossEntropyOps.forwardBackward} on the GPU: x A
     * {@code [n, d]} (final-normed), head W {@code [vocabPadded, d]} of which the first {@code vocab} rows are the
     * logits' (padded rows are neither read nor written), targets int {@code [n]} ({@link #IGNORE_INDEX} ignores a
     * row). Adds the sum over counted rows of {@code logsumexp(z_i) - z_i[t_i]} to {@code lossSum} (one double on the
     * device: micro-batches accumulate; zero it when a step starts), writes argmax int {@code [n]} (lowest index of
     * the largest logit, -1 for ignored rows; 0 to skip), and adds {@code scale} times the gradient to dx F32
     * {@code [n, d]} and dhead F32 {@code [vocabPadded, d]} (either 0 to skip; both 0 for the loss alone).
     *
     * <p>The logits of all rows never exist at once: the rows are walked in chunks of {@code chunk} rows (the last
     * one shorter), each chunk's {@code [rows, vocab]} float32 logits (rows {@link #logitsStride} apart) made by one
     * cuBLAS product into the scratch (two where the vocabulary is no multiple of 8: the multiple of 8, then the rest)
     * ({@link #crossEntropyScratchBytes}). crossEntropyRows reads each row once into its max, sum of exponentials,
     * argmax and target logit (an online softmax), and, for a gradient, writes {@code scale * (softmax - onehot)}
     * in A; then {@code g @ head} is added to the chunk's rows of dx and {@code g^T @ x_chunk} to dhead: three
     * products per chunk with a gradient (one without), of {@code 2 rows vocab d} FLOPs each, and the logits made
     * once. Ignored rows take part in the products (with zero gradients); a target outside {@code [0, vocab)} that
     * is not ignored gives a NaN loss (the caller checks targets on the host, where they are). In bf16 the gradient
     * products read the softmax gradient rounded to bf16.
     */
    public void crossEntropy(Precision p, long x, long head, int n, int d, int vocab, long targets, float scale,
                             long dx, long dhead, long argmax, long lossSum, long scratch, int chunk) {
        crossEntropy(p, x, head, n, d, vocab, targets, scale, dx, dhead, argmax, lossSum, scratch, chunk, false);
    }

    /**
     * Bytes of scratch of {@link #crossEntropy} with the logits in bf16 ({@code bf16Logits}): 16 per row of state and
     * a bf16 {@code [chunk, vocab]} of logits that the gradient is written over.
     */
    public static long crossEntropyBf16ScratchBytes(int n, int chunk, int vocab) {
        long cells = (long) Math.min(n, chunk) * logitsStride(vocab);
        return align(STATS_BYTES_PER_ROW * n) + align(2 * cells);
    }

    /**
     * {@link #crossEntropy}; with {@code bf16Logits} (bf16 only) the logits product leaves its float32 sums rounded
     * to bf16, as the reference's mixed precision does (its head's product under bf16 autocast, the loss taking those
     * logits to float32), and the gradient is written over them in bf16: half the bytes of float32 logits and a bf16
     * gradient beside them ({@link #crossEntropyBf16ScratchBytes}), where the loss of a narrow model is bound by those
     * bytes, not by its products.
     */
    public void crossEntropy(Precision p, long x, long head, int n, int d, int vocab, long targets, float scale,
                             long dx, long dhead, long argmax, long lossSum, long scratch, int chunk,
                             boolean bf16Logits) {
        require(!bf16Logits || p == Precision.BF16, "crossEntropy: bf16 logits in a bf16 pass only");
        require(n >= 0 && d >= 1 && vocab >= 1, "crossEntropy: n " + n + ", d " + d + ", vocab " + vocab
                + ": need n >= 0 and positive d and vocab");
        require(chunk >= 1, "crossEntropy: chunk " + chunk + " must be positive");
        require(Float.isFinite(scale), "crossEntropy: scale " + scale + " is not finite");
        if (n == 0) {
            return;
        }
        int type = cublasType(p);
        long stats = scratch;
        long logits = scratch + align(STATS_BYTES_PER_ROW * n);
        boolean gradient = dx != 0 || dhead != 0;
        int ld = logitsStride(vocab);
        long grad = !gradient ? 0 : p == Precision.F32 || bf16Logits ? logits
                : logits + align(4L * Math.min(n, chunk) * ld);
        int logitsType = bf16Logits ? Cublas.R_16BF : Cublas.R_32F;
        long logitBytes = bf16Logits ? 2 : 4;
        long xRow = (long) d * p.bytes();
        for (int r0 = 0; r0 < n; r0 += chunk) {
            int rows = Math.min(chunk, n - r0);
            long xc = x + r0 * xRow;
            // logits [rows, vocab] = x_c @ head[0 .. vocab)^T; column-major: head x_c^T
            // the vocabulary in two parts, a multiple of 8 and the rest: a product whose m (here) or k (dx's) is
            // no multiple of 8 gets only cuBLAS's unaligned kernels, at a third of the speed
            int v8 = vocab / 8 * 8;
            int rest = vocab - v8;
            long headRest = head + (long) v8 * d * p.bytes();
            if (v8 > 0) {
                product(Cublas.OP_T, Cublas.OP_N, v8, rows, d, head, type, d, xc, type, d, 0f, logits, logitsType, ld);
            }
            if (rest > 0) {
                product(Cublas.OP_T, Cublas.OP_N, rest, rows, d, headRest, type, d, xc, type, d, 0f,
                        logits + logitBytes * v8, logitsType, ld);
            }
            int quads = heldQuads(vocab);
            int blocks = (int) Math.min(rows, Kernels.MAX_ELEMENTWISE_BLOCKS);
            String held = quads == 0 ? null : "crossEntropyRowsHeld" + (bf16Logits ? "InPlace" : "") + quads;
            if (bf16Logits) {
                k.args.reset().ptr(logits).ptr(targets + 4L * r0).ptr(stats + STATS_BYTES_PER_ROW * r0).i32(rows)
                        .i32(vocab).i32(ld).f32(scale);
                k.launch(k.function(held != null ? held : "crossEntropyRowsInPlace", Precision.BF16), blocks, 1, 1,
                        LOSS_ROW_THREADS, 0);
            } else {
                k.args.reset().ptr(logits).ptr(targets + 4L * r0).ptr(stats + STATS_BYTES_PER_ROW * r0).ptr(grad)
                        .i32(rows).i32(vocab).i32(ld).f32(scale);
                k.launch(k.function(held != null ? held : "crossEntropyRows", p), blocks, 1, 1, LOSS_ROW_THREADS, 0);
            }
            if (dx != 0) {
                // dx_c [rows, d] += g [rows, vocab] @ head [vocab, d]; column-major: dx_c^T = head^T g^T
                if (v8 > 0) {
                    product(Cublas.OP_N, Cublas.OP_N, d, rows, v8, head, type, d, grad, type, ld, 1f,
                            dx + 4L * r0 * d, d);
                }
                if (rest > 0) {
                    product(Cublas.OP_N, Cublas.OP_N, d, rows, rest, headRest, type, d,
                            grad + (long) v8 * p.bytes(), type, ld, 1f, dx + 4L * r0 * d, d);
                }
            }
            if (dhead != 0) {
                // dhead [vocab, d] += g^T [vocab, rows] @ x_c [rows, d]; column-major: dhead^T = x_c^T g
                if (v8 > 0) {
                    product(Cublas.OP_N, Cublas.OP_T, d, v8, rows, xc, type, d, grad, type, ld, 1f, dhead, d);
                }
                if (rest > 0) {
                    product(Cublas.OP_N, Cublas.OP_T, d, rest, rows, xc, type, d, grad + (long) v8 * p.bytes(), type,
                            ld, 1f, dhead + 4L * v8 * d, d);
                }
            }
        }
        k.args.reset().ptr(targets).ptr(stats).ptr(argmax).ptr(lossSum).i32(n).i32(vocab);
        k.launch(k.function("crossEntropyLoss_f32"), 1, 1, 1, LOSS_THREADS, 0);
    }

    /**
     * {@code C = op(A) op(B) + beta C} into a float32 C, float32 accumulation: through cuBLASLt where given and it
     * has an algorithm (its heuristic picks the Hopper kernels for the loss's shapes, where cublasGemmEx's may not),
     * else cublasGemmEx.
     */
    private void product(int transA, int transB, int m, int n, int kk, long A, int aType, int lda, long B, int bType,
                         int ldb, float beta, long C, int ldc) {
        product(transA, transB, m, n, kk, A, aType, lda, B, bType, ldb, beta, C, Cublas.R_32F, ldc);
    }

    /** A float32-accumulated product whose output C is of type cType (float32, or bf16 rounded once). */
    private void product(int transA, int transB, int m, int n, int kk, long A, int aType, int lda, long B, int bType,
                         int ldb, float beta, long C, int cType, int ldc) {
        if (lt != null && m > 0 && n > 0 && kk > 0 && lt.matmul(transA, transB, m, n, kk, 1f, A, aType, lda, B,
                bType, ldb, beta, C, cType, ldc, Cublas.COMPUTE_32F, CublasLt.EPILOGUE_DEFAULT, 0)) {
            return;
        }
        blas.gemm(transA, transB, m, n, kk, 1f, A, aType, lda, B, bType, ldb, beta, C, cType, ldc,
                Cublas.COMPUTE_32F);
    }

    private static int cublasType(Precision p) {
        return p == Precision.F32 ? Cublas.R_32F : Cublas.R_16BF;
    }

    // ------------------------------------------------------------------------------------------------ optimizer

    /** Partial sums {@link #sumOfSquares} writes for {@code count} elements (at most {@value #NORM_MAX_PARTIALS}). */
    public static int normPartials(long count) {
        return (int) Math.min((count + Kernels.THREADS - 1) / Kernels.THREADS, NORM_MAX_PARTIALS);
    }

    /**
     * Part 1 of the gradient norm: the sums of squares of g F32 ({@code count} elements) in double, into
     * {@link #normPartials}{@code (count)} consecutive doubles at {@code partial}. Returns how many it wrote.
     */
    public int sumOfSquares(long g, long count, long partial) {
        require(count >= 0, "sumOfSquares: count " + count);
        int blocks = normPartials(count);
        if (blocks == 0) {
            return 0;
        }
        k.args.reset().ptr(g).i64(count).ptr(partial);
        k.launch(k.function("sumOfSquaresPartial_f32"), blocks, 1, 1, Kernels.THREADS, 0);
        return blocks;
    }

    /**
     * Part 2: out (a {@link #GRAD_NORM_BYTES} record on the device) = the sum of {@code parts} doubles at
     * {@code partial} in order, its square root, and the clip factor {@code clip / (norm + 1e-6)} when
     * {@code 0 < clip < norm}, else 1 (AdamW.update's rule; clip 0 never clips).
     */
    public void gradNormFinish(long partial, int parts, double clip, long out) {
        require(parts >= 0, "gradNormFinish: parts " + parts);
        require(clip >= 0, "gradNormFinish: clip " + clip + " is negative");
        k.args.reset().ptr(partial).i32(parts).i64(Double.doubleToRawLongBits(clip)).ptr(out);
        k.launch(k.function("gradNormFinish_f32"), 1, 1, 1, 32, 0);
    }

    /** {@link #sumOfSquares} of one flat gradient, then {@link #gradNormFinish}: two launches. */
    public void gradNorm(long g, long count, long partial, double clip, long out) {
        gradNormFinish(partial, sumOfSquares(g, count, partial), clip, out);
    }

    /**
     * One AdamW update of a parameter group (CpuTrainBackend.adamw after AdamW.update's clipping), all F32 over
     * {@code count} elements: with {@code g = grad * scale} (scale the clip factor of the record at
     * {@code gradNorm}, or 1 when gradNorm is 0): {@code m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
     * p = p (1 - lr wd) - lr (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)}, the constants computed here in
     * double and rounded to float. grad is left as it is. When the record's norm is not finite the kernel changes
     * nothing (read the norm and refuse the step as the CPU trainer does). compute, if not 0, receives the new
     * parameters rounded to A ({@code count} values: the weights the next forward computes with).
     */
    public void adamw(Precision p, long param, long grad, long m, long v, long compute, long count, double lr,
                      double beta1, double beta2, double eps, double weightDecay, long step, long gradNorm) {
        require(count >= 0, "adamw: count " + count);
        require(step >= 1, "adamw: step " + step + " (steps count from 1)");
        if (count == 0) {
            return;
        }
        float c1 = (float) (1 - Math.pow(beta1, step));
        float c2 = (float) (1 - Math.pow(beta2, step));
        k.args.reset().ptr(param).ptr(grad).ptr(m).ptr(v).ptr(compute).i64(count).f32((float) lr).f32((float) beta1)
                .f32((float) (1 - beta1)).f32((float) beta2).f32((float) (1 - beta2)).f32((float) eps)
                .f32((float) (1 - lr * weightDecay)).f32(c1).f32(c2).ptr(gradNorm);
        k.elementwise(k.function("adamw", p), count);
    }

    // ------------------------------------------------------------------------------------- multi-tensor optimizer

    /** Values per chunk of the multi-tensor step: each block takes whole chunks. */
    public static final int OPTIMIZER_CHUNK = 1 << 12;
    /** Bytes of one chunk of the table ({@code AdamWChunk}: p, g, m, v, compute, count, weight decay, reserved). */
    public static final int CHUNK_BYTES = 64;
    /** Bytes of the step record ({@code StepNorm}: the {@link #GRAD_NORM_BYTES} record, the update, the failed one). */
    public static final int STEP_NORM_BYTES = 32;
    /** Offset of the update number (long) in the step record. */
    public static final int STEP_NORM_UPDATE_OFFSET = 16;
    /** Offset of the first update whose norm was not finite (long, 0: none) in the step record. */
    public static final int STEP_NORM_FAILED_OFFSET = 24;
    /** The most blocks a chunk kernel launches (each then takes every gridDim-th chunk). */
    private static final int CHUNK_GRID = 1 << 16;

    /** Sums of squares of every chunk's gradient in double, into {@code chunks} doubles at {@code partial}. */
    public void sumOfSquaresChunks(long table, int chunks, long partial) {
        require(chunks > 0, "sumOfSquaresChunks: " + chunks + " chunks");
        k.args.reset().ptr(table).i32(chunks).ptr(partial);
        k.launch(k.function("sumOfSquaresChunks_f32"), Math.min(chunks, CHUNK_GRID), 1, 1, Kernels.THREADS, 0);
    }

    /**
     * The step record at {@code record} from {@code chunks} partial sums: the norm, the clip factor (as
     * {@link #gradNormFinish}), the update number, and the first update whose norm is not finite (kept).
     */
    public void gradNormFinishChunks(long partial, int chunks, double clip, long update, long live, long record) {
        require(chunks > 0, "gradNormFinishChunks: " + chunks + " chunks");
        require(clip >= 0, "gradNormFinishChunks: clip " + clip + " is negative");
        k.args.reset().ptr(partial).i32(chunks).i64(Double.doubleToRawLongBits(clip)).i64(update).ptr(live)
                .ptr(record);
        k.launch(k.function("gradNormFinishChunks_f32"), 1, 1, 1, 1024, 0);
    }

    /**
     * {@link #adamw} over every chunk of the table with the clip factor of the step record, each chunk with its own
     * weight decay; changes nothing when the record marks a failed update. With {@code live} (not 0: the device
     * copy of {@link #packStepScalars}, as a recorded step reads it) the rate and the bias corrections come from
     * there, not from {@code lr} and {@code step}.
     */
    public void adamwChunks(Precision p, long table, int chunks, double lr, double beta1, double beta2, double eps,
                            long step, long record, long live) {
        require(chunks > 0, "adamwChunks: " + chunks + " chunks");
        require(step >= 1, "adamwChunks: step " + step + " (steps count from 1)");
        float c1 = biasCorrection(beta1, step);
        float c2 = biasCorrection(beta2, step);
        k.args.reset().ptr(table).i32(chunks).f32((float) lr).f32((float) beta1).f32((float) (1 - beta1))
                .f32((float) beta2).f32((float) (1 - beta2)).f32((float) eps).i64(Double.doubleToRawLongBits(lr))
                .f32(c1).f32(c2).ptr(record).ptr(live);
        k.launch(k.function("adamwChunks", p), Math.min(chunks, CHUNK_GRID), 1, 1, Kernels.THREADS, 0);
    }

    /** {@code (float) (1 - beta^step)}: AdamW's bias correction of update {@code step}. */
    private static float biasCorrection(double beta, long step) {
        return (float) (1 - Math.pow(beta, step));
    }

    /** Ints of {@link #packStepScalars}: the kernels' {@code StepScalars} (24 bytes). */
    static final int STEP_SCALAR_INTS = 6;

    /**
     * The scalars of update {@code step} at rate {@code lr} as the kernels' {@code StepScalars} reads them (the rate
     * as a double, the update number, the two bias corrections as floats), packed into ints (little-endian halves)
     * for an {@link IntInput}.
     */
    static int[] packStepScalars(double lr, double beta1, double beta2, long step) {
        long lrBits = Double.doubleToRawLongBits(lr);
        return new int[] {(int) lrBits, (int) (lrBits >>> 32), (int) step, (int) (step >>> 32),
                Float.floatToRawIntBits(biasCorrection(beta1, step)), Float.floatToRawIntBits(biasCorrection(beta2, step))};
    }
}
