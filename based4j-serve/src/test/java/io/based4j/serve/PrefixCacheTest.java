package io.based4j.serve;

import static io.based4j.serve.EngineTest.MAX_TOKENS;
import static io.based4j.serve.EngineTest.STEP_TOKENS;
import static io.based4j.serve.EngineTest.VOCAB;
import static io.based4j.serve.EngineTest.await;
import static io.based4j.serve.EngineTest.randomPrompt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.GoldenModel;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
import io.based4j.generate.Generator;
import io.based4j.model.BasedModel;
import io.based4j.model.StateSize;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The engine's prefix cache on the CPU backend and the golden tiny model: a request resumed from a cached prefix
 * gives the tokens and logprobs of a cold run bit for bit, the cache stores and finds the prefixes it should, keeps
 * to its budget by dropping the least recently used, and stores nothing without a budget.
 */
class PrefixCacheTest {
    static final int SPLIT = 64;
    /**
     * Rounds allowed for the JIT to settle: logprobs are compared bit for bit between runs in separate calls, which
     * agree once the CPU backend's Vector API kernels are compiled (see ExactSplitTest); about 10 rounds are needed
     * on a 2-core machine. A resumed prompt that lost any of its prefix differs in every round.
     */
    static final int ROUNDS = 200;

    static CpuBackend backend;
    static BasedModel model;
    static Gpt2Tokenizer tokenizer;
    /** Bytes of one cached state of the golden model (all its layers are of a fixed size). */
    static long stateBytes;

    @BeforeAll
    static void load() {
        backend = new CpuBackend();
        model = BasedModel.load(GoldenModel.dir(), backend);
        tokenizer = Gpt2Tokenizer.load();
        stateBytes = StateSize.total(model.config(), 1);
        assertEquals(SPLIT, backend.exactSplit());
    }

    @AfterAll
    static void unload() {
        model.close();
        backend.close();
    }

    static Engine engine(long cacheBytes) {
        return new Engine(model, tokenizer, new EngineOptions(EngineTest.SLOTS, MAX_TOKENS, STEP_TOKENS, 16,
                cacheBytes));
    }

    static GenerationResult solo(GenerationRequest request) {
        return new Generator(model, tokenizer).generate(List.of(request), null).get(0);
    }

