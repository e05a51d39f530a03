package io.based4j.serve;

/**
 * How much an {@link Engine} takes on at once.
 *
 * @param maxSequences sequences generated together (state slots of the engine's session)
 * @param maxTokensPerSequence most tokens of one sequence, prompt and generated tokens together
 * @param tokensPerStep most tokens of one step (one forward call): a decode token for every running sequence, the
 *                      rest for pieces of prompts
 * @param queueCapacity requests that may wait for a slot; a submit beyond that is refused
 */
public record EngineOptions(int maxSequences, int maxTokensPerSequence, int tokensPerStep, int queueCapacity) {
    public EngineOptions {
        positive("max sequences", maxSequences);
        positive("max tokens per sequence", maxTokensPerSequence);
        positive("tokens per step", tokensPerStep);
        positive("queue capacity", queueCapacity);
    }

    private static void positive(String what, int value) {
        if (value < 1) {
            throw new IllegalArgumentException(what + " must be at least 1, got " + value);
        }
    }
}
