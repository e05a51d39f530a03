package io.based4j.backend;

import io.based4j.config.MixerConfig;
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

    /** Zero-filled float32 activations {@code rows x cols}. */
    Buffer allocate(int rows, int cols);

    /** Makes a float32 buffer from host values (row-major). */
    Buffer upload(float[] values, int rows, int cols);

    /** Copies a buffer back to the host (row-major). */
    float[] download(Buffer buffer);

    /** Takes a weight matrix {@code [out, in]} or vector in whatever form this backend computes with. */
    Weight weight(Tensor tensor);

    /** Recurrent state of one layer's mixer for {@code slots} sequences of at most {@code maxLength} tokens. */
    MixerState allocateState(MixerConfig mixer, int slots, int maxLength);

    // ---------------------------------------------------------------- dense ops

    /** {@code out[i] = table[ids[i]]}. */
    void embedding(Weight table, int[] ids, Buffer out);

    /** {@code out = x * rsqrt(mean(x^2) + eps) * weight}, row by row. */
    void rmsNorm(Buffer x, Weight weight, float eps, Buffer out);

    /** {@code out = x @ w^T (+ bias)}: x is {@code [n, k]}, w is {@code [m, k]}, out is {@code [n, m]}. */
    void matmul(Buffer x, Weight w, Weight bias, Buffer out);

    /** Like {@link #matmul} over only the listed rows of x: {@code out[i] = x[rows[i]] @ w^T}. */
    void matmulRows(Buffer x, int[] rows, Weight w, Buffer out);

    /** {@code acc += x}. */
    void addInPlace(Buffer acc, Buffer x);

    /** {@code out = a[:, :h] * silu(a[:, h:])} with {@code a} of width {@code 2h}. */
    void swiglu(Buffer a, Buffer out);

    // ---------------------------------------------------------------- sequence mixers

    /**
     * BaseConv core: with {@code u = [u1 | u2]} of width {@code 2 * inner}, {@code c} the causal depthwise conv of u1
     * with taps {@code convWeight [inner, 1, k]} (continuing from the state), {@code out = silu(c) * u2}.
     */
    void baseConv(MixerConfig.BaseConv cfg, Buffer u, Weight convWeight, TokenBatch batch, MixerState state,
                  Buffer out);

    /** Taylor linear attention over packed q, k ({@code [T, H*f]}) and v ({@code [T, d]}), continuing from the state. */
    void linearAttention(MixerConfig.LinearAttention cfg, Buffer q, Buffer k, Buffer v, TokenBatch batch,
                         MixerState state, Buffer out);

    /**
     * Causal softmax attention (full or sliding-window) with rotary positions over packed {@code qkv [T, 3d]},
     * attending the cached keys and values of earlier tokens in the state.
     */
    void attention(MixerConfig.Attention cfg, Buffer qkv, TokenBatch batch, MixerState state, Buffer out);

    @Override
    void close();

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
    }
}
