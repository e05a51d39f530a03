package io.based4j.generate;

/**
 * What was generated for one request.
 *
 * @param tokens generated ids (an end-of-text token that stopped generation is not included)
 * @param text the generated text, cut before a stop string
 * @param finish why generation ended
 */
public record GenerationResult(int[] tokens, String text, Finish finish) {
    public enum Finish {
        /** The end-of-text token was produced. */
        EOS,
        /** A stop string appeared. */
        STOP,
        /** The token budget ran out. */
        LENGTH
    }
}
