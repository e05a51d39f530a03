package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The engine's decode steps queued ahead ({@link EngineOptions#stepsAhead}), its bookkeeping on the CPU backend: the
 * engine is made to queue them though the CPU replays no recorded steps (such a step takes the ids it is fed once
 * they are read). Every request's tokens, text and end are those of its solo run, as streamed; a sequence that ends on
 * a token (its length, a stop string, end of text) or is cancelled has its row of the step ahead dropped; a request
 * asking for logprobs gets them for every token; a request that arrives while steps run ahead is admitted; and steps
 * were queued ahead. The GPU's steps ahead, fed on the device, are tested in the CUDA module.
 */
class EngineStepsAheadTest {
    static final long WAIT_S = 60;
    static final int VOCAB = 1000;
    static final int SLOTS = 4;
    /** A decode token for each of the other 3 slots, a prompt piece of 64 tokens (the CPU's exact split), 1 spare. */
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

    static Engine aheadEngine(BasedModel m, int slots, int maxTokens, int stepTokens, int queue) {
        return new Engine(m, tokenizer, new EngineOptions(slots, maxTokens, stepTokens, queue), true);
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

    /** What the engine streams for one request. */
    static final class Streamed implements StreamListener {
        final List<Integer> tokens = new CopyOnWriteArrayList<>();
        final List<TokenLogprobs> logprobs = new CopyOnWriteArrayList<>();
        final StringBuilder text = new StringBuilder();
        volatile Throwable error;

        @Override
        public synchronized void onToken(int tokenId, String piece) {
            if (tokenId >= 0) {
                tokens.add(tokenId);
            }
            text.append(piece);
        }

        @Override
        public void onLogprobs(TokenLogprobs lp) {
            logprobs.add(lp);
        }

        @Override
        public void onError(Throwable e) {
            error = e;
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
            RequestHandle a = engine.submit(stops, StreamListener.none());
            RequestHandle b = engine.submit(ignores, StreamListener.none());
            GenerationResult ended = await(a);
            assertArrayEquals(new int[] {257, 257, 257, 257}, ended.tokens());
            assertEquals(GenerationResult.Finish.EOS, ended.finish());
            assertSameResult(solo(eos971, stops), ended, "stopping on end-of-text");
            assertSameResult(solo(eos971, ignores), await(b), "the request in the row after it");
            assertEquals(4 + 1 + 20, engine.metrics().tokensGenerated());
            assertTrue(engine.metrics().stepsAhead() > 0, "no step was queued ahead");
        }
    }

    @Test
    void cancellingLogprobsAndALateRequestWhileStepsRunAhead() throws Exception {
        SplittableRandom r = new SplittableRandom(37);
        GenerationRequest steady = GenerationRequest.of(r.ints(9, 0, VOCAB).toArray(), 60,
                new SamplingParams(0.8f, 0, 1f, 77L));
        GenerationRequest withLogprobs = GenerationRequest.of(r.ints(14, 0, VOCAB).toArray(), 12,
                SamplingParams.greedy());
        GenerationRequest late = GenerationRequest.of(r.ints(6, 0, VOCAB).toArray(), 10, SamplingParams.greedy());
        try (Engine engine = aheadEngine(model, 3, MAX_TOKENS, STEP_TOKENS, 4)) {
            AtomicReference<RequestHandle> self = new AtomicReference<>();
            AtomicReference<RequestHandle> lateHandle = new AtomicReference<>();
            Streamed cancelledStream = new Streamed();
            RequestHandle cancelled = engine.submit(GenerationRequest.of(r.ints(11, 0, VOCAB).toArray(), 200,
                    SamplingParams.greedy()), new StreamListener() {
                        @Override
                        public void onToken(int tokenId, String text) {
                            cancelledStream.onToken(tokenId, text);
                            if (cancelledStream.tokens.size() == 5) {
                                self.get().cancel();
                                // a request arriving while the others' steps run ahead takes the freed slot
                                lateHandle.set(engine.submit(late, StreamListener.none()));
                            }
                        }

                        @Override
                        public void onError(Throwable error) {
                            cancelledStream.onError(error);
                        }
                    });
            self.set(cancelled);
            Streamed steadyStream = new Streamed();
            RequestHandle steadyHandle = engine.submit(steady, steadyStream);
            Streamed logprobStream = new Streamed();
            RequestHandle logprobHandle = engine.submit(withLogprobs, 2, logprobStream);

            Throwable e = cancelled.result().handle((result, error) -> error).get(WAIT_S, TimeUnit.SECONDS);
            assertInstanceOf(CancellationException.class, e);
            assertTrue(e.getMessage().contains("cancelled after 5 generated tokens"), e.getMessage());
            assertEquals(5, cancelledStream.tokens.size(), "tokens streamed after the cancel");
            assertSameResult(solo(model, steady), await(steadyHandle), "the request running beside");
            GenerationResult lp = await(logprobHandle);
            assertSameResult(solo(model, withLogprobs), lp, "the request with logprobs");
            assertEquals(lp.tokens().length, logprobStream.logprobs.size(), "logprobs, one a token");
            for (int j = 0; j < lp.tokens().length; j++) {
                assertEquals(lp.tokens()[j], logprobStream.logprobs.get(j).id(), "logprobs of token " + j);
            }
            assertSameResult(solo(model, late), await(lateHandle.get()), "the request that came late");
            assertTrue(engine.metrics().stepsAhead() > 0, "no step was queued ahead");
            assertFalse(steadyStream.tokens.isEmpty());
        }
    }

    private static List<Integer> toList(int[] ids) {
        List<Integer> out = new ArrayList<>();
        for (int id : ids) {
            out.add(id);
        }
        return out;
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
}
