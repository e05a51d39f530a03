package io.based4j.serve;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.StopMatcher;
import io.based4j.sampling.Sampler;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.tokenizer.StreamingDecoder;
import java.util.Arrays;

/** One request inside the engine: where its prompt stands, what it has generated, and how it ended. */
final class Sequence {
    final RequestHandle handle;
    final GenerationRequest request;
    final StreamListener listener;
    final Sampler sampler;
    /** Most likely tokens reported with each generated token's logprob; -1: no logprobs. */
    final int topLogprobs;
    private final StreamingDecoder decoder;
    private final StopMatcher stops;
    private final int[] prompt;
    private final int[] tokens;
    private int generated;
    private final StringBuilder text = new StringBuilder();
    /** The state slot it holds; -1 while it waits. */
    int slot = -1;
    /** Prompt tokens fed so far. */
    private int fed;
    /** The last token chosen, to be fed in the next step. */
    int next = -1;
    private GenerationResult.Finish finish;
    /** When the request was submitted, then when its last token was generated ({@link System#nanoTime()}). */
    private long lastEventNanos = System.nanoTime();
    private boolean anyToken;

    Sequence(RequestHandle handle, GenerationRequest request, StreamListener listener, Gpt2Tokenizer tokenizer,
             int topLogprobs) {
        this.topLogprobs = topLogprobs;
        this.handle = handle;
        this.request = request;
        this.listener = listener;
        this.sampler = new Sampler(request.sampling());
        this.decoder = tokenizer.streamingDecoder();
        this.stops = new StopMatcher(request.stopStrings());
        this.prompt = request.promptIds();
        this.tokens = new int[request.maxNewTokens()];
    }

    boolean prefilling() {
        return fed < prompt.length;
    }

    int promptLeft() {
        return prompt.length - fed;
    }

    /** Copies the next {@code count} prompt tokens into {@code packed} at {@code at} and counts them as fed. */
    void feedPrompt(int[] packed, int at, int count) {
        System.arraycopy(prompt, fed, packed, at, count);
        fed += count;
    }

    /** Whether a token has been generated (the next is not the first). */
    boolean anyToken() {
        return anyToken;
    }

    /** Notes a token generated at {@code now}; returns the nanoseconds since the previous one, or since submit. */
    long markToken(long now) {
        long since = now - lastEventNanos;
        lastEventNanos = now;
        anyToken = true;
        return since;
    }

    int generated() {
        return generated;
    }

    boolean finished() {
        return finish != null;
    }

    /**
     * Takes the token chosen for this sequence and returns the text it releases, or null when it is the end-of-text
     * token that ends the sequence. Afterwards {@link #finished()} tells whether the sequence is done.
     */
    String accept(int id, int eosId) {
        next = id;
        if (request.stopOnEos() && id == eosId) {
            finish = GenerationResult.Finish.EOS;
            return null;
        }
        tokens[generated++] = id;
        String piece = stops.accept(decoder.accept(id));
        text.append(piece);
        if (stops.stopped()) {
            finish = GenerationResult.Finish.STOP;
        } else if (generated >= tokens.length) {
            finish = GenerationResult.Finish.LENGTH;
        }
        return piece;
    }

    /** Ends the sequence: returns the text still held back (bytes of an unfinished character, a possible stop). */
    String release() {
        if (finish == null) {
            finish = GenerationResult.Finish.LENGTH;
        }
        String released = stops.accept(decoder.flush()) + stops.finish();
        text.append(released);
        return released;
    }

    GenerationResult result() {
        return new GenerationResult(Arrays.copyOf(tokens, generated), text.toString(), finish);
    }
}
