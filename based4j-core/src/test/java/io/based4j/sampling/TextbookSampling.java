package io.based4j.sampling;

import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The sampling function as a textbook states it, in float64: softmax of logits / temperature, top-k keeping the k
 * largest logits (and ties at the k-th), top-p the shortest run by descending probability whose mass reaches topP
 * (and ties at its last logit), then the inverse CDF in index order at the uniform draw. It answers only where the
 * answer is certain: where the draw and the thresholds are far enough from a boundary that neither the fixed-point
 * arithmetic of the real function nor a shift of every logit by up to a given amount can change the token.
 */
public final class TextbookSampling {
    private TextbookSampling() {
    }

    /**
     * The token chosen from {@code logits[offset, offset + vocab)} (all finite) with the draw {@code u}, or -1 where
     * it could change: by the fixed-point rounding of {@link TokenDraw} (see {@link #roundingError}), or by moving any
     * logit by at most {@code logitShift}. Such a shift moves each logit difference by at most 2 shift, so it keeps
     * the order across a top-k or top-p boundary when the logits there differ by more than that, and scales every
     * probability (also one renormalized over the kept tokens) by a factor within e^(+-2 shift / temperature): a
     * cumulative probability moves by at most e^(2 shift / temperature) - 1 = eps. The draw must be eps away from its
     * two boundaries; the top-p mass, 2 eps from topP on both sides (the kept run's least token may change as well).
     */
    public static int choose(float[] logits, int offset, int vocab, SamplingParams p, float u, double logitShift) {
        double[] l = new double[vocab];
        for (int i = 0; i < vocab; i++) {
            l[i] = logits[offset + i];
        }
        Integer[] order = IntStream.range(0, vocab).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -l[i]));
        double gap = 2 * logitShift;
        double shift = Math.expm1(2 * logitShift / p.temperature());
        int keep = p.topK() > 0 && p.topK() < vocab ? p.topK() : vocab;
        if (keep < vocab && logitShift > 0 && l[order[keep - 1]] - l[order[keep]] <= gap) {
            return -1;
        }
        while (keep < vocab && l[order[keep]] == l[order[keep - 1]]) {
            keep++;
        }
        double max = l[order[0]];
        double[] x = new double[vocab];
        double[] w = new double[vocab];
        for (int j = 0; j < keep; j++) {
            x[order[j]] = (l[order[j]] - max) / p.temperature();
            w[order[j]] = Math.exp(x[order[j]]);
        }
        if (p.topP() < 1f) {
            double total = Arrays.stream(w).sum();
            double margin = roundingError(w, x) + 2 * shift;
            double cumulative = 0;
            int j = 0;
            while (cumulative < p.topP() * total) {
                cumulative += w[order[j++]];
            }
            double before = cumulative - w[order[j - 1]];
            if (cumulative / total - p.topP() < margin || p.topP() - before / total < margin
                    || logitShift > 0 && j < keep && l[order[j - 1]] - l[order[j]] <= gap) {
                return -1;
            }
            while (j < keep && l[order[j]] == l[order[j - 1]]) {
                j++;
            }
            for (int drop = j; drop < keep; drop++) {
                w[order[drop]] = 0;
            }
        }
        double total = Arrays.stream(w).sum();
        double margin = roundingError(w, x) + shift;
        double cumulative = 0;
        for (int i = 0; i < vocab; i++) {
            double before = cumulative;
            cumulative += w[i] / total;
            if (w[i] > 0 && u < cumulative) {
                return u - before < margin || cumulative - u < margin ? -1 : i;
            }
        }
        return -1; // u within rounding of 1
    }

    /**
     * How far a cumulative probability of {@link TokenDraw} can be from the exact one, for the tokens of nonzero
     * exact weight {@code w = exp(x)}: the difference and the quotient of {@code x} are each rounded to float
     * (relative error 2^-24 each, so an absolute error of |x| 2^-23 in the exponent and a relative one in the weight),
     * the weight rounded to float (2^-24 relative) and truncated to 40 fractional bits (2^-40 absolute). A sum over a
     * subset, divided by the perturbed total, is then off by at most twice the total relative error, plus 1e-12 for
     * the rounding of these double sums.
     */
    static double roundingError(double[] w, double[] x) {
        double total = 0;
        double error = 0;
        for (int i = 0; i < w.length; i++) {
            if (w[i] > 0) {
                total += w[i];
                error += w[i] * (Math.abs(x[i]) * 0x1p-23 + 0x1p-24) + 0x1p-40;
            }
        }
        return 2 * error / total + 1e-12;
    }
}
