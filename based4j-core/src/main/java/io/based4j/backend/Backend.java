package io.based4j.backend;

import io.based4j.backend.cpu.Parallel;
import io.based4j.config.MixerConfig;
import io.based4j.sampling.LogSoftmax;
import io.based4j.sampling.Sampler;
import io.based4j.tensor.Tensor;

/**
 * How the operations of a BASED model are carried out: on the CPU, on a GPU, or by the plain scalar reference.
 *
 * <p>The model ({@code io.based4j.model.BasedModel}) decides what is computed; a backend decides how. Activations
 * are {@link Buffer}s of {@code rows x cols} float32 values held wherever the backend keeps them. Tokens of several
 * sequences travel packed together, one row per token, described by a {@link TokenBatch}. Every sequence mixer
 * continues from a per-sequence recurrent {@link MixerState}, so prefill (many tokens per sequence) and decode
 * (one token per sequence) are the same call.
 */
public interface Backend extends AutoCloseable {

    /** A short name ("cpu", "reference", "cuda:0"). */
    String name();

    // ---------------------------------------------------------------- memory

    /** Zero-filled activations {@code rows x cols} in this backend's compute type (float32 on the CPU). */
    Buffer allocate(int rows, int cols);

    /**
     * Zero-filled activations that stay float32 even where the backend computes in a narrower type: the residual
     * stream and the logits, and a trainer's gradients and optimizer moments.
     */
    default Buffer allocateF32(int rows, int cols) {
        return allocate(rows, cols);
    }

    /** The first {@code rows} rows of {@code buffer}, sharing its memory. */
    Buffer view(Buffer buffer, int rows);

    /**
     * Bytes of one value of the states this backend keeps in its compute type, the attention key/value cache and
     * BaseConv's history (past inputs of the conv, values of that type): 4 (float32) unless the backend keeps them
     * narrower. Linear attention's state is float32 everywhere.
     */
    default int cacheValueBytes() {
        return 4;
    }

    /** Whether {@link #view} gives views of fewer rows than a buffer has (a backend that keeps none says false). */
    default boolean viewsFewerRows() {
        return true;
    }

    /** Gives a buffer's memory back now rather than when the backend closes (no-op where memory is garbage-collected). */
    default void release(Buffer buffer) {
    }

    /**
     * Fails with a message naming {@code what}, the bytes needed and the bytes free when {@code bytes} more would not
     * fit in this backend's memory (on the CPU: the Java heap).
     */
    default void checkFits(long bytes, String what) {
    }

    /**
     * Fails with a message naming {@code model}, the bytes needed and the bytes free when weights of {@code bytes} (as
     * {@link #storedBytes} counts them) would not fit where this backend keeps weights; {@code detail} says what the
     * bytes are ("(1.6B parameters)"). By default weights live with the activations ({@link #checkFits}).
     */
    default void checkWeightsFit(long bytes, String model, String detail) {
        checkFits(bytes, "the weights of " + model + " " + detail);
    }

    /** Makes a float32 buffer from host values (row-major). */
    Buffer upload(float[] values, int rows, int cols);

    /** Copies a buffer back to the host (row-major). */
    float[] download(Buffer buffer);

    /** Takes a weight matrix {@code [out, in]} or vector in whatever form this backend computes with. */
    Weight weight(Tensor tensor);

    /**
     * Takes several weight matrices that products of one input use ({@link #matmulEach}), each as {@link #weight}
     * takes it. A backend may place them one after another, rows of the first then rows of the next, so that their
     * products can run as one; by default one {@link #weight} each.
     */
    default Weight[] weights(Tensor... tensors) {
        Weight[] out = new Weight[tensors.length];
        for (int i = 0; i < tensors.length; i++) {
            out[i] = weight(tensors[i]);
        }
        return out;
    }

    /**
     * Bytes a weight will newly take once this backend holds it: what {@link #weight} will allocate, or, where the
     * backend computes straight from a memory-mapped checkpoint, the file's pages it will read.
     */
    default long storedBytes(Tensor tensor) {
        return tensor.data().byteSize();
    }

    /** Recurrent state of one layer's mixer for {@code slots} sequences of at most {@code maxLength} tokens. */
    MixerState allocateState(MixerConfig mixer, int slots, int maxLength);

    /**
     * Bytes {@link #allocateState} will take for that layer: {@code slots} times the model's state
     * ({@link io.based4j.model.StateSize#layerBytes}), or more where the backend keeps work beside a state.
     */
    default long stateBytes(MixerConfig mixer, int slots, int maxLength) {
        return io.based4j.memory.Sizes.times(io.based4j.model.StateSize.layerBytes(mixer, maxLength,
                cacheValueBytes()), slots);
    }

