package io.based4j.serve;

import io.based4j.generate.GenerationResult;

/**
 * Receives one request's output as the engine produces it. Calls come from the engine's thread, in order; they
 * should return quickly, since every running sequence waits for them. An exception thrown from a call cancels the
 * request (its result completes exceptionally) and leaves the engine and the other requests running.
 */
public interface StreamListener {
    /**
     * A generated token and the text it completes: possibly empty, never half of a character, and held back while
     * it could still be the start of a stop string. {@code tokenId} is -1 for text released when the sequence ends.
     */
    void onToken(int tokenId, String text);

    /**
     * The log-probabilities of the token about to be passed to {@link #onToken}, for a request submitted with top
     * logprobs (the end-of-text token that ends a sequence included).
     */
    default void onLogprobs(TokenLogprobs logprobs) {
    }

    /** The request finished; {@code result} is also what {@link RequestHandle#result()} completes with. */
    default void onFinish(GenerationResult result) {
    }

    /** The request ended without a result: cancelled, failed, or the engine closed first. */
    default void onError(Throwable error) {
    }

    /** A listener that ignores everything (the caller only waits for the result). */
    static StreamListener none() {
        return (tokenId, text) -> { };
    }
}
