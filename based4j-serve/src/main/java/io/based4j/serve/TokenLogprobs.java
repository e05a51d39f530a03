package io.based4j.serve;

import io.based4j.sampling.LogSoftmax;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The log-probability of a generated token under the model's distribution (the softmax of the logits, before
 * temperature, top-k or top-p shape the sampling), and the {@code topIds.length} most likely tokens with theirs,
 * most likely first. Computed in double.
 *
 * @param id the token chosen
 * @param logprob its log-probability
 * @param topIds the most likely tokens, most likely first (ties: the lower id first)
 * @param topLogprobs their log-probabilities
 */
public record TokenLogprobs(int id, double logprob, int[] topIds, double[] topLogprobs) {
    /** OpenAI's largest {@code logprobs} of the completions API. */
    public static final int MAX_TOP = 5;

    /** The log-probabilities of row {@code logits[offset, offset + vocab)} for token {@code id} and the top {@code k}. */
    static TokenLogprobs of(float[] logits, int offset, int vocab, int id, int k) {
        double logZ = LogSoftmax.logNormalizer(logits, offset, vocab);
        int[] top = IntStream.range(0, vocab).boxed()
                .sorted(Comparator.<Integer>comparingDouble(i -> -logits[offset + i]).thenComparingInt(i -> i))
                .limit(k).mapToInt(Integer::intValue).toArray();
        double[] topLogprobs = Arrays.stream(top).mapToDouble(i -> logits[offset + i] - logZ).toArray();
        return new TokenLogprobs(id, logits[offset + id] - logZ, top, topLogprobs);
    }
}