    static int[] concat(int[] a, int[] b) {
        int[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /** A request's tokens, text and finish, and every token's logprobs (top 5) as exact text. */
    record Run(GenerationResult result, List<String> logprobs) {
        boolean same(Run o) {
            return Arrays.equals(result.tokens(), o.result.tokens()) && result.text().equals(o.result.text())
                    && result.finish() == o.result.finish() && logprobs.equals(o.logprobs);
        }

        @Override
        public String toString() {
            return "tokens " + Arrays.toString(result.tokens()) + ", logprobs " + logprobs;
        }
    }

    static Run run(Engine engine, GenerationRequest request) throws Exception {
        List<String> logprobs = new CopyOnWriteArrayList<>();
        RequestHandle h = engine.submit(request, 5, new StreamListener() {
            @Override
            public void onToken(int tokenId, String text) {
            }

            @Override
            public void onLogprobs(TokenLogprobs t) {
                logprobs.add(t.id() + " " + t.logprob() + " " + Arrays.toString(t.topIds()) + " "
                        + Arrays.toString(t.topLogprobs()));
            }
        });
        return new Run(await(h), logprobs);
    }

    /** One after another: the order decides what is cached when. */
    static List<Run> runAll(Engine engine, List<GenerationRequest> requests) throws Exception {
        List<Run> out = new ArrayList<>();
        for (GenerationRequest q : requests) {
            out.add(run(engine, q));
        }
        return out;
    }

    @Test
    void aCachedPrefixGivesTheTokensAndLogprobsOfAColdRun() throws Exception {
        SplittableRandom r = new SplittableRandom(37);
        int[] system = randomPrompt(r, 100);
        int[] first = concat(system, randomPrompt(r, 60));   // 160 tokens, a miss: cached after 128
        int[] second = concat(system, randomPrompt(r, 50));  // a miss; parts from the first at 100: cached after
                                                             // 64 (what they share) and 128
        int[] third = concat(system, randomPrompt(r, 40));   // resumes at 64, cached after 128
        int[] longer = concat(first, randomPrompt(r, 40));   // 200 tokens: resumes at 128, cached after 192
        int[] exact = Arrays.copyOf(longer, 193);            // resumes at 192: only its last token is fed
        SamplingParams seeded = new SamplingParams(0.9f, 40, 0.95f, 77);
        int[][] prompts = {first, second, third, longer, longer, exact, longer};
        int[] resumedAt = {0, 0, 64, 128, 192, 192, 192};
        List<GenerationRequest> requests = new ArrayList<>();
        for (int i = 0; i < prompts.length; i++) {
            requests.add(new GenerationRequest(prompts[i], 12, i % 2 == 0 ? SamplingParams.greedy() : seeded,
                    List.of(), true));
        }

        String mismatch = null;
        for (int round = 0; round < ROUNDS; round++) {
            List<Run> cold;
            List<Run> cached;
            List<Run> coldAgain;
            EngineMetrics m;
            try (Engine off = engine(0)) {
                cold = runAll(off, requests);
            }
            try (Engine on = engine(64L << 20)) {
                cached = runAll(on, requests);
                m = on.metrics();
            }
            try (Engine off = engine(0)) {
                coldAgain = runAll(off, requests);
            }
            EngineMetrics.PrefixCacheMetrics c = m.prefixCache();
            assertEquals(5, c.hits(), "hits");
            assertEquals(2, c.misses(), "misses");
            assertEquals(Arrays.stream(resumedAt).sum(), c.tokensReused(), "tokens reused");
            assertEquals(IntStream.range(0, prompts.length).map(i -> prompts[i].length - resumedAt[i]).sum(),
                    m.promptTokens(), "prompt tokens fed");
            // the first's 128, the second's 64 and 128, the third's 128, the longer one's 192
            assertEquals(5, c.entries(), "entries");
            assertEquals(5 * stateBytes, c.bytes(), "bytes");
            assertEquals(0, c.evictions(), "evictions");
            mismatch = null;
            for (int i = 0; i < requests.size() && mismatch == null; i++) {
                if (!cold.get(i).same(coldAgain.get(i))) {
                    mismatch = "two cold runs of request " + i + " differ (the JIT is still compiling)";
                } else if (!cold.get(i).same(cached.get(i))) {
                    mismatch = "request " + i + " (prompt of " + prompts[i].length + " tokens, resumed at "
                            + resumedAt[i] + "): cached " + cached.get(i) + ", cold " + cold.get(i);
                }
            }
            if (mismatch == null) {
                for (int i = 0; i < requests.size(); i++) {
                    EngineTest.assertSameResult(solo(requests.get(i)), cached.get(i).result(),
                            "request " + i + " against a solo run");
                }
                return;
            }
        }
        fail("in " + ROUNDS + " rounds: " + mismatch);
    }

    /** A prompt of {@code length} random tokens starting with {@code first} (so that no two share a prefix). */
    static int[] startingWith(SplittableRandom r, int first, int length) {
        int[] p = randomPrompt(r, length);
        p[0] = first;
        return p;
    }

    @Test
    void theLeastRecentlyUsedPrefixIsDroppedToKeepToTheBudget() throws Exception {
        SplittableRandom r = new SplittableRandom(41);
        int[] a = startingWith(r, 1, 100); // each cached after 64 tokens, one state
        int[] b = startingWith(r, 2, 100);
        int[] c = startingWith(r, 3, 100);
        long budget = 2 * stateBytes + stateBytes / 2; // room for two
        int[][] order = {a, b, a, c, b, c, a};
        boolean[] hit = {false, false, true, false, false, true, false};
        int[] evicted = {0, 0, 0, 1, 2, 2, 3}; // c drops b; b drops a (c is newer); a drops b (c was just used)
        try (Engine engine = engine(budget)) {
            long hits = 0;
            for (int i = 0; i < order.length; i++) {
                EngineTest.assertSameResult(solo(EngineTest.greedy(order[i], 4)),
                        await(engine.submit(EngineTest.greedy(order[i], 4), StreamListener.none())), "request " + i);
                EngineMetrics.PrefixCacheMetrics m = engine.metrics().prefixCache();
                hits += hit[i] ? 1 : 0;
                assertEquals(hits, m.hits(), "hits after request " + i);
                assertEquals(i + 1 - hits, m.misses(), "misses after request " + i);
                assertEquals(evicted[i], m.evictions(), "evictions after request " + i);
                assertEquals(Math.min(i + 1, 2), m.entries(), "entries after request " + i);
                assertTrue(m.bytes() <= budget, m.bytes() + " bytes held, over the budget of " + budget);
                assertEquals(budget, m.budgetBytes());
            }
        }
    }

    @Test
    void aCacheWithoutRoomNeverStores() throws Exception {
        SplittableRandom r = new SplittableRandom(43);
        int[] prompt = randomPrompt(r, 150);
        GenerationRequest request = EngineTest.greedy(prompt, 3);
        GenerationResult solo = solo(request);
        long coldSteps = -1;
        // no budget: nothing is looked up or stored; a budget under one state: looked up, never stored
        for (long budget : new long[] {0, stateBytes - 1}) {
            try (Engine engine = engine(budget)) {
                for (int i = 0; i < 2; i++) {
                    EngineTest.assertSameResult(solo, await(engine.submit(request, StreamListener.none())),
                            "budget " + budget + ", request " + i);
                }
                EngineMetrics m = engine.metrics();
                EngineMetrics.PrefixCacheMetrics c = m.prefixCache();
                String what = "a cache of " + budget + " bytes";
                assertEquals(0, c.entries(), what);
                assertEquals(0, c.bytes(), what);
                assertEquals(0, c.hits(), what);
                assertEquals(0, c.tokensReused(), what);
                assertEquals(budget == 0 ? 0 : 2, c.misses(), what);
                assertEquals(budget, c.budgetBytes(), what);
                assertEquals(2 * prompt.length, m.promptTokens(), what + ": every prompt token fed");
                // no piece is cut short for a state that would not be kept: the steps of a cache-less engine
                coldSteps = coldSteps < 0 ? m.steps() : coldSteps;
                assertEquals(coldSteps, m.steps(), what + ": steps");
            }
        }
    }

    @Test
    void concurrentRequestsSharingAPrefixEqualTheirSoloRuns() throws Exception {
        SplittableRandom r = new SplittableRandom(47);
        int[] system = randomPrompt(r, 130);
        int n = 16;
        List<GenerationRequest> requests = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] prompt = concat(system, randomPrompt(r, 1 + r.nextInt(100)));
            SamplingParams sampling = i % 2 == 0 ? SamplingParams.greedy()
                    : new SamplingParams(0.8f, 0, 0.9f, 500L + i);
            requests.add(new GenerationRequest(prompt, 1 + r.nextInt(20), sampling, List.of(), true));
        }
        try (Engine engine = engine(64L << 20); ExecutorService clients = Executors.newFixedThreadPool(4)) {
            List<Future<RequestHandle>> submitted = new ArrayList<>();
            for (GenerationRequest q : requests) {
                submitted.add(clients.submit(() -> engine.submit(q, StreamListener.none())));
            }
            for (int i = 0; i < n; i++) {
                EngineTest.assertSameResult(solo(requests.get(i)),
                        await(submitted.get(i).get(EngineTest.WAIT_S, TimeUnit.SECONDS)), "request " + i);
            }
            // every request admitted after the first slots' worth finds the shared prefix cached by then (a
            // prompt's state is cached before it generates, so before its slot is free)
            EngineMetrics.PrefixCacheMetrics c = engine.metrics().prefixCache();
            assertTrue(c.hits() >= n - EngineTest.SLOTS, "hits " + c.hits());
            assertEquals(n, c.hits() + c.misses());
            assertTrue(c.tokensReused() >= 64 * c.hits(), "tokens reused " + c.tokensReused());
        }
    }

    @Test
    void aBudgetOverTheMemoryIsRefusedAtTheStart() {
        long petabyte = 1L << 50;
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> engine(petabyte));
        assertTrue(e.getMessage().startsWith("the prefix cache needs 1.0 PiB but only "), e.getMessage());
        IllegalArgumentException negative = assertThrows(IllegalArgumentException.class,
                () -> new EngineOptions(1, 64, 64, 1, -1));
        assertEquals("prefix cache bytes must be at least 0, got -1", negative.getMessage());
    }
}
