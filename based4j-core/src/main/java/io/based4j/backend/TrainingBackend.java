package io.based4j.backend;

import io.based4j.config.MixerConfig;
import io.based4j.memory.MemoryNeed;
import io.based4j.tensor.Tensor;
import java.util.List;
import java.util.function.Supplier;

/**
 * A {@link Backend} that also trains: the same forward ops, run over whole sequences with the buffers the forward
 * keeps for its backward filled in (the {@code rstd} of {@link #rmsNorm}, the conv output of {@link #baseConv}, the
 * log-sum-exp of {@link #attention}), plus each op's backward, the fused loss and the optimizer's ops.
 *
 * <p>A training pass is {@code batch} sequences of {@code seqLen} tokens each, packed as {@code batch x seqLen} rows
 * (sequence b is rows {@code [b * seqLen, (b + 1) * seqLen)}), described by {@link TokenBatch#uniform}; the mixers
 * start from an empty state ({@code state} null) and keep nothing across passes. Forward ops overwrite their outputs.
 * Backward ops add into every gradient output, so the gradients of several branches and of several micro-batches
 * accumulate; callers zero them.
 *
 * <p>What each forward keeps, and what its backward recomputes:
 * <ul>
 *   <li>{@link #rmsNorm}: one {@code rstd} per row;</li>
 *   <li>{@link #baseConv}: the conv output {@code c} (the gate's gradient needs {@code silu'(c)});</li>
 *   <li>{@link #linearAttention}: nothing beyond q, k, v and the output; the backward recomputes the chunk states,
 *       so memory stays linear in the sequence length with no L x L matrix;</li>
 *   <li>{@link #attention}: one log-sum-exp per (token, head); the backward recomputes the probabilities (flash
 *       style), never storing L x L.</li>
 * </ul>
 */
public interface TrainingBackend extends Backend {

    /** A trained tensor's values: a weight the forward ops read and a buffer the optimizer updates. */
    interface Parameter extends Weight, Buffer {
    }

    /**
     * What the training pass computes in: {@code f64} (the CPU reference), {@code f32}, or {@code bf16} (bf16 compute
     * copies of float32 master weights). A resume repeats the uninterrupted run exactly on the same backend and
     * precision only.
     */
    default String precisionName() {
        return "f32";
    }

    /**
     * Has the backend choose how it computes matrix products by measuring the ways it has, where it can: a training
     * step's products repeat for the whole run, so a little timing at the first step pays. The choice is kept, so
     * that the same product is computed the same way again (and a resumed run repeats the uninterrupted one).
     * Nothing by default.
     */
    default void timeProducts() {
    }

    // ---------------------------------------------------------------- memory

    /** A parameter holding a tensor's values (any floating dtype; float64 keeps every bit), shaped as the tensor. */
    Parameter parameter(Tensor tensor);

    /** The values in the backend's own storage type, exactly (for optimizer state and resumable checkpoints). */
    Tensor save(Buffer buffer, long... shape);

    void zero(Buffer buffer);

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

    // ---------------------------------------------------------------- backward of the dense ops

    /** {@code dtable[ids[i]] += dout[i]} (only the rows used). */
    void embeddingBackward(int[] ids, Buffer dout, Buffer dtable);

    /** Backward of {@link #rmsNorm} from the kept {@code rstd}: {@code dx += ...}, {@code dw += ...}. */
    void rmsNormBackward(Buffer x, Weight w, Buffer rstd, Buffer dout, Buffer dx, Buffer dw);

    /** {@code dx += dout @ w}, {@code dw += dout^T @ x}, {@code db += colsum(dout)}; dx and db may be null. */
    void matmulBackward(Buffer x, Weight w, Buffer dout, Buffer dx, Buffer dw, Buffer db);

    /** Backward of {@link #swiglu}: {@code da += ...}. */
    void swigluBackward(Buffer a, Buffer dout, Buffer da);

    // ---------------------------------------------------------------- backward of the sequence mixers

    /** Backward of {@link #baseConv} from the kept conv output: {@code du += ...}, {@code dtaps += ...}. */
    void baseConvBackward(MixerConfig.BaseConv cfg, TokenBatch batch, Buffer u, Weight taps, Buffer convOut,
                          Buffer dout, Buffer du, Buffer dtaps);

    /** Backward of {@link #linearAttention}, recomputing the chunk states it needs. */
    void linearAttentionBackward(MixerConfig.LinearAttention cfg, TokenBatch batch, Buffer q, Buffer k, Buffer v,
                                 Buffer dout, Buffer dq, Buffer dk, Buffer dv);

    /** Backward of {@link #attention} from the kept output and log-sum-exp: {@code dqkv += ...}. */
    void attentionBackward(MixerConfig.Attention cfg, TokenBatch batch, Buffer qkv, Buffer out, Buffer lse,
                           Buffer dout, Buffer dqkv);

    // ---------------------------------------------------------------- loss

    /**
     * Fused head and softmax cross-entropy over the first {@code vocab} rows of {@code head}: returns the summed loss
     * over positions whose target is not {@link #IGNORE_INDEX} (others are skipped entirely) and adds {@code scale}
     * times its gradient into dx and dhead (null to skip). {@code argmax}, if not null, receives each counted row's
     * most likely token (-1 for ignored rows).
     */
    double crossEntropy(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx, Buffer dhead,
                        int[] argmax);

    int IGNORE_INDEX = -100;

    /** A number the backend may still be computing: {@link #value} waits for it. */
    interface Readout {
        double value();
    }

