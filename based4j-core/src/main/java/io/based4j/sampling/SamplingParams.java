package io.based4j.sampling;

/**
 * Token sampling settings.
 *
 * @param temperature logits are divided by it; 0 means greedy (argmax)
 * @param topK        keep only the {@code topK} most likely tokens; 0 turns it off
 * @param topP        nucleus sampling: keep the smallest set of most likely tokens whose probability
 *                    reaches {@code topP}; 1 turns it off
 * @param seed        seed of the sampler's random generator
 */
public record SamplingParams(float temperature, int topK, float topP, long seed) {
    public SamplingParams {
        if (!Float.isFinite(temperature) || temperature < 0) {
            throw new IllegalArgumentException("--temperature must be finite and >= 0, got " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("--top-k must be >= 0 (0 = off), got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("--top-p must be in (0, 1], got " + topP);
        }
    }

    /** Deterministic argmax decoding. */
    public static SamplingParams greedy() {
        return new SamplingParams(0f, 0, 1f, 0L);
    }

    public boolean isGreedy() {
        return temperature == 0f;
    }

    /** Whether these settings always choose the most likely token (greedy, or top-k 1), using no randomness. */
    public boolean choosesArgmax() {
        return isGreedy() || topK == 1;
    }
}
