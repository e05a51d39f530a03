package io.based4j.cuda;

import io.based4j.config.MixerConfig;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Launches the kernels of {@code src/main/cuda/based4j_kernels.cu} (and {@code based4j_sample.cuh}): every
 * operation of the CUDA backend besides the matrix products. These are the simple, obviously-correct versions,
 * meant to compute the same functions as the CPU backend ({@code io.based4j.backend.cpu}) and to be replaced one by
 * one by fused fast kernels later.
 *
 * <h2>Conventions</h2>
 * Each kernel is {@code extern "C"} and built twice: {@code NAME_f32} (weights W and activations A in float) and
 * {@code NAME_bf16} (both bfloat16, rounded to nearest even). Sums are float32; the residual stream, logits and all
 * recurrent state are float32 in both. Rows are row-major and contiguous. Pointers are device addresses. A launch
 * with no work returns without launching. A batch {@code layout} is the device int array
 * {@code slots[B] | starts[B] | lengths[B] | offsets[B+1] | tokSeq[T]} of a {@code TokenBatch}; no two sequences of
 * one batch may share a slot.
 *
 * <h2>Kernels and launch shapes</h2>
 * <table>
 * <caption>kernels</caption>
 * <tr><th>kernel</th><th>grid x block</th><th>what</th></tr>
 * <tr><td>embedding, addInto, addBias, swiglu, gatherRows, f32ToA, aToF32</td>
 *     <td>min(ceil(count/256), 65536) x 256, grid-stride over the 64-bit element count</td>
 *     <td>elementwise, one thread per output element; swiglu gates with the second half:
 *     {@code out = a[:, :h] * silu(a[:, h:])}</td></tr>
 * <tr><td>addIntoVec, addBiasVec, addBiasF32Vec, swigluVec, f32ToAVec, aToF32Vec</td>
 *     <td>min(ceil(count/2048), 65536) x 256</td>
 *     <td>the same, 8 values a thread and step (16-byte accesses, no division per step), the same float32 operation
 *     per element (vector_ops.cuh); launched in bf16 where the pointers are 16-byte aligned and, for the ops over
 *     rows, the width a multiple of 8 (the scalar kernels otherwise). addIntoVec_f32 adds float32 values into
 *     float32 in either precision.</td></tr>
 * <tr><td>rmsNorm</td><td>min(n, 65536) x 256, one block per row (grid-stride)</td>
 *     <td>sum of squares in float (fixed tree), {@code r = (float) (1 / sqrt((double) (ss / d + eps)))},
 *     {@code out = x * r * w} as the CPU backend</td></tr>
 * <tr><td>baseConv</td><td>elementwise over T x inner</td>
 *     <td>the channel's sequence is {@code [hist (k-1, oldest first) | u1 of this call]}; tap j multiplies element
 *     {@code t + j}, so tap k-1 meets the current token; {@code out = silu(c) * u2}. Reads hist only.</td></tr>
 * <tr><td>baseConvState</td><td>elementwise over B x inner</td>
 *     <td>hist becomes the last k-1 values of {@code [hist | u1]}; launched after baseConv (it overwrites what
 *     baseConv reads)</td></tr>
 * <tr><td>linearAttention</td><td>(B, H, ceil(dh/dt)) x 256, dynamic shared memory</td>
 *     <td>recurrent, one block per (sequence, head, tile of dt value columns): S tile {@code [E][dt]} and a copy of
 *     z in shared memory for the whole sequence; per token in order {@code S += phi(k) v^T; z += phi(k);
 *     y = phi(q).S / (phi(q).z + eps)}. phi is the merged Taylor map of the CPU's LinearAttentionKernel
 *     ({@code [1, x f^-1/4, x_i x_i / sqrt(2f), x_i x_j / sqrt(f) (i < j)]}, E = 1 + f + f(f+1)/2, same order), so the
 *     state layouts match the CPU backend's. dt is 32 (16 or 8 when dh is small or E large); dt divides 256.</td></tr>
 * <tr><td>linearAttentionZ</td><td>(B, H) x 256</td>
 *     <td>{@code z += phi(k_t)} over the sequence, in order, with the same float additions; launched after
 *     linearAttention so that no column block reads a z another one has already advanced</td></tr>
 * <tr><td>attention</td><td>(T, H) x 128 (4 warps)</td>
 *     <td>the query at position pos attends keys {@code max(0, pos - window) ..= pos} (inclusive: window + 1 keys),
 *     scaled scores, softmax in float; keys before {@code starts[i]} from the cache (already rotated), the others
 *     from qkv, rotated on the fly (qkv is never modified). Each warp runs an online softmax over every 4th key,
 *     lanes over the head dims; the 4 partial results are merged at the end.</td></tr>
 * <tr><td>attentionAppend</td><td>(T or B x min(longest, capacity), ceil(H dh / 128)) x 128</td>
 *     <td>rotated k and v of each sequence's last min(length, capacity) tokens into the cache at
 *     {@code position % capacity}; launched after attention. A block a token of the batch, or, where fewer, a
 *     block for each of a sequence's last min(longest, capacity) tokens (a prompt that a short window keeps only
 *     the end of)</td></tr>
 * <tr><td>sample_f32</td><td>n x 512</td><td>see {@link #sample} and {@link io.based4j.sampling.Sampler#pick}</td></tr>
 * </table>
 * The training kernels (backward ops, fused loss, optimizer) are launched by {@link TrainKernels}.
 *
 * <h2>Rotary</h2>
 * As the CPU's RotaryTable: only the first {@code rotaryDim} dims of a head turn; pairs {@code (p, p + rotaryDim/2)}
 * ("rotate half", half of the rotary dims, not of the head) or {@code (2p, 2p + 1)} when interleaved;
 * {@code invFreq_p = (float) (1 / base^((float) (2p) / rotaryDim))}, angle {@code (float) pos * invFreq_p} in
 * float, cos and sin of it rounded to float ({@link #rotaryTable}); {@code x1' = x1 c - x2 s, x2' = x2 c + x1 s},
 * rounded without fused multiply-adds as in Java.
 *
 * <h2>Limits</h2>
 * <ul>
 * <li>linearAttention: 1 &lt;= f &lt;= 64 (shared memory {@code 4 (E dt + 3E + dt + 2f + 256)} bytes, kept at most
 * 96 KiB by choosing dt; 75 KiB at f = 32, dt = 32), any dh, H &lt;= 65535.</li>
 * <li>attention: dh &lt;= 256, H &lt;= 65535, rotaryDim even and &lt;= dh. The kernels cannot throw: a query whose
 * keys the cache no longer holds ({@code pos - window < start - capacity}, e.g. full attention past its capacity)
 * or whose position is {@code >= maxPos} (with rotaryDim &gt; 0) gets NaN outputs, and attentionAppend writes NaN
 * keys for positions {@code >= maxPos}; the caller checks positions on the host.</li>
 * <li>embedding does not check ids (the caller does); gridY/gridZ stay under 65536 (checked).</li>
 * <li>An instance reuses one {@link KernelArgs}: not thread-safe.</li>
 * </ul>
 */
public final class Kernels {
    static final int THREADS = 256;
    /** Values a thread moves per step in the vector kernels (16 bytes of bf16). */
    static final int VECTOR = 8;
    static final long MAX_ELEMENTWISE_BLOCKS = 1 << 16;
    private static final int ATTENTION_THREADS = 128;
    private static final int ATTENTION_MAX_HEAD_DIM = 256;
    private static final int APPEND_THREADS = 128;
    private static final int SAMPLE_THREADS = 512;
    private static final int LINEAR_THREADS = 256;
    /** Dynamic shared memory linearAttention may take (fits sm_80 and sm_90 opt-in limits). */
    private static final int LINEAR_MAX_SHARED = 96 * 1024;
    private static final int MAX_GRID_YZ = 65535;

    private final CudaDriver cu;
    private final long module;
    private final long stream;
    private final Map<String, Long> functions = new HashMap<>();
    private final Map<Long, Integer> sharedOptIn = new HashMap<>();
    /** The argument list of the next launch (also filled by {@link TrainKernels}). */
    final KernelArgs args = new KernelArgs(32);

    public Kernels(CudaDriver cu, long module, long stream) {
        this.cu = cu;
        this.module = module;
        this.stream = stream;
        this.decodeVersion = version(DECODE_VERSION_PROPERTY, System.getProperty(DECODE_VERSION_PROPERTY),
                DECODE_VERSIONS, 0);
        this.gemvVersion = version(GEMV_VERSION_PROPERTY, System.getProperty(GEMV_VERSION_PROPERTY), GEMV_VERSIONS,
                GEMV_VERSION);
        gemv3WarpsAim();
        this.linearDecodeVersion = version(LINEAR_DECODE_VERSION_PROPERTY,
                System.getProperty(LINEAR_DECODE_VERSION_PROPERTY), LINEAR_DECODE_VERSIONS, 0);
    }

    long function(String name) {
        Long f = functions.get(name);
        if (f == null) {
            f = cu.moduleGetFunction(module, name);
            functions.put(name, f);
            names.put(f, name);
        }
        return f;
    }

    /** The kernels' names by function handle. */
    private final Map<Long, String> names = new HashMap<>();
    /** Launches timed by a pair of events each while a profile asks (null otherwise): function, start, end. */
    private List<long[]> timed;

    /** Starts (or stops, discarding) timing every launch with a pair of events on the stream. */
    void timeLaunches(boolean on) {
        discardTimed();
        timed = on ? new ArrayList<>() : null;
    }

    /**
     * The launches timed since {@link #timeLaunches}: per kernel, its calls and milliseconds in all (waits for the
     * device), the longest first; the list starts over.
     */
    List<io.based4j.backend.OpProfile.Row> timedLaunches() {
        if (timed == null) {
            return List.of();
        }
        Map<String, double[]> sums = new java.util.LinkedHashMap<>();
        for (long[] t : timed) {
            cu.synchronizeEvent(t[2]);
            double[] s = sums.computeIfAbsent(names.getOrDefault(t[0], "kernel"), k -> new double[2]);
            s[0]++;
            s[1] += cu.elapsedMillis(t[1], t[2]);
        }
        discardTimed();
        timed = new ArrayList<>();
        List<io.based4j.backend.OpProfile.Row> rows = new ArrayList<>();
        sums.forEach((name, s) -> rows.add(new io.based4j.backend.OpProfile.Row(name, "", (int) s[0], s[1])));
        rows.sort(java.util.Comparator.comparingDouble(io.based4j.backend.OpProfile.Row::millis).reversed());
        return rows;
    }

    private void discardTimed() {
        if (timed != null) {
            for (long[] t : timed) {
                cu.destroyEvent(t[1]);
                cu.destroyEvent(t[2]);
            }
            timed.clear();
        }
    }

    long function(String base, Precision p) {
        return function(base + "_" + p.suffix());
    }

    /** {@link #function(String, Precision)}, opted in to {@code shared} bytes of dynamic shared memory. */
    long function(String base, Precision p, int shared) {
        long fn = function(base, p);
        optIn(fn, shared);
        return fn;
    }

    void launch(long fn, int gx, int gy, int gz, int block, int shared) {
        if (timed != null && !capturing) {
            long start = cu.createEvent();
            long end;
            try {
                end = cu.createEvent();
            } catch (RuntimeException e) {
                cu.destroyEvent(start);
                throw e;
            }
            try {
                cu.record(start, stream);
                cu.launch(fn, gx, gy, gz, block, 1, 1, shared, stream, args);
                cu.record(end, stream);
            } catch (RuntimeException e) {
                cu.destroyEvent(start);
                cu.destroyEvent(end);
                throw e;
            }
            timed.add(new long[] {fn, start, end});
            return;
        }
        if (programmatic) {
            cu.launchProgrammatic(fn, gx, gy, gz, block, 1, 1, shared, stream, args);
        } else {
            cu.launch(fn, gx, gy, gz, block, 1, 1, shared, stream, args);
        }
    }

    /**
     * The system property for programmatic dependent launch: {@code true} launches every kernel so
     * ({@link #programmatic(boolean)}), {@code false} none; unset, only the kernels of a recorded decode step
     * ({@link #programmaticSteps}).
     */
    static final String PROGRAMMATIC_PROPERTY = "based4j.cuda.pdl";
    /**
     * Whether kernels are launched with programmatic dependent launch (each may start as the one before it on the
     * stream finishes, waiting for that one before it reads anything the one before may write): off unless
     * {@value #PROGRAMMATIC_PROPERTY} is true, and only on compute capability 9 and above, whose code (the sm_90a
     * binary, or the compute_90 PTX that newer GPUs compile on load) has that wait in every kernel; the sm_80 binary
     * has none. Every kernel waits first thing, except gemv version 3 and gemmRows, which request their first pieces of
     * the weights (which no kernel of a decode step writes) before they wait. Timed launches (profiles) are launched
     * the usual way.
     */
    private boolean programmatic;
    /** The value of {@value #PROGRAMMATIC_PROPERTY}: null where unset. */
    private final Boolean programmaticSetting = programmaticSetting(System.getProperty(PROGRAMMATIC_PROPERTY));

    /**
     * The value of {@value #PROGRAMMATIC_PROPERTY}: null where unset, else true or false.
     *
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static Boolean programmaticSetting(String value) {
        return onOff(PROGRAMMATIC_PROPERTY, value);
    }

    /**
     * The value of a system property that is true or false: null where unset.
     *
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static Boolean onOff(String property, String value) {
        if (value == null) {
            return null;
        }
        return switch (value.trim()) {
            case "true" -> Boolean.TRUE;
            case "false" -> Boolean.FALSE;
            default -> throw new IllegalArgumentException("-D" + property + " must be true or false, got '" + value
                    + "'");
        };
    }

    /**
     * The value of a system property that is a whole number from {@code least}: {@code fallback} where unset.
     *
     * @param what what the number counts, for the error ("a number of rows")
     * @throws IllegalArgumentException naming the property and the value for anything else
     */
    static int atLeast(String property, String value, int least, int fallback, String what) {
        if (value == null) {
            return fallback;
        }
        Integer v = wholeNumber(value, least, Integer.MAX_VALUE);
        if (v == null) {
            throw new IllegalArgumentException("-D" + property + " must be " + what + ", at least " + least
                    + ", got '" + value + "'");
        }
        return v;
    }

    /** A property's value as a whole number from {@code least} to {@code most}; null for anything else. */
    private static Integer wholeNumber(String value, int least, int most) {
        try {
            int v = Integer.parseInt(value.trim());
            return v >= least && v <= most ? v : null;
        } catch (NumberFormatException e) {
            return null;
        }
    }

    /** Launches kernels programmatically from now on, or not; refused where the code has no waits for it. */
    void programmatic(boolean on) {
        if (on && !programmaticFits) {
            throw new IllegalStateException("programmatic dependent launch needs a GPU of compute capability 9 or more");
        }
        programmatic = on;
    }

    /** Whether the device's code waits for programmatic launches (compute capability 9 or more). */
    private boolean programmaticFits;

    /** Whether the device's code waits for programmatic launches (compute capability 9 or more). */
    boolean programmaticFits() {
        return programmaticFits;
    }

    /** Whether the device runs thread block clusters (compute capability 9 or more): {@link #gemmRows}'s splits. */
    private boolean clustersFit;

    /** Whether {@link #gemmRows} may share a tile's width among a cluster's blocks on this device. */
    boolean clustersFit() {
        return clustersFit;
    }

    /** Says the device's compute capability (major), which decides {@link #programmatic} and {@link #clustersFit}. */
    void computeCapability(int major) {
        programmaticFits = major >= 9;
        clustersFit = major >= 9;
        programmatic = programmaticFits && programmaticSetting == Boolean.TRUE;
    }

    /**
     * Whether a recorded decode step's kernels are launched programmatically: where the device's code waits for it,
     * unless {@value #PROGRAMMATIC_PROPERTY} is false. A decode step writes no weights, so gemv version 3 may load
     * them before its wait, overlapping the kernel before; on an H200 based-1b's decode at batch 1 went from 557.6 to
     * 625.8 tokens/s with it, in one run.
     */
    boolean programmaticSteps() {
        return programmaticFits && programmaticSetting != Boolean.FALSE && programmaticStepsAllowed;
    }

    /** Whether recorded decode steps may take programmatic launches ({@link #programmaticSteps}); true at first. */
    private boolean programmaticStepsAllowed = true;

    /** Lets recorded decode steps take programmatic launches, or not ({@link CudaBackend#programmaticLaunches}). */
    void programmaticStepsAllowed(boolean allowed) {
        programmaticStepsAllowed = allowed;
    }

    /**
     * Whether no kernel of what is now being queued writes weights (a decode step being recorded): gemv version 3 and
     * gemmRows then load their first weights before waiting for the kernel before them.
     */
    private boolean weightsFixed;

    /** Says whether no kernel of what is now being queued writes weights ({@link #weightsFixed}). */
    void weightsFixed(boolean fixed) {
        weightsFixed = fixed;
    }

    /** Whether kernels are launched programmatically. */
    boolean programmatic() {
        return programmatic;
    }

    /** Whether the stream is being captured into a graph: launches are then not timed. */
    private boolean capturing;

    /** Says that the stream's work is being captured into a graph (no timing events then), or no longer. */
    void capturing(boolean on) {
        capturing = on;
    }

    /** Whether the stream is being captured ({@link #capturing(boolean)}). */
    boolean capturing() {
        return capturing;
    }

    private static int elementwiseBlocks(long count) {
        return (int) Math.min((count + THREADS - 1) / THREADS, MAX_ELEMENTWISE_BLOCKS);
    }

    void elementwise(long fn, long count) {
        launch(fn, elementwiseBlocks(count), 1, 1, THREADS, 0);
    }

    /** An elementwise launch of a kernel that moves 8 values per thread and step (vector_ops.cuh). */
    void vectorwise(long fn, long count) {
        elementwise(fn, Math.max(1, count / VECTOR));
    }

    /** Whether every pointer is 16-byte aligned, as the vector kernels need (allocations are 256-byte aligned). */
    static boolean aligned(long... pointers) {
        for (long p : pointers) {
            if ((p & 15) != 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * Whether the bf16 vector form of an op over rows of {@code width} values applies: bf16, the width a multiple of
     * 8 and the pointers 16-byte aligned (then every row starts 16-byte aligned too).
     */
    static boolean vectorRows(Precision p, long width, long... pointers) {
        return p == Precision.BF16 && width % VECTOR == 0 && aligned(pointers);
    }

    static void require(boolean ok, String message) {
        if (!ok) {
            throw new IllegalArgumentException(message);
        }
    }

    // ------------------------------------------------------------------------------------------------ dense ops

    /**
     * Holds the stream until the host writes a value of at least {@code ticket} into the 8 bytes of host memory at
     * {@code released} (pinned, so the device reads it), or {@code timeoutNs} have passed: opGate.
     */
    public void opGate(long released, long ticket, long timeoutNs) {
        args.reset().ptr(released).i64(ticket).i64(timeoutNs);
        cu.launch(function("opGate"), 1, 1, 1, 32, 1, 1, 0, stream, args);  // not a kernel of the op: never timed
    }

    /**
     * Copies {@code bytes} (a multiple of 16, both addresses 16-byte aligned) from src to dst, {@code delayNs} after
     * the wait for the kernel before, launched as this backend launches its kernels (programmatically, where it does,
     * letting the kernel after it start at once): delayedCopy, the slow writer of cuBLASLt's probes
     * ({@link CublasLt#probesFirstCalls}). One block of 256 threads: while it waits it holds one multiprocessor, and
     * the kernel after it finds the others free (a writer on every multiprocessor would keep a large kernel's blocks
     * off the GPU until it ends, so that even a kernel that does not wait would read what it wrote).
     */
    void delayedCopy(long dst, long src, long bytes, long delayNs) {
        require(bytes % 16 == 0 && aligned(dst, src), "delayedCopy: " + bytes + " bytes, 16-byte aligned addresses");
        args.reset().ptr(dst).ptr(src).i64(bytes).i64(delayNs);
        launch(function("delayedCopy"), 1, 1, 1, 256, 0);
    }

    /** {@code out[i] = table[ids[i]]}: table W {@code [V, d]}, ids int {@code [n]}, out F32 {@code [n, d]}. */
    public void embedding(Precision p, long table, long ids, long out, int n, int d) {
        require(n >= 0 && d >= 0, "embedding: n " + n + ", d " + d);
        if ((long) n * d == 0) {
            return;
        }
        args.reset().ptr(table).ptr(ids).ptr(out).i32(n).i32(d);
        elementwise(function("embedding", p), (long) n * d);
    }

    /** {@code out = x * rsqrt(mean(x^2) + eps) * weight} row by row: x F32 {@code [n, d]}, weight W, out A. */
    public void rmsNorm(Precision p, long x, long weight, long out, int n, int d, float eps) {
        require(n >= 0 && d >= 0, "rmsNorm: n " + n + ", d " + d);
        if ((long) n * d == 0) {
            return;
        }
        args.reset().ptr(x).ptr(weight).ptr(out).i32(n).i32(d).f32(eps);
        launch(function("rmsNorm", p), (int) Math.min(n, MAX_ELEMENTWISE_BLOCKS), 1, 1, THREADS, 0);
    }

    /**
     * {@code residual += branch}, then {@code out = } {@link #rmsNorm} of the new residual, in one pass a row: residual
     * F32 {@code [n, d]}, branch A, weight W, out A.
     */
    public void addRmsNorm(Precision p, long residual, long branch, long weight, long out, int n, int d, float eps) {
        require(n >= 0 && d >= 0, "addRmsNorm: n " + n + ", d " + d);
        addRmsNorm(normVec && addRmsNormVecFits(p, d, residual, branch, weight, out) ? 2 : 1, p, residual, branch,
                weight, out, n, d, eps);
    }

    /**
     * {@link #addRmsNorm} in version 1 (the scalar kernel) or 2 (its vector form, where {@link #addRmsNormVecFits}
     * holds): the kernel workbench's versions.
     */
    void addRmsNorm(int version, Precision p, long residual, long branch, long weight, long out, int n, int d,
                    float eps) {
        require(version == 1 || version == 2 && addRmsNormVecFits(p, d, residual, branch, weight, out),
                "addRmsNorm: version " + version + " at width " + d);
        if ((long) n * d == 0) {
            return;
        }
        args.reset().ptr(residual).ptr(branch).ptr(weight).ptr(out).i32(n).i32(d).f32(eps);
        launch(function(version == 2 ? "addRmsNormVec" : "addRmsNorm", p), (int) Math.min(n, MAX_ELEMENTWISE_BLOCKS),
                1, 1, THREADS, 0);
    }

    /** Whether {@link #addRmsNorm} takes its vector form where it fits: on unless {@value #NORM_VEC_PROPERTY} is false. */
    boolean normVec() {
        return normVec;
    }

    /**
     * The system property that turns the vector form of {@link #addRmsNorm} off ({@code false}) for comparison; on by
     * default.
     */
    static final String NORM_VEC_PROPERTY = "based4j.cuda.normVec";
    private final boolean normVec = onOff(NORM_VEC_PROPERTY, System.getProperty(NORM_VEC_PROPERTY)) != Boolean.FALSE;

    /**
     * Whether {@link #addRmsNorm} takes its vector form ({@code addRmsNormVec}: 8 values a thread, a block a row):
     * bf16 (float32 keeps the scalar kernel's order of the sum of squares, that of {@link #rmsNorm}), the width a
     * multiple of 8 and at most 8 a thread of the block, the pointers 16-byte aligned.
     */
    static boolean addRmsNormVecFits(Precision p, int d, long... pointers) {
        return vectorRows(p, d, pointers) && d <= VECTOR * THREADS;
    }

    /** {@code acc += x}: acc F32, x A, {@code count} elements. */
    public void addInto(Precision p, long acc, long x, long count) {
        require(count >= 0, "addInto: count " + count);
        if (count == 0) {
            return;
        }
        args.reset().ptr(acc).ptr(x).i64(count);
        if (p == Precision.BF16 && aligned(acc, x)) {
            vectorwise(function("addIntoVec", p), count);
        } else {
            elementwise(function("addInto", p), count);
        }
    }

    /** {@code acc += x}: both F32, {@code count} elements, whatever the precision. */
    public void addIntoF32(long acc, long x, long count) {
        require(count >= 0, "addIntoF32: count " + count);
        if (count == 0) {
            return;
        }
        args.reset().ptr(acc).ptr(x).i64(count);
        if (aligned(acc, x)) {
            vectorwise(function("addIntoVec_f32"), count);
        } else {
            elementwise(function("addInto_f32"), count);
        }
    }

    /** {@code out[i, j] += bias[j]}: out A {@code [n, m]}, bias W {@code [m]}. */
    public void addBias(Precision p, long out, long bias, int n, int m) {
        require(n >= 0 && m >= 0, "addBias: n " + n + ", m " + m);
        if ((long) n * m == 0) {
            return;
        }
        args.reset().ptr(out).ptr(bias).i32(n).i32(m);
        if (vectorRows(p, m, out, bias)) {
            vectorwise(function("addBiasVec", p), (long) n * m);
        } else {
            elementwise(function("addBias", p), (long) n * m);
        }
    }

    /** {@code out[i, j] += bias[j]}: out F32 {@code [n, m]}, bias W {@code [m]}. */
    public void addBiasF32(Precision p, long out, long bias, int n, int m) {
        require(n >= 0 && m >= 0, "addBiasF32: n " + n + ", m " + m);
        if ((long) n * m == 0) {
            return;
        }
        args.reset().ptr(out).ptr(bias).i32(n).i32(m);
        if (vectorRows(p, m, out, bias)) {
            vectorwise(function("addBiasF32Vec", p), (long) n * m);
        } else {
            elementwise(function("addBiasF32", p), (long) n * m);
        }
    }

    /**
     * The columns of {@code src} A {@code [n, sum of widths]} copied into {@code outs[i]} A {@code [n, widths[i]]},
     * in order (two or three outputs): a product of matrices made together split into each one's output.
     */
    public void splitColumns(Precision p, long src, long[] outs, int[] widths, int n) {
        require(outs.length == widths.length && outs.length >= 2 && outs.length <= 3,
                "splitColumns: " + outs.length + " outputs for " + widths.length + " widths (two or three)");
        long total = 0;
        for (int w : widths) {
            require(w > 0, "splitColumns: widths " + java.util.Arrays.toString(widths));
            total += w;
        }
        require(n >= 0 && total <= Integer.MAX_VALUE, "splitColumns: n " + n + ", widths "
                + java.util.Arrays.toString(widths));
        if (n == 0) {
            return;
        }
        int c2 = widths.length == 3 ? widths[2] : 0;
        long o2 = widths.length == 3 ? outs[2] : 0;
        args.reset().ptr(src).ptr(outs[0]).ptr(outs[1]).ptr(o2).i32(n).i32(widths[0]).i32(widths[1]).i32(c2);
        boolean vector = vectorRows(p, widths[0], src, outs[0], outs[1], o2) && vectorRows(p, widths[1])
                && vectorRows(p, c2);
        if (vector) {
            vectorwise(function("splitColumnsVec", p), n * total);
        } else {
            elementwise(function("splitColumns", p), n * total);
        }
    }

    /** {@code out = a[:, :h] * silu(a[:, h:])}: a A {@code [n, 2h]}, out A {@code [n, h]}. */
    public void swiglu(Precision p, long a, long out, int n, int h) {
        require(n >= 0 && h >= 0, "swiglu: n " + n + ", h " + h);
        if ((long) n * h == 0) {
            return;
        }
        args.reset().ptr(a).ptr(out).i32(n).i32(h);
        if (vectorRows(p, h, a, out)) {
            vectorwise(function("swigluVec", p), (long) n * h);
        } else {
            elementwise(function("swiglu", p), (long) n * h);
        }
    }

    /** {@code out[i] = x[rows[i]]}: x A {@code [*, cols]}, rows int {@code [n]}, out A {@code [n, cols]}. */
    public void gatherRows(Precision p, long x, long rows, long out, int n, int cols) {
        require(n >= 0 && cols >= 0, "gatherRows: n " + n + ", cols " + cols);
        if ((long) n * cols == 0) {
            return;
        }
        args.reset().ptr(x).ptr(rows).ptr(out).i32(n).i32(cols);
        elementwise(function("gatherRows", p), (long) n * cols);
    }

    /**
     * {@code dst[rows[i]] += src[i]} for {@code i < n}: float32 rows of {@code cols}; the rows must be distinct (no
     * two threads add into one value).
     */
    public void scatterAddRows(long src, long rows, long dst, int n, int cols) {
        require(n >= 0 && cols >= 0, "scatterAddRows: n " + n + ", cols " + cols);
        if ((long) n * cols == 0) {
            return;
        }
        args.reset().ptr(src).ptr(rows).ptr(dst).i32(n).i32(cols);
        elementwise(function("scatterAddRows_f32"), (long) n * cols);
    }

    /** F32 to A ({@code count} elements; bf16 rounds to nearest even). */
    public void f32ToA(Precision p, long src, long dst, long count) {
        require(count >= 0, "f32ToA: count " + count);
        if (count == 0) {
            return;
        }
        args.reset().ptr(src).ptr(dst).i64(count);
        if (p == Precision.BF16 && aligned(src, dst)) {
            vectorwise(function("f32ToAVec", p), count);
        } else {
            elementwise(function("f32ToA", p), count);
        }
    }

    /** A to F32 ({@code count} elements). */
    public void aToF32(Precision p, long src, long dst, long count) {
        require(count >= 0, "aToF32: count " + count);
        if (count == 0) {
            return;
        }
        args.reset().ptr(src).ptr(dst).i64(count);
        if (p == Precision.BF16 && aligned(src, dst)) {
            vectorwise(function("aToF32Vec", p), count);
        } else {
            elementwise(function("aToF32", p), count);
        }
    }

    // ------------------------------------------------------------------------------------------------ BaseConv

    /**
     * {@code out = silu(conv(u1)) * u2} over u A {@code [T, 2 inner]} ({@code u1 = u[:, :inner]}), conv taps W
     * {@code [inner, 1, k]} continuing from hist (A, per slot {@code [k-1][inner]}, oldest first); out A
     * {@code [T, inner]}. Reads hist only: call {@link #baseConvState} afterwards.
     */
    public void baseConv(Precision p, long u, long convW, long hist, long layout, long out, int T, int B, int inner,
                         int k) {
        require(T >= 0 && B >= 0 && inner >= 0 && k >= 1, "baseConv: T " + T + ", B " + B + ", inner " + inner
                + ", kernel " + k);
        if ((long) T * inner == 0) {
            return;
        }
        args.reset().ptr(u).ptr(convW).ptr(hist).ptr(layout).ptr(out).i32(T).i32(B).i32(inner).i32(k);
        elementwise(function("baseConv", p), (long) T * inner);
    }

    /** Moves the last k-1 values of {@code [hist | u1]} of each sequence into its slot's hist. */
    public void baseConvState(Precision p, long u, long hist, long layout, int T, int B, int inner, int k) {
        require(T >= 0 && B >= 0 && inner >= 0 && k >= 1, "baseConvState: T " + T + ", B " + B + ", inner " + inner
                + ", kernel " + k);
        if ((long) B * inner == 0 || k == 1 || T == 0) {
            return;
        }
        args.reset().ptr(u).ptr(hist).ptr(layout).i32(T).i32(B).i32(inner).i32(k);
        elementwise(function("baseConvState", p), (long) B * inner);
    }

    /**
     * A decode step of BaseConv (every sequence of the layout one token): {@link #baseConv} and then
     * {@link #baseConvState} in one kernel, the same outputs and history bit for bit.
     */
    public void baseConvStep(Precision p, long u, long convW, long hist, long layout, long out, int B, int inner,
                             int k) {
        require(B >= 0 && inner >= 0 && k >= 1, "baseConvStep: B " + B + ", inner " + inner + ", kernel " + k);
        baseConvStep(convStepVec(inner, k, u, convW, hist, out) ? 3 : 1, p, u, convW, hist, layout, out, B, inner, k);
    }

    /**
     * {@link #baseConvStep} in version 1 (the scalar kernel, a channel a thread), 2 (the vector form, 8 channels a
     * thread, for any count of taps: its arrays sized for {@value #CONV_VEC_TAPS} taps) or 3 (the vector form of a
     * kernel of k taps, the backend's where {@link #convStepVec} holds): the kernel workbench's versions, the same
     * outputs and history bit for bit.
     */
    void baseConvStep(int version, Precision p, long u, long convW, long hist, long layout, long out, int B,
                      int inner, int k) {
        require(B >= 0 && inner >= 0 && k >= 1 && (version == 1
                || (version == 2 || version == 3) && convStepVec(inner, k, u, convW, hist, out)),
                "baseConvStep: version " + version + ", B " + B + ", inner " + inner + ", kernel " + k);
        if ((long) B * inner == 0) {
            return;
        }
        args.reset().ptr(u).ptr(convW).ptr(hist).ptr(layout).ptr(out).i32(B).i32(inner);
        if (version == 3) {
            vectorwise(function(CONV_STEP_VEC[k], p), (long) B * inner);
        } else {
            args.i32(k);
            if (version == 2) {
                vectorwise(function("baseConvStepVecAny", p), (long) B * inner);
            } else {
                elementwise(function("baseConvStep", p), (long) B * inner);
            }
        }
    }

    /** Taps up to which {@link #baseConvStep} has its vector form (CONV_VEC_TAPS in vector_ops.cuh). */
    static final int CONV_VEC_TAPS = 4;
    /** The vector form's kernel for each count of taps, 1 to {@value #CONV_VEC_TAPS} (the taps a template's). */
    private static final String[] CONV_STEP_VEC = {null, "baseConvStepVec1", "baseConvStepVec2", "baseConvStepVec3",
        "baseConvStepVec4"};

    /**
     * Whether {@link #baseConvStep} takes its vector form (8 channels a thread, in either precision): a kernel of at
     * most {@value #CONV_VEC_TAPS} taps, the width a multiple of 8 and the token's rows, the kernel's taps, the
     * history and the output 16-byte aligned.
     */
    static boolean convStepVec(int inner, int k, long u, long convW, long hist, long out) {
        return k <= CONV_VEC_TAPS && inner % VECTOR == 0 && aligned(u, convW, hist, out);
    }

    // ------------------------------------------------------------------------------------------------ linear attention

    /** Floats of dynamic shared memory of linearAttention (mirrors linearSmemFloats in the .cu). */
    static int linearSharedFloats(int f, int dt) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return e * dt + 3 * e + dt + 2 * f + LINEAR_THREADS;
    }

    /** Value columns per linearAttention block: 32, or less for a small head or a large feature map. */
    static int linearTile(int f, int dh) {
        int dt = dh <= 8 ? 8 : dh <= 16 ? 16 : 32;
        while (dt > 8 && 4L * linearSharedFloats(f, dt) > LINEAR_MAX_SHARED) {
            dt /= 2;
        }
        return dt;
    }

    /**
     * Taylor linear attention: q, k A {@code [T, H*f]}, v A {@code [T, H*dh]}, out A {@code [T, H*dh]}; state per slot
     * s: kvState F32 {@code + s*H*E*dh} as {@code [H][E][dh]}, kState F32 {@code + s*H*E} as {@code [H][E]},
     * E = 1 + f + f(f+1)/2. {@code y_t = phi(q_t).S_t / (phi(q_t).z_t + eps)}, S and z including token t.
     */
    public void linearAttention(Precision p, long q, long k, long v, long kvState, long kState, long layout, long out,
                                int T, int B, int H, int f, int dh, float eps) {
        require(f >= 1 && f <= 64, "linearAttention: feature dim " + f + " is outside [1, 64]");
        require(dh >= 1, "linearAttention: head dim " + dh);
        require(H >= 1 && H <= MAX_GRID_YZ, "linearAttention: " + H + " heads (at most " + MAX_GRID_YZ + ")");
        require(T >= 0 && B >= 0, "linearAttention: T " + T + ", B " + B);
        if (T == 0 || B == 0) {
            return;
        }
        int dt = linearTile(f, dh);
        int shared = 4 * linearSharedFloats(f, dt);
        require(shared <= LINEAR_MAX_SHARED, "linearAttention: feature dim " + f + " needs " + shared
                + " bytes of shared memory, more than " + LINEAR_MAX_SHARED);
        int tiles = (dh + dt - 1) / dt;
        require(tiles <= MAX_GRID_YZ, "linearAttention: head dim " + dh + " is too large");
        long fn = function("linearAttention", p, shared);
        args.reset().ptr(q).ptr(k).ptr(v).ptr(kvState).ptr(kState).ptr(layout).ptr(out).i32(T).i32(B).i32(H).i32(f)
                .i32(dh).f32(eps).i32(dt);
        launch(fn, B, H, tiles, LINEAR_THREADS, shared);

        int e = MixerConfig.LinearAttention.expandedDim(f);
        args.reset().ptr(k).ptr(kState).ptr(layout).i32(T).i32(B).i32(H).i32(f);
        launch(function("linearAttentionZ", p), B, H, 1, LINEAR_THREADS, 4 * (2 * e + f));
    }

    /** Whether {@link #linearAttentionDecode} takes heads of {@code dh} dims with feature dim {@code f}. */
    static boolean linearDecodeFits(int f, int dh) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return dh >= 1 && dh <= LINEAR_THREADS && f >= 1 && f <= 64
                && 4L * linearDecodeFloats(e, f, dh, 4 * LINEAR_THREADS) <= LINEAR_MAX_SHARED;
    }

    /** Dynamic shared memory (floats) of a linearAttentionDecode version summing {@code sums} numerator pieces. */
    private static long linearDecodeFloats(int e, int f, int dh, int sums) {
        return 2L * e + 2L * f + dh + sums + LINEAR_THREADS / 32;
    }

    /**
     * One decode step of {@link #linearAttention} (every sequence one token; the same arguments): each (sequence,
     * head) block reads and writes its S and z once, in place, and writes the output: the recurrent kernel's state
     * bit for bit, the output summed in another order. Blocks of 256 threads (512 measured 2% slower for based-1b at
     * batch 128 and 5% for based-360m on an H200, 1% faster at batch 1). Requires {@link #linearDecodeFits}.
     */
    public void linearAttentionDecode(Precision p, long q, long k, long v, long kvState, long kState, long layout,
                                      long out, int B, int H, int f, int dh, float eps) {
        linearAttentionDecode(linearDecodeVersion((long) B * H, dh), p, q, k, v, kvState, kState, layout, out, B, H, f,
                dh, eps);
    }

    /** The kernel that version {@code version} of {@link #linearAttentionDecode} runs on this head dim and state. */
    static String linearDecodeKernel(int version, int dh, long kvState) {
        return linearDecodeQuads(version, dh, kvState) ? "linearAttentionDecode" + version : "linearAttentionDecode";
    }

    /** Whether version {@code version} runs as a four-columns-a-thread kernel on this head dim and state. */
    private static boolean linearDecodeQuads(int version, int dh, long kvState) {
        return version > 1 && dh % 4 == 0 && (kvState & 15) == 0;
    }

    /**
     * {@link #linearAttentionDecode} in one of its {@link #LINEAR_DECODE_VERSIONS} versions. Versions 2 to 5 read S
     * 16 bytes a load: for a head dim that is not a multiple of 4, or a state not 16-byte aligned, version 1 runs.
     */
    void linearAttentionDecode(int version, Precision p, long q, long k, long v, long kvState, long kState,
                               long layout, long out, int B, int H, int f, int dh, float eps) {
        require(linearDecodeFits(f, dh), "linearAttentionDecode: feature dim " + f + ", head dim " + dh);
        require(H >= 1 && H <= MAX_GRID_YZ, "linearAttentionDecode: " + H + " heads (at most " + MAX_GRID_YZ + ")");
        require(version >= 1 && version <= LINEAR_DECODE_VERSIONS, "linearAttentionDecode: no version " + version
                + " (1 to " + LINEAR_DECODE_VERSIONS + ")");
        if (B == 0) {
            return;
        }
        int e = MixerConfig.LinearAttention.expandedDim(f);
        boolean quads = linearDecodeQuads(version, dh, kvState);
        int shared = 4 * (int) linearDecodeFloats(e, f, dh, quads ? 4 * LINEAR_THREADS : LINEAR_THREADS);
        long fn = function(linearDecodeKernel(version, dh, kvState), p, shared);
        args.reset().ptr(q).ptr(k).ptr(v).ptr(kvState).ptr(kState).ptr(layout).ptr(out).i32(B).i32(H).i32(f).i32(dh)
                .f32(eps);
        launch(fn, B, H, 1, LINEAR_THREADS, shared);
    }

    /** The most steps {@link #linearAttentionDecodeDeferred} lets pass between two writes of a state. */
    static final int LINEAR_DEFER_MAX = 16;

    /**
     * The system property that sets the most decode steps between two writes of a linear-attention state
     * ({@link #linearAttentionDecodeDeferred}): 2 to {@value #LINEAR_DEFER_MAX}, or 1 for a write every step
     * ({@link #linearAttentionDecode}); {@value #LINEAR_DEFER_DEFAULT} where unset.
     */
    static final String LINEAR_DEFER_PROPERTY = "based4j.cuda.linearDefer";
    /**
     * 8 steps: S read every step and written every 8th, the waiting tokens' keys and values 5.2% of based-1b's state.
     */
    static final int LINEAR_DEFER_DEFAULT = 8;
    private final int linearDefer = linearDefer(System.getProperty(LINEAR_DEFER_PROPERTY));

    /** {@value #LINEAR_DEFER_PROPERTY}'s value: a whole number from 1 to {@value #LINEAR_DEFER_MAX}. */
    static int linearDefer(String value) {
        if (value == null) {
            return LINEAR_DEFER_DEFAULT;
        }
        Integer v = wholeNumber(value, 1, LINEAR_DEFER_MAX);
        if (v == null) {
            throw new IllegalArgumentException("-D" + LINEAR_DEFER_PROPERTY + " must be a number of steps from 1 to "
                    + LINEAR_DEFER_MAX + ", got '" + value + "'");
        }
        return v;
    }

    /** The most decode steps between two writes of a linear-attention state the decode step leaves: 1 for every one. */
    int linearDefer() {
        return linearDefer;
    }

    /**
     * The system property that sets the fewest blocks (slots times heads) a decode step of a linear-attention state
     * must have for the state's update to be deferred: a whole number from 1; {@value #LINEAR_DEFER_MIN_BLOCKS} where
     * unset.
     */
    static final String LINEAR_DEFER_MIN_BLOCKS_PROPERTY = "based4j.cuda.linearDeferMinBlocks";
    /**
     * 2,048 blocks (based-1b's 16 heads at 128 sequences): on an H200 whole decode steps of based-1b with the
     * deferred form's version 12 ran at 49,062 and 48,660 tokens/s at 128 sequences against 47,233 and 47,949 for
     * the step-by-step form (with version 5 of the deferred form it had been 46,337 against 47,631, and the threshold
     * 4,096: it holds for the default version, whichever the property picks); at one sequence (16 blocks) version 5
     * of the step-by-step form has all of a block's state in flight at once.
     */
    static final int LINEAR_DEFER_MIN_BLOCKS = 2048;
    private final int linearDeferMinBlocks = atLeast(LINEAR_DEFER_MIN_BLOCKS_PROPERTY,
            System.getProperty(LINEAR_DEFER_MIN_BLOCKS_PROPERTY), 1, LINEAR_DEFER_MIN_BLOCKS, "a number of blocks");

    /** Whether a linear-attention state whose decode steps have {@code blocks} blocks defers its update. */
    boolean linearDeferFor(long blocks) {
        return blocks >= linearDeferMinBlocks;
    }

    /**
     * Whether {@link #linearAttentionDecodeDeferred} takes a state of feature dim {@code f} and head dim {@code dh}
     * written every {@code steps} steps at most, S at {@code kvState}: version 4's form (head dims a multiple of 4, S
     * 16-byte aligned) and its shared memory with the waiting tokens'.
     */
    static boolean linearDeferFits(int f, int dh, int steps, long kvState) {
        if (steps < 2 || steps > LINEAR_DEFER_MAX || !linearDecodeFits(f, dh) || !linearDecodeQuads(4, dh, kvState)
                || (f + dh) % 4 != 0) {
            return false;
        }
        return 4L * linearDeferFloats(f, dh, steps) <= LINEAR_MAX_SHARED;
    }

    /**
     * Floats of shared memory the waiting tokens take: {@code steps - 1} keys and values (and 4 to align them to 16
     * bytes), the keys' features, and {@code steps} sums (as laDeferredOf in the .cuh lays them out).
     */
    private static long linearDeferredExtraFloats(int steps, int f, int dh) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return (steps - 1L) * (f + e + dh) + 4 + steps;
    }

    /** The system property that picks {@link #linearAttentionDecodeDeferred}'s version. */
    static final String LINEAR_DEFER_VERSION_PROPERTY = "based4j.cuda.linearDeferVersion";
    /**
     * Versions of {@link #linearAttentionDecodeDeferred}: 1 (8 rows of S a thread in flight, three blocks a
     * multiprocessor, the waiting tokens loaded once their count is in), 2 (as 1, every waiting place copied into
     * shared memory as the block starts), 3 (as 2 with 17 rows in flight, two blocks a multiprocessor), 4 (as 2 with
     * 12 rows, two blocks), 5 (as 2 with the block's whole S copied into shared memory by one bulk copy, issued
     * first), 6 (5's work, persistent: a block a multiprocessor takes a run of the (sequence, head)s, the next ones'
     * S and waiting tokens copied in by bulk copies while it works on the current one; measured slower), 7 (6 with
     * nothing of an item read from global memory on its own chain: its place in the layout, its count, z, q, k and v
     * loaded into registers while the block works on an item before it), 8 (a warp a (sequence, head), four a block,
     * no block barrier, 16 rows of S a lane in flight), 9 (two kernels: the first, a warp a (sequence, head), does
     * all of the step but S into the state's work area ({@link #linearDeferWorkFloats}); the second reads S, 17 rows
     * a thread in flight, the first of them asked for before it waits for the first kernel), 10 (9 with a first
     * kernel of fewer instructions: the features' places from a table made once a block, no branch a feature, the
     * waiting tokens taken one after another), 11 (10 with the second kernel's small loads, the work area's and the
     * output's row, asked for at once: none waits for another's value), 12 (11 with S read as streamed data, the
     * first lines the L2 cache gives up). Versions 1 to 4 and 9 run everywhere, versions 5 to 7 on compute capability
     * 9.0 where their shared memory fits, version 8 where its head dim is at most 128, versions 10 to 12 where the
     * expanded feature dim is at most {@value #LINEAR_PREP10_WIDE_FEATURES} (f up to 32); else version 1 runs in
     * place of 5 to 8 and version 9 in place of 10 to 12. Version 12 is the default: on an H200,
     * whole decode steps of based-1b (`bench gpu --preset based-1b --prompt-len 1536 --batch 128,1024`) ran at
     * 104,713 and 105,414 tokens/s at batch 1,024 against 101,506 and 101,824 with version 9 (105,400 and 104,930
     * with version 11, 102,079 and 103,230 with version 10), and at batch 128 at 49,062 and 48,660 against 47,233
     * and 47,949 for the step-by-step form (with its first kernel's shared memory then addressed through a generic
     * pointer: 104,765.0 and 104,743.3 at 1,024 as it is now, against 104,407.1 and 104,172.7).
     */
    static final int LINEAR_DEFER_VERSIONS = 12;
    static final int LINEAR_DEFER_VERSION_DEFAULT = 12;
    private final int linearDeferVersion = version(LINEAR_DEFER_VERSION_PROPERTY,
            System.getProperty(LINEAR_DEFER_VERSION_PROPERTY), LINEAR_DEFER_VERSIONS, LINEAR_DEFER_VERSION_DEFAULT);

    /** The version of {@link #linearAttentionDecodeDeferred} that runs. */
    int linearDeferVersion() {
        return linearDeferVersion;
    }

    /**
     * One decode step of {@link #linearAttention} with the state's update deferred: S and z are read every step and
     * written once every {@code steps} steps at most, the keys and values of the tokens since the last write waiting
     * in {@code pend} ({@code [slot][H][steps - 1][f + dh]} float32; {@code count} {@code [slot][H]} int32 says how
     * many). A step that writes adds the waiting tokens and its own in, in order, with the step-by-step update's
     * operations (the state of {@link #linearAttentionDecode} bit for bit, and its output); the others' outputs add
     * the waiting tokens' part to what the state gives (the same sums in another order). The writes are spread over
     * the steps by slot; {@code work} ({@code [slot][H]} of {@link #linearDeferWorkFloats} float32) is versions 9 to
     * 12's (the others leave it). Requires {@link #linearDeferFits}.
     */
    public void linearAttentionDecodeDeferred(Precision p, long q, long k, long v, long kvState, long kState,
                                              long pend, long count, long work, long layout, long out, int B, int H,
                                              int f, int dh, float eps, int steps) {
        linearAttentionDecodeDeferred(linearDeferVersion, p, q, k, v, kvState, kState, pend, count, work, layout, out,
                B, H, f, dh, eps, steps);
    }

    /** Floats of dynamic shared memory of the deferred form's versions 1 to 4. */
    private static long linearDeferFloats(int f, int dh, int steps) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        return linearDecodeFloats(e, f, dh, 4 * LINEAR_THREADS) + linearDeferredExtraFloats(steps, f, dh);
    }

    /** Floats version 5 takes more: S whole, 16-byte aligned, and its barrier (its kernel's Ss and bar). */
    private static long linearBulkFloats(int f, int dh) {
        return (long) MixerConfig.LinearAttention.expandedDim(f) * dh + 8;
    }

    /** (Sequence, head)s version 6 holds in shared memory at once: LA_RING in the .cuh. */
    private static final int LINEAR_RING = 2;

    /**
     * Floats version 6 takes more: LINEAR_RING buffers of S and the waiting tokens, 16-byte aligned, and their
     * barriers (its kernel's ring and bars).
     */
    private static long linearRingFloats(int f, int dh, int steps) {
        long e = MixerConfig.LinearAttention.expandedDim(f);
        return LINEAR_RING * (e * dh + (steps - 1L) * (f + dh)) + 4 + 2 * LINEAR_RING;
    }

    /** Warps a block of version 8 of {@link #linearAttentionDecodeDeferred}, a (sequence, head) each: LA_WARPS. */
    static final int LINEAR_WARPS = 4;

    /**
     * Floats of shared memory a warp of version 8 takes (laWarpFloats in the .cuh): the waiting tokens as stored, v,
     * x_q, x_k, phi(q), phi(k), z and phi of the waiting keys, rounded up to a multiple of 4.
     */
    static long linearWarpFloats(int f, int dh, int steps) {
        long e = MixerConfig.LinearAttention.expandedDim(f);
        return ((steps - 1L) * (f + dh) + dh + 2L * f + 3 * e + (steps - 1L) * e + 3) & ~3L;
    }

    /**
     * Floats of a (slot, head)'s work area of version 9 of {@link #linearAttentionDecodeDeferred} (laWorkFloats in the
     * .cuh): phi(q), then the step's key and value or the waiting tokens' part of the numerator, each 16-byte aligned,
     * then the denominator and the step's kind.
     */
    static long linearDeferWorkFloats(int f, int dh) {
        return align4(MixerConfig.LinearAttention.expandedDim(f)) + align4(f + dh) + 4;
    }

    private static long align4(long n) {
        return (n + 3) & ~3L;
    }

    /** Warps a block of version 9's first kernel, a (sequence, head) each: LA_PREP_WARPS. */
    static final int LINEAR_PREP_WARPS = 4;

    /** Floats of shared memory a warp of version 9's first kernel takes (laPrepFloats): waiting tokens, x_q, x_k. */
    private static long linearPrepFloats(int f, int dh, int steps) {
        return align4((steps - 1L) * (f + dh) + 2L * f);
    }

    /** Expanded feature dims version 10's first kernel takes with 8 features a lane (LA_PREP10_NARROW), and 18. */
    static final int LINEAR_PREP10_NARROW_FEATURES = 32 * 8;
    static final int LINEAR_PREP10_WIDE_FEATURES = 32 * 18;
    /**
     * Expanded feature dims and head dims version 10's first kernel takes in its small form (LA_PREP10_SMALL features
     * and LA_PREP10_SMALL_HELD values of v a lane): f 16's 153 features, head dims up to 128.
     */
    static final int LINEAR_PREP10_SMALL_FEATURES = 32 * 5;
    static final int LINEAR_PREP10_SMALL_DH = 32 * 4;

    /**
     * The system property that turns the small form of version 10's first kernel off ({@code false}: the narrow form,
     * 8 features and 8 values of v a lane) for comparison; on by default.
     */
    static final String LINEAR_PREP_SMALL_PROPERTY = "based4j.cuda.linearPrepSmall";
    private final boolean linearPrepSmall = onOff(LINEAR_PREP_SMALL_PROPERTY,
            System.getProperty(LINEAR_PREP_SMALL_PROPERTY)) != Boolean.FALSE;

    /**
     * The form of version 10's first kernel for feature dim {@code f} and head dim {@code dh}: "Small" where its
     * features and values fit in fewer registers (and {@value #LINEAR_PREP_SMALL_PROPERTY} is not false), "" (the
     * narrow form) up to {@value #LINEAR_PREP10_NARROW_FEATURES} features, else "Wide".
     */
    String linearPrep10Form(int f, int dh) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        if (linearPrepSmall && e <= LINEAR_PREP10_SMALL_FEATURES && dh <= LINEAR_PREP10_SMALL_DH) {
            return "Small";
        }
        return e <= LINEAR_PREP10_NARROW_FEATURES ? "" : "Wide";
    }

    /**
     * Bytes of dynamic shared memory of version 10's first kernel: its constants and features' places (laPrep10Head),
     * each warp's waiting tokens and rows of x (laPrep10Floats).
     */
    private static int linearPrep10Bytes(int f, int dh, int steps) {
        long e = MixerConfig.LinearAttention.expandedDim(f);
        long warp = align4((steps - 1L) * (f + dh) + (steps + 1L) * (f + 4));
        return (int) (4 * (8 + align4(e) + LINEAR_PREP_WARPS * warp));
    }

    /** Floats of dynamic shared memory of the deferred form's version {@code version}. */
    private static long linearDeferFloats(int version, int f, int dh, int steps) {
        if (version == 8) {
            return LINEAR_WARPS * linearWarpFloats(f, dh, steps);
        }
        return linearDeferFloats(f, dh, steps) + switch (version) {
            case 5 -> linearBulkFloats(f, dh);
            case 6 -> linearRingFloats(f, dh, steps);
            case 7 -> linearRingFloats(f, dh, steps) + 4 * LINEAR_RING;  // and each buffer's place in the layout
            default -> 0;
        };
    }

    /**
     * The version of {@link #linearAttentionDecodeDeferred} that runs where {@code version} is asked for: versions 5
     * to 7 only on compute capability 9.0 and where their shared memory fits (version 7 also with f and dh at most
     * the block's threads), version 8 where its head dim is at most 128 and its shared memory fits, version 1 in
     * their place; versions 10 to 12 where their first kernel holds the features (E at most
     * {@value #LINEAR_PREP10_WIDE_FEATURES}), version 9 in their place; versions 1 to 4 and 9 wherever the form fits.
     */
    int linearDeferRuns(int version, int f, int dh, int steps) {
        if (version < 5 || version == 9) {
            return version;
        }
        if (version >= 10) {
            return MixerConfig.LinearAttention.expandedDim(f) <= LINEAR_PREP10_WIDE_FEATURES ? version : 9;
        }
        long bytes = 4 * linearDeferFloats(version, f, dh, steps);
        long limit = sharedOptInLimit > 0 ? sharedOptInLimit : LINEAR_MAX_SHARED;
        if (version == 8) {
            return dh <= 128 && bytes <= limit ? 8 : 1;
        }
        boolean fits = wgmmaFits && bytes <= limit
                && (version != 7 || f <= LINEAR_THREADS && dh <= LINEAR_THREADS);
        return fits ? version : 1;
    }

    /** Blocks versions 6 and 7 take at most (0: one a multiprocessor). */
    private int linearDeferBlocks;

    /**
     * Has versions 6 and 7 of {@link #linearAttentionDecodeDeferred} take at most {@code blocks} blocks (0: one a
     * multiprocessor).
     */
    void linearDeferBlocks(int blocks) {
        linearDeferBlocks = blocks;
    }

    /**
     * The blocks versions 6 and 7 take for {@code items} (sequence, head)s: one a multiprocessor at most, one an
     * item.
     */
    int linearDeferGrid(long items) {
        long cap = linearDeferBlocks > 0 ? linearDeferBlocks : multiprocessors > 0 ? multiprocessors : items;
        return (int) Math.max(1, Math.min(items, cap));
    }

    /** {@link #linearAttentionDecodeDeferred} in one of its {@link #LINEAR_DEFER_VERSIONS} versions. */
    void linearAttentionDecodeDeferred(int version, Precision p, long q, long k, long v, long kvState, long kState,
                                       long pend, long count, long work, long layout, long out, int B, int H, int f,
                                       int dh, float eps, int steps) {
        require(version >= 1 && version <= LINEAR_DEFER_VERSIONS, "linearAttentionDecodeDeferred: no version "
                + version + " (1 to " + LINEAR_DEFER_VERSIONS + ")");
        require(linearDeferFits(f, dh, steps, kvState), "linearAttentionDecodeDeferred: feature dim " + f
                + ", head dim " + dh + ", " + steps + " steps between writes");
        require(H >= 1 && H <= MAX_GRID_YZ, "linearAttentionDecodeDeferred: " + H + " heads (at most " + MAX_GRID_YZ
                + ")");
        if (B == 0) {
            return;
        }
        require((pend & 15) == 0, "linearAttentionDecodeDeferred: the waiting tokens' memory is not 16-byte aligned");
        version = linearDeferRuns(version, f, dh, steps);
        int shared = 4 * (int) linearDeferFloats(version, f, dh, steps);
        long fn = function("linearAttentionDecodeDeferred" + (version == 10 ? 9 : version), p, shared);
        if (version >= 9) {
            require(work != 0, "linearAttentionDecodeDeferred: version " + version + " without its work area");
            int prepShared;
            long prep;
            if (version >= 10) {
                prepShared = linearPrep10Bytes(f, dh, steps);
                prep = function("linearAttentionDecodePrep10" + linearPrep10Form(f, dh), p, prepShared);
            } else {
                prepShared = 4 * (int) (LINEAR_PREP_WARPS * linearPrepFloats(f, dh, steps));
                prep = function("linearAttentionDecodePrep", p, prepShared);
            }
            args.reset().ptr(q).ptr(k).ptr(v).ptr(kState).ptr(pend).ptr(count).ptr(layout).ptr(work).i32(B).i32(H)
                    .i32(f).i32(dh).i32(steps);
            launch(prep, (int) (((long) B * H + LINEAR_PREP_WARPS - 1) / LINEAR_PREP_WARPS), 1, 1,
                    32 * LINEAR_PREP_WARPS, prepShared);
            args.reset().ptr(kvState).ptr(pend).ptr(count).ptr(work).ptr(layout).ptr(out).i32(B).i32(H).i32(f)
                    .i32(dh).f32(eps).i32(steps);
            launch(fn, B, H, 1, LINEAR_THREADS, shared);
            return;
        }
        args.reset().ptr(q).ptr(k).ptr(v).ptr(kvState).ptr(kState).ptr(pend).ptr(count).ptr(layout).ptr(out).i32(B)
                .i32(H).i32(f).i32(dh).f32(eps).i32(steps);
        if (version == 8) {
            launch(fn, (int) (((long) B * H + LINEAR_WARPS - 1) / LINEAR_WARPS), 1, 1, 32 * LINEAR_WARPS, shared);
        } else if (version >= 6) {
            launch(fn, linearDeferGrid((long) B * H), 1, 1, LINEAR_THREADS, shared);
        } else {
            launch(fn, B, H, 1, LINEAR_THREADS, shared);
        }
    }

    /**
     * Adds the tokens waiting beside each state of the layout's {@code B} sequences
     * ({@link #linearAttentionDecodeDeferred}) into its S and z, in order, with the step-by-step update's
     * operations, and sets their count to 0: before any kernel that reads or writes the state whole.
     */
    public void linearAttentionFold(Precision p, long kvState, long kState, long pend, long count, long layout, int B,
                                    int H, int f, int dh, int steps) {
        require(steps >= 2 && steps <= LINEAR_DEFER_MAX, "linearAttentionFold: " + steps + " steps between writes");
        require(H >= 1 && H <= MAX_GRID_YZ, "linearAttentionFold: " + H + " heads (at most " + MAX_GRID_YZ + ")");
        if (B == 0) {
            return;
        }
        int shared = 4 * (int) linearDeferredExtraFloats(steps, f, dh);
        require(shared <= LINEAR_MAX_SHARED, "linearAttentionFold: " + shared + " bytes of shared memory");
        long fn = function("linearAttentionFold", p, shared);
        args.reset().ptr(kvState).ptr(kState).ptr(pend).ptr(count).ptr(layout).i32(B).i32(H).i32(f).i32(dh)
                .i32(steps);
        launch(fn, B, H, 1, LINEAR_THREADS, shared);
    }

    /** Tokens a chunk of linearAttentionState reads at once: the most of 32, 16, .. 1 whose floats fit. */
    static int linearStateChunk(int f, int dt) {
        int e = MixerConfig.LinearAttention.expandedDim(f);
        int c = 32;
        while (c > 1 && 4L * linearStateFloats(e, f, dt, c) > LINEAR_MAX_SHARED) {
            c /= 2;
        }
        return c;
    }

    /** Dynamic shared memory (floats) of linearAttentionState: S's tile, z, and a chunk's keys, values, features. */
    private static long linearStateFloats(int e, int f, int dt, int c) {
        return (long) e * dt + e + (long) c * (f + dt + e);
    }

    /**
     * The state of {@link #linearAttention} after this call's tokens, without the outputs (where other kernels make
     * them): S and z advanced as linearAttention and linearAttentionZ advance them, bit for bit, reading the tokens
     * in chunks.
     */
    public void linearAttentionState(Precision p, long k, long v, long kvState, long kState, long layout, int T,
                                     int B, int H, int f, int dh) {
        require(f >= 1 && f <= 64, "linearAttentionState: feature dim " + f + " is outside [1, 64]");
        require(dh >= 1, "linearAttentionState: head dim " + dh);
        require(H >= 1 && H <= MAX_GRID_YZ, "linearAttentionState: " + H + " heads (at most " + MAX_GRID_YZ + ")");
        require(T >= 0 && B >= 0, "linearAttentionState: T " + T + ", B " + B);
        if (T == 0 || B == 0) {
            return;
        }
        int dt = linearTile(f, dh);
        int c = linearStateChunk(f, dt);
        int e = MixerConfig.LinearAttention.expandedDim(f);
        long floats = linearStateFloats(e, f, dt, c);
        require(4 * floats <= LINEAR_MAX_SHARED, "linearAttentionState: feature dim " + f + " needs " + 4 * floats
                + " bytes of shared memory, more than " + LINEAR_MAX_SHARED);
        int tiles = (dh + dt - 1) / dt;
        require(tiles <= MAX_GRID_YZ, "linearAttentionState: head dim " + dh + " is too large");
        long fn = function("linearAttentionState", p);
        int shared = (int) (4 * floats);
        optIn(fn, shared);
        args.reset().ptr(k).ptr(v).ptr(kvState).ptr(kState).ptr(layout).i32(T).i32(B).i32(H).i32(f).i32(dh).i32(dt)
                .i32(c);
        launch(fn, B, H, tiles, LINEAR_THREADS, shared);
    }

    /**
     * Lets {@code fn} take {@code shared} bytes of dynamic shared memory (once a function and size): the driver's
     * default is 48 KiB less the kernel's static shared memory, so a kernel with static memory can need this below 48
     * KiB of dynamic memory too.
     */
    void optIn(long fn, int shared) {
        if (shared <= 0) {
            return;
        }
        Integer have = sharedOptIn.get(fn);
        if (have == null || have < shared) {
            cu.funcSetMaxDynamicSharedMemory(fn, shared);
            sharedOptIn.put(fn, shared);
        }
    }

    // ------------------------------------------------------------------------------------------------ attention

    private static void checkAttention(String op, int T, int B, int H, int dh, int capacity, int rotaryDim,
                                       int maxPos) {
        require(T >= 0 && B >= 0, op + ": T " + T + ", B " + B);
        require(H >= 1 && H <= MAX_GRID_YZ, op + ": " + H + " heads (at most " + MAX_GRID_YZ + ")");
        require(dh >= 1 && dh <= ATTENTION_MAX_HEAD_DIM, op + ": head dim " + dh + " is outside [1, "
                + ATTENTION_MAX_HEAD_DIM + "]");
        require(capacity >= 0, op + ": capacity " + capacity);
        require(rotaryDim >= 0 && rotaryDim <= dh && rotaryDim % 2 == 0, op + ": rotary dim " + rotaryDim
                + " must be even and in [0, " + dh + "]");
        require(maxPos >= 0, op + ": maxPos " + maxPos);
    }

    /**
     * Causal softmax attention with rotary positions: qkv A {@code [T, 3d]} (q | k | v, d = H*dh, not modified), out A
     * {@code [T, d]}. Caches A per slot s at {@code + s*capacity*d}, {@code [pos % capacity][d]}, rotated keys.
     * rotary: {@link #rotaryTable} on the device. window: keys back ({@link Integer#MAX_VALUE} for full attention).
     * Call {@link #attentionAppend} afterwards.
     */
    public void attention(Precision p, long qkv, long kCache, long vCache, long rotary, long layout, long out, int T,
                          int B, int H, int dh, int capacity, int window, int rotaryDim, int maxPos,
                          boolean interleaved, float scale) {
        checkAttention("attention", T, B, H, dh, capacity, rotaryDim, maxPos);
        require(window >= 0, "attention: window " + window);
        if (T == 0 || B == 0) {
            return;
        }
        args.reset().ptr(qkv).ptr(kCache).ptr(vCache).ptr(rotary).ptr(layout).ptr(out).i32(T).i32(B).i32(H).i32(dh)
                .i32(capacity).i32(window).i32(rotaryDim).i32(maxPos).i32(interleaved ? 1 : 0).f32(scale);
        launch(function("attention", p), T, H, 1, ATTENTION_THREADS, 0);
    }

    /** Most rows of x {@link #gemv} takes (GEMV_MAX_M in gemv.cuh). */
    static final int GEMV_MAX_ROWS = 8;
    /** Output widths from which a warp of {@link #gemv} takes two rows of w (one below: more blocks). */
    private static final int GEMV_TWO_ROWS_FROM = 8192;

    /**
     * Whether {@link #gemv} takes a product of {@code m} rows of width {@code k} at these addresses: at most
     * {@link #GEMV_MAX_ROWS} rows, k a multiple of 8, x and w 16-byte aligned (its loads are 8 values wide).
     */
    static boolean gemvFits(int m, int k, long x, long w) {
        return m >= 1 && m <= GEMV_MAX_ROWS && k > 0 && k % 8 == 0 && x % 16 == 0 && w % 16 == 0;
    }

    /**
     * Whether {@link #gemv} in the version it runs beats cuBLAS for a product of {@code rows} rows into {@code n}
     * outputs of width {@code k}, as {@code bench kernels --kernel gemv} measured on an H200 at based-1b's and
     * based-360m's decode products. Version 3 for one or two rows, at every shape: 7.1 against cuBLAS's 14.9 us at
     * 1 x 3584 . 3584 x 1792 (based-1b's MLP out), 13.6 against 13.7 at its MLP in, 10.4 against 12.9 at its qkv, 6.2
     * against 9.1 at its attention's out-projection, 46.3 against 47.0 at its head; at 8 rows cuBLAS was the faster at
     * based-1b's shapes (11.4 against 16.9 us at the MLP out, 9.8 against 26.2 at the MLP in). Versions 1 and 2 where
     * the width is at least twice the outputs (the MLP's out-projections).
     */
    boolean gemvPays(int rows, int n, int k) {
        return gemvVersion >= 3 ? rows <= 2 : k >= 2L * n;
    }

    /**
     * {@code out = x @ w^T (+ bias)} for a few rows: x A {@code [m, k]}, w A {@code [n, k]}, bias A {@code [n]} or 0,
     * out {@code [m, n]} in A, or float32 where {@code outF32}. W is read once, 16 bytes a load; the sums are float32,
     * the bias added before the one rounding. Requires {@link #gemvFits}.
     */
    public void gemv(Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        gemv(gemvVersion, p, x, w, bias, out, outF32, m, n, k);
    }

    /** The version of gemv.cuh that {@link #gemv} runs by default (the fastest measured by {@code bench kernels}). */
    static final int GEMV_VERSION = 3;
    /** The system property that picks {@link #gemv}'s version. */
    static final String GEMV_VERSION_PROPERTY = "based4j.cuda.gemv";
    /**
     * Versions of {@link #gemv} there are: 1 (gemv1, gemv2: a warp a row or two), 2 (gemvP*: rows and parts), 3
     * (gemv3r*m*: version 2 with the rows of x fixed at compile time and W's pieces kept as loaded).
     */
    static final int GEMV_VERSIONS = 3;
    /** Warps version 3 aims to give a product at least, by parts of rows (a wave of 4 blocks a multiprocessor: 4224). */
    static final int GEMV3_WARPS = 2048;
    /** The system property that sets another aim than {@value #GEMV3_WARPS} (a number of warps, from 32), to compare. */
    static final String GEMV3_WARPS_PROPERTY = "based4j.cuda.gemv3Warps";
    private static volatile Integer gemv3WarpsAim;

    /**
     * The warps version 3 aims for: {@value #GEMV3_WARPS} unless {@value #GEMV3_WARPS_PROPERTY} says otherwise (read
     * once; a Kernels checks it as it is made).
     *
     * @throws IllegalArgumentException naming the property and the value where it is not a number from 32
     */
    static int gemv3WarpsAim() {
        Integer v = gemv3WarpsAim;
        if (v == null) {
            v = atLeast(GEMV3_WARPS_PROPERTY, System.getProperty(GEMV3_WARPS_PROPERTY), 32, GEMV3_WARPS,
                    "a number of warps");
            gemv3WarpsAim = v;
        }
        return v;
    }

    /** The version {@link #gemv} runs. */
    int gemvVersion() {
        return gemvVersion;
    }
    /** Warps version 2 aims to give a product at least (about 32 a multiprocessor on an H200), by parts of rows. */
    private static final int GEMV_WARPS = 4096;

    /** {@link #gemv} in one of its {@link #GEMV_VERSIONS} versions. */
    void gemv(int version, Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        gemv(version, p, x, w, bias, out, outF32, m, n, k, 0);
    }

    /**
     * {@link #gemv} in one of its {@link #GEMV_VERSIONS} versions, version 3 on at most {@code grid} blocks (0: as
     * {@value #GEMV_STREAM_PROPERTY} says; at least its blocks: a block each), streamed where fewer than its blocks.
     */
    void gemv(int version, Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k,
              int grid) {
        require(gemvFits(m, k, x, w), "gemv: " + m + " rows of width " + k + " (at most " + GEMV_MAX_ROWS
                + " rows, a width that is a multiple of 8, 16-byte aligned operands)");
        require(n >= 0, "gemv: n " + n);
        if (n == 0) {
            return;
        }
        args.reset().ptr(x).ptr(w).ptr(bias).ptr(out).i32(outF32 ? 1 : 0).i32(m).i32(n).i32(k);
        int warps = THREADS / 32;
        switch (version) {
            case 1 -> {
                int perWarp = n >= GEMV_TWO_ROWS_FROM ? 2 : 1;
                int perBlock = warps * perWarp;
                launch(function("gemv" + perWarp, p), (n + perBlock - 1) / perBlock, 1, 1, THREADS, 0);
            }
            case 2 -> {
                int rows = gemvRowsPerWarp(m);
                int parts = gemvParts(m, n, k);
                args.i32(parts);
                int perBlock = warps / parts * rows;
                launch(function("gemvP" + rows, p), (n + perBlock - 1) / perBlock, 1, 1, THREADS, 0);
            }
            case 3 -> {
                int rows = gemvRowsPerWarp(m);
                args.i32(gemv3Parts(p, m, n, k));
                args.i32(weightsFixed ? 1 : 0);
                int blocks = gemv3Blocks(p, m, n, k);
                int g = gemvGrid(blocks, grid);
                if (rows == 1 && g < blocks) {
                    args.i32(blocks);
                    launch(function("gemvStream" + m, p), g, 1, 1, THREADS, 0);
                } else {
                    String name = "gemv3r" + rows + "m" + (m <= 2 ? m : m <= 4 ? 4 : 8);
                    launch(function(name, p), blocks, 1, 1, THREADS, 0);
                }
            }
            default -> throw new IllegalArgumentException("gemv: no version " + version + " (1 to " + GEMV_VERSIONS
                    + ")");
        }
    }

    /**
     * The system property that says how version 3 of {@link #gemv} and its fused forms ({@link #gemvSwiglu},
     * {@link #gemvConv}) of one or two rows are launched: {@code false}, a block for each of version 3's blocks;
     * {@code true} (the default) or a number from 1 to {@value #GEMV_STREAM_MAX_BLOCKS}, streamed where version 3 has
     * more blocks than that many a multiprocessor (gemv.cuh's gemvStream: that many blocks a multiprocessor,
     * {@value #GEMV_STREAM_BLOCKS} for true, each taking version 3's blocks in turn, the next one's weights in flight
     * while one's sums are written; the same numbers bit for bit). On an H200, based-1b's MLP in-projection at one
     * row took 12.8 us streamed at 4 blocks a multiprocessor against 18.0 (the workbench), and its decode at batch 1
     * 702.1 and 705.4 tokens/s against 672.8 and 677.2 (2 blocks: 626.2; 3: 653.3).
     */
    static final String GEMV_STREAM_PROPERTY = "based4j.cuda.gemvStream";
    /** Blocks of a streamed gemv a multiprocessor holds at once (version 3's launch bounds: 4 of 256 threads). */
    static final int GEMV_STREAM_MAX_BLOCKS = 4;
    /** Blocks a multiprocessor a streamed gemv takes by default. */
    static final int GEMV_STREAM_BLOCKS = 4;
    private int gemvStreamBlocks = gemvStreamSetting(System.getProperty(GEMV_STREAM_PROPERTY));

    /**
     * The value of {@value #GEMV_STREAM_PROPERTY}: blocks a multiprocessor, 0 for off; where unset,
     * {@value #GEMV_STREAM_BLOCKS}.
     *
     * @throws IllegalArgumentException naming the property and the value for anything but true, false or 1 to 4
     */
    static int gemvStreamSetting(String value) {
        if (value != null && value.trim().equals("false")) {
            return 0;
        }
        if (value == null || value.trim().equals("true")) {
            return GEMV_STREAM_BLOCKS;
        }
        Integer v = wholeNumber(value, 1, GEMV_STREAM_MAX_BLOCKS);
        if (v == null) {
            throw new IllegalArgumentException("-D" + GEMV_STREAM_PROPERTY + " must be true, false or a number of"
                    + " blocks a multiprocessor from 1 to " + GEMV_STREAM_MAX_BLOCKS + ", got '" + value + "'");
        }
        return v;
    }

    /** Streams version 3 of gemv at this many blocks a multiprocessor from now on (0: not streamed). */
    void gemvStreamBlocks(int blocksPerMultiprocessor) {
        require(blocksPerMultiprocessor >= 0 && blocksPerMultiprocessor <= GEMV_STREAM_MAX_BLOCKS,
                "gemvStreamBlocks: " + blocksPerMultiprocessor);
        gemvStreamBlocks = blocksPerMultiprocessor;
    }

    /** Blocks a multiprocessor a streamed gemv takes, 0 where gemv is not streamed. */
    int gemvStreamBlocks() {
        return gemvStreamBlocks;
    }

    /**
     * The grid of a launch of {@code blocks} of version 3's blocks: fewer where streaming is on and the device's
     * multiprocessors are known (the streamed form then takes them in turn), else {@code blocks}.
     */
    int gemvStreamGrid(int blocks) {
        long cap = (long) gemvStreamBlocks * multiprocessors;
        return cap > 0 && cap < blocks ? (int) cap : blocks;
    }

    /** The grid of {@code blocks} of version 3's blocks on at most {@code grid} (0: as the setting says). */
    private int gemvGrid(int blocks, int grid) {
        return grid > 0 ? Math.min(grid, blocks) : gemvStreamGrid(blocks);
    }

    /** Blocks of version 3's own launch for a product of {@code m} rows into {@code n} outputs of width {@code k}. */
    static int gemv3Blocks(Precision p, int m, int n, int k) {
        int perBlock = THREADS / 32 / gemv3Parts(p, m, n, k) * gemvRowsPerWarp(m);
        return (n + perBlock - 1) / perBlock;
    }

    /**
     * {@link #gemv} version 3 on a grid of {@code grid} blocks (at least 1), whatever the setting: streamed where
     * fewer than its blocks, else a block each (as {@link #gemvSwiglu} and {@link #gemvConv} take a grid). For tests
     * and the workbench; one or two rows.
     */
    void gemvStream(Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k, int grid) {
        require(gemvFits(m, k, x, w) && m <= GEMV_FUSED_MAX_ROWS && n > 0 && grid >= 1, "gemvStream: " + m
                + " rows of width " + k + " into " + n + " outputs on " + grid + " blocks");
        gemv(3, p, x, w, bias, out, outF32, m, n, k, grid);
    }

    /** The system property that turns {@link #gemvSegments} off ({@code false}) for comparison; on by default. */
    static final String GEMV_SEGMENTS_PROPERTY = "based4j.cuda.gemvSegments";
    private final boolean gemvSegmentsOn = onOff(GEMV_SEGMENTS_PROPERTY, System.getProperty(GEMV_SEGMENTS_PROPERTY))
            != Boolean.FALSE;

    /** Whether the backend takes several products of one input in one {@link #gemvSegments} launch where it can. */
    boolean gemvSegmentsOn() {
        return gemvSegmentsOn;
    }

    /**
     * {@code out_i = x @ w_i^T} for two or three products of the same x in one launch (gemv.cuh's gemvSegments): each
     * product's blocks those of its own launch of version 3 ({@link #gemv}), so every output is version 3's bit for
     * bit. x A {@code [m, k]} (m at most {@value #GEMV_FUSED_MAX_ROWS}), w_i A {@code [n_i, k]}, out_i {@code [m,
     * n_i]} in A, or float32 where outF32; no biases. Requires version 3 to be the gemv that runs and
     * {@link #gemvFits} for each product.
     */
    public void gemvSegments(Precision p, long x, long[] w, long[] out, int[] n, boolean outF32, int m, int k) {
        require(w.length == out.length && w.length == n.length && w.length >= 2 && w.length <= 3,
                "gemvSegments: two or three products, got " + w.length);
        require(gemvVersion == 3, "gemvSegments: version 3 of gemv is not the one that runs");
        require(m >= 1 && m <= GEMV_FUSED_MAX_ROWS, "gemvSegments: " + m + " rows (at most "
                + GEMV_FUSED_MAX_ROWS + ")");
        long[] ws = new long[3];
        long[] os = new long[3];
        int[] ns = new int[3];
        int[] ps = new int[3];
        int[] starts = new int[4];
        for (int i = 0; i < 3; i++) {
            if (i < w.length) {
                require(gemvFits(m, k, x, w[i]) && n[i] > 0, "gemvSegments: product " + i + ": " + m + " rows of"
                        + " width " + k + " into " + n[i] + " outputs (a width that is a multiple of 8, 16-byte"
                        + " aligned operands)");
                ws[i] = w[i];
                os[i] = out[i];
                ns[i] = n[i];
                ps[i] = gemv3Parts(p, m, n[i], k);
            }
            int blocks = i < w.length ? gemv3Blocks(p, m, n[i], k) : 0;
            require((long) starts[i] + blocks <= Integer.MAX_VALUE, "gemvSegments: too many outputs");
            starts[i + 1] = starts[i] + blocks;
        }
        args.reset().ptr(x).i32(m).i32(k).i32(outF32 ? 1 : 0).i32(weightsFixed ? 1 : 0).ptr(ws[0]).ptr(ws[1])
                .ptr(ws[2]).ptr(os[0]).ptr(os[1]).ptr(os[2]).i32(ns[0]).i32(ns[1]).i32(ns[2]).i32(Math.max(ps[0], 1))
                .i32(Math.max(ps[1], 1)).i32(Math.max(ps[2], 1)).i32(starts[1]).i32(starts[2]);
        launch(function("gemvSegments" + m, p), starts[3], 1, 1, THREADS, 0);
    }

    /** Most rows of x the fused forms of gemv (gemvSwiglu, gemvConv) take: version 3's one row of W a warp. */
    static final int GEMV_FUSED_MAX_ROWS = 2;

    /**
     * The parts of the width version 3 gives a product of {@code m} rows into {@code n} outputs of width {@code k},
     * where a fused form of it takes the product ({@link #GEMV_FUSED_MAX_ROWS} rows at most, a pair of rows a block:
     * at most 4 parts), else 0. The fused forms run version 3's sums, so that their numbers are its own.
     */
    static int gemvFusedParts(Precision p, int m, int n, int k, long x, long w) {
        if (m > GEMV_FUSED_MAX_ROWS || !gemvFits(m, k, x, w)) {
            return 0;
        }
        int parts = gemv3Parts(p, m, n, k);
        return parts <= 4 ? parts : 0;
    }

    /** Whether the fused forms of gemv serve here: version 3 is the one {@link #gemv} runs. */
    boolean gemvFusedRuns() {
        return gemvVersion == 3;
    }

    /**
     * {@code out = swiglu(x @ w^T (+ bias))}: x A {@code [m, k]}, w A {@code [2h, k]} (value rows then gate rows),
     * bias A {@code [2h]} or 0, out A {@code [m, h]}: {@link #gemv} version 3 and {@link #swiglu} in one kernel, their
     * numbers bit for bit. Requires {@link #gemvFusedParts} above 0 for {@code n = 2h}.
     */
    public void gemvSwiglu(Precision p, long x, long w, long bias, long out, int m, int h, int k) {
        gemvSwiglu(p, x, w, bias, out, m, h, k, 0);
    }

    /**
     * {@link #gemvSwiglu} on a grid of {@code grid} blocks, streamed where fewer than its blocks (0: as the setting
     * says).
     */
    void gemvSwiglu(Precision p, long x, long w, long bias, long out, int m, int h, int k, int grid) {
        require(h > 0 && h <= Integer.MAX_VALUE / 2, "gemvSwiglu: h " + h);
        int blocks = gemvPairedArgs("gemvSwiglu", p, x, w, bias, out, m, h, k);
        gemvPairedLaunch("gemvSwiglu", p, m, blocks, grid);
    }

    /**
     * Launches a paired gemv whose arguments are set: its own blocks, or fewer that take them in turn (its streamed
     * form, with the count of its blocks as the last argument) where {@code grid} is below them, or where grid is 0
     * and streaming is on.
     */
    private void gemvPairedLaunch(String op, Precision p, int m, int blocks, int grid) {
        int g = gemvGrid(blocks, grid);
        if (g < blocks) {
            args.i32(blocks);
            launch(function(op + "Stream" + m, p), g, 1, 1, THREADS, 0);
        } else {
            launch(function(op + m, p), blocks, 1, 1, THREADS, 0);
        }
    }

    /**
     * Checks a paired gemv (gemvSwiglu, gemvConv) of m rows of width k into 2 h outputs and sets its first nine
     * arguments: the blocks it takes.
     */
    private int gemvPairedArgs(String op, Precision p, long x, long w, long bias, long out, int m, int h, int k) {
        int parts = gemvFusedParts(p, m, 2 * h, k, x, w);
        require(parts > 0, op + ": " + m + " rows of width " + k + " into " + 2 * h + " outputs (at most "
                + GEMV_FUSED_MAX_ROWS + " rows, a width that is a multiple of 8, 16-byte aligned operands, 4 parts)");
        args.reset().ptr(x).ptr(w).ptr(bias).ptr(out).i32(m).i32(h).i32(k).i32(parts).i32(weightsFixed ? 1 : 0);
        return gemvPairedBlocks(parts, h);
    }

    /** Blocks of a paired gemv's own launch into 2 h outputs, its rows in {@code parts} parts: a block's pairs each. */
    static int gemvPairedBlocks(int parts, int h) {
        int pairs = THREADS / 32 / parts / 2;
        return (h + pairs - 1) / pairs;
    }

    /**
     * {@code u = x @ w^T (+ bias)} and BaseConv's decode step of it ({@link #baseConvStep}) in one kernel: x A
     * {@code [m, k]} (row i the one token of the batch's sequence tokSeq[i]), w A {@code [2 inner, k]}, bias A
     * {@code [2 inner]} or 0, conv taps {@code [inner, taps]}, the history of the conv state (type A), out A
     * {@code [m, inner]}: the numbers of {@link #gemv} version 3 then baseConvStep, bit for bit, u not written.
     * Requires {@link #gemvFusedParts} above 0 for {@code n = 2 inner}.
     */
    public void gemvConv(Precision p, long x, long w, long bias, long convW, long hist, long layout, long out, int m,
                         int inner, int k, int kernel) {
        gemvConv(p, x, w, bias, convW, hist, layout, out, m, inner, k, kernel, 0);
    }

    /** {@link #gemvConv} on a grid of {@code grid} blocks, streamed where fewer than its blocks (0: as set). */
    void gemvConv(Precision p, long x, long w, long bias, long convW, long hist, long layout, long out, int m,
                  int inner, int k, int kernel, int grid) {
        require(inner > 0 && inner <= Integer.MAX_VALUE / 2 && kernel >= 1, "gemvConv: inner " + inner + ", kernel "
                + kernel);
        int blocks = gemvPairedArgs("gemvConv", p, x, w, bias, out, m, inner, k);
        args.ptr(convW).ptr(hist).ptr(layout).i32(m).i32(kernel);
        gemvPairedLaunch("gemvConv", p, m, blocks, grid);
    }

    // ------------------------------------------------------------------------------------------------ gemmRows

    /** Rows of x {@link #gemmRows} takes at most (a block takes them all). */
    static final int GEMM_ROWS_MAX = 128;
    /** The width's stage of {@link #gemmRows}: K must be a multiple of it. */
    static final int GEMM_ROWS_STAGE = 64;
    /** Outputs a block of {@link #gemmRows} takes. */
    static final int GEMM_ROWS_FEATURES = 128;
    /** Threads of a block of {@link #gemmRows}. */
    private static final int GEMM_ROWS_THREADS = 256;
    /** Blocks of {@link #gemmRows} a multiprocessor holds (its shared memory: about 83 to 111 KiB a block). */
    static final int GEMM_ROWS_BLOCKS_PER_SM = 2;
    /** The cluster sizes {@link #gemmRows} is compiled for: the blocks that share a tile's width. */
    static final int[] GEMM_ROWS_SPLITS = {1, 2, 4, 8};
    /** The system property that forces {@link #gemmRows}'s split (1, 2, 4 or 8) for every product. */
    static final String GEMM_ROWS_SPLIT_PROPERTY = "based4j.cuda.gemmRowsSplit";
    /**
     * The system property that says which products take {@link #gemmRows}: {@code auto} (the default: where it was
     * measured faster than cuBLASLt, {@link #gemmRowsWins}), {@code on} (every product of up to
     * {@value #GEMM_ROWS_MAX} rows it fits, gemv's included) or {@code off}.
     */
    static final String GEMM_ROWS_PROPERTY = "based4j.cuda.gemmRows";

    private final String gemmRowsMode = gemmRowsMode(System.getProperty(GEMM_ROWS_PROPERTY));
    private final int gemmRowsSplitSetting = gemmRowsSplitSetting(System.getProperty(GEMM_ROWS_SPLIT_PROPERTY));
    /** Multiprocessors of the device (0 until {@link #multiprocessors(int)} says). */
    private int multiprocessors;

    /** The split {@value #GEMM_ROWS_SPLIT_PROPERTY} forces (0 where unset). */
    static int gemmRowsSplitSetting(String value) {
        if (value == null) {
            return 0;
        }
        Integer v = wholeNumber(value, 1, 8);
        if (v == null || Integer.bitCount(v) != 1) {
            throw new IllegalArgumentException("-D" + GEMM_ROWS_SPLIT_PROPERTY + " must be 1, 2, 4 or 8, got '"
                    + value + "'");
        }
        return v;
    }

    /** The mode {@value #GEMM_ROWS_PROPERTY} names: auto (also where unset), on or off. */
    static String gemmRowsMode(String value) {
        if (value == null) {
            return "auto";
        }
        String v = value.trim();
        if (!v.equals("auto") && !v.equals("on") && !v.equals("off")) {
            throw new IllegalArgumentException("-D" + GEMM_ROWS_PROPERTY + " must be auto, on or off, got '" + value
                    + "'");
        }
        return v;
    }

    /**
     * Whether {@link #gemmRows} takes a product of {@code m} rows of width {@code k} at these addresses: 1 to
     * {@value #GEMM_ROWS_MAX} rows, k a positive multiple of {@value #GEMM_ROWS_STAGE}, x and w 16-byte aligned.
     */
    static boolean gemmRowsFits(int m, int k, long x, long w) {
        return m >= 1 && m <= GEMM_ROWS_MAX && k > 0 && k % GEMM_ROWS_STAGE == 0 && x % 16 == 0 && w % 16 == 0;
    }

    /**
     * Where {@link #gemmRows} made the decode step faster on an H200: 3 to 8 rows into at most 4,096 outputs, and 2
     * rows into more (where gemv version 3 took 16.6 us for based-1b's MLP in-projection and gemmRows 11.8, its qkv
     * 15.7 against 10.8, its head 67.7 against 54.0; the narrower products stay with gemv). The
     * kernel workbench ({@code bench kernels --kernel gemv}, weights read from device memory) has it faster than
     * cuBLASLt there (based-1b's MLP out-projection at 8 rows 8.7 against 12.0 us, its 1792 x 1792 projections 7.0
     * against 8.8, based-360m's MLP 8.4 against 11.8 and 6.4 against 12.0) and slower on the wide products (7,168 and
     * 5,376 outputs: 12.3 against 10.3 and 11.2 against 9.7) and the head; whole decode steps ({@code bench gpu}):
     * based-360m at batch 4 4,407 against 3,328 tokens/s, at 8 8,392 against 7,630, based-1b at 4 2,210 and 2,265
     * against 2,104 and 2,152, at 8 4,054 and 4,122 against 3,966 and 4,095. From 9 rows it is not taken: at 16 and
     * 32 rows it lost whole steps (based-1b at 32 rows 11,632 and 11,283 against 15,005 and 14,814 tokens/s,
     * based-360m 22,280 against 26,176) although the workbench had it faster for the MLP's out-projection at 32 rows
     * (12.7 against 31.9 us), and at 128 rows cuBLASLt takes 9 to 11 us where gemmRows took 22 to 35 at best (each
     * block reads the rows of x again, and the stages in flight do not cover the latency).
     */
    static boolean gemmRowsWins(int rows, int n) {
        return rows >= 3 && rows <= 8 && n <= 4096 || rows == 2 && n > 4096;
    }

    /**
     * Whether a product of {@code rows} rows into {@code n} outputs of width {@code k} goes to {@link #gemmRows}: by
     * default where {@link #gemmRowsWins} says, on a device that runs clusters (where it was measured: without them
     * a narrow product has a block a tile); with {@code on} wherever the block's shared memory fits the device.
     */
    boolean gemmRowsPays(int rows, int n, int k) {
        boolean fits = rows >= 1 && rows <= GEMM_ROWS_MAX
                && (sharedOptInLimit == 0 || gemmRowsSmem(gemmRowsBlockRows(rows)) <= sharedOptInLimit);
        return switch (gemmRowsMode) {
            case "off" -> false;
            case "on" -> fits;
            default -> fits && clustersFit && gemmRowsWins(rows, n);
        };
    }

    /** Shared memory a block may opt in to on the device (0 until {@link #sharedOptInLimit(int)} says). */
    private int sharedOptInLimit;

    /** Says how much shared memory a block may opt in to on the device, which bounds {@link #gemmRows}'s rows. */
    void sharedOptInLimit(int bytes) {
        sharedOptInLimit = bytes;
    }

    /** The rows of x a block of {@link #gemmRows} takes for m rows: the power of two at or above m, 8 at least. */
    static int gemmRowsBlockRows(int m) {
        int mp = 8;
        while (mp < m) {
            mp *= 2;
        }
        return mp;
    }

    /** Dynamic shared memory of a block of {@link #gemmRows} for mp rows of x (gemm_rows.cuh's GrShape). */
    static int gemmRowsSmem(int mp) {
        int stages = mp >= 64 ? 3 : 4;
        int xRows = Math.max(mp, 16);
        int stageBytes = stages * (GEMM_ROWS_FEATURES + xRows) * (GEMM_ROWS_STAGE + 8) * 2;
        int tileBytes = GEMM_ROWS_FEATURES * (mp + 1) * 4;
        return Math.max(stageBytes, tileBytes);
    }

    /**
     * The blocks that share a tile's width in {@link #gemmRows} for {@code n} outputs of width {@code k} on a device
     * of {@code sms} multiprocessors that runs clusters (or not): the smallest of 1, 2, 4, 8 that gives the product
     * 3/7 of a block a multiprocessor (57 on an H200), keeping two stages of the width a block or more. Measured on an
     * H200 at 1 to 32 rows: the fastest split gave 64 to 112 blocks (based-1b's MLP in-projection, 56 tiles, 11.8 us
     * split in 2 against 13.5 in 4 and 15.8 in 1 at 2 rows; its out-projection, 14 tiles, 8.7 in 8 against 10.9 in 4
     * at 8 rows); more blocks than that were slower (a cluster's blocks wait for each other at its end).
     */
    static int gemmRowsSplit(int n, int k, int sms, boolean clusters) {
        return clusters ? clusterSplit(gemmRowsTiles(n), k / GEMM_ROWS_STAGE, sms) : 1;
    }

    /**
     * The blocks of a cluster that share a tile's width for {@code tiles} tiles of {@code stages} stages of the width
     * on {@code sms} multiprocessors: the smallest of 1, 2, 4, 8 that gives 3/7 of a block a multiprocessor, keeping two
     * stages a block or more.
     */
    static int clusterSplit(long tiles, int stages, int sms) {
        long want = (3L * sms + 6) / 7;
        int split = 1;
        while (split < 8 && tiles * split < want && stages / (2 * split) >= 2) {
            split *= 2;
        }
        return split;
    }

    /** The tiles of {@value #GEMM_ROWS_FEATURES} outputs {@link #gemmRows} cuts {@code n} outputs into. */
    static long gemmRowsTiles(int n) {
        return ((long) n + GEMM_ROWS_FEATURES - 1) / GEMM_ROWS_FEATURES;
    }

    /** The split {@link #gemmRows} takes for this product here: the property's, else {@link #gemmRowsSplit}. */
    int gemmRowsSplit(int n, int k) {
        return gemmRowsSplitSetting != 0 && clustersFit ? gemmRowsSplitSetting
                : gemmRowsSplit(n, k, multiprocessors, clustersFit);
    }

    /** Says the device's multiprocessors, which size {@link #gemmRows}'s grid. */
    void multiprocessors(int count) {
        multiprocessors = count;
    }

    /** The device's multiprocessors (0 until {@link #multiprocessors(int)} says). */
    int multiprocessors() {
        return multiprocessors;
    }

    /**
     * {@code out = x @ w^T (+ bias)} on tensor cores for a decode step's rows (gemm_rows.cuh): x bf16 {@code [m, k]},
     * w bf16 {@code [n, k]}, bias bf16 {@code [n]} or 0, out {@code [m, n]} in bf16, or float32 where {@code outF32};
     * float32 sums added in a fixed order, the bias before the one rounding. Requires {@link #gemmRowsFits}.
     */
    public void gemmRows(Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        gemmRows(gemmRowsSplit(n, k), p, x, w, bias, out, outF32, m, n, k);
    }

    /**
     * {@link #gemmRows} with the width shared by {@code split} blocks (1, 2, 4 or 8; above 1 on sm_90 only): the
     * kernel gemmRows{MP}s{split}, {@link #gemmRowsTiles} tiles of {@value #GEMM_ROWS_FEATURES} outputs.
     */
    void gemmRows(int split, Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        require(p == Precision.BF16, "gemmRows: bf16 operands only, got " + p.suffix());
        require(gemmRowsFits(m, k, x, w), "gemmRows: " + m + " rows of width " + k + " (1 to " + GEMM_ROWS_MAX
                + " rows, a width that is a multiple of " + GEMM_ROWS_STAGE + ", 16-byte aligned operands)");
        require(n >= 0, "gemmRows: n " + n);
        require(split == 1 || split == 2 || split == 4 || split == 8, "gemmRows: split " + split
                + " (1, 2, 4 or 8)");
        require(split == 1 || clustersFit, "gemmRows: a split of " + split
                + " needs thread block clusters (compute capability 9 or more)");
        if (n == 0) {
            return;
        }
        int mp = gemmRowsBlockRows(m);
        int shared = gemmRowsSmem(mp);
        require(sharedOptInLimit == 0 || shared <= sharedOptInLimit, "gemmRows: " + m + " rows take " + shared
                + " bytes of shared memory a block; this device allows " + sharedOptInLimit);
        long fn = function("gemmRows" + mp + "s" + split, p, shared);
        long tiles = gemmRowsTiles(n);
        require(tiles * split <= Integer.MAX_VALUE, "gemmRows: " + n + " outputs");
        args.reset().ptr(x).ptr(w).ptr(bias).ptr(out).i32(outF32 ? 1 : 0).i32(m).i32(n).i32(k)
                .i32(weightsFixed ? 1 : 0);
        launch(fn, (int) (tiles * split), 1, 1, GEMM_ROWS_THREADS, shared);
    }

    // ------------------------------------------------------------------------------------------------ gemmWg

    /** Rows of x a block of {@link #gemmWg} takes (the grid's second dimension covers more). */
    static final int GEMM_WG_ROWS = 128;
    /** Outputs a block of {@link #gemmWg} takes. */
    static final int GEMM_WG_FEATURES = 128;
    /** The width's stage of {@link #gemmWg}: K must be a multiple of it. */
    static final int GEMM_WG_STAGE = 64;
    /** Threads of a block of {@link #gemmWg}: two warpgroups. */
    private static final int GEMM_WG_THREADS = 256;
    /** Dynamic shared memory of a block of {@link #gemmWg}: six stages of W's and x's 128 rows, and 1 KiB to align. */
    static final int GEMM_WG_SMEM = 6 * (GEMM_WG_FEATURES + GEMM_WG_ROWS) * GEMM_WG_STAGE * 2 + 1024;
    /** The cluster sizes {@link #gemmWg} is compiled for: the blocks that share a tile's width. */
    static final int[] GEMM_WG_SPLITS = {1, 2, 4, 8};
    /** Rows of x above which {@value #GEMM_WG_PROPERTY} leaves a product to the other kernels. */
    static final int GEMM_WG_ON_MAX = 1024;
    /**
     * The system property that sends every product of up to {@value #GEMM_WG_ON_MAX} rows {@link #gemmWg} fits to it:
     * {@code true}, for comparisons; off by default, since on an H200 it made based-1b's decode steps slower at 64
     * and 128 sequences (every product, or only the narrow ones), though the workbench has it as fast as cuBLASLt on
     * the narrow products of 64 and 128 rows.
     */
    static final String GEMM_WG_PROPERTY = "based4j.cuda.gemmWg";

    private final boolean gemmWgOn = onOff(GEMM_WG_PROPERTY, System.getProperty(GEMM_WG_PROPERTY)) == Boolean.TRUE;
    /**
     * The system property that picks {@link #gemmWg}'s version: 1 (gemm_wgmma.cuh: every thread copies its 16-byte
     * pieces of each stage, each stage's products waited for before the next copies) or 2 (gemm_tma.cuh: a producer
     * warpgroup asks for each stage with two tensor copies, stages freed through mbarriers, one stage's products in
     * flight while the next is waited for). 1 by default.
     */
    static final String GEMM_WG_VERSION_PROPERTY = "based4j.cuda.gemmWgVersion";
    /** Versions of {@link #gemmWg}. */
    static final int GEMM_WG_VERSIONS = 2;
    private int gemmWgVersion = version(GEMM_WG_VERSION_PROPERTY, System.getProperty(GEMM_WG_VERSION_PROPERTY),
            GEMM_WG_VERSIONS, 1);
    /** Threads of a block of {@link #gemmWg}'s version 2: a producer warpgroup and two that multiply. */
    private static final int GEMM_TMA_THREADS = 384;
    /** The box a tensor copy of version 2 reads: 64 columns (one 128-byte swizzled row) by 128 rows. */
    private static final int GEMM_TMA_BOX_COLS = 64;
    private static final int GEMM_TMA_BOX_ROWS = 128;
    /** Tensor maps of version 2's operands, made on first use. */
    private TensorMaps tensorMaps;
    /**
     * The system property that says how much the L2 cache reads around each row version 2's tensor copies ask for:
     * {@code none}, {@code 64}, {@code 128} or {@code 256} bytes ({@code CUtensorMapL2promotion}); 256 by default.
     */
    static final String GEMM_TMA_PROMOTION_PROPERTY = "based4j.cuda.gemmTmaPromotion";
    /** The values of {@value #GEMM_TMA_PROMOTION_PROPERTY}, in the driver's order. */
    static final List<String> GEMM_TMA_PROMOTIONS = List.of("none", "64", "128", "256");
    private int gemmTmaPromotion = promotion(System.getProperty(GEMM_TMA_PROMOTION_PROPERTY));

    /** The driver's L2 promotion for a value of {@value #GEMM_TMA_PROMOTION_PROPERTY}: 256 bytes where unset. */
    static int promotion(String value) {
        if (value == null) {
            return GEMM_TMA_PROMOTIONS.size() - 1;
        }
        int i = GEMM_TMA_PROMOTIONS.indexOf(value.trim());
        if (i < 0) {
            throw new IllegalArgumentException("-D" + GEMM_TMA_PROMOTION_PROPERTY + " must be one of "
                    + String.join(", ", GEMM_TMA_PROMOTIONS) + ", got '" + value + "'");
        }
        return i;
    }

    /** Has version 2's tensor copies made from now on with this L2 promotion (an index of GEMM_TMA_PROMOTIONS). */
    void gemmTmaPromotion(int promotion) {
        require(promotion >= 0 && promotion < GEMM_TMA_PROMOTIONS.size(), "gemmWg: no L2 promotion " + promotion);
        gemmTmaPromotion = promotion;
    }

    /** The L2 promotion version 2's tensor copies are made with (an index of GEMM_TMA_PROMOTIONS). */
    int gemmTmaPromotion() {
        return gemmTmaPromotion;
    }

    /** Has {@link #gemmWg} run version {@code version} (1 or 2; the workbench and the tests compare them). */
    void gemmWgVersion(int version) {
        require(version >= 1 && version <= GEMM_WG_VERSIONS, "gemmWg: no version " + version);
        gemmWgVersion = version;
    }

    /** The version {@link #gemmWg} runs. */
    int gemmWgVersion() {
        return gemmWgVersion;
    }
    /**
     * The system property that sends the MLP's in-projection with its SwiGLU and BaseConv's in-projection with its
     * decode step to version 2's paired forms ({@link #gemmTmaSwiglu}, {@link #gemmTmaConv}) while the other products
     * keep their routes: {@code true}, for comparisons; off by default.
     */
    static final String GEMM_TMA_PAIRED_PROPERTY = "based4j.cuda.gemmTmaPaired";

    private final boolean gemmTmaPairedOn = onOff(GEMM_TMA_PAIRED_PROPERTY,
            System.getProperty(GEMM_TMA_PAIRED_PROPERTY)) == Boolean.TRUE;

    /**
     * Whether a paired product of {@code rows} rows goes to version 2's paired forms: where gemmWg takes the product
     * at version 2, or where {@value #GEMM_TMA_PAIRED_PROPERTY} is true, on an sm_90a device whose blocks may take
     * the shared memory, for up to {@value #GEMM_WG_ON_MAX} rows.
     */
    boolean gemmTmaPairedPays(int rows) {
        return (gemmWgOn && gemmWgVersion == 2 || gemmTmaPairedOn) && gemmWgRuns(rows);
    }

    /** Whether the device runs the sm_90a binary's wgmma (compute capability 9.0): {@link #gemmWg}. */
    private boolean wgmmaFits;

    /**
     * Says the device's compute capability, major and minor: {@link #computeCapability(int)}, and whether the
     * sm_90a binary (its wgmma) runs: on 9.0 only.
     */
    void computeCapability(int major, int minor) {
        computeCapability(major);
        wgmmaFits = major == 9 && minor == 0;
    }

    /** Whether {@link #gemmWg} runs on this device. */
    boolean wgmmaFits() {
        return wgmmaFits;
    }

    /**
     * Whether {@link #gemmWg} takes a product of {@code m} rows of width {@code k} at these addresses: a row or more,
     * k a positive multiple of {@value #GEMM_WG_STAGE}, x and w 16-byte aligned.
     */
    static boolean gemmWgFits(int m, int k, long x, long w) {
        return m >= 1 && k > 0 && k % GEMM_WG_STAGE == 0 && x % 16 == 0 && w % 16 == 0;
    }

    /**
     * Whether a product of {@code rows} rows goes to {@link #gemmWg}: where {@value #GEMM_WG_PROPERTY} is true, on an
     * sm_90a device whose blocks may take its shared memory, for up to {@value #GEMM_WG_ON_MAX} rows.
     */
    boolean gemmWgPays(int rows) {
        return gemmWgOn && gemmWgRuns(rows);
    }

    /**
     * Whether {@link #gemmWg} and its paired forms run {@code rows} rows here: an sm_90a device whose blocks may take
     * their shared memory, up to {@value #GEMM_WG_ON_MAX} rows.
     */
    private boolean gemmWgRuns(int rows) {
        return wgmmaFits && rows >= 1 && rows <= GEMM_WG_ON_MAX
                && (sharedOptInLimit == 0 || GEMM_WG_SMEM <= sharedOptInLimit);
    }

    /**
     * The blocks that share a tile's width in {@link #gemmWg} for {@code blocks} tiles (outputs by rows) of width
     * {@code k} on {@code sms} multiprocessors: as {@link #gemmRowsSplit(int, int, int, boolean)} chooses for its
     * tiles ({@link #clusterSplit}). Measured on an H200 at 64 and 128 rows: the split it gives was the fastest for
     * each of based-1b's and based-360m's products (based-1b's MLP in-projection at 128 rows 16.7 us in 2 against 18.8
     * in 1 and 26.9 in 4, its out-projection 14.0 in 8 against 17.4 in 4, based-360m's MLP in-projection 12.8 in 2
     * against 21.4 in 4).
     */
    static int gemmWgSplit(long blocks, int k, int sms) {
        return clusterSplit(blocks, k / GEMM_WG_STAGE, sms);
    }

    /** The blocks of {@link #gemmWg} for {@code m} rows into {@code n} outputs, before the width is split. */
    static long gemmWgBlocks(int m, int n) {
        return gemmWgTiles(n) * gemmWgRowBlocks(m);
    }

    /** The tiles of {@link #gemmWg} along the outputs: one for each {@value #GEMM_WG_FEATURES}. */
    private static long gemmWgTiles(long n) {
        return (n + GEMM_WG_FEATURES - 1) / GEMM_WG_FEATURES;
    }

    /** The blocks of {@link #gemmWg} along x's rows: one for each {@value #GEMM_WG_ROWS}. */
    private static long gemmWgRowBlocks(int m) {
        return ((long) m + GEMM_WG_ROWS - 1) / GEMM_WG_ROWS;
    }

    /**
     * {@code out = x @ w^T (+ bias)} on Hopper's warpgroup tensor cores (gemm_wgmma.cuh): x bf16 {@code [m, k]}, w
     * bf16 {@code [n, k]}, bias bf16 {@code [n]} or 0, out {@code [m, n]} in bf16, or float32 where {@code outF32};
     * float32 sums added in a fixed order, the bias before the one rounding. Requires {@link #gemmWgFits} and
     * {@link #wgmmaFits}.
     */
    public void gemmWg(Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        gemmWg(gemmWgSplit(m, n, k), p, x, w, bias, out, outF32, m, n, k);
    }

    /** The split {@link #gemmWg} takes here for {@code m} rows into {@code n} outputs of width {@code k}. */
    int gemmWgSplit(int m, int n, int k) {
        return gemmWgSplit(gemmWgBlocks(m, n), k, multiprocessors);
    }

    /**
     * {@link #gemmWg} with the width shared by {@code split} blocks (1, 2, 4 or 8): the kernel gemmWg{split}, tiles
     * of {@value #GEMM_WG_FEATURES} outputs by {@value #GEMM_WG_ROWS} rows.
     */
    void gemmWg(int split, Precision p, long x, long w, long bias, long out, boolean outF32, int m, int n, int k) {
        long tiles = gemmWgChecks("gemmWg", split, p, x, w, m, n, k);
        if (tiles == 0) {
            return;
        }
        long rowBlocks = gemmWgRowBlocks(m);
        if (gemmWgVersion == 2) {
            MemorySegment mx = tensorMaps().bf16(x, m, k, GEMM_TMA_BOX_COLS, GEMM_TMA_BOX_ROWS, gemmTmaPromotion);
            MemorySegment mw = tensorMaps().bf16(w, n, k, GEMM_TMA_BOX_COLS, GEMM_TMA_BOX_ROWS, gemmTmaPromotion);
            long fn = function("gemmTma" + split, p, GEMM_WG_SMEM);
            args.reset().blob(mx).blob(mw).ptr(bias).ptr(out).i32(outF32 ? 1 : 0).i32(m).i32(n).i32(k)
                    .i32(weightsFixed ? 1 : 0);
            launch(fn, (int) (tiles * split), (int) rowBlocks, 1, GEMM_TMA_THREADS, GEMM_WG_SMEM);
            return;
        }
        long fn = function("gemmWg" + split, p, GEMM_WG_SMEM);
        args.reset().ptr(x).ptr(w).ptr(bias).ptr(out).i32(outF32 ? 1 : 0).i32(m).i32(n).i32(k)
                .i32(weightsFixed ? 1 : 0);
        launch(fn, (int) (tiles * split), (int) rowBlocks, 1, GEMM_WG_THREADS, GEMM_WG_SMEM);
    }

    /**
     * What {@link #gemmWg} and {@link #gemmTmaSwiglu} check before they launch, naming {@code op}: the operands, the
     * device and the split; the tiles of {@value #GEMM_WG_FEATURES} outputs (0 for none: nothing to launch).
     */
    private long gemmWgChecks(String op, int split, Precision p, long x, long w, int m, int n, int k) {
        require(p == Precision.BF16, op + ": bf16 operands only, got " + p.suffix());
        require(wgmmaFits, op + ": needs an sm_90a device (compute capability 9.0)");
        require(gemmWgFits(m, k, x, w), op + ": " + m + " rows of width " + k + " (a row or more, a width that is a"
                + " multiple of " + GEMM_WG_STAGE + ", 16-byte aligned operands)");
        require(n >= 0, op + ": n " + n);
        require(split == 1 || split == 2 || split == 4 || split == 8, op + ": split " + split + " (1, 2, 4 or 8)");
        require(sharedOptInLimit == 0 || GEMM_WG_SMEM <= sharedOptInLimit, op + ": a block takes " + GEMM_WG_SMEM
                + " bytes of shared memory; this device allows " + sharedOptInLimit);
        long tiles = gemmWgTiles(n);
        long rowBlocks = gemmWgRowBlocks(m);
        require(tiles * split <= Integer.MAX_VALUE && rowBlocks <= 65535, op + ": " + m + " rows into " + n
                + " outputs");
        return tiles;
    }

    /** The tensor maps of version 2's operands, made on first use. */
    private TensorMaps tensorMaps() {
        require(cu.tensorMaps(), "gemmWg version 2: the driver makes no tensor maps (cuTensorMapEncodeTiled)");
        if (tensorMaps == null) {
            tensorMaps = new TensorMaps(cu);
        }
        return tensorMaps;
    }

    /**
     * {@code out = swiglu(x @ w^T)} in one launch of {@link #gemmWg}'s version 2 in its paired form (gemm_tma.cuh): x
     * bf16 {@code [m, k]}, w bf16 {@code [2h, k]} (row j a value, row h + j its gate), out bf16 {@code [m, h]}; the
     * numbers of gemmWg writing the product in bf16 and {@link #swiglu} after it, bit for bit (the product is not
     * written). Requires what gemmWg's version 2 does.
     */
    public void gemmTmaSwiglu(Precision p, long x, long w, long out, int m, int h, int k) {
        gemmTmaSwiglu(gemmWgSplit(m, 2 * h, k), p, x, w, out, m, h, k);
    }

    /**
     * {@code u = x @ w^T (+ bias)} and BaseConv's decode step of it ({@link #baseConvStep}) in one launch of
     * {@link #gemmWg}'s version 2 in its paired form (gemm_tma.cuh), as {@link #gemvConv} takes them: x bf16
     * {@code [m, k]} (row i the one token of the batch's sequence tokSeq[i]), w bf16 {@code [2 inner, k]}, bias bf16
     * {@code [2 inner]} or 0, conv taps {@code [inner, kernel]}, the conv state's history (bf16), out bf16
     * {@code [m, inner]}: the numbers of gemmWg then baseConvStep, bit for bit, u not written.
     */
    public void gemmTmaConv(Precision p, long x, long w, long bias, long convW, long hist, long layout, long out, int m,
                            int inner, int k, int kernel) {
        gemmTmaConv(gemmWgSplit(m, 2 * inner, k), p, x, w, bias, convW, hist, layout, out, m, inner, k, kernel);
    }

    /** {@link #gemmTmaConv} with the width shared by {@code split} blocks (1, 2, 4 or 8). */
    void gemmTmaConv(int split, Precision p, long x, long w, long bias, long convW, long hist, long layout, long out,
                     int m, int inner, int k, int kernel) {
        require(kernel >= 1, "gemmTmaConv: kernel " + kernel);
        if (gemmTmaPairedArgs("gemmTmaConv", split, p, x, w, m, inner, k)) {
            args.ptr(bias).ptr(out).ptr(convW).ptr(hist).ptr(layout).i32(m).i32(2 * inner).i32(k).i32(kernel)
                    .i32(weightsFixed ? 1 : 0);
            gemmTmaPairedLaunch("gemmTmaConv", split, p, m, inner);
        }
    }

    /** {@link #gemmTmaSwiglu} with the width shared by {@code split} blocks (1, 2, 4 or 8). */
    void gemmTmaSwiglu(int split, Precision p, long x, long w, long out, int m, int h, int k) {
        if (gemmTmaPairedArgs("gemmTmaSwiglu", split, p, x, w, m, h, k)) {
            args.ptr(0).ptr(out).i32(m).i32(2 * h).i32(k).i32(weightsFixed ? 1 : 0);
            gemmTmaPairedLaunch("gemmTmaSwiglu", split, p, m, h);
        }
    }

    /**
     * The checks of a paired form of version 2 ({@code op}) for {@code h} pairs, and its first arguments, the tensor
     * maps of x (boxes of 128 rows) and w (boxes of 64: a tile's values and gates apart): false where there is
     * nothing to launch.
     */
    private boolean gemmTmaPairedArgs(String op, int split, Precision p, long x, long w, int m, int h, int k) {
        require(h >= 0 && h <= Integer.MAX_VALUE / 2, op + ": " + h + " pairs");
        if (gemmWgChecks(op, split, p, x, w, m, 2 * h, k) == 0) {
            return false;
        }
        MemorySegment mx = tensorMaps().bf16(x, m, k, GEMM_TMA_BOX_COLS, GEMM_TMA_BOX_ROWS, gemmTmaPromotion);
        MemorySegment mw = tensorMaps().bf16(w, 2L * h, k, GEMM_TMA_BOX_COLS, GEMM_TMA_BOX_ROWS / 2,
                gemmTmaPromotion);
        args.reset().blob(mx).blob(mw);
        return true;
    }

    /** Launches {@code op}{split} for m rows into h pairs, its arguments set: a block a tile of 64 pairs. */
    private void gemmTmaPairedLaunch(String op, int split, Precision p, int m, int h) {
        launch(function(op + split, p, GEMM_WG_SMEM), (int) (gemmWgTiles(2L * h) * split), (int) gemmWgRowBlocks(m), 1,
                GEMM_TMA_THREADS, GEMM_WG_SMEM);
    }

    /** Rows of w a warp of gemv version 2 takes: 1, 2 or 4 for up to 2, 4 or 8 rows of x. */
    static int gemvRowsPerWarp(int m) {
        return m <= 2 ? 1 : m <= 4 ? 2 : 4;
    }

    /**
     * Parts of the width that gemv version 2 gives a row group's warps: 1, 2, 4 or 8, the fewest that give
     * {@value #GEMV_WARPS} warps or more, each part keeping 32 pieces of 8 values or more (a piece a lane).
     */
    static int gemvParts(int m, int n, int k) {
        long groups = (n + gemvRowsPerWarp(m) - 1) / gemvRowsPerWarp(m);
        int pieces = k / 8;
        int parts = 1;
        while (parts < 8 && groups * parts < GEMV_WARPS && pieces / (2 * parts) >= 32) {
            parts *= 2;
        }
        return parts;
    }

    /**
     * Parts of the width that gemv version 3 gives a row group's warps: 1, 2, 4 or 8, the fewest that leave each part
     * one round of loads (32 lanes x 8 / R pieces of 8 bf16 values, 4 / R of float32) and give {@value #GEMV3_WARPS}
     * (or what {@value #GEMV3_WARPS_PROPERTY} sets)
     * warps or more, each part keeping 32 pieces or more.
     */
    static int gemv3Parts(Precision p, int m, int n, int k) {
        int rows = gemvRowsPerWarp(m);
        int round = 32 * (p == Precision.BF16 ? 8 : 4) / rows;
        long groups = (n + rows - 1) / rows;
        int pieces = k / 8;
        int parts = 1;
        while (parts < 8 && ((pieces + parts - 1) / parts > round
                || (groups * parts < gemv3WarpsAim() && pieces / (2 * parts) >= 32))) {
            parts *= 2;
        }
        return parts;
    }

    /** Keys one block of {@link #attentionDecode} takes at most (DEC_KEYS in the .cu). */
    static final int DECODE_KEYS = 256;

    /**
     * Whether {@link #attentionDecode} takes heads of {@code dh} dims: a multiple of 16 up to 128 (its threads read
     * pairs of dims, eight threads a key).
     */
    static boolean decodeSplits(int dh) {
        return dh % 16 == 0 && dh <= 128;
    }

    /**
     * Blocks {@link #attentionDecode} splits a query's keys into: enough for the most keys a query sees; 0 past what
     * a grid holds (the unsplit kernel then takes the step).
     */
    static int decodeSplitCount(long keysSeen) {
        long splits = Math.max(1, (keysSeen + DECODE_KEYS - 1) / DECODE_KEYS);
        return splits > MAX_GRID_YZ ? 0 : (int) splits;
    }

    /**
     * The version of attention_decode.cuh that {@link #attentionDecode} runs: the one the system property
     * {@value #DECODE_VERSION_PROPERTY} names, or 0 for the defaults by batch, {@link #DECODE_DEFAULT} and
     * {@link #DECODE_ONE_SEQUENCE_DEFAULT} ({@code bench kernels --kernel attentionDecode} times them side by side; a
     * version becomes a default by measurement).
     */
    private final int decodeVersion;
    /** The version {@link #gemv} runs: {@link #GEMV_VERSION} unless {@value #GEMV_VERSION_PROPERTY} names another. */
    private final int gemvVersion;
    /**
     * Version 6 for batches of more than one sequence: on an H200 ({@code bench kernels --kernel attentionDecode}, the
     * caches read from device memory) 342.5 us a layer of attn-1b at batch 128 and 1,536 tokens (4.12 TB/s) against
     * 524.1 for version 2 (2.69 TB/s), 513.9 for version 4 and 369.4 for version 7; 132.7 against 191.9 at attn-360m's
     * batch 64 of 2,000 tokens; 33.4 against 43.4 for based-1b's window (which its own kernel takes). attn-1b's decode
     * at batch 128 went from 6,194.7 and 6,195.4 tokens/s (version 2) to 8,874.9 and 8,865.7 (version 7: 8,363.7 and
     * 8,370.3), in one run. Before it version 2 was the default: half the time of version 1 (535 against 1,065 us),
     * faster than version 5 (one pass, an online softmax, but its lane groups' keys split over the threads of a
     * head's block: 585 us, 91 registers against 56).
     */
    static final int DECODE_DEFAULT = 6;
    /**
     * Version 4 for one sequence: on an H200 28.4 against 36.4 us (version 3), 46.5 (version 2) and 93.5 (version 1) a
     * layer of attn-1b at 1,536 tokens, each timed over cold copies of the caches (a grid of 112 blocks, each with
     * its keys' and values' loads all in flight at once); version 3 had taken 34.6 against version 2's 47.8. At
     * batch 128 version 4 took 525 against version 2's 536 us (attn-1b), 43.7 against 43.4 (based-1b's window), and
     * at attn-360m's batch 64 of 2,000 tokens 214 against 194: version 2 stays for batches.
     */
    static final int DECODE_ONE_SEQUENCE_DEFAULT = 4;
    /** The system property that picks {@link #attentionDecode}'s version. */
    static final String DECODE_VERSION_PROPERTY = "based4j.cuda.attentionDecode";
    /**
     * Versions of {@link #attentionDecode}: 1 (a pair of dims a thread), 2 (8 dims a lane, keys in flight), 3 (as 2,
     * but each score a thread's whole dot product, without shuffles), 4 (the split's keys and values copied into shared
     * memory first, 64 at a time in bf16, then as 2; with one split it writes the output itself, no merge), 5 (one
     * pass: a lane group's keys and values loaded together, an online softmax), 6 (a block a split of a sequence's
     * keys for all its heads, a lane group a head with its online softmax in registers; no shared memory, no barrier),
     * 7 (as 6 with half the keys in flight: fewer registers).
     */
    static final int DECODE_VERSIONS = 7;
    /** Most threads of a block of version 6 of {@link #attentionDecode} (DEC6_MAX_THREADS in the .cu). */
    static final int DECODE6_MAX_THREADS = 512;

    /**
     * The threads of a block of versions 6 and 7 of {@link #attentionDecode}: a lane group of G a head (G the power of 2 at or
     * above dh / 8, at least 2), in whole warps; above {@value #DECODE6_MAX_THREADS} version 2 runs instead.
     */
    static int decode6Threads(int heads, int dh) {
        long threads = ((long) heads * decodeLaneGroup(dh) + 31) / 32 * 32;
        return (int) Math.min(threads, Integer.MAX_VALUE);
    }

    /**
     * The version {@link #attentionDecode} launches when asked for {@code version} with {@code heads} heads of
     * {@code dh}: version 2 where a block of versions 6 and 7 would pass {@value #DECODE6_MAX_THREADS} threads, else
     * the one asked for.
     */
    static int decodeLaunchVersion(int version, int heads, int dh) {
        return version >= 6 && decode6Threads(heads, dh) > DECODE6_MAX_THREADS ? 2 : version;
    }

    /** The version {@link #attentionDecode} runs for a batch of {@code batch} sequences. */
    int decodeVersion(int batch) {
        return decodeVersion != 0 ? decodeVersion : batch == 1 ? DECODE_ONE_SEQUENCE_DEFAULT : DECODE_DEFAULT;
    }

    /**
     * The version of linear_attention_decode.cuh that the system property {@value #LINEAR_DECODE_VERSION_PROPERTY}
     * names ({@code bench kernels --kernel linearAttentionDecode}); 0 where unset ({@link #linearDecodeVersion(long, int)}).
     */
    private final int linearDecodeVersion;
    /**
     * Version 3 for heads narrower than {@value #LINEAR_DECODE_WIDE_HEAD}: on an H200 104 against 115 us (version 1)
     * and 111 (version 4) a layer of based-360m (head dim 64) at batch 256; version 2 (8 rows in flight, 99
     * registers) was slower there.
     */
    static final int LINEAR_DECODE_DEFAULT = 3;
    /**
     * Version 4 from this head dim on: based-1b's heads of 112 at batch 128 87.1 us a layer against 100.4 (version 3)
     * and 96.8 (version 2), at batch 1 8.9 against 9.6 (a thread has 17 rows of S there, 10 at head dim 64).
     */
    static final int LINEAR_DECODE_WIDE_HEAD = 96;
    static final int LINEAR_DECODE_WIDE_DEFAULT = 4;
    /** The system property that picks {@link #linearAttentionDecode}'s version. */
    static final String LINEAR_DECODE_VERSION_PROPERTY = "based4j.cuda.linearAttentionDecode";
    /**
     * Versions of {@link #linearAttentionDecode}: 1 (a column of S a thread), 2 and 3 (four columns a thread in 16-byte
     * loads, 8 or 4 rows in flight), 4 (12 rows in flight, the first ones loaded before the token is featurized), 5
     * (as 4 with 17 rows and z in flight together), 6 (as 5 with those loads asked for before the wait for the kernel
     * before it: a recorded step's programmatic launch reads the state while the projections before it run).
     */
    static final int LINEAR_DECODE_VERSIONS = 6;

    /**
     * Version 6 for wide heads where a multiprocessor has a block or none ({@code items} at most the device's
     * multiprocessors): version 5 there was based-1b's layer at batch 1 8.0 against 10.4 us (version 4) on an H200; at
     * batch 128 (2,048 blocks) 97.5 against 86.9, so version 4 stays there. Version 6 is version 5 with its state's
     * loads before its wait.
     */
    static final int LINEAR_DECODE_FEW_DEFAULT = 6;

    /**
     * The version {@link #linearAttentionDecode} runs for {@code items} (sequence, head) blocks with heads of
     * {@code dh}: the one the property names, else from {@value #LINEAR_DECODE_WIDE_HEAD} on
     * {@link #LINEAR_DECODE_FEW_DEFAULT} for at most as many items as multiprocessors and
     * {@link #LINEAR_DECODE_WIDE_DEFAULT} for more, and {@link #LINEAR_DECODE_DEFAULT} below.
     */
    int linearDecodeVersion(long items, int dh) {
        if (linearDecodeVersion != 0) {
            return linearDecodeVersion;
        }
        if (dh < LINEAR_DECODE_WIDE_HEAD) {
            return LINEAR_DECODE_DEFAULT;
        }
        return items <= multiprocessors ? LINEAR_DECODE_FEW_DEFAULT : LINEAR_DECODE_WIDE_DEFAULT;
    }

    /**
     * The kernel version a system property's value names, from 1 to {@code versions} (null: {@code fallback}).
     *
     * @throws IllegalArgumentException naming the property and the value, for anything else
     */
    static int version(String property, String value, int versions, int fallback) {
        if (value == null) {
            return fallback;
        }
        Integer v = wholeNumber(value, 1, versions);
        if (v == null) {
            throw new IllegalArgumentException("-D" + property + " must be a version from 1 to " + versions
                    + ", got '" + value + "'");
        }
        return v;
    }

    /**
     * A decode step's attention (every sequence one token, its query against the cached keys and its own) split over
     * the keys, then merged ({@code attentionDecode}, {@code attentionDecodeMerge}): the arguments of
     * {@link #attention}, with partial F32 {@code [B][H][splits][2 + dh]} of scratch. The same function as
     * {@link #attention}, summed in another order. The host sees to it that the cache holds every key a query sees.
     */
    public void attentionDecode(Precision p, long qkv, long kCache, long vCache, long rotary, long layout, long out,
                                long partial, int B, int H, int dh, int capacity, int window, int rotaryDim,
                                int maxPos, boolean interleaved, float scale, int splits) {
        attentionDecode(decodeVersion(B), p, qkv, kCache, vCache, rotary, layout, out, partial, B, H, dh, capacity,
                window, rotaryDim, maxPos, interleaved, scale, splits);
    }

    /** The kernel that version {@code version} of {@link #attentionDecode} runs on these operands. */
    static String decodeKernel(int version, long qkv, long kCache, long vCache) {
        boolean aligned = ((qkv | kCache | vCache) & 15) == 0;
        return version >= 2 && aligned ? "attentionDecode" + version : "attentionDecode";
    }

    /**
     * {@link #attentionDecode} in one of its {@link #DECODE_VERSIONS} versions. Versions 2 to 7 read 16 bytes a load:
     * with qkv or a cache not 16-byte aligned, version 1 runs instead.
     */
    void attentionDecode(int version, Precision p, long qkv, long kCache, long vCache, long rotary, long layout,
                         long out, long partial, int B, int H, int dh, int capacity, int window, int rotaryDim,
                         int maxPos, boolean interleaved, float scale, int splits) {
        checkAttention("attentionDecode", B, B, H, dh, capacity, rotaryDim, maxPos);
        require(decodeSplits(dh), "attentionDecode: head dim " + dh + " is not a multiple of 16 up to 128");
        require(splits >= 1 && splits <= MAX_GRID_YZ && B <= MAX_GRID_YZ, "attentionDecode: " + splits
                + " splits of " + B + " sequences");
        require(version >= 1 && version <= DECODE_VERSIONS, "attentionDecode: no version " + version + " (1 to "
                + DECODE_VERSIONS + ")");
        if (B == 0) {
            return;
        }
        String name = decodeKernel(decodeLaunchVersion(version, H, dh), qkv, kCache, vCache);
        boolean direct = name.equals("attentionDecode4") && splits == 1;  // writes out itself: no merge
        args.reset().ptr(qkv).ptr(kCache).ptr(vCache).ptr(rotary).ptr(layout).ptr(partial);
        if (name.equals("attentionDecode4")) {
            args.ptr(direct ? out : 0);
        }
        args.i32(B).i32(H).i32(dh).i32(capacity).i32(window).i32(rotaryDim).i32(maxPos).i32(interleaved ? 1 : 0)
                .f32(scale).i32(splits);
        if (name.equals("attentionDecode6") || name.equals("attentionDecode7")) {
            launch(function(name, p), 1, B, splits, decode6Threads(H, dh), 0);
        } else {
            launch(function(name, p), H, B, splits, ATTENTION_THREADS, 0);
        }
        if (!direct) {
            args.reset().ptr(partial).ptr(layout).ptr(out).i32(B).i32(H).i32(dh).i32(splits);
            launch(function("attentionDecodeMerge", p), H, B, 1, ATTENTION_THREADS, 0);
        }
    }

    /** Keys a lane group of {@link #attentionDecodeWindow} takes with their values (its WDEC_KEYS_A_GROUP). */
    static final int WINDOW_DECODE_KEYS_A_GROUP = 4;
    /** Threads of a block of {@link #attentionDecodeWindow} (its WDEC_THREADS). */
    static final int WINDOW_DECODE_THREADS = 256;
    /** Blocks of {@link #attentionDecodeWindow} a multiprocessor holds by their registers (its WDEC_BLOCKS). */
    static final int WINDOW_DECODE_BLOCKS = 3;
    /**
     * The system property that says whether {@link #attentionDecodeWindow} takes the decode steps of the short windows
     * it fits: {@code true} (the default) or {@code false} (the split decode and the append instead).
     */
    static final String WINDOW_DECODE_PROPERTY = "based4j.cuda.attentionDecodeWindow";
    private final boolean windowDecode = !Boolean.FALSE.equals(onOff(WINDOW_DECODE_PROPERTY,
            System.getProperty(WINDOW_DECODE_PROPERTY)));

    /**
     * The lanes a key takes in the decode kernels of version 2 on (attention_decode.cuh's decLanes): dh / 8 lanes of 8
     * dims, in a group of the power of 2 at or above that (2 to 16).
     */
    static int decodeLaneGroup(int dh) {
        int lanes = dh / 8;
        return lanes <= 2 ? 2 : lanes <= 4 ? 4 : lanes <= 8 ? 8 : 16;
    }

    /** The cached keys one block of {@link #attentionDecodeWindow} holds for heads of {@code dh}. */
    static int windowDecodeKeys(int dh) {
        return WINDOW_DECODE_THREADS / decodeLaneGroup(dh) * WINDOW_DECODE_KEYS_A_GROUP;
    }

    /**
     * Whether {@link #attentionDecodeWindow} takes a decode step of heads of {@code dh} over a window of
     * {@code window} keys back kept in a ring of {@code capacity}: a head dim {@link #decodeSplits} takes, a window
     * the ring holds and one block's keys hold, the operands 16-byte aligned, the block's shared memory within what
     * the device allows a block, and the kernel not switched off by {@value #WINDOW_DECODE_PROPERTY}.
     */
    boolean windowDecodeFits(Precision p, int dh, int window, int capacity, long qkv, long kCache, long vCache) {
        return windowDecode && windowDecodeShape(dh, window, capacity) && ((qkv | kCache | vCache) & 15) == 0
                && windowDecodeSharedFits(windowDecodeShared(window, dh, p), sharedOptInLimit);
    }

    /**
     * Whether a block of {@link #attentionDecodeWindow} with {@code shared} bytes of dynamic shared memory (and its
     * static memory) fits a device that lets a block have {@code limit} (0: not known, taken as fitting).
     */
    static boolean windowDecodeSharedFits(int shared, int limit) {
        return limit == 0 || shared + WINDOW_DECODE_STATIC_SHARED <= limit;
    }

    /** The shapes {@link #attentionDecodeWindow} takes (its operands aside). */
    static boolean windowDecodeShape(int dh, int window, int capacity) {
        return decodeSplits(dh) && capacity >= 1 && window >= 0 && window <= capacity
                && window <= windowDecodeKeys(dh);
    }

    /**
     * A decode step's attention over a short window, the token's rotated key and its value appended to the ring
     * (attention_window_decode.cuh: a block takes (head, sequence) items in turn; or, where {@link #windowHeadsRuns}
     * and out is 16-byte aligned, its heads' form, attention_decode.cuh's attentionDecodeHeadsWindow: a block a
     * sequence with all its heads): the arguments of {@link #attentionDecode} without partial and splits, the caches
     * written. The same function as {@link #attention} followed by {@link #attentionAppend} (the cache written with
     * the same values; the output summed in another order). The host sees to it that every sequence's token is at a
     * position of the rotary table and that the ring holds the keys its query sees.
     *
     * @throws IllegalArgumentException for a shape it does not take ({@link #windowDecodeShape}) or operands not
     *                                  16-byte aligned
     */
    public void attentionDecodeWindow(Precision p, long qkv, long kCache, long vCache, long rotary, long layout,
                                      long out, int B, int H, int dh, int capacity, int window, int rotaryDim,
                                      int maxPos, boolean interleaved, float scale) {
        checkAttention("attentionDecodeWindow", B, B, H, dh, capacity, rotaryDim, maxPos);
        require(windowDecodeShape(dh, window, capacity), "attentionDecodeWindow: a window of " + window
                + " keys (a ring of " + capacity + ") with heads of " + dh + ": it takes head dims that are multiples"
                + " of 16 up to 128 and at most " + (decodeSplits(dh) ? windowDecodeKeys(dh) : 0) + " keys");
        require(((qkv | kCache | vCache) & 15) == 0, "attentionDecodeWindow: qkv and the caches must be 16-byte"
                + " aligned");
        long items = (long) B * H;
        require(items <= Integer.MAX_VALUE, "attentionDecodeWindow: " + B + " sequences of " + H + " heads");
        int shared = windowDecodeShared(window, dh, p);
        require(windowDecodeSharedFits(shared, sharedOptInLimit), "attentionDecodeWindow: a window of " + window
                + " keys with heads of " + dh + " takes " + (shared + WINDOW_DECODE_STATIC_SHARED) + " bytes of shared"
                + " memory a block; this device allows " + sharedOptInLimit);
        if (B == 0) {
            return;
        }
        args.reset().ptr(qkv).ptr(kCache).ptr(vCache).ptr(rotary).ptr(layout).ptr(out).i32(B).i32(H).i32(dh)
                .i32(capacity).i32(window).i32(rotaryDim).i32(maxPos).i32(interleaved ? 1 : 0).f32(scale);
        if (windowHeadsRuns(B, H, dh, window) && (out & 15) == 0) {  // it stores the output 16 bytes at a time
            args.i32(windowPrefetchRuns(B) ? 1 : 0);
            launch(function("attentionDecodeHeadsWindow", p), 1, B, 1, decode6Threads(H, dh), 0);
            return;
        }
        long fn = function(windowEarly ? "attentionDecodeWindowEarly" : "attentionDecodeWindow", p, shared);
        launch(fn, windowDecodeGrid((int) items, shared, multiprocessors, sharedPerMultiprocessor), 1, 1,
                WINDOW_DECODE_THREADS, shared);
    }

    /**
     * The system property that has {@link #attentionDecodeWindow}'s items' form ask for its first item's cached keys
     * and values before it waits for the kernel before it ({@code attentionDecodeWindowEarly}, true, the default)
     * or after ({@code false}): the same numbers, the ring's reads started while the projection before it runs where
     * a step is recorded with programmatic launches.
     */
    static final String WINDOW_EARLY_PROPERTY = "based4j.cuda.windowEarly";
    private boolean windowEarly = onOff(WINDOW_EARLY_PROPERTY, System.getProperty(WINDOW_EARLY_PROPERTY)) != Boolean.FALSE;

    /** Sets whether the items' form asks for its cached keys before its wait (tests compare the two). */
    void windowEarly(boolean on) {
        windowEarly = on;
    }

    /**
     * The system property that has {@link #attentionDecodeWindow} take the heads' form ({@code heads}: a block a
     * sequence with all its heads, as version 6 of {@link #attentionDecode}, its one split's output written and the
     * token appended; kernel attentionDecodeHeadsWindow) or the items' form ({@code items}: a block a (sequence, head)
     * item, persistent blocks) for every batch; unset, the heads' form runs from {@value #WINDOW_HEADS_MIN_BATCH}
     * sequences on.
     */
    static final String WINDOW_FORM_PROPERTY = "based4j.cuda.attentionDecodeWindowForm";
    /**
     * Sequences from which the heads' form runs by default: based-1b's window at batch 128 took 29.1 us a layer in it
     * against 32.4 in the items' form on an H200; fewer sequences than multiprocessors leave most of them idle.
     */
    static final int WINDOW_HEADS_MIN_BATCH = 128;
    /** The form {@value #WINDOW_FORM_PROPERTY} asks for: true the heads', false the items', null by the batch. */
    private Boolean windowHeads = windowForm(System.getProperty(WINDOW_FORM_PROPERTY));

    /** The form {@value #WINDOW_FORM_PROPERTY}'s value names: true the heads', false the items', null (unset) neither. */
    static Boolean windowForm(String value) {
        if (value == null || value.isBlank()) {
            return null;
        }
        if (value.strip().equals("items")) {
            return false;
        }
        if (value.strip().equals("heads")) {
            return true;
        }
        throw new IllegalArgumentException("-D" + WINDOW_FORM_PROPERTY + " must be items or heads, got '" + value
                + "'");
    }

    /**
     * The system property that has the heads' form of {@link #attentionDecodeWindow} ask the L2 cache for each next
     * chunk of keys and values while it sums one ({@code true}) or not ({@code false}); unset, it asks where the
     * layer's blocks are resident at once ({@link #windowPrefetchRuns}).
     */
    static final String WINDOW_PREFETCH_PROPERTY = "based4j.cuda.windowPrefetch";
    /**
     * Blocks of the heads' form a multiprocessor holds at based-1b's heads (256 threads of 124 registers). Where a
     * layer's blocks are no more than this many a multiprocessor, each block waits on memory alone, chunk after chunk,
     * and asking for the next chunk pays: based-1b's window at batch 128 took 26.1 against 29.1 us a layer on an H200,
     * whole decode steps 44,972.6 against 43,326.0 tokens/s; at batch 1,024 (four waves of blocks, the memory busy)
     * 143.5 against 133.6 us, the steps 88,467.9 against 88,627.0.
     */
    static final int WINDOW_PREFETCH_BLOCKS_PER_SM = 2;
    /** What {@value #WINDOW_PREFETCH_PROPERTY} asks: true always, false never, null by the batch. */
    private Boolean windowPrefetch = onOff(WINDOW_PREFETCH_PROPERTY, System.getProperty(WINDOW_PREFETCH_PROPERTY));

    /** Has the heads' form of {@link #attentionDecodeWindow} ask for each next chunk (true), never, or by the batch. */
    void windowPrefetch(Boolean on) {
        windowPrefetch = on;
    }

    /** What was asked ({@link #windowPrefetch(Boolean)}): true, false, or null (by the batch). */
    Boolean windowPrefetchAsked() {
        return windowPrefetch;
    }

    /**
     * Whether the heads' form asks the L2 cache for each next chunk for B sequences: as asked, else where the B blocks
     * are at most {@value #WINDOW_PREFETCH_BLOCKS_PER_SM} a multiprocessor (one wave).
     */
    boolean windowPrefetchRuns(int B) {
        return windowPrefetch != null ? windowPrefetch
                : multiprocessors > 0 && B <= (long) WINDOW_PREFETCH_BLOCKS_PER_SM * multiprocessors;
    }

    /** Has {@link #attentionDecodeWindow} take the heads' form where it fits (true), never (false), or by the batch. */
    void windowHeads(Boolean on) {
        windowHeads = on;
    }

    /** The form asked for: true the heads', false the items', null by the batch ({@link #windowHeads(Boolean)}). */
    Boolean windowHeadsAsked() {
        return windowHeads;
    }

    /**
     * Whether {@link #attentionDecodeWindow} runs in the heads' form for this call: asked for (or, unset, from
     * {@value #WINDOW_HEADS_MIN_BATCH} sequences on), one split of {@value #DECODE_KEYS} keys holds the window and the
     * query's own key, and a block holds the heads.
     */
    boolean windowHeadsRuns(int B, int H, int dh, int window) {
        boolean asked = windowHeads != null ? windowHeads : B >= WINDOW_HEADS_MIN_BATCH;
        return asked && windowHeadsFit(B, H, dh, window);
    }

    /** Whether the heads' form of {@link #attentionDecodeWindow} takes this call where asked for. */
    static boolean windowHeadsFit(int B, int H, int dh, int window) {
        return window < DECODE_KEYS && decode6Threads(H, dh) <= DECODE6_MAX_THREADS && B <= MAX_GRID_YZ;
    }

    /** Static shared memory of a block of {@link #attentionDecodeWindow} (WdecShared: qs, kn, vred, gm, gl, gf). */
    static final int WINDOW_DECODE_STATIC_SHARED = 4 * (128 + 128 + 8 * WINDOW_DECODE_THREADS
            + 3 * (WINDOW_DECODE_THREADS / 2));
    /** Shared memory the device keeps for itself a block (sm_80 and sm_90: 1 KiB). */
    static final int SHARED_RESERVED_A_BLOCK = 1024;

    /**
     * Dynamic shared memory of a block of {@link #attentionDecodeWindow}: two stages (wdecStageBytes), each the rows of
     * {@code window} keys and as many values, the token's q, k and v, and 128 floats of cos and sin.
     */
    static int windowDecodeShared(int window, int dh, Precision p) {
        return 2 * ((2 * window + 3) * dh * p.bytes() + 128 * 4);
    }

    /**
     * The grid of {@link #attentionDecodeWindow} for {@code items} (head, sequence) pairs: as many blocks as the
     * device's multiprocessors hold at once (by shared memory, and {@value #WINDOW_DECODE_BLOCKS} by registers), each
     * then taking every so-many-th item, so that its copies for one item overlap its work on another; a block an item
     * where the device's sizes are not known (0).
     */
    static int windowDecodeGrid(int items, int shared, int sms, int sharedPerSm) {
        if (sms <= 0 || sharedPerSm <= 0) {
            return items;
        }
        int perSm = Math.max(1, Math.min(WINDOW_DECODE_BLOCKS,
                sharedPerSm / (shared + WINDOW_DECODE_STATIC_SHARED + SHARED_RESERVED_A_BLOCK)));
        return (int) Math.min(items, (long) perSm * sms);
    }

    /** Shared memory of a multiprocessor (0 until {@link #sharedPerMultiprocessor(int)} says). */
    private int sharedPerMultiprocessor;

    /** Says the device's shared memory a multiprocessor, which sizes {@link #attentionDecodeWindow}'s grid. */
    void sharedPerMultiprocessor(int bytes) {
        sharedPerMultiprocessor = bytes;
    }

    /**
     * Writes the rotated keys and the values of each sequence's last min(length, capacity) tokens into the cache.
     * longest: the batch's longest sequence, which sizes the launch (the kernel writes every kept token whatever it
     * is; one below the mean length T / B or above T is refused).
     */
    public void attentionAppend(Precision p, long qkv, long kCache, long vCache, long rotary, long layout, int T, int B,
                                int H, int dh, int capacity, int rotaryDim, int maxPos, boolean interleaved,
                                int longest) {
        checkAttention("attentionAppend", T, B, H, dh, capacity, rotaryDim, maxPos);
        int lastRows = appendRowsPerSequence(T, B, capacity, longest);
        if (T == 0 || B == 0 || capacity == 0) {
            return;
        }
        args.reset().ptr(qkv).ptr(kCache).ptr(vCache).ptr(rotary).ptr(layout).i32(T).i32(B).i32(H).i32(dh)
                .i32(capacity).i32(rotaryDim).i32(maxPos).i32(interleaved ? 1 : 0).i32(lastRows);
        int parts = (int) Math.min(MAX_GRID_YZ, ((long) H * dh + APPEND_THREADS - 1) / APPEND_THREADS);
        launch(function("attentionAppend", p), lastRows > 0 ? B * lastRows : T, parts, 1, APPEND_THREADS, 0);
    }

    /**
     * The blocks of {@link #attentionAppend} a sequence takes where they are fewer than a block a token: the last
     * min(longest, capacity) tokens of each; 0 for a block a token (the batch's tokens are no more than that).
     */
    static int appendRowsPerSequence(int T, int B, int capacity, int longest) {
        if (B > 0 && ((long) longest * B < T || longest > T) || B == 0 && longest != 0) {
            throw new IllegalArgumentException("attentionAppend: a longest sequence of " + longest
                    + " tokens does not fit " + T + " tokens in " + B + " sequences");
        }
        int rows = Math.min(longest, capacity);
        return (long) B * rows < T ? rows : 0;
    }

    /**
     * The rotary table the attention kernels read, {@code cos[maxPos][rotaryDim/2]} then {@code sin[maxPos][rotaryDim/2]},
     * computed exactly as the CPU backend's RotaryTable: inverse frequencies and angles in float, cos and sin in double
     * rounded to float.
     */
    public static float[] rotaryTable(MixerConfig.Attention cfg, int maxPos) {
        int rd = cfg.rotaryDim();
        int half = rd / 2;
        if (maxPos < 0) {
            throw new IllegalArgumentException("rotaryTable: maxPos " + maxPos);
        }
        float[] invFreq = new float[half];
        for (int p = 0; p < half; p++) {
            invFreq[p] = (float) (1.0 / Math.pow(cfg.rotaryBase(), (float) (2 * p) / rd));
        }
        float[] table = new float[Math.multiplyExact(2, Math.multiplyExact(maxPos, half))];
        int sinOff = maxPos * half;
        for (int pos = 0; pos < maxPos; pos++) {
            for (int p = 0; p < half; p++) {
                float angle = (float) pos * invFreq[p];
                table[pos * half + p] = (float) Math.cos(angle);
                table[sinOff + pos * half + p] = (float) Math.sin(angle);
            }
        }
        return table;
    }

    // ------------------------------------------------------------------------------------------------ sampling

    /**
     * Chooses one token per output row on the GPU, one block of 512 threads per row: logits F32 with row stride
     * {@code ld}, rows int {@code [n]} (row of logits for each output), temperature, topK, topP, uniform per output
     * (float, int, float, float {@code [n]}), outIds int {@code [n]}, and feedIds int {@code [n]} or 0: a copy of the
     * ids for the next step to take (0 in place of an error). The function is exactly the CPU sampler's,
     * {@link io.based4j.sampling.Sampler#pick}; -1 means a NaN logit, -2 all -inf.
     */
    public void sample(long logits, long rows, int n, int ld, int vocab, long temperature, long topK, long topP,
                       long uniform, long outIds, long feedIds) {
        require(n >= 0 && vocab >= 0 && ld >= vocab, "sample: n " + n + ", vocab " + vocab + ", ld " + ld);
        if (n == 0) {
            return;
        }
        args.reset().ptr(logits).ptr(rows).i32(n).i64(ld).i32(vocab).ptr(temperature).ptr(topK).ptr(topP).ptr(uniform)
                .ptr(outIds).ptr(feedIds);
        launch(function("sample_f32"), n, 1, 1, SAMPLE_THREADS, 0);
    }
}
