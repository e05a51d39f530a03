package io.based4j.train;

import io.based4j.config.MixerConfig;
import io.based4j.memory.MemoryNeed;
import io.based4j.tensor.Tensor;

/**
 * How the forward and backward ops of a training step are carried out: the training counterpart of
 * {@link io.based4j.backend.Backend}. The model ({@link TrainModel}) decides what is computed and which activations
 * are kept; a backend decides how and where the numbers live (float64 arrays on the CPU; device memory on a GPU).
 *
 * <p>All activations of a step are packed as {@code batch x seqLen} rows (sequence b is rows
 * {@code [b * seqLen, (b + 1) * seqLen)}). Forward ops overwrite their outputs. Backward ops add into every gradient
 * output, so the gradients of several branches and of several micro-batches accumulate; callers zero them.
 */
public interface TrainBackend extends AutoCloseable {

    /** A short name ("cpu"). */
    String name();

    // ---------------------------------------------------------------- memory

    /** Zero-filled {@code rows x cols}. */
    Buf allocate(int rows, int cols);

    /** Bytes one value of a buffer takes (8 for float64). */
    int valueBytes();

    /**
     * Values the loss ({@link #crossEntropy}) allocates while it runs over {@code rows} rows of width {@code width}
     * and a vocabulary of {@code vocab}: the logits it keeps at a time and its scratch (in 64 bits).
     */
    long lossScratchValues(long rows, long width, long vocab);

    /**
     * Refuses work that would not fit: {@code bufferBytes} of this backend's buffers together with {@code host}, what
     * the work needs of the host's memory besides (Java arrays, memory outside the heap). {@code host}'s details
     * describe the whole need.
     *
     * @throws io.based4j.memory.NotEnoughMemoryException naming the subject, the bytes needed and the bytes free
     */
    void checkFits(long bufferBytes, MemoryNeed host);

    /** A buffer holding a tensor's values (any floating dtype), shaped {@code rows x cols}. */
    Buf load(Tensor tensor, int rows, int cols);

    /** The values in the backend's own storage type, exactly (for optimizer state and resumable checkpoints). */
    Tensor save(Buf buf, long... shape);

    /** The values rounded to float32 (for model checkpoints that inference loads). */
    float[] toFloats(Buf buf);

    void zero(Buf buf);

    // ---------------------------------------------------------------- dense ops

    /** {@code out[i] = table[ids[i]]}. */
    void embedding(Buf table, int[] ids, Buf out);

    /** {@code dtable[ids[i]] += dout[i]} (only the rows used). */
    void embeddingBackward(int[] ids, Buf dout, Buf dtable);

    /** {@code out = x * rsqrt(mean(x^2) + eps) * w} per row; {@code rstd} (one per row) is kept for the backward. */
    void rmsNorm(Buf x, Buf w, double eps, Buf out, Buf rstd);

    void rmsNormBackward(Buf x, Buf w, Buf rstd, Buf dout, Buf dx, Buf dw);

    /** {@code out = x @ w^T (+ bias)}; bias may be null. */
    void matmul(Buf x, Buf w, Buf bias, Buf out);

    /** {@code dx += dout @ w}, {@code dw += dout^T @ x}, {@code db += colsum(dout)}; dx and db may be null. */
    void matmulBackward(Buf x, Buf w, Buf dout, Buf dx, Buf dw, Buf db);

    /** {@code out = a[:, :h] * silu(a[:, h:])}. */
    void swiglu(Buf a, Buf out);

    void swigluBackward(Buf a, Buf dout, Buf da);

    /** {@code acc += x}. */
    void add(Buf acc, Buf x);

    // ---------------------------------------------------------------- sequence mixers

    /**
     * BaseConv core on {@code u = [u1 | u2]}: {@code c} = causal depthwise conv of u1 with taps {@code convW
     * [inner, kernel]} (kept for the backward), {@code out = silu(c) * u2}.
     */
    void baseConv(int batch, int seqLen, Buf u, Buf convW, int kernel, Buf c, Buf out);

    void baseConvBackward(int batch, int seqLen, Buf u, Buf convW, int kernel, Buf c, Buf dout, Buf du, Buf dconvW);

    /** Taylor linear attention, causal, per head; the backward recomputes the chunk states it needs. */
    void linearAttention(MixerConfig.LinearAttention cfg, int batch, int seqLen, Buf q, Buf k, Buf v, Buf out);

    void linearAttentionBackward(MixerConfig.LinearAttention cfg, int batch, int seqLen, Buf q, Buf k, Buf v, Buf dout,
                                 Buf dq, Buf dk, Buf dv);

    /** Softmax attention with rotary positions over {@code qkv [N, 3d]}; {@code lse} ({@code [N, heads]}) is kept. */
    void attention(MixerConfig.Attention cfg, int batch, int seqLen, Buf qkv, Buf out, Buf lse);

    void attentionBackward(MixerConfig.Attention cfg, int batch, int seqLen, Buf qkv, Buf out, Buf lse, Buf dout,
                           Buf dqkv);

    // ---------------------------------------------------------------- loss

    /**
     * Fused head and softmax cross-entropy over the first {@code vocab} rows of {@code head}: returns the summed loss
     * over positions whose target is not {@link #IGNORE_INDEX} (others are skipped entirely) and adds {@code scale}
     * times its gradient into dx and dhead (null to skip). {@code argmax}, if not null, receives each counted row's
     * most likely token (-1 for ignored rows).
     */
    double crossEntropy(Buf x, Buf head, int vocab, int[] targets, double scale, Buf dx, Buf dhead, int[] argmax);

    int IGNORE_INDEX = -100;

    // ---------------------------------------------------------------- optimizer

    /** {@code sum(g^2)}. */
    double sumOfSquares(Buf g);

    /** {@code g *= s}. */
    void scale(Buf g, double s);

    /**
     * One AdamW update (decoupled weight decay, bias-corrected moments; {@code step} counts from 1):
     * {@code p -= lr * wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
     * p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)}.
     */
    void adamw(Buf p, Buf g, Buf m, Buf v, double lr, double beta1, double beta2, double eps, double weightDecay,
               long step);

    @Override
    void close();

    /** Numbers owned by a training backend. */
    interface Buf {
        int rows();

        int cols();
    }
}
