package io.based4j.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.OpClock;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.GpuTest;
import io.based4j.cuda.Precision;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.model.ModelWeights;
import io.based4j.model.Session;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Decode steps queued on the ids the step before drew, ahead of the host's reading them (a sampling kernel leaves
 * them in the recorded step's staging area, {@link Backend#sampleAhead} and {@link BasedModel#forwardFed}) give the
 * same logits and tokens as steps that wait for the ids on the host, and the fed replays are taken.
 */
@GpuTest
class StepsAheadTest {
    static final Path GOLDEN = GoldenModel.dir();

    /** The golden model with {@code eos_token_id} set, on {@code gpu}. */
    static BasedModel golden(CudaBackend gpu, Arena arena, int eos) throws IOException {
        Map<String, Object> raw = new LinkedHashMap<>(
                Json.parseObject(Files.readString(GOLDEN.resolve("config.json"))));
        raw.put("eos_token_id", (long) eos);
        ModelConfig cfg = ConfigParser.fromMap("test", raw);
        return BasedModel.of(ModelWeights.bind(cfg, CheckpointFiles.open(GOLDEN, arena).tensors(), "golden"), gpu);
    }

    /**
     * Seeded samplers for n sequences, the same for the same n. The golden model is so sure of its next tokens that
     * at temperature 1 they hardly change from step to step (ids left over from a step before would pass for fed
     * ones); at 20 every sequence's id changes at every step.
     */
    static Sampler[] seeded(int n) {
        Sampler[] s = new Sampler[n];
        Arrays.setAll(s, i -> new Sampler(new SamplingParams(20f, 0, 1f, 100 + i)));
        return s;
    }

    static int[][] prompts(int n) {
        int[][] prompts = new int[n][];
        for (int i = 0; i < n; i++) {
            prompts[i] = Arrays.copyOfRange(GeneratorTest.PROMPT, i, GeneratorTest.PROMPT.length - i);
        }
        return prompts;
    }

