package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.config.ConfigParser;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.GpuTest;
import io.based4j.cuda.Precision;
import io.based4j.generate.GenerationRequest;
import io.based4j.generate.GenerationResult;
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
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The serving engine on the GPU with its decode steps queued ahead, each fed on the device the ids the step before
 * drew ({@link EngineOptions#stepsAhead}): every request's tokens, text and end, as streamed, are those of the same
 * requests on an engine whose steps wait for the ids on the host, in both precisions; and the engine's steps were fed
 * on the device. Requests of seeded sampling at temperature 20 (every sequence's id changes at every step), different
 * lengths and limits, stop strings, one ending on the end-of-text token, more requests than slots (admissions as
 * sequences end) and one asking for logprobs.
 */
@GpuTest
class EngineOnGpuTest {
    static final long WAIT_S = 120;
    static final int SLOTS = 4;

    @ParameterizedTest
    @EnumSource(Precision.class)
    void stepsFedOnTheDeviceGiveTheTokensOfStepsThatWait(Precision precision) throws Exception {
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", precision);
             BasedModel model = golden(gpu, arena, 971)) {
            Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
            List<GenerationRequest> requests = requests(model.config().vocabSize());
            Run waiting = run(model, tokenizer, requests, false);
            long fedBefore = gpu.fedSteps();
            Run ahead = run(model, tokenizer, requests, true);
            for (int i = 0; i < requests.size(); i++) {
                String what = precision + ", request " + i;
                GenerationResult want = waiting.results.get(i);
                GenerationResult got = ahead.results.get(i);
                assertArrayEquals(want.tokens(), got.tokens(), what + ": tokens");
                assertEquals(want.text(), got.text(), what + ": text");
                assertEquals(want.finish(), got.finish(), what + ": finish");
                assertEquals(waiting.streamed.get(i), ahead.streamed.get(i), what + ": streamed tokens");
            }
            assertTrue(waiting.results.stream().anyMatch(r -> r.finish() == GenerationResult.Finish.EOS),
                    "no request ended on end-of-text");
            assertTrue(waiting.results.stream().anyMatch(r -> r.finish() == GenerationResult.Finish.STOP),
                    "no request ended on a stop string");
            assertEquals(0, waiting.queuedAhead, "steps queued ahead with steps ahead off");
            assertTrue(ahead.queuedAhead > 0, "no step was queued ahead");
            assertTrue(gpu.fedSteps() - fedBefore > 0, "no step took its ids on the device");
        }
    }

    /** Results, streamed tokens and steps queued ahead of one engine's run of the requests. */
    record Run(List<GenerationResult> results, List<List<Integer>> streamed, long queuedAhead) {
    }

    static Run run(BasedModel model, Gpt2Tokenizer tokenizer, List<GenerationRequest> requests, boolean stepsAhead)
            throws Exception {
        EngineOptions options = new EngineOptions(SLOTS, 128, 128, requests.size()).withStepsAhead(stepsAhead);
        try (Engine engine = new Engine(model, tokenizer, options)) {
            List<RequestHandle> handles = new ArrayList<>();
            List<List<Integer>> streamed = new ArrayList<>();
            for (int i = 0; i < requests.size(); i++) {
                List<Integer> tokens = new CopyOnWriteArrayList<>();
                streamed.add(tokens);
                StreamListener listener = (id, piece) -> {
                    if (id >= 0) {
                        tokens.add(id);
                    }
                };
                // the last request asks for logprobs (its steps wait for the ids on the host)
                handles.add(i == requests.size() - 1 ? engine.submit(requests.get(i), 3, listener)
                        : engine.submit(requests.get(i), listener));
            }
            List<GenerationResult> results = new ArrayList<>();
            for (RequestHandle h : handles) {
                results.add(h.result().get(WAIT_S, TimeUnit.SECONDS));
            }
            return new Run(results, streamed, engine.metrics().stepsAhead());
        }
    }

    /**
     * Ten requests: the golden prompt that greedy decoding continues 257 257 257 257 971 (971 the end-of-text token
     * here), and random prompts with seeded sampling at temperature 20, a stop string of one character on two.
     */
    static List<GenerationRequest> requests(int vocab) {
        int[] eosPrompt = {665, 687, 51, 918, 391, 74, 705, 770, 261, 425, 98, 761, 663, 725, 931, 257};
        SplittableRandom r = new SplittableRandom(43);
        List<GenerationRequest> out = new ArrayList<>();
        int[] maxTokens = {30, 3, 24, 40, 1, 17, 35, 9, 28, 12};
        for (int i = 0; i < maxTokens.length; i++) {
            if (i == 2) {
                out.add(GenerationRequest.of(eosPrompt, maxTokens[i], SamplingParams.greedy()));
                continue;
            }
            int[] prompt = r.ints(3 + r.nextInt(40), 0, vocab).toArray();
            List<String> stops = i % 4 == 1 ? List.of("e") : List.of();
            out.add(new GenerationRequest(prompt, maxTokens[i], new SamplingParams(20f, 0, 1f, 500L + i), stops,
                    true));
        }
        return out;
    }

    /** The golden model with {@code eos_token_id} set, on {@code gpu}. */
    static BasedModel golden(CudaBackend gpu, Arena arena, int eos) throws IOException {
        Path dir = GoldenModel.dir();
        Map<String, Object> raw = new LinkedHashMap<>(Json.parseObject(Files.readString(dir.resolve("config.json"))));
        raw.put("eos_token_id", (long) eos);
        return BasedModel.of(ModelWeights.bind(ConfigParser.fromMap("golden with eos " + eos, raw),
                CheckpointFiles.open(dir, arena).tensors(), "golden"), gpu);
    }
}