    /**
     * {@link #crossEntropy} without argmax, whose loss may still be in the making when this returns, so that a
     * training step need not wait for the device; the default computes it at once.
     */
    default Readout crossEntropyLater(Buffer x, Weight head, int vocab, int[] targets, double scale, Buffer dx,
                                      Buffer dhead) {
        double loss = crossEntropy(x, head, vocab, targets, scale, dx, dhead, null);
        return () -> loss;
    }

    // ---------------------------------------------------------------- optimizer

    /** {@code sum(g^2)}. */
    double sumOfSquares(Buffer g);

    /** {@code g *= s}. */
    void scale(Buffer g, double s);

    /**
     * One AdamW update (decoupled weight decay, bias-corrected moments; {@code step} counts from 1):
     * {@code p -= lr * wd * p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
     * p -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)}.
     */
    void adamw(Parameter p, Buffer g, Buffer m, Buffer v, double lr, double beta1, double beta2, double eps,
               double weightDecay, long step);

    /** One parameter of an {@link #adamwStep}: its values, gradient, two moments and weight decay. */
    record AdamWSlot(Parameter value, Buffer grad, Buffer m, Buffer v, double weightDecay) {
    }

    /**
     * The settings of one {@link #adamwStep}: rate, betas, epsilon, the global-norm limit {@code gradClip} (0: no
     * clipping) and the update's number {@code step}, counted from 1.
     */
    record AdamWUpdate(double lr, double beta1, double beta2, double eps, double gradClip, long step) {
        public AdamWUpdate {
            if (step < 1) {
                throw new IllegalArgumentException("adamw: step " + step + " (updates count from 1)");
            }
            if (!(gradClip >= 0)) {
                throw new IllegalArgumentException("adamw: gradient clip " + gradClip + " is negative");
            }
        }
    }

    /**
     * The global L2 norm of an update's gradients (before clipping), which the backend may still be computing:
     * {@link #value} waits for it. Read it before the next update.
     */
    interface GradientNorm extends Readout {
        /** The norm; NaN or infinite when the gradients were not finite (then the update changed nothing). */
        @Override
        double value();
    }

    /**
     * One AdamW update of every slot, after the global-norm clipping of {@code AdamW.update}: the L2 norm of all
     * gradients together, and when {@code 0 < gradClip < norm} every gradient multiplied by
     * {@code gradClip / (norm + 1e-6)}, then {@link #adamw} per slot. Gradients may be scaled in place. When the norm
     * is not finite nothing is updated, and a backend that computes asynchronously also skips every later
     * {@code adamwStep} over the same slots (the caller learns it on reading a norm, and must stop).
     *
     * <p>This default takes each slot in turn with {@link #sumOfSquares}, {@link #scale} and {@link #adamw}, and knows
     * the norm on return; a GPU backend overrides it to update every parameter in a few launches, without waiting.
     */
    default GradientNorm adamwStep(List<AdamWSlot> slots, AdamWUpdate u) {
        double s = 0;
        for (AdamWSlot slot : slots) {
            s += sumOfSquares(slot.grad());
        }
        double norm = Math.sqrt(s);
        if (Double.isFinite(norm)) {
            if (u.gradClip() > 0 && norm > u.gradClip()) {
                double f = u.gradClip() / (norm + 1e-6);
                for (AdamWSlot slot : slots) {
                    scale(slot.grad(), f);
                }
            }
            for (AdamWSlot slot : slots) {
                adamw(slot.value(), slot.grad(), slot.m(), slot.v(), u.lr(), u.beta1(), u.beta2(), u.eps(),
                        slot.weightDecay(), u.step());
            }
        }
        return new KnownNorm(norm);
    }

    /** A {@link GradientNorm} known when the update returns. */
    record KnownNorm(double value) implements GradientNorm {
    }

    // ---------------------------------------------------------------- recorded steps

    /**
     * Records whole training steps (a pass and the optimizer update after it) to replay them for later steps of the
     * same shape, as CUDA graphs do; null where every op runs as it comes.
     */
    default StepRecorder stepRecorder() {
        return null;
    }

    /** Records a training step: see {@link #stepRecorder}. */
    interface StepRecorder {
        /**
         * Runs {@code pass}, a training pass (gradients zeroed, forward, loss, backward) whose ops take the step's
         * inputs as these very arrays {@code ids} and {@code targets} and whose loss it returns, then
         * {@link #adamwStep}{@code (slots, update)}, recording them as one step; then runs the recording once, as
         * the step of {@code update}, whose outcome the returned recording holds.
         *
         * @throws StepNotRecordable when the pass does something a replay could not repeat (another input from the
         *     host, an allocation, a wait for the device): then nothing of the step has run, and the caller runs it
         *     op by op
         */
        Recording record(int[] ids, int[] targets, Supplier<Readout> pass, List<AdamWSlot> slots,
                         AdamWUpdate update);
    }

    /** A recorded step and the outcome of its first run. */
    record Recording(RecordedStep step, StepOutcome first) {
    }

    /** A recorded training step. */
    interface RecordedStep extends AutoCloseable {
        /**
         * Runs the step again over new {@code ids} and {@code targets} of the recorded length, as the update
         * {@code update} (its rate and number; its betas, epsilon and clip must be the recorded ones).
         *
         * @throws IllegalArgumentException naming a token id or target out of range, or an input of another length
         */
        StepOutcome replay(int[] ids, int[] targets, AdamWUpdate update);

        @Override
        void close();
    }

    /** What a step leaves for the host to read when it wants: the summed loss and the gradient norm. */
    record StepOutcome(Readout loss, GradientNorm norm) {
    }

    /** A training pass that a backend cannot record as a step: run it op by op. */
    final class StepNotRecordable extends RuntimeException {
        public StepNotRecordable(String message) {
            super(message);
        }
    }
}