    // ---------------------------------------------------------------- dense ops

    /** {@code out[i] = table[ids[i]]}. */
    void embedding(Weight table, int[] ids, Buffer out);

    /**
     * {@code out = x * rsqrt(mean(x^2) + eps) * weight}, row by row. {@code rstd}, one value per row, is what a
     * training pass keeps for the backward; null in inference.
     */
    void rmsNorm(Buffer x, Weight weight, double eps, Buffer out, Buffer rstd);

    /** {@code out = x @ w^T (+ bias)}: x is {@code [n, k]}, w is {@code [m, k]}, out is {@code [n, m]}. */
    void matmul(Buffer x, Weight w, Weight bias, Buffer out);

    /**
     * {@code out = x @ w^T (+ bias) + residual}, residual of out's shape (a different buffer): a projection that ends
     * a residual branch, summed with the stream in one op where the backend can (a product's epilogue). By default
     * {@link #matmul} then {@link #addInPlace}.
     */
    default void matmulAdd(Buffer x, Weight w, Weight bias, Buffer residual, Buffer out) {
        matmul(x, w, bias, out);
        addInPlace(out, residual);
    }

    /** Like {@link #matmul} over only the listed rows of x: {@code out[i] = x[rows[i]] @ w^T}. */
    void matmulRows(Buffer x, int[] rows, Weight w, Buffer out);

    /** {@code acc += x}. */
    void addInPlace(Buffer acc, Buffer x);

    /**
     * {@code residual += branch}, then {@code out = } {@link #rmsNorm} of the new residual (no rstd kept): a residual
     * branch's end and the next norm, in one pass where the backend can. By default {@link #addInPlace} then
     * {@link #rmsNorm}.
     */
    default void addRmsNorm(Buffer residual, Buffer branch, Weight weight, double eps, Buffer out) {
        addInPlace(residual, branch);
        rmsNorm(residual, weight, eps, out, null);
    }

    /** {@code out = a[:, :h] * silu(a[:, h:])} with {@code a} of width {@code 2h}. */
    void swiglu(Buffer a, Buffer out);

    /**
     * {@code out = swiglu(x @ w^T)}: an MLP's in-projection and its SwiGLU, in one op where the backend can (a decode
     * step's few rows). {@code product} ({@code [n, 2h]}) is where the product is put on the way where the two run
     * apart; its contents are unspecified after. By default {@link #matmul} then {@link #swiglu}.
     */
    default void matmulSwiglu(Buffer x, Weight w, Buffer product, Buffer out) {
        matmul(x, w, null, product);
        swiglu(product, out);
    }

    /**
     * {@code outs[i] = x @ ws[i]^T} for each i (no biases): several products of one input, in one op where the backend
     * can (a decode step's few rows). By default one {@link #matmul} each.
     */
    default void matmulEach(Buffer x, Weight[] ws, Buffer[] outs) {
        if (ws.length != outs.length) {
            throw new IllegalArgumentException(ws.length + " weights for " + outs.length + " outputs");
        }
        for (int i = 0; i < ws.length; i++) {
            matmul(x, ws[i], null, outs[i]);
        }
    }

    /**
     * Chooses the next token of each listed logits row: {@code ids[i]} comes from row {@code rows[i]} (its first
     * {@code vocab} entries) with {@code samplers[i]}. This default copies the logits to the host and samples there;
     * a GPU backend samples on the device so that only the ids cross.
     */
    default int[] sample(Buffer logits, int[] rows, int vocab, Sampler[] samplers) {
        float[] host = download(logits);
        int[] ids = new int[rows.length];
        for (int i = 0; i < rows.length; i++) {
            ids[i] = samplers[i].sample(host, rows[i] * logits.cols(), vocab);
        }
        return ids;
    }

    /**
     * {@link #sample}, queued: where the backend can, it returns before the ids exist, so that the host may queue the
     * next decode step first; {@link Sampled#ids} then waits for them. A recorded step replayed by
     * {@link StepGraphs#replayFed} with what this returns takes the ids where the sampling kernel left them for it,
     * without the host. This default samples at once (and throws as {@link #sample} does, here rather than from
     * {@link Sampled#ids}). The samplers' draws are taken here, in the order of the calls, as {@link #sample} takes
     * them.
     */
    default Sampled sampleAhead(Buffer logits, int[] rows, int vocab, Sampler[] samplers) {
        int[] ids = sample(logits, rows, vocab, samplers);
        return () -> ids.clone();
    }

    /** Ids that {@link #sampleAhead} chose. */
    @FunctionalInterface
    interface Sampled {
        /** The ids, one a row in the order asked for, once they exist; throws as {@link #sample} does. */
        int[] ids();

