package io.based4j.sampling;

import java.util.SplittableRandom;

/**
 * Chooses the next token from a row of logits: greedy argmax, or temperature / top-k / top-p sampling, by the
 * function {@link TokenDraw} states (the GPU sampler computes the same one).
 *
 * <p>The random generator is seeded from {@link SamplingParams#seed()}; each sampled token takes exactly one
 * {@link #uniformForNextToken() uniform draw} from it, and an argmax token none. So a given seed and sequence of calls
 * always gives the same tokens, on the CPU and on a GPU alike. Scratch buffers are reused between calls: not
 * thread-safe.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    private final TokenDraw draw = new TokenDraw();

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    public SamplingParams params() {
        return params;
    }

    /**
     * The uniform in [0, 1) (a multiple of 2^-24) that chooses the next token: the generator's next draw, or 0 without
     * a draw where the settings {@link SamplingParams#choosesArgmax() choose the argmax}. {@link #sample} calls it once
     * per token; a sampler that runs elsewhere (on a GPU) must call it exactly so and pass it on, to draw the same
     * tokens for the same seed.
     */
    public float uniformForNextToken() {
        return params.choosesArgmax() ? 0f : random.nextInt(1 << 24) * 0x1p-24f;
    }

    /**
     * Chooses a token id in {@code [0, vocabSize)} from {@code logits[offset .. offset + vocabSize)}. Entries
     * past {@code vocabSize} (padding of the vocabulary) are never looked at.
     *
     * @throws IllegalStateException if a logit is NaN, or all are -Infinity
     */
    public int sample(float[] logits, int offset, int vocabSize) {
        return draw.choose(logits, offset, vocabSize, params, uniformForNextToken());
    }

    /**
     * The sampling function itself: the token that {@code params} (its seed aside) and the draw {@code uniform} choose
     * from {@code logits[offset .. offset + vocabSize)}; see {@link TokenDraw}.
     *
     * @throws IllegalStateException if a logit is NaN, or all are -Infinity
     */
    public static int pick(float[] logits, int offset, int vocabSize, SamplingParams params, float uniform) {
        return new TokenDraw().choose(logits, offset, vocabSize, params, uniform);
    }
}
