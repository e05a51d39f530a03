package io.based4j.serve;

/**
 * How much an {@link Engine} takes on at once.
 *
 * @param maxSequences sequences generated together (state slots of the engine's session)
 * @param maxTokensPerSequence most tokens of one sequence, prompt and generated tokens together
 * @param tokensPerStep most tokens of one step (one forward call): a decode token for every running sequence, the
 *                      rest for pieces of prompts
 * @param queueCapacity requests that may wait for a slot; a submit beyond that is refused
 * @param prefixCacheBytes most bytes of prompt-prefix states the engine keeps for later requests that start with
 *                         the same tokens (held where the backend keeps states: the Java heap, the GPU); 0 keeps
 *                         none
 * @param stepsAhead whether a decode step is queued on the ids the step before drew before the host has read them,
 *                   where the backend replays recorded steps (a GPU's CUDA graphs): the host's reading, its turn and
 *                   the next step's launch then overlap the device's work. Each sequence draws its tokens as
 *                   without it; a waiting request may be admitted a step later.
 */
public record EngineOptions(int maxSequences, int maxTokensPerSequence, int tokensPerStep, int queueCapacity,
                            long prefixCacheBytes, boolean stepsAhead) {
    public EngineOptions {
        positive("max sequences", maxSequences);
        positive("max tokens per sequence", maxTokensPerSequence);
        positive("tokens per step", tokensPerStep);
        positive("queue capacity", queueCapacity);
        if (prefixCacheBytes < 0) {
            throw new IllegalArgumentException("prefix cache bytes must be at least 0, got " + prefixCacheBytes);
        }
    }

    /** Options with steps ahead. */
    public EngineOptions(int maxSequences, int maxTokensPerSequence, int tokensPerStep, int queueCapacity,
                         long prefixCacheBytes) {
        this(maxSequences, maxTokensPerSequence, tokensPerStep, queueCapacity, prefixCacheBytes, true);
    }

    /** Options without a prefix cache, with steps ahead. */
    public EngineOptions(int maxSequences, int maxTokensPerSequence, int tokensPerStep, int queueCapacity) {
        this(maxSequences, maxTokensPerSequence, tokensPerStep, queueCapacity, 0);
    }

    /** These options with a prefix cache of {@code bytes} (0: none). */
    public EngineOptions withPrefixCacheBytes(long bytes) {
        return new EngineOptions(maxSequences, maxTokensPerSequence, tokensPerStep, queueCapacity, bytes, stepsAhead);
    }

    /** These options with steps ahead on or off. */
    public EngineOptions withStepsAhead(boolean on) {
        return new EngineOptions(maxSequences, maxTokensPerSequence, tokensPerStep, queueCapacity, prefixCacheBytes,
                on);
    }

    private static void positive(String what, int value) {
        if (value < 1) {
            throw new IllegalArgumentException(what + " must be at least 1, got " + value);
        }
    }
}