        /**
         * The ids of the rows at the given places of the order asked for, once they exist; an error of another row
         * (a NaN in logits whose id is not wanted) is not reported.
         */
        default int[] ids(int[] places) {
            int[] all = ids();
            int[] out = new int[places.length];
            for (int j = 0; j < places.length; j++) {
                out[j] = all[places[j]];
            }
            return out;
        }
    }

    // ---------------------------------------------------------------- sequence mixers

    /**
     * BaseConv core: with {@code u = [u1 | u2]} of width {@code 2 * inner}, {@code c} the causal depthwise conv of u1
     * with taps {@code convWeight [inner, 1, k]} (continuing from the state), {@code out = silu(c) * u2}. A training
     * pass (state null) keeps {@code c} in {@code convOut}; null in inference.
     */
    void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                  Buffer out, Buffer convOut);

    /**
     * BaseConv's in-projection and core: {@code u = x @ w^T + bias} into {@code u}, then {@link #baseConv} of it (no
     * conv output kept): in one op where the backend can (a decode step's few rows), {@code u} then only a place on
     * the way whose contents are unspecified after. By default the two ops.
     */
    default void matmulBaseConv(MixerConfig.BaseConv cfg, Buffer x, Weight w, Weight bias, Buffer u,
                                Weight convWeight, TokenBatch batch, MixerState state, Buffer out) {
        matmul(x, w, bias, u);
        baseConv(cfg, u, convWeight, batch, state, out, null);
    }

    /**
     * Taylor linear attention over packed q, k ({@code [T, H*f]}) and v ({@code [T, d]}), continuing from the state
     * (null in a training pass, which keeps nothing more).
     */
    void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                         MixerState state, Buffer out);

    /**
     * Causal softmax attention (full or sliding-window) with rotary positions over packed {@code qkv [T, 3d]},
     * attending the cached keys and values of earlier tokens in the state. A training pass (state null) keeps one
     * log-sum-exp per (token, head) in {@code lse [T, heads]}; null in inference.
     */
    void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out,
                   Buffer lse);

    /**
     * For backends that only run inference: refuses what a training pass asks a forward op to keep, naming the op.
     */
    static void keepsNothing(String op, Buffer kept) {
        if (kept != null) {
            throw new UnsupportedOperationException(op + ": this backend runs inference only and keeps nothing for a"
                    + " backward pass");
        }
    }

    /**
     * Tokens that a sequence's pieces fed in separate forward calls should be multiples of (all but the last) for
     * the results to equal, bit for bit, those of feeding it in one call: the chunk length of a kernel that sums
     * chunk by chunk from the start of each call. 1 where any split gives the same numbers.
     */
    default int exactSplit() {
        return 1;
    }

    /**
     * {@code -log softmax(logits[rows[i], 0 .. vocab))[targets[i]]} for each i, in double: the row's log-normalizer
     * ({@link LogSoftmax#logNormalizer}) less the target's logit. By default the logits are
     * copied to the host and the rows computed there; a GPU computes them where the logits are.
     */
    default double[] negativeLogLikelihoods(Buffer logits, int[] rows, int[] targets, int vocab) {
        checkTokenRows(logits, rows, targets, vocab);
        int cols = logits.cols();
        float[] all = download(logits);
        double[] nll = new double[rows.length];
        Parallel.forRanges(rows.length, 16, (from, to) -> {
            for (int i = from; i < to; i++) {
                int o = Math.multiplyExact(rows[i], cols);
                nll[i] = LogSoftmax.logNormalizer(all, o, vocab) - all[o + targets[i]];
            }
        });
        return nll;
    }

    /** The arguments of {@link #negativeLogLikelihoods}, checked: every row and target inside the logits. */
    static void checkTokenRows(Buffer logits, int[] rows, int[] targets, int vocab) {
        if (rows.length != targets.length) {
            throw new IllegalArgumentException(rows.length + " rows but " + targets.length + " targets");
        }
        if (vocab < 1 || vocab > logits.cols()) {
            throw new IllegalArgumentException("vocab " + vocab + " is not in [1, " + logits.cols() + "]");
        }
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] < 0 || rows[i] >= logits.rows() || targets[i] < 0 || targets[i] >= vocab) {
                throw new IllegalArgumentException("row " + rows[i] + " / target " + targets[i] + " at " + i
                        + " is outside the logits' " + logits.rows() + " rows / the vocabulary of " + vocab);
            }
        }
    }

    /** Marks in this backend's order of work, for timing its ops ({@link OpProfile}); the host's clock by default. */
    default OpClock clock() {
        return OpClock.HOST;
    }

    /** Records and replays whole forward calls (CUDA graphs); null where the backend has nothing of the kind. */
    default StepGraphs graphs() {
        return null;
    }

    @Override
    void close();

    /**
     * Records the ops of one forward call once and replays them for later calls of the same shape (decode steps of
     * a fixed batch size), with only the token ids and the batch layout changed. The recorded ops must read their
     * activations from fixed buffers (a session's workspace) and take no other input from the host.
     */
    interface StepGraphs {
        /** Runs {@code forward} (whose ops take {@code tokens} and {@code batch}) while recording it; runs it too. */
        Graph record(int[] tokens, TokenBatch batch, Runnable forward);

        /** Runs a recorded call again with new tokens and layout of the recorded shape. */
        void replay(Graph graph, int[] tokens, TokenBatch batch);

        /**
         * Runs a recorded decode step again with the layout of {@code batch} and, as its tokens, the ids of
         * {@code ids} (a {@link Backend#sampleAhead} of the rows 0 to n - 1 of the step just before, of the recorded
         * shape), read where the sampling left them, without waiting for them; false, running nothing, where it
         * cannot (the caller then waits for the ids and {@link #replay}s).
         */
        default boolean replayFed(Graph graph, Sampled ids, TokenBatch batch) {
            return false;
        }

        /**
         * Whether a decode step of a new shape should run once op by op before it is recorded: where the backend
         * looks at its products on their first call in a way that waits for the device, which nothing may do while a
         * step is being recorded (it times their algorithms, or checks how they may be launched; recorded first, the
         * step would keep what it has without).
         */
        default boolean timesFirstCalls() {
            return false;
        }

        /**
         * Runs {@code forward}, a decode step of a new shape run op by op before it is recorded
         * ({@link #timesFirstCalls}), and returns what it returns; the backend may look at the step's products as they
         * run. By default it only runs it.
         */
        default <T> T firstStep(java.util.function.Supplier<T> forward) {
            return forward.get();
        }
    }

    /** A recorded forward call. */
    interface Graph extends AutoCloseable {
        @Override
        void close();
    }

    /** Activations owned by a backend. */
    interface Buffer {
        int rows();

        int cols();
    }

    /** A weight owned by a backend. */
    interface Weight {
        long[] shape();
    }

    /** A layer's recurrent state for several sequence slots. */
    interface MixerState {
        /** Forgets the sequence in {@code slot} (zeros its state). */
        void reset(int slot);

        /** Bytes this state holds per sequence at the given context length. */
        long bytesPerSequence(int contextLength);

        /**
         * Bytes a {@link #snapshot} after {@code length} tokens takes: {@link #bytesPerSequence}, unless the state
         * holds more than the model's state (work kept beside it that a snapshot does not copy).
         */
        default long snapshotBytes(int length) {
            return bytesPerSequence(length);
        }

        /**
         * A copy of the sequence in {@code slot}, which has seen {@code length} tokens, kept where the state is (the
         * Java heap, the GPU) and taking {@link #snapshotBytes snapshotBytes(length)}: all of a fixed-size state (a
         * sliding window's whole ring), the first {@code length} tokens of a full attention cache. The slot is left
         * as its sequence was (the model's state the same).
         */
        Snapshot snapshot(int slot, int length);

        /**
         * Makes the state of {@code slot} what a {@link #reset} slot is after the tokens of {@code snapshot}: the
         * copied part is written back and the rest zeroed.
         *
         * @throws IllegalArgumentException when the snapshot was taken from a state of another kind or shape, or
         *                                  holds more tokens than this state can
         */
        void restore(int slot, Snapshot snapshot);

        /** Gives the state's memory back now (no-op where memory is garbage-collected). */
        default void release() {
        }

        /**
         * Makes the memory there that the sequences of {@code batch} reach in a call (positions up to
         * {@code start + length} of each slot), where a state grows with its sequences and its kernels cannot make it
         * as they run (a GPU's, whose steps are recorded). Called before the call's ops are queued; a no-op for states
         * made whole.
         */
        default void reserve(TokenBatch batch) {
        }

        /**
         * Bytes this state may still take as its sequences grow: what it would hold now had it been made whole up
         * front (0 for a state made whole). Memory budgets count it as held.
         */
        default long growableBytes() {
            return 0;
        }
    }

    /** One sequence's copy of a layer's state ({@link MixerState#snapshot}). */
    interface Snapshot extends AutoCloseable {
        /** Bytes the copy holds. */
        long bytes();

        /** Gives the copy's memory back now (no-op where memory is garbage-collected); it cannot be restored after. */
        @Override
        default void close() {
        }
    }
}
