package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.GoldenModel;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.config.ConfigParser;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.model.ModelWeights;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;

/** The engine on the CPU backend and the golden tiny model: exact results, interleaving, cancellation, limits. */
class EngineTest {
    /** Generous bound on any wait: a request of the tiny model takes milliseconds. */
    static final long WAIT_S = 60;
    static final int VOCAB = 1000;
    /** Slots of the test engines. */
    static final int SLOTS = 4;
    /**
     * A small step budget: a decode token for each of the other 3 slots plus one prompt piece of 64 tokens (the CPU
     * backend's exact split), and 1 to spare, so a 200-token prompt is fed over 4 steps.
     */
    static final int STEP_TOKENS = SLOTS - 1 + 64 + 1;
    static final int MAX_TOKENS = 256;

    static CpuBackend backend;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer;

    @BeforeAll
    static void load() {
        backend = new CpuBackend();
        model = BasedModel.load(GoldenModel.dir(), backend);
        tokenizer = Gpt2Tokenizer.load();
    }

    @AfterAll
    static void unload() {
        model.close();
        backend.close();
    }

    @AfterEach
    void noEngineThreadLeft() throws InterruptedException {
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().equals("based4j-engine")) {
                t.join(TimeUnit.SECONDS.toMillis(WAIT_S));
                assertFalse(t.isAlive(), "an engine thread is still running after its engine was closed");
            }
        }
    }

    static Engine engine(int slots, int queue) {
        return new Engine(model, tokenizer, new EngineOptions(slots, MAX_TOKENS, STEP_TOKENS, queue));
    }

    static int[] randomPrompt(SplittableRandom r, int length) {
        return r.ints(length, 0, VOCAB).toArray();
    }

    static GenerationRequest greedy(int[] prompt, int maxTokens) {
        return GenerationRequest.of(prompt, maxTokens, SamplingParams.greedy());
    }

    static GenerationResult solo(BasedModel m, GenerationRequest request) {
        return new Generator(m, tokenizer).generate(List.of(request), null).get(0);
    }

    static void assertSameResult(GenerationResult want, GenerationResult got, String what) {
        assertArrayEquals(want.tokens(), got.tokens(), what + ": tokens");
        assertEquals(want.text(), got.text(), what + ": text");
        assertEquals(want.finish(), got.finish(), what + ": finish");
    }

    static GenerationResult await(RequestHandle h) throws Exception {
        return h.result().get(WAIT_S, TimeUnit.SECONDS);
    }

    /** The exception a request's result completed with (as given, where get() would wrap it). */
    static Throwable failure(RequestHandle h) throws Exception {
        Throwable e = h.result().handle((result, error) -> error).get(WAIT_S, TimeUnit.SECONDS);
        if (e == null) {
            fail("request " + h.id() + " completed with a result, expected it to fail");
        }
        return e;
    }

    /** Collects what the engine streams for one request. */
    static class Recorder implements StreamListener {
        final List<Integer> tokens = new CopyOnWriteArrayList<>();
        final StringBuilder text = new StringBuilder();
        final List<Long> steps = new CopyOnWriteArrayList<>();
        volatile Engine engine;
        volatile GenerationResult finished;
        volatile Throwable error;

        @Override
        public synchronized void onToken(int tokenId, String piece) {
            if (tokenId >= 0) {
                tokens.add(tokenId);
                if (engine != null) {
                    steps.add(engine.metrics().steps());
                }
            }
            text.append(piece);
        }

        @Override
        public void onFinish(GenerationResult result) {
            finished = result;
        }

        @Override
        public void onError(Throwable e) {
            error = e;
        }
    }

    @Test
    void concurrentRequestsEqualTheirSoloRuns() throws Exception {
        SplittableRandom r = new SplittableRandom(13);
        int n = 20;
        List<GenerationRequest> requests = new ArrayList<>();
        int[] lengths = {1, 200, 64, 65, 128, 63, 2, 150, 17, 199, 1, 90, 33, 7, 180, 64, 129, 5, 111, 40};
        for (int i = 0; i < n; i++) {
            int[] prompt = randomPrompt(r, lengths[i]);
            int maxTokens = 1 + r.nextInt(40);
            SamplingParams sampling = i % 3 == 0 ? SamplingParams.greedy()
                    : new SamplingParams(0.9f, i % 2 == 0 ? 40 : 0, i % 4 == 1 ? 0.9f : 1f, 1000L + i);
            List<String> stops = List.of();
            if (i % 5 == 2) {
                // a stop string from the middle of the free run's text, so that the request ends on it
                String text = solo(model, new GenerationRequest(prompt, maxTokens, sampling, List.of(), true)).text();
                stops = text.length() >= 6 ? List.of(text.substring(text.length() / 2, text.length() / 2 + 2))
                        : List.of();
            }
            requests.add(new GenerationRequest(prompt, maxTokens, sampling, stops, true));
        }
        List<GenerationResult> solo = requests.stream().map(q -> solo(model, q)).toList();
        assertTrue(solo.stream().anyMatch(s -> s.finish() == GenerationResult.Finish.STOP),
                "no request ends on a stop string");

        Recorder[] recorders = new Recorder[n];
        List<RequestHandle> handles = new ArrayList<>();
        try (Engine engine = engine(SLOTS, n); ExecutorService clients = Executors.newFixedThreadPool(8)) {
            List<Future<RequestHandle>> submitted = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int k = i;
                recorders[k] = new Recorder();
                submitted.add(clients.submit(() -> engine.submit(requests.get(k), recorders[k])));
            }
            for (Future<RequestHandle> f : submitted) {
                handles.add(f.get(WAIT_S, TimeUnit.SECONDS));
            }
            for (int i = 0; i < n; i++) {
                GenerationResult got = await(handles.get(i));
                String what = "request " + i + " (prompt of " + lengths[i] + " tokens)";
                assertSameResult(solo.get(i), got, what);
                assertEquals(got.text(), recorders[i].text.toString(), what + ": streamed text");
                assertEquals(toList(got.tokens()), recorders[i].tokens, what + ": streamed tokens");
                assertEquals(got, recorders[i].finished, what + ": result given to the listener");
            }
            EngineMetrics m = engine.metrics();
            assertEquals(n, m.requestsFinished());
            assertEquals(0, m.requestsCancelled() + m.requestsFailed());
            assertEquals(0, m.running());
            assertEquals(0, m.queueDepth());
            assertEquals(SLOTS, m.slots());
            assertEquals(requests.stream().mapToLong(q -> q.promptIds().length).sum(), m.promptTokens());
            // every sampled token is in a result: none ended on end-of-text (the model's eos id is outside its
            // vocabulary), and a stop string cuts text, not the token that completed it
            assertEquals(solo.stream().mapToLong(s -> s.tokens().length).sum(), m.tokensGenerated());
        }
    }

    private static List<Integer> toList(int[] ids) {
        List<Integer> out = new ArrayList<>();
        for (int id : ids) {
            out.add(id);
        }
        return out;
    }

    @Test
    void aLongPromptDoesNotStallRunningSequences() throws Exception {
        SplittableRandom r = new SplittableRandom(7);
        GenerationRequest shortOne = greedy(randomPrompt(r, 5), 40);
        GenerationRequest longOne = greedy(randomPrompt(r, 200), 5);
        try (Engine engine = engine(SLOTS, 4)) {
            Recorder running = new Recorder();
            Recorder joining = new Recorder();
            running.engine = engine;
            joining.engine = engine;
            AtomicReference<RequestHandle> joined = new AtomicReference<>();
            long[] submittedAt = new long[1];
            RequestHandle first = engine.submit(shortOne, new StreamListener() {
                @Override
                public void onToken(int tokenId, String text) {
                    running.onToken(tokenId, text);
                    if (joined.get() == null) {
                        // the long prompt arrives while this sequence runs: it is admitted at the next step
                        submittedAt[0] = engine.metrics().steps();
                        joined.set(engine.submit(longOne, joining));
                    }
                }
            });
            GenerationResult a = await(first);
            GenerationResult b = await(joined.get());
            assertSameResult(solo(model, shortOne), a, "the running sequence");
            assertSameResult(solo(model, longOne), b, "the long prompt");

            List<Long> steps = running.steps;
            for (int i = 1; i < steps.size(); i++) {
                assertEquals(steps.get(i - 1) + 1, steps.get(i), "the running sequence skipped a step at its token "
                        + i + " (steps " + steps + ")");
            }
            // 200 prompt tokens at most 64 a step (the budget less 3 decode tokens, rounded down to the exact split)
            // take 4 steps after the one during which the request came
            long firstOfLong = joining.steps.get(0);
            assertEquals(submittedAt[0] + 4, firstOfLong, "the long prompt's first token");
            for (long s = submittedAt[0] + 1; s <= firstOfLong; s++) {
                assertTrue(steps.contains(s), "no token for the running sequence at step " + s
                        + " while the long prompt was fed (its steps " + steps + ")");
            }
        }
    }

    @Test
    void cancellingFreesTheSlot() throws Exception {
        SplittableRandom r = new SplittableRandom(3);
        GenerationRequest later = greedy(randomPrompt(r, 30), 8);
        try (Engine engine = engine(1, 4)) {
            AtomicReference<RequestHandle> self = new AtomicReference<>();
            Recorder streamed = new Recorder();
            CountDownLatch ready = new CountDownLatch(1);
            RequestHandle cancelled = engine.submit(greedy(randomPrompt(r, 10), 200), new StreamListener() {
                @Override
                public void onToken(int tokenId, String text) {
                    awaitQuietly(ready);
                    streamed.onToken(tokenId, text);
                    if (streamed.tokens.size() == 3) {
                        self.get().cancel();
                    }
                }

                @Override
                public void onError(Throwable error) {
                    streamed.onError(error);
                }
            });
            self.set(cancelled);
            // waiting behind the one slot: one cancelled by its future, one to run once the slot is free
            RequestHandle dropped = engine.submit(greedy(randomPrompt(r, 10), 5), StreamListener.none());
            RequestHandle waiting = engine.submit(later, StreamListener.none());
            dropped.result().cancel(true);
            ready.countDown();

            Throwable e = failure(cancelled);
            assertInstanceOf(CancellationException.class, e);
            assertTrue(e.getMessage().contains("cancelled after 3 generated tokens"), e.getMessage());
            assertEquals(3, streamed.tokens.size(), "tokens streamed after the cancel");
            assertInstanceOf(CancellationException.class, streamed.error, "the listener's error");
            assertTrue(dropped.result().isCancelled());
            assertSameResult(solo(model, later), await(waiting), "the request that took the freed slot");
            EngineMetrics m = engine.metrics();
            assertEquals(2, m.requestsCancelled());
            assertEquals(1, m.requestsFinished());
            assertEquals(0, m.running());
        }
    }

    @Test
    void aThrowingListenerCancelsOnlyItsRequest() throws Exception {
        SplittableRandom r = new SplittableRandom(5);
        GenerationRequest other = greedy(randomPrompt(r, 12), 20);
        try (Engine engine = engine(2, 4)) {
            RequestHandle broken = engine.submit(greedy(randomPrompt(r, 12), 20), (tokenId, text) -> {
                throw new IllegalStateException("client went away");
            });
            RequestHandle fine = engine.submit(other, StreamListener.none());
            Throwable e = failure(broken);
            assertInstanceOf(CancellationException.class, e);
            assertTrue(e.getMessage().contains("client went away"), e.getMessage());
            assertEquals("client went away", e.getCause().getMessage());
            assertSameResult(solo(model, other), await(fine), "the other request");
            // the engine still takes requests
            assertSameResult(solo(model, other), await(engine.submit(other, StreamListener.none())), "a later one");
            assertEquals(1, engine.metrics().requestsCancelled());
        }
    }

    @Test
    void aFullQueueIsRefused() throws Exception {
        SplittableRandom r = new SplittableRandom(11);
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        try (Engine engine = engine(1, 2)) {
            // the first request holds the engine in its first listener call, so the queue stays as filled
            RequestHandle holding = engine.submit(greedy(randomPrompt(r, 4), 3), (tokenId, text) -> {
                started.countDown();
                awaitQuietly(release);
            });
            assertTrue(started.await(WAIT_S, TimeUnit.SECONDS));
            List<RequestHandle> queued = List.of(engine.submit(greedy(randomPrompt(r, 4), 2), StreamListener.none()),
                    engine.submit(greedy(randomPrompt(r, 4), 2), StreamListener.none()));
            assertEquals(2, engine.metrics().queueDepth());
            assertEquals(1, engine.metrics().running());
            QueueFullException e = assertThrows(QueueFullException.class,
                    () -> engine.submit(greedy(randomPrompt(r, 4), 2), StreamListener.none()));
            assertEquals(2, e.capacity());
            assertTrue(e.getMessage().contains("2 requests"), e.getMessage());
            release.countDown();
            assertEquals(3, await(holding).tokens().length);
            for (RequestHandle h : queued) {
                assertEquals(2, await(h).tokens().length);
            }
            assertEquals(3, engine.metrics().requestsFinished());
        }
    }

    @Test
    void badRequestsAreRefusedAtSubmit() {
        try (Engine engine = engine(2, 2)) {
            IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                    () -> engine.submit(greedy(new int[200], 57), StreamListener.none()));
            assertTrue(tooLong.getMessage().contains("257 tokens, over this engine's limit of 256 tokens per"
                    + " sequence"), tooLong.getMessage());
            IllegalArgumentException outside = assertThrows(IllegalArgumentException.class,
                    () -> engine.submit(greedy(new int[] {5, 1000}, 3), StreamListener.none()));
            assertTrue(outside.getMessage().contains("token 1000 at position 1, outside this model's vocabulary of"
                    + " 1000 tokens"), outside.getMessage());
            IllegalArgumentException negative = assertThrows(IllegalArgumentException.class,
                    () -> engine.submit(greedy(new int[] {-1}, 3), StreamListener.none()));
            assertTrue(negative.getMessage().contains("token -1"), negative.getMessage());
            IllegalArgumentException empty = assertThrows(IllegalArgumentException.class,
                    () -> engine.submit(greedy(new int[0], 3), StreamListener.none()));
            assertTrue(empty.getMessage().contains("the prompt is empty"), empty.getMessage());
            EngineMetrics m = engine.metrics();
            assertEquals(0, m.queueDepth() + m.running() + m.steps());
            // a request at the limit exactly is taken
            assertEquals(56, assertDoesNotFail(engine.submit(greedy(new int[200], 56), StreamListener.none())));
        }
        IllegalArgumentException budget = assertThrows(IllegalArgumentException.class,
                () -> new Engine(model, tokenizer, new EngineOptions(4, MAX_TOKENS, 66, 1)));
        assertTrue(budget.getMessage().contains("tokens per step must be at least 67 for 4 sequences"),
                budget.getMessage());
        IllegalArgumentException zero = assertThrows(IllegalArgumentException.class,
                () -> new EngineOptions(4, MAX_TOKENS, STEP_TOKENS, 0));
        assertEquals("queue capacity must be at least 1, got 0", zero.getMessage());
    }

    private static int assertDoesNotFail(RequestHandle h) {
        try {
            return await(h).tokens().length;
        } catch (Exception e) {
            return fail(e);
        }
    }

    @Test
    void closeEndsPendingRequestsAndTheEngineThread() throws Exception {
        SplittableRandom r = new SplittableRandom(17);
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Engine engine = engine(1, 4);
        Recorder waitingListener = new Recorder();
        RequestHandle running = engine.submit(greedy(randomPrompt(r, 8), 200), (tokenId, text) -> {
            started.countDown();
            awaitQuietly(release);
        });
        RequestHandle waiting = engine.submit(greedy(randomPrompt(r, 8), 5), waitingListener);
        assertTrue(started.await(WAIT_S, TimeUnit.SECONDS));
        CompletableFuture<Void> closing = CompletableFuture.runAsync(engine::close);
        // close() refuses new requests at once, then waits for the step under way (held by the listener)
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_S);
        while (!engine.isClosed()) {
            assertTrue(System.nanoTime() < deadline, "close() did not take effect");
            Thread.sleep(5);
        }
        IllegalStateException refused = assertThrows(IllegalStateException.class,
                () -> engine.submit(greedy(randomPrompt(r, 2), 1), StreamListener.none()));
        assertEquals("the engine is closed", refused.getMessage());
        assertFalse(closing.isDone(), "close() returned while a step was under way");
        release.countDown();
        closing.get(WAIT_S, TimeUnit.SECONDS);
        for (RequestHandle h : List.of(running, waiting)) {
            Throwable e = failure(h);
            assertInstanceOf(IllegalStateException.class, e);
            assertEquals("the engine was closed before the request finished", e.getMessage());
        }
        assertEquals(waitingListener.error, failure(waiting), "the listener hears why its request ended");
        assertEquals(2, engine.metrics().requestsFailed());
        engine.close(); // a second close does nothing
    }

    @Test
    void endOfTextEndsARequestAsInASoloRun() throws Exception {
        // greedy continuation of this prompt is 257 257 257 257 971 ...: make 971 the end-of-text token
        int[] prompt = {665, 687, 51, 918, 391, 74, 705, 770, 261, 425, 98, 761, 663, 725, 931, 257};
        try (Arena weights = Arena.ofShared(); BasedModel eos971 = withEos(weights, 971)) {
            GenerationRequest stops = GenerationRequest.of(prompt, 20, SamplingParams.greedy());
            GenerationRequest ignores = new GenerationRequest(prompt, 20, SamplingParams.greedy(), List.of(), false);
            try (Engine engine = new Engine(eos971, tokenizer, new EngineOptions(2, 64, 65, 2))) {
                RequestHandle a = engine.submit(stops, StreamListener.none());
                RequestHandle b = engine.submit(ignores, StreamListener.none());
                assertEndsOnEos(a, eos971, stops);
                GenerationResult past = await(b);
                assertEquals(20, past.tokens().length);
                assertEquals(971, past.tokens()[4]);
                assertSameResult(solo(eos971, ignores), past, "ignoring end-of-text");
                // the end-of-text token is generated (counted) but not part of the result
                assertEquals(4 + 1 + 20, engine.metrics().tokensGenerated());
            }
        }
    }

    /**
     * The engine's decode steps queued ahead ({@link EngineOptions#stepsAhead}), its bookkeeping on the CPU backend:
     * the engine is made to queue them though the CPU replays no recorded steps (such a step takes the ids it is fed
     * once they are read). Every request's tokens, text and end are those of its solo run, as streamed; a sequence that
     * ends on a token (its length, a stop string, end of text) or is cancelled has its row of the step ahead dropped;
     * a request asking for logprobs gets them for every token; a request that arrives while steps run ahead is
     * admitted; and steps were queued ahead. The GPU's steps ahead, fed on the device, are tested in the CUDA module.
     */
    @Nested
    class StepsAhead {
        static Engine aheadEngine(BasedModel m, int slots, int maxTokens, int stepTokens, int queue) {
            return new Engine(m, tokenizer, new EngineOptions(slots, maxTokens, stepTokens, queue), true);
        }

        /** What the engine streams for one request, logprobs included. */
        static final class Streamed extends Recorder {
            final List<TokenLogprobs> logprobs = new CopyOnWriteArrayList<>();

            @Override
            public void onLogprobs(TokenLogprobs lp) {
                logprobs.add(lp);
            }
        }

        @Test
        void requestsGetTheTokensOfTheirSoloRuns() throws Exception {
            SplittableRandom r = new SplittableRandom(31);
            int n = 14;
            int[] lengths = {1, 70, 5, 64, 12, 3, 130, 9, 40, 2, 66, 20, 7, 33};
            int[] maxTokens = {30, 1, 2, 25, 40, 17, 12, 3, 28, 35, 9, 22, 14, 31};
            List<GenerationRequest> requests = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int[] prompt = r.ints(lengths[i], 0, VOCAB).toArray();
                SamplingParams sampling = i % 3 == 0 ? SamplingParams.greedy()
                        : new SamplingParams(0.9f, i % 2 == 0 ? 40 : 0, i % 4 == 1 ? 0.9f : 1f, 2000L + i);
                List<String> stops = List.of();
                if (i % 4 == 2) {
                    // a stop string from the middle of the free run's text, so that the request ends on it
                    String text = solo(model, new GenerationRequest(prompt, maxTokens[i], sampling, List.of(), true)).text();
                    stops = text.length() >= 6 ? List.of(text.substring(text.length() / 2, text.length() / 2 + 2))
                            : List.of();
                }
                requests.add(new GenerationRequest(prompt, maxTokens[i], sampling, stops, true));
            }
            List<GenerationResult> solo = requests.stream().map(q -> solo(model, q)).toList();
            assertTrue(solo.stream().anyMatch(s -> s.finish() == GenerationResult.Finish.STOP),
                    "no request ends on a stop string");
            try (Engine engine = aheadEngine(model, SLOTS, MAX_TOKENS, STEP_TOKENS, n)) {
                Streamed[] streamed = new Streamed[n];
                List<RequestHandle> handles = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    streamed[i] = new Streamed();
                    handles.add(engine.submit(requests.get(i), streamed[i]));
                }
                for (int i = 0; i < n; i++) {
                    GenerationResult got = await(handles.get(i));
                    String what = "request " + i + " (prompt " + lengths[i] + ", at most " + maxTokens[i] + " tokens)";
                    assertSameResult(solo.get(i), got, what);
                    assertEquals(got.text(), streamed[i].text.toString(), what + ": streamed text");
                    assertEquals(toList(got.tokens()), streamed[i].tokens, what + ": streamed tokens");
                }
                assertTrue(engine.metrics().stepsAhead() > 0, "no step was queued ahead");
                EngineMetrics m = engine.metrics();
                assertEquals(n, m.requestsFinished());
                assertEquals(0, m.running());
                // the tokens of steps ahead whose sequence had ended are not counted
                assertEquals(solo.stream().mapToLong(s -> s.tokens().length).sum(), m.tokensGenerated());
            }
        }

        @Test
        void endOfTextDropsTheStepAheadOfItsSequence() throws Exception {
            // greedy continuation of this prompt is 257 257 257 257 971 ...: make 971 the end-of-text token
            int[] prompt = {665, 687, 51, 918, 391, 74, 705, 770, 261, 425, 98, 761, 663, 725, 931, 257};
            try (Arena weights = Arena.ofShared(); BasedModel eos971 = withEos(weights, 971);
                 Engine engine = aheadEngine(eos971, 2, 64, 65, 2)) {
                GenerationRequest stops = GenerationRequest.of(prompt, 20, SamplingParams.greedy());
                // another prompt in the row after it, so that its tokens are not the ended row's
                int[] otherPrompt = new SplittableRandom(41).ints(10, 0, VOCAB).toArray();
                GenerationRequest ignores = new GenerationRequest(otherPrompt, 20, SamplingParams.greedy(), List.of(),
                        false);
                assertFalse(java.util.Arrays.equals(solo(eos971, stops).tokens(),
                        java.util.Arrays.copyOf(solo(eos971, ignores).tokens(), 4)), "the two requests' tokens differ");
                // both waiting when the first step starts: their prompts are fed together, and every decode step
                // after it may be queued ahead (with the second request submitted while the first decodes alone,
                // the first could draw end-of-text in the step that feeds the second's prompt, and none is ahead)
                List<RequestHandle> both = engine.holdingSteps(() -> List.of(
                        engine.submit(stops, StreamListener.none()), engine.submit(ignores, StreamListener.none())));
                RequestHandle a = both.get(0);
                RequestHandle b = both.get(1);
                assertEndsOnEos(a, eos971, stops);
                assertSameResult(solo(eos971, ignores), await(b), "the request in the row after it");
                assertEquals(4 + 1 + 20, engine.metrics().tokensGenerated());
                assertTrue(engine.metrics().stepsAhead() > 0, "no step was queued ahead");
                assertTrue(engine.rowsDroppedAhead() > 0, "the ended request's row of a step ahead was not dropped");
            }
        }

        @Test
        void aCancelAndALateRequestWhileStepsRunAheadThenLogprobs() throws Exception {
            SplittableRandom r = new SplittableRandom(37);
            GenerationRequest steady = GenerationRequest.of(r.ints(9, 0, VOCAB).toArray(), 60,
                    new SamplingParams(0.8f, 0, 1f, 77L));
            GenerationRequest late = GenerationRequest.of(r.ints(6, 0, VOCAB).toArray(), 10, SamplingParams.greedy());
            GenerationRequest withLogprobs = GenerationRequest.of(r.ints(14, 0, VOCAB).toArray(), 12,
                    SamplingParams.greedy());
            try (Engine engine = aheadEngine(model, 3, MAX_TOKENS, STEP_TOKENS, 4)) {
                // two requests without logprobs, so that their steps run ahead; one is cancelled at its 5th token
                // (the step ahead of it already queued), and a request comes then and takes the freed slot
                AtomicReference<RequestHandle> self = new AtomicReference<>();
                AtomicReference<RequestHandle> lateHandle = new AtomicReference<>();
                AtomicReference<Long> aheadAtCancel = new AtomicReference<>();
                Streamed cancelledStream = new Streamed();
                Streamed steadyStream = new Streamed();
                RequestHandle steadyHandle = engine.submit(steady, steadyStream);
                RequestHandle cancelled = engine.submit(GenerationRequest.of(r.ints(11, 0, VOCAB).toArray(), 200,
                        SamplingParams.greedy()), new StreamListener() {
                            @Override
                            public void onToken(int tokenId, String text) {
                                cancelledStream.onToken(tokenId, text);
                                if (cancelledStream.tokens.size() == 5) {
                                    aheadAtCancel.set(engine.metrics().stepsAhead());
                                    self.get().cancel();
                                    lateHandle.set(engine.submit(late, StreamListener.none()));
                                }
                            }

                            @Override
                            public void onError(Throwable error) {
                                cancelledStream.onError(error);
                            }
                        });
                self.set(cancelled);
                Throwable e = cancelled.result().handle((result, error) -> error).get(WAIT_S, TimeUnit.SECONDS);
                assertInstanceOf(CancellationException.class, e);
                assertTrue(e.getMessage().contains("cancelled after 5 generated tokens"), e.getMessage());
                assertEquals(5, cancelledStream.tokens.size(), "tokens streamed after the cancel");
                assertTrue(aheadAtCancel.get() > 0, "no step ran ahead before the cancel");
                assertSameResult(solo(model, steady), await(steadyHandle), "the request running beside");
                assertSameResult(solo(model, late), await(lateHandle.get()), "the request that came late");
                assertTrue(engine.rowsDroppedAhead() > 0, "no row of a step ahead was dropped");
                assertFalse(steadyStream.tokens.isEmpty());

                // then a request with logprobs beside one without: no step runs ahead while it runs, and it gets its
                // logprobs for every token
                Streamed logprobStream = new Streamed();
                RequestHandle logprobHandle = engine.submit(withLogprobs, 2, logprobStream);
                RequestHandle beside = engine.submit(steady, StreamListener.none());
                GenerationResult lp = await(logprobHandle);
                assertSameResult(solo(model, withLogprobs), lp, "the request with logprobs");
                assertEquals(lp.tokens().length, logprobStream.logprobs.size(), "logprobs, one a token");
                for (int j = 0; j < lp.tokens().length; j++) {
                    assertEquals(lp.tokens()[j], logprobStream.logprobs.get(j).id(), "logprobs of token " + j);
                }
                assertSameResult(solo(model, steady), await(beside), "the request beside it");
            }
        }

        @Test
        void aTimeoutWhileStepsRunAhead() throws Exception {
            SplittableRandom r = new SplittableRandom(47);
            GenerationRequest steady = GenerationRequest.of(r.ints(12, 0, VOCAB).toArray(), 80,
                    new SamplingParams(0.7f, 0, 1f, 91L));
            try (Engine engine = aheadEngine(model, 2, MAX_TOKENS, STEP_TOKENS, 2)) {
                RequestHandle steadyHandle = engine.submit(steady, StreamListener.none());
                // its time is up while it generates, most likely with a step ahead of it queued: its listener holds
                // the engine's thread on its first token until the timeout has passed, so that 240 tokens cannot all
                // come sooner on a fast machine
                Duration timeout = Duration.ofMillis(40);
                AtomicBoolean first = new AtomicBoolean(true);
                StreamListener slow = (tokenId, text) -> {
                    if (first.getAndSet(false)) {
                        try {
                            Thread.sleep(2 * timeout.toMillis());
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    }
                };
                RequestHandle timed = engine.submit(GenerationRequest.of(r.ints(7, 0, VOCAB).toArray(), 240,
                        SamplingParams.greedy()), -1, timeout, slow);
                Throwable e = timed.result().handle((result, error) -> error).get(WAIT_S, TimeUnit.SECONDS);
                assertInstanceOf(RequestTimeoutException.class, e);
                assertSameResult(solo(model, steady), await(steadyHandle), "the request running beside");
                assertTrue(engine.metrics().stepsAhead() > 0, "no step was queued ahead");
            }
        }
    }

    /** Awaits a greedy request of the prompt that continues 257 257 257 257 971, 971 ending it: its result. */
    static void assertEndsOnEos(RequestHandle h, BasedModel eos971, GenerationRequest stops) throws Exception {
        GenerationResult ended = await(h);
        assertArrayEquals(new int[] {257, 257, 257, 257}, ended.tokens());
        assertEquals(GenerationResult.Finish.EOS, ended.finish());
        assertSameResult(solo(eos971, stops), ended, "stopping on end-of-text");
    }

    /** The golden model with {@code eos_token_id} set to {@code eos}. */
    private static BasedModel withEos(Arena weights, int eos) throws IOException {
        Path dir = GoldenModel.dir();
        Map<String, Object> raw = new LinkedHashMap<>(Json.parseObject(Files.readString(dir.resolve("config.json"))));
        raw.put("eos_token_id", (long) eos);
        ModelWeights bound = ModelWeights.bind(ConfigParser.fromMap("golden with eos " + eos, raw),
                CheckpointFiles.open(dir, weights).tensors(), "golden");
        return BasedModel.of(bound, backend);
    }

    private static void awaitQuietly(CountDownLatch latch) {
        try {
            if (!latch.await(WAIT_S, TimeUnit.SECONDS)) {
                throw new IllegalStateException("the test did not release the engine");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
