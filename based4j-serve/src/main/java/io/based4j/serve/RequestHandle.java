package io.based4j.serve;

import io.based4j.generate.GenerationResult;
import java.util.concurrent.CompletableFuture;

/** A submitted request: its result to come, and a way to cancel it. */
public final class RequestHandle {
    private final long id;
    private final CompletableFuture<GenerationResult> result = new CompletableFuture<>();
    private final Runnable wake;
    private volatile boolean cancelled;

    RequestHandle(long id, Runnable wake) {
        this.id = id;
        this.wake = wake;
    }

    /** The engine's number for this request, in order of submission. */
    public long id() {
        return id;
    }

    /**
     * Asks the engine to stop the request: at its next step it drops the request from the queue or frees its slot,
     * and the result completes with a {@link java.util.concurrent.CancellationException}. Cancelling the result
     * future does the same. Nothing happens to a request that has already ended.
     */
    public void cancel() {
        cancelled = true;
        wake.run();
    }

    /** Whether the request is to stop: {@link #cancel()} was called or the result future was completed from outside. */
    boolean cancelRequested() {
        return cancelled || result.isDone();
    }

    /** Completes with the generated tokens and text, or exceptionally when the request ends without them. */
    public CompletableFuture<GenerationResult> result() {
        return result;
    }
}
