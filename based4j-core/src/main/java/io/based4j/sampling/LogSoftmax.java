package io.based4j.sampling;

/** Log-probabilities from a row of logits, in double. */
public final class LogSoftmax {
    private LogSoftmax() {
    }

    /**
     * {@code log sum exp(logits[offset .. offset + vocab))}, shifted by the row's largest logit: a token's
     * log-probability is its logit less this.
     */
    public static double logNormalizer(float[] logits, int offset, int vocab) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[offset + i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            sum += Math.exp(logits[offset + i] - max);
        }
        return max + Math.log(sum);
    }
}
