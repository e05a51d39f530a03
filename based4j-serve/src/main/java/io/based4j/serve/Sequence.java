package io.based4j.serve;

import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.StopMatcher;
import io.based4j.sampling.Sampler;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.tokenizer.StreamingDecoder;
import java.time.Duration;
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
    /** Prompt tokens fed so far (or restored from a cached prefix). */
    private int fed;
    /** Prompt lengths after which the state is to be cached, ascending; the next is at {@code nextPoint}. */
    private int[] cachePoints = new int[0];
    private int nextPoint;
    /** When the request is to be stopped ({@link System#nanoTime()}); {@link Long#MAX_VALUE}: never. */
    final long deadlineNanos;
    /** The timeout it was submitted with, to name in a timeout's message. */
    final Duration timeout;
    /** The last token chosen, to be fed in the next step. */
    int next = -1;
    private GenerationResult.Finish finish;
    /** When the request was submitted, then when its last token was generated ({@link System#nanoTime()}). */
    private long lastEventNanos = System.nanoTime();
    private boolean anyToken;

    /** A sequence of a request submitted now; {@code timeout} zero: none. */
    Sequence(RequestHandle handle, GenerationRequest request, StreamListener listener, Gpt2Tokenizer tokenizer,
             int topLogprobs, Duration timeout) {
        this.timeout = timeout;
        this.deadlineNanos = timeout.isZero() ? Long.MAX_VALUE : lastEventNanos + saturatedNanos(timeout);
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

    private static long saturatedNanos(Duration d) {
        try {
            return d.toNanos();
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE / 2; // centuries: no deadline in practice, and no overflow when added to now
        }
    }

    /** Whether the request's time is up at {@code now} ({@link System#nanoTime()}). */
    boolean expired(long now) {
        return deadlineNanos != Long.MAX_VALUE && now - deadlineNanos >= 0;
    }

    int[] prompt() {
        return prompt;
    }

    boolean prefilling() {
        return fed < prompt.length;
    }

    int promptLeft() {
        return prompt.length - fed;
    }

    /** Prompt tokens to feed before the next cache point (all that are left when there is none). */
    int promptLeftBeforePoint() {
        return (nextPoint < cachePoints.length ? cachePoints[nextPoint] : prompt.length) - fed;
    }

    /** Prompt tokens fed (or restored) so far. */
    int fed() {
        return fed;
    }

    /** Starts after a cached prefix of {@code length} tokens, whose state the slot now holds. */
    void resume(int length) {
        fed = length;
    }

    /** Sets the prompt lengths (ascending, each past what is fed) after which the state is to be cached. */
    void cacheAt(int[] points) {
        cachePoints = points;
        nextPoint = 0;
    }

    /** Whether the prompt fed so far ends at the next cache point (without passing it). */
    boolean atCachePoint() {
        return nextPoint < cachePoints.length && cachePoints[nextPoint] == fed;
    }

    /** Whether the prompt fed so far ends at the next cache point; if so, that point is passed. */
    boolean passCachePoint() {
        if (nextPoint < cachePoints.length && cachePoints[nextPoint] == fed) {
            nextPoint++;
            return true;
        }
        return false;
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
