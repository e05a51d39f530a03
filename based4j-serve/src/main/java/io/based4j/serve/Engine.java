package io.based4j.serve;

import io.based4j.backend.Backend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.model.BasedModel;
import io.based4j.model.Session;
import io.based4j.sampling.Sampler;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CancellationException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * Generates for many requests at once with continuous batching. Requests wait in a bounded queue; one engine thread
 * runs steps, and each step
 * <ol>
 *   <li>drops cancelled requests and those past their timeout, freeing their slots;</li>
 *   <li>admits waiting requests into free slots of one session (the slot's state reset, or restored from the
 *       {@linkplain EngineOptions#prefixCacheBytes() prefix cache} when the prompt starts with a cached prefix);</li>
 *   <li>runs one forward call carrying a decode token for every sequence whose prompt is done and, in what is left
 *       of the step's token budget, the next pieces of the prompts still being fed, so that a long prompt never
 *       stalls the running streams (a prompt's state is cached after the prefixes the cache wants, so a piece
 *       ends there);</li>
 *   <li>samples the next token of every sequence whose prompt is done, streams its text to the request's listener,
 *       and retires the sequences that end (end-of-text unless ignored, a stop string, max tokens).</li>
 * </ol>
 *
 * <p>Every request gets exactly the tokens a solo {@link Generator#generate} of it gives when the backend computes
 * each sequence independently of the others in its call (the CPU backend does): a request's sampler is its own,
 * seeded from its parameters, and prompt pieces fed in separate steps are multiples of {@link Backend#exactSplit()}
 * tokens, so they are summed as a prompt fed in one call is; cached prefixes are multiples of it too, so a prompt
 * resumed from one gets the logits of a cold run, bit for bit. (On the CPU backend, bit-for-bit agreement holds once
 * the JIT has compiled its Vector API kernels, as it does between two solo runs: the interpreted forms sum a
 * vector's lanes in another order.)
 *
 * <p>The engine does not own the model or the tokenizer: close the engine first, then the model.
 */
public final class Engine implements AutoCloseable {
    private final BasedModel model;
    private final Backend backend;
    private final Gpt2Tokenizer tokenizer;
    private final EngineOptions options;
    private final int eosId;
    private final int vocab;
    /** Prompt pieces that leave part of a prompt for a later step are multiples of this. */
    private final int split;
    private final Session session;
    /** States of prompt prefixes; null when the options give it no budget. */
    private final PrefixCache cache;
    private final ArrayBlockingQueue<Sequence> queue;
    /** Sequences by slot (null: free), and in order of admission; touched by the engine thread only. */
    private final Sequence[] slots;
    private final List<Sequence> running = new ArrayList<>();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition work = lock.newCondition();
    private final AtomicLong nextId = new AtomicLong();
    private final Thread thread;
    private volatile boolean closed;
    /** Whether decode steps are queued ahead ({@link EngineOptions#stepsAhead}) on this engine's backend. */
    private final boolean feeds;
    /** The decode step queued on the ids the step before drew, not yet read; null when there is none. */
    private Ahead ahead;
    /** Decode steps queued ahead so far (engine thread). */
    private volatile long stepsQueuedAhead;
    /** Rows of steps queued ahead whose sequence had ended (or was cancelled, or timed out) when they were read. */
    private volatile long rowsDroppedAhead;

    // counters, written by the engine thread only
    private volatile int runningCount;
    private volatile long steps;
    private volatile long promptTokens;
    private volatile long tokensGenerated;
    private volatile long finished;
    private volatile long cancelled;
    private volatile long failed;
    private volatile long timedOut;
    private final AtomicLong rejected = new AtomicLong();
    private final LatencyHistogram firstToken = new LatencyHistogram(LatencyHistogram.FIRST_TOKEN_BOUNDS);
    private final LatencyHistogram interToken = new LatencyHistogram(LatencyHistogram.INTER_TOKEN_BOUNDS);

    /**
     * An engine over a loaded model. Its session (state for {@code maxSequences} sequences of
     * {@code maxTokensPerSequence} tokens, activations for {@code tokensPerStep} tokens) is checked against the
     * backend's memory before it is allocated, and then the prefix cache's budget against what is left.
     *
     * @throws IllegalArgumentException when a step's budget cannot carry a decode token for every other sequence
     *                                  and a prompt piece of the backend's exact split
     */
    public Engine(BasedModel model, Gpt2Tokenizer tokenizer, EngineOptions options) {
        this(model, tokenizer, options, false);
    }

    /**
     * An engine that, where {@code aheadWithoutGraphs}, also queues steps ahead on a backend that replays no recorded
     * steps (such a step waits for the ids it is fed, so nothing is gained): the engine's bookkeeping of steps ahead,
     * for tests on the CPU.
     */
    Engine(BasedModel model, Gpt2Tokenizer tokenizer, EngineOptions options, boolean aheadWithoutGraphs) {
        this.model = Objects.requireNonNull(model, "model");
        this.backend = model.backend();
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
        this.options = Objects.requireNonNull(options, "options");
        this.eosId = Generator.eosId(model, tokenizer);
        this.vocab = model.config().vocabSize();
        this.split = Math.max(1, backend.exactSplit());
        int need = options.maxSequences() - 1 + split;
        if (options.tokensPerStep() < need) {
            throw new IllegalArgumentException("tokens per step must be at least " + need + " for "
                    + options.maxSequences() + " sequences on the " + backend.name() + " backend (a decode token for"
                    + " each of the other " + (options.maxSequences() - 1) + " sequences and a prompt piece of "
                    + split + " tokens), got " + options.tokensPerStep());
        }
        this.session = model.newSession(options.maxSequences(), options.maxTokensPerSequence(),
                options.tokensPerStep());
        try {
            if (options.prefixCacheBytes() > 0) {
                // the session's states that grow with their sequences (key/value caches) count as held at their
                // longest, as the session's own check counted them: the cache must leave them room
                long growable = session.growableBytes();
                backend.checkFits(options.prefixCacheBytes() + growable, growable == 0 ? "the prefix cache"
                        : "the prefix cache beside the key/value caches of " + options.maxSequences()
                        + " sequences of up to " + options.maxTokensPerSequence() + " tokens");
            }
        } catch (RuntimeException e) {
            session.close();
            throw e;
        }
        this.feeds = options.stepsAhead() && (aheadWithoutGraphs || backend.graphs() != null && session.usesGraphs());
        this.cache = options.prefixCacheBytes() > 0 ? new PrefixCache(options.prefixCacheBytes(), split) : null;
        this.queue = new ArrayBlockingQueue<>(options.queueCapacity());
        this.slots = new Sequence[options.maxSequences()];
        this.thread = Thread.ofPlatform().name("based4j-engine").daemon(true).unstarted(this::loop);
        thread.start();
    }

    public EngineOptions options() {
        return options;
    }

    /**
     * Queues a request; {@code listener} receives its text as it is generated. Returns at once.
     *
     * @throws IllegalArgumentException when the request can never run here (its prompt and max tokens over the
     *                                  engine's tokens per sequence, a token outside the vocabulary)
     * @throws QueueFullException when the queue already holds its capacity of waiting requests
     * @throws IllegalStateException when the engine is closed
     */
    public RequestHandle submit(GenerationRequest request, StreamListener listener) {
        return submit(request, -1, listener);
    }

    /**
     * {@link #submit(GenerationRequest, StreamListener)}, and when {@code topLogprobs >= 0} the listener also gets
     * each generated token's {@link TokenLogprobs} with that many most likely tokens, before the token's text.
     *
     * @throws IllegalArgumentException also when {@code topLogprobs} is over {@link TokenLogprobs#MAX_TOP}
     */
    public RequestHandle submit(GenerationRequest request, int topLogprobs, StreamListener listener) {
        return submit(request, topLogprobs, Duration.ZERO, listener);
    }

    /**
     * {@link #submit(GenerationRequest, int, StreamListener)} with a timeout (zero: none), counted from now: a
     * request still waiting or running when it is up is stopped at the next step, its slot freed. Its listener
     * gets the text held back so far (as when a sequence ends by length), then a {@link RequestTimeoutException}
     * carrying what was generated; the result completes with that exception.
     *
     * @throws IllegalArgumentException also when the timeout is negative
     */
    public RequestHandle submit(GenerationRequest request, int topLogprobs, Duration timeout,
                                StreamListener listener) {
        Objects.requireNonNull(timeout, "timeout");
        if (timeout.isNegative()) {
            throw new IllegalArgumentException("the timeout must not be negative, got " + timeout);
        }
        if (topLogprobs > TokenLogprobs.MAX_TOP) {
            throw new IllegalArgumentException("top logprobs must be at most " + TokenLogprobs.MAX_TOP + ", got "
                    + topLogprobs);
        }
        Objects.requireNonNull(request, "request");
        Objects.requireNonNull(listener, "listener");
        check(request);
        RequestHandle handle = new RequestHandle(nextId.getAndIncrement(), this::wake);
        Sequence s = new Sequence(handle, request, listener, tokenizer, topLogprobs, timeout);
        lock.lock();
        try {
            if (closed) {
                throw new IllegalStateException("the engine is closed");
            }
            if (!queue.offer(s)) {
                rejected.incrementAndGet();
                throw new QueueFullException(options.queueCapacity());
            }
            work.signalAll();
        } finally {
            lock.unlock();
        }
        return handle;
    }

    private void check(GenerationRequest request) {
        int[] prompt = request.promptIds();
        long total = (long) prompt.length + request.maxNewTokens();
        if (total > options.maxTokensPerSequence()) {
            throw new IllegalArgumentException("the prompt of " + prompt.length + " tokens and max tokens "
                    + request.maxNewTokens() + " need " + total + " tokens, over this engine's limit of "
                    + options.maxTokensPerSequence() + " tokens per sequence");
        }
        for (int i = 0; i < prompt.length; i++) {
            if (prompt[i] < 0 || prompt[i] >= vocab) {
                throw new IllegalArgumentException("the prompt holds token " + prompt[i] + " at position " + i
                        + ", outside this model's vocabulary of " + vocab + " tokens");
            }
        }
    }

    /** Whether {@link #close()} was called (or the engine stopped on an error): submits are refused. */
    public boolean isClosed() {
        return closed;
    }

    /** The engine's load and counters now. */
    public EngineMetrics metrics() {
        EngineMetrics.PrefixCacheMetrics prefixes = cache == null
                ? new EngineMetrics.PrefixCacheMetrics(0, 0, 0, 0, 0, 0, 0)
                : new EngineMetrics.PrefixCacheMetrics(cache.budget(), cache.bytes(), cache.size(), cache.hits(),
                        cache.misses(), cache.tokensReused(), cache.evictions());
        return new EngineMetrics(queue.size(), runningCount, slots.length, steps, stepsQueuedAhead, promptTokens,
                tokensGenerated, finished, cancelled, failed, rejected.get(), timedOut, firstToken.snapshot(),
                interToken.snapshot(), prefixes);
    }

    private void wake() {
        lock.lock();
        try {
            work.signalAll();
        } finally {
            lock.unlock();
        }
    }

    // ------------------------------------------------------------------ the engine thread

    private void loop() {
        try {
            while (awaitWork()) {
                step();
            }
        } catch (RuntimeException | Error e) {
            lock.lock();
            try {
                closed = true; // nothing would run what is submitted from now on
            } finally {
                lock.unlock();
            }
            for (Sequence s : List.copyOf(running)) {
                fail(s, e);
            }
            throw e;
        } finally {
            String closedFirst = "the engine was closed before the request finished";
            for (Sequence s : List.copyOf(running)) {
                fail(s, new IllegalStateException(closedFirst));
            }
            for (Sequence s; (s = queue.poll()) != null; ) {
                fail(s, new IllegalStateException(closedFirst));
            }
            if (cache != null) {
                cache.clear();
            }
            session.close();
        }
    }

    /** Waits until there is something to do; false once the engine is closed. */
    private boolean awaitWork() {
        lock.lock();
        try {
            while (!closed && queue.isEmpty() && running.isEmpty()) {
                work.awaitUninterruptibly();
            }
            return !closed;
        } finally {
            lock.unlock();
        }
    }

    private void step() {
        for (Sequence s : queue) {
            if (s.handle.cancelRequested() && queue.remove(s)) {
                cancel(s, null);
            }
        }
        for (Sequence s : List.copyOf(running)) {
            if (s.handle.cancelRequested()) {
                cancel(s, null);
            }
        }
        long now = System.nanoTime();
        for (Sequence s : queue) {
            if (s.expired(now) && queue.remove(s)) {
                timeOut(s);
            }
        }
        for (Sequence s : List.copyOf(running)) {
            if (s.expired(now)) {
                timeOut(s);
            }
        }
        if (ahead != null) {
            readAhead();
            return;
        }
        admit();
        if (running.isEmpty()) {
            return;
        }
        // decode tokens first, then prompt pieces in order of admission within what is left of the budget
        List<Sequence> members = new ArrayList<>();
        List<Integer> lengths = new ArrayList<>();
        int budget = options.tokensPerStep();
        for (Sequence s : running) {
            if (!s.prefilling()) {
                members.add(s);
                lengths.add(1);
                budget--;
            }
        }
        for (Sequence s : running) {
            if (s.prefilling() && budget > 0) {
                int take = Math.min(s.promptLeftBeforePoint(), budget);
                if (take < s.promptLeft()) {
                    take -= take % split;
                }
                if (take > 0) {
                    members.add(s);
                    lengths.add(take);
                    budget -= take;
                }
            }
        }
        int n = members.size();
        int[] callSlots = new int[n];
        int[] callLengths = new int[n];
        int[] packed = new int[options.tokensPerStep() - budget];
        List<Sequence> sampled = new ArrayList<>();
        List<Integer> rows = new ArrayList<>();
        int fedPrompt = 0;
        for (int i = 0, at = 0; i < n; i++) {
            Sequence s = members.get(i);
            callSlots[i] = s.slot;
            callLengths[i] = lengths.get(i);
            if (s.prefilling()) {
                s.feedPrompt(packed, at, callLengths[i]);
                fedPrompt += callLengths[i];
            } else {
                packed[at] = s.next;
            }
            at += callLengths[i];
            if (!s.prefilling()) { // a decode token, or the prompt's last piece: its last logits choose a token
                sampled.add(s);
                rows.add(i);
            }
        }
        steps++;
        promptTokens += fedPrompt;
        int[] ids;
        TokenLogprobs[] logprobs;
        try {
            Backend.Buffer logits = model.forward(session, session.batch(callSlots, callLengths), packed, false,
                    null);
            Sampler[] samplers = sampled.stream().map(s -> s.sampler).toArray(Sampler[]::new);
            int[] rowIds = rows.stream().mapToInt(Integer::intValue).toArray();
            if (feeds && fedPrompt == 0 && sampled.size() == n && sampled.stream().noneMatch(s -> s.topLogprobs >= 0)) {
                // a decode step without logprobs: the next one may be queued on its ids before they are read
                Backend.Sampled drawn = backend.sampleAhead(logits, rowIds, vocab, samplers);
                queueAhead(sampled, drawn);
                ids = drawn.ids();
                logprobs = new TokenLogprobs[ids.length];
            } else {
                ids = backend.sample(logits, rowIds, vocab, samplers);
                logprobs = logprobs(logits, rowIds, ids, sampled);
            }
        } catch (RuntimeException e) {
            ahead = null;  // queued on ids that failed: its results are not read
            for (Sequence s : members) {
                fail(s, e);
            }
            return;
        }
        if (cache != null) {
            for (Sequence s : members) {
                if (s.passCachePoint()) {
                    cacheState(s);
                }
            }
        }
        deliverAll(sampled, ids, logprobs);
    }

    /**
     * Queues the next decode step of {@code members} (the sequences of the decode step whose ids {@code drawn} holds,
     * in its rows' order) on those ids, before the host reads them, where every condition for it holds: steps ahead
     * on, no member asking for logprobs (they read the logits the next step would overwrite), at its length limit
     * with the token being drawn or at a point where its state is to be cached, and no request waiting that a free
     * slot could take. A member that ends on the token being drawn (end of text, a stop string) or is cancelled
     * meanwhile has its row of the step ahead dropped.
     */
    private void queueAhead(List<Sequence> members, Backend.Sampled drawn) {
        try {
            queueAheadOrThrow(members, drawn);
        } catch (RuntimeException e) {
            // the step ahead is optional: its failure (a state that could not grow, say) leaves the step whose ids
            // are drawn to be read as without it, and the next step to be queued after them, where it fails or not
            ahead = null;
        }
    }

    private void queueAheadOrThrow(List<Sequence> members, Backend.Sampled drawn) {
        if (!feeds || !queue.isEmpty() && running.size() < slots.length) {
            return;
        }
        int n = members.size();
        int[] stepSlots = new int[n];
        int[] rows = new int[n];
        for (int j = 0; j < n; j++) {
            Sequence s = members.get(j);
            if (s.topLogprobs >= 0 || s.generated() + 1 >= s.request.maxNewTokens() || s.atCachePoint()) {
                return;
            }
            stepSlots[j] = s.slot;
            rows[j] = j;
        }
        Backend.Buffer logits = model.forwardFed(session, session.step(stepSlots), drawn);
        Sampler[] samplers = members.stream().map(s -> s.sampler).toArray(Sampler[]::new);
        ahead = new Ahead(List.copyOf(members), backend.sampleAhead(logits, rows, vocab, samplers));
        steps++;
        stepsQueuedAhead++;
    }

    /**
     * Reads the ids of the decode step queued ahead and delivers those of its sequences still running; queues the one
     * after it first where every one of them still runs and the conditions of {@link #queueAhead} hold.
     */
    private void readAhead() {
        Ahead a = ahead;
        ahead = null;
        List<Sequence> still = new ArrayList<>();
        List<Integer> places = new ArrayList<>();
        for (int j = 0; j < a.members().size(); j++) {
            Sequence s = a.members().get(j);
            if (s.slot >= 0) {  // not ended, cancelled or timed out since: its slot is still its own
                still.add(s);
                places.add(j);
            }
        }
        rowsDroppedAhead += a.members().size() - still.size();
        if (still.isEmpty()) {
            return;
        }
        if (still.size() == a.members().size()) {
            queueAhead(still, a.drawn());
        }
        int[] ids;
        try {
            ids = a.drawn().ids(places.stream().mapToInt(Integer::intValue).toArray());
        } catch (RuntimeException e) {
            ahead = null;
            for (Sequence s : still) {
                fail(s, e);
            }
            return;
        }
        deliverAll(still, ids, new TokenLogprobs[ids.length]);
    }

    /**
     * Runs {@code action} while the engine thread is held before its next step, and returns what it returns (for
     * tests: on an idle engine, the requests it submits are all waiting when the next step starts, however the
     * threads are scheduled). The action must not close the engine, which waits for the engine thread.
     */
    <T> T holdingSteps(Supplier<T> action) {
        lock.lock();  // the engine thread takes it before every step (awaitWork)
        try {
            return action.get();
        } finally {
            lock.unlock();
        }
    }

    /** Rows of steps queued ahead that were dropped, their sequence having ended meanwhile (for tests). */
    long rowsDroppedAhead() {
        return rowsDroppedAhead;
    }

    /** A decode step queued ahead: its sequences in its rows' order, and its ids. */
    private record Ahead(List<Sequence> members, Backend.Sampled drawn) {
    }

    /** Hands each sampled sequence its token (and logprobs where asked), timing it. */
    private void deliverAll(List<Sequence> sampled, int[] ids, TokenLogprobs[] logprobs) {
        tokensGenerated += ids.length;
        long now = System.nanoTime();
        for (Sequence s : sampled) {
            LatencyHistogram histogram = s.anyToken() ? interToken : firstToken;
            histogram.observeNanos(s.markToken(now));
        }
        for (int j = 0; j < ids.length; j++) {
            Sequence s = sampled.get(j);
            if (logprobs[j] != null) {
                TokenLogprobs lp = logprobs[j];
                if (!tell(s, () -> s.listener.onLogprobs(lp))) {
                    continue;
                }
            }
            deliver(s, ids[j]);
        }
        runningCount = running.size();
    }

    /**
     * The log-probabilities of the tokens chosen for the sequences that asked for them (null for the others); the
     * logits are copied to the host only in a step where one asked.
     */
    private TokenLogprobs[] logprobs(Backend.Buffer logits, int[] rows, int[] ids, List<Sequence> sampled) {
        TokenLogprobs[] out = new TokenLogprobs[ids.length];
        float[] host = null;
        for (int j = 0; j < ids.length; j++) {
            int top = sampled.get(j).topLogprobs;
            if (top >= 0) {
                host = host != null ? host : backend.download(logits);
                out[j] = TokenLogprobs.of(host, rows[j] * logits.cols(), vocab, ids[j], top);
            }
        }
        return out;
    }

    /** Moves waiting requests into free slots. */
    private void admit() {
        for (int slot = 0; slot < slots.length; slot++) {
            while (slots[slot] == null) {
                Sequence s = queue.poll();
                if (s == null) {
                    runningCount = running.size();
                    return;
                }
                if (s.handle.cancelRequested()) {
                    cancel(s, null);
                } else if (s.request.maxNewTokens() == 0) {
                    complete(s);
                } else {
                    session.reset(slot);
                    s.slot = slot;
                    slots[slot] = s;
                    running.add(s);
                    if (cache != null) {
                        resume(s);
                    }
                }
            }
        }
        runningCount = running.size();
    }

    /**
     * Starts an admitted sequence from the state of its prompt's longest cached prefix, if there is one, and plans
     * where its prompt's state is to be cached.
     */
    private void resume(Sequence s) {
        int[] prompt = s.prompt();
        if (!cache.covers(prompt.length)) {
            return;
        }
        PrefixCache.Match match = cache.lookup(prompt);
        if (match.snapshot() != null) {
            try {
                session.restore(s.slot, match.snapshot());
                s.resume(match.length());
            } catch (IllegalStateException e) {
                // a state that grows could not take the cached prefix now (no memory for it where states live): the
                // prompt is fed from its start instead, its slot as a reset leaves it
                session.reset(s.slot);
            }
        }
        s.cacheAt(cache.points(prompt.length, match.length(), match.shared(), session::snapshotBytes));
    }

    /** Caches the state of a sequence whose prompt was fed up to one of its cache points. */
    private void cacheState(Sequence s) {
        int length = s.fed();
        try {
            cache.put(s.prompt(), length, session.snapshotBytes(length), () -> session.snapshot(s.slot));
        } catch (IllegalStateException e) {
            // no memory for the copy where states live (the budget is checked at the start, but other
            // allocations may have grown since): the prefix is not cached, and the request goes on
        }
    }

    private void deliver(Sequence s, int id) {
        String piece = s.accept(id, eosId);
        if (piece != null && !tell(s, () -> s.listener.onToken(id, piece))) {
            return;
        }
        if (s.finished()) {
            complete(s);
        }
    }

    /** Runs a listener call; a listener that throws cancels its request. Returns whether the call went through. */
    private boolean tell(Sequence s, Runnable call) {
        try {
            call.run();
            return true;
        } catch (VirtualMachineError e) {
            throw e;
        } catch (Throwable e) {
            cancel(s, e);
            return false;
        }
    }

    private void retire(Sequence s) {
        if (s.slot >= 0) {
            slots[s.slot] = null;
            running.remove(s);
            s.slot = -1;
            runningCount = running.size();
        }
    }

    private void complete(Sequence s) {
        String released = s.release();
        if (!released.isEmpty() && !tell(s, () -> s.listener.onToken(-1, released))) {
            return;
        }
        GenerationResult result = s.result();
        if (!tell(s, () -> s.listener.onFinish(result))) {
            return;
        }
        retire(s);
        finished++;
        s.handle.result().complete(result);
    }

    /** Ends a request without a result: cancelled by the caller ({@code listenerError} null) or by its listener. */
    private void cancel(Sequence s, Throwable listenerError) {
        retire(s);
        cancelled++;
        CancellationException e = new CancellationException("request " + s.handle.id() + " was cancelled after "
                + s.generated() + " generated tokens" + (listenerError == null ? ""
                : " because its listener threw " + listenerError));
        if (listenerError != null) {
            e.initCause(listenerError);
        }
        end(s, e, listenerError == null);
    }

    /** Ends a request past its timeout: the text held back goes to the listener, then the timeout error. */
    private void timeOut(Sequence s) {
        retire(s);
        String released = s.release();
        if (!released.isEmpty() && !tell(s, () -> s.listener.onToken(-1, released))) {
            return; // cancelled by its listener
        }
        timedOut++;
        end(s, new RequestTimeoutException(s.handle.id(), s.timeout, s.result()), true);
    }

    private void fail(Sequence s, Throwable error) {
        retire(s);
        failed++;
        end(s, error, true);
    }

    /** Tells the listener first, then completes the future: whoever waits on the future has seen the listener's. */
    private static void end(Sequence s, Throwable error, boolean tellListener) {
        if (tellListener) {
            try {
                s.listener.onError(error);
            } catch (VirtualMachineError e) {
                throw e;
            } catch (Throwable ignored) {
                // the request is ending anyway; the listener's failure changes nothing
            }
        }
        s.handle.result().completeExceptionally(error);
    }

    /**
     * Stops the engine: waits for the step under way, then ends every running and waiting request exceptionally
     * (an {@link IllegalStateException} saying that the engine was closed first), frees the session and lets the
     * engine thread end. Further submits are refused. Called from a listener, it returns at once and the engine
     * stops after the current step.
     */
    @Override
    public void close() {
        lock.lock();
        try {
            closed = true;
            work.signalAll();
        } finally {
            lock.unlock();
        }
        if (Thread.currentThread() != thread) {
            boolean interrupted = false;
            while (thread.isAlive()) {
                try {
                    thread.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