    /**
     * Every step's logits bit for bit and its sampled ids, fed on the device against fed from the host, in two
     * sessions of the same prompts and seeds; then a step of fewer sequences (ids drawn for four rows cannot feed a
     * step of three: fed from the host, recording its own graph) and fed steps of that size again.
     */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void aStepFedOnTheDeviceEqualsOneFedFromTheHost(Precision precision) throws IOException {
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", precision);
             BasedModel model = golden(gpu, arena, 0)) {
            int vocab = model.config().vocabSize();
            int steps = 6;
            Sampler[] onHost = seeded(4);
            Sampler[] onDevice = seeded(4);
            try (Session host = model.newSession(4, 64); Session fed = model.newSession(4, 64)) {
                int[] first = prefill(model, host, prompts(4), onHost);
                assertArrayEquals(first, prefill(model, fed, prompts(4), onDevice));
                int[] slots = {0, 1, 2, 3};
                int[] rows = {0, 1, 2, 3};
                int[] next = first;
                Backend.Sampled drawn = null;
                long fedBefore = gpu.fedSteps();
                for (int s = 0; s < steps; s++) {
                    if (s == 3) {
                        slots = new int[] {0, 2, 3};
                        rows = new int[] {0, 1, 2};
                        next = new int[] {next[0], next[2], next[3]};
                        onHost = new Sampler[] {onHost[0], onHost[2], onHost[3]};
                        onDevice = new Sampler[] {onDevice[0], onDevice[2], onDevice[3]};
                        drawn = null;
                    }
                    Backend.Buffer expected = model.forward(host, host.step(slots), next.clone(), false, null);
                    float[] want = model.backend().download(expected);
                    int[] wantIds = model.backend().sample(expected, rows, vocab, onHost);
                    Backend.Buffer got = drawn == null
                            ? model.forward(fed, fed.step(slots), next.clone(), false, null)
                            : model.forwardFed(fed, fed.step(slots), drawn);
                    assertArrayEquals(want, model.backend().download(got), "logits of step " + s);
                    drawn = model.backend().sampleAhead(got, rows, vocab, onDevice);
                    assertArrayEquals(wantIds, drawn.ids(), "ids of step " + s);
                    assertTrue(s == 0 || !Arrays.equals(wantIds, next), "the ids moved at step " + s);
                    next = wantIds;
                }
                // steps 1 and 2 (four sequences, recorded at step 0) and 4 and 5 (three, recorded at step 3) took
                // their ids on the device
                assertEquals(4, gpu.fedSteps() - fedBefore, "fed replays");
            }
        }
    }

    /**
     * Each step queued on the ids of the step before while that step's sampling has not run (the stream held at a
     * gate until the next step is queued), against steps fed from the host: every step's ids, seeded sampling.
     */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void aStepQueuedBeforeItsIdsExistTakesThem(Precision precision) throws IOException {
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", precision);
             BasedModel model = golden(gpu, arena, 0)) {
            int vocab = model.config().vocabSize();
            int steps = 8;
            int[] slots = {0, 1, 2, 3};
            Sampler[] onHost = seeded(4);
            Sampler[] onDevice = seeded(4);
            try (Session host = model.newSession(4, 64); Session fed = model.newSession(4, 64)) {
                int[] first = prefill(model, host, prompts(4), onHost);
                assertArrayEquals(first, prefill(model, fed, prompts(4), onDevice));
                int[][] want = new int[steps][];
                int[] next = first;
                for (int s = 0; s < steps; s++) {
                    Backend.Buffer logits = model.forward(host, host.step(slots), next, false, null);
                    next = model.backend().sample(logits, slots, vocab, onHost);
                    want[s] = next;
                }
                OpClock clock = model.backend().clock();
                long fedBefore = gpu.fedSteps();
                Backend.Buffer logits = model.forward(fed, fed.step(slots), first, false, null);
                for (int s = 0; s < steps; s++) {
                    long hold = clock.hold();  // this step's sampling and the next step wait at the gate
                    Backend.Sampled drawn = model.backend().sampleAhead(logits, slots, vocab, onDevice);
                    if (s + 1 < steps) {
                        logits = model.forwardFed(fed, fed.step(slots), drawn);
                    }
                    clock.go(hold);
                    assertArrayEquals(want[s], drawn.ids(), "ids of step " + s);
                }
                assertEquals(steps - 1, gpu.fedSteps() - fedBefore, "fed replays");
            }
        }
    }

    /**
     * Generations with steps ahead against ones that wait for each step's ids: a sequence that stops on an
     * end-of-text token (so a step ahead ran for it and its result is dropped), sequences of seeded sampling (whose
     * draws are taken a step ahead) with different length limits, and a stop string.
     */
    @ParameterizedTest
    @EnumSource(Precision.class)
    void generationsWithStepsAheadEqualThoseThatWait(Precision precision) throws IOException {
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        // the golden model's greedy continuation of the prompt is 257 257 257 257 971 ...: 971 ends it at token 5
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", precision);
             BasedModel model = golden(gpu, arena, 971)) {
            int[] prompt = GeneratorTest.PROMPT;
            List<GenerationRequest> plain = List.of(
                    new GenerationRequest(prompt, 20, SamplingParams.greedy(), List.of(), true),
                    new GenerationRequest(prompt, 12, new SamplingParams(1f, 50, 0.8f, 7), List.of(), false),
                    new GenerationRequest(Arrays.copyOf(prompt, 9), 20, new SamplingParams(0.8f, 0, 0.9f, 11),
                            List.of(), false));
            long before = gpu.fedSteps();
            List<String> waitedCalls = new ArrayList<>();
            List<GenerationResult> waited = new Generator(model, tokenizer).stepsAhead(false).generate(plain,
                    (i, id, text) -> waitedCalls.add(i + " " + id + " " + text));
            assertEquals(before, gpu.fedSteps(), "no fed step without steps ahead");
            assertEquals(GenerationResult.Finish.EOS, waited.get(0).finish(), "the greedy sequence's end");
            List<String> aheadCalls = new ArrayList<>();
            List<GenerationResult> ahead = new Generator(model, tokenizer).generate(plain,
                    (i, id, text) -> aheadCalls.add(i + " " + id + " " + text));
            assertTrue(gpu.fedSteps() > before, "steps ahead were fed on the device");
            assertSame(waited, ahead);
            for (int i = 0; i < plain.size(); i++) {
                String of = i + " ";
                assertEquals(waitedCalls.stream().filter(c -> c.startsWith(of)).toList(),
                        aheadCalls.stream().filter(c -> c.startsWith(of)).toList(), "tokens streamed for sequence " + i);
            }

            // a stop string that first completes at the third sequence's seventh token
            int[] third = waited.get(2).tokens();
            String stop = tokenizer.decode(Arrays.copyOf(third, 7));
            List<GenerationRequest> stopped = List.of(plain.get(0), plain.get(1),
                    new GenerationRequest(plain.get(2).promptIds(), 20, plain.get(2).sampling(), List.of(stop), false));
            List<GenerationResult> waitedStop = new Generator(model, tokenizer).stepsAhead(false)
                    .generate(stopped, null);
            assertEquals(GenerationResult.Finish.STOP, waitedStop.get(2).finish(), "the stop string's end");
            assertSame(waitedStop, new Generator(model, tokenizer).generate(stopped, null));
        }
    }

    private static void assertSame(List<GenerationResult> expected, List<GenerationResult> actual) {
        assertEquals(expected.size(), actual.size());
        for (int i = 0; i < expected.size(); i++) {
            assertArrayEquals(expected.get(i).tokens(), actual.get(i).tokens(), "tokens of sequence " + i);
            assertEquals(expected.get(i).text(), actual.get(i).text(), "text of sequence " + i);
            assertEquals(expected.get(i).finish(), actual.get(i).finish(), "end of sequence " + i);
        }
    }

    private static int[] prefill(BasedModel model, Session session, int[][] prompts, Sampler[] samplers) {
        int[] next = new int[prompts.length];
        int[] slots = new int[prompts.length];
        Arrays.setAll(slots, i -> i);
        model.prefill(session, slots, prompts, (logits, rows, seqs) -> {
            int[] ids = model.backend().sample(logits, rows, model.config().vocabSize(),
                    Arrays.copyOf(samplers, rows.length));
            for (int j = 0; j < seqs.length; j++) {
                next[seqs[j]] = ids[j];
            }
        });
        return next;
    }
}
