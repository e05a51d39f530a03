package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.checkpoint.Safetensors;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.DeferredUpdates;
import io.based4j.cuda.GpuTest;
import io.based4j.cuda.Precision;
import io.based4j.json.Json;
import io.based4j.sampling.Sampler;
import io.based4j.sampling.SamplingParams;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The model on the GPU: the golden tiny checkpoint in float32 against the reference's tensors, the GPU against the
 * CPU on random configurations of every layer kind, decode against prefill, and recorded (CUDA graph) decode steps
 * against ones run op by op.
 */
@GpuTest
class GpuModelTest {
    /**
     * Golden logits in float32: the reference notes that a correct float32 implementation lands within about 1e-4
     * of its logits (std about 8); cuBLAS and the kernels sum in other orders than the CPU, so 1e-3 as the issue
     * asks, which still catches any wrong op (those move logits by O(0.1 .. 1)).
     */
    static final double GOLDEN_TOL = 1e-3;

    /**
     * GPU float32 against the CPU (both float32, only summation order differs): the decode==prefill bound of the
     * CPU tests, {@code 1e-4 * rms(logits)} per logit (observed differences there are about 1e-6 of the scale).
     */
    static final double F32_REL_TOL = 1e-4;

    /**
     * GPU bfloat16 against the CPU in float32 over the same bf16-rounded weights: every stored activation is rounded
     * to 8 significant bits (unit roundoff 2^-9 = 2e-3); a layer stores about six, and errors add over at most seven
     * layers, so about 1e-2 of the logits' norm is expected. The bound, ||gpu - cpu|| / ||cpu|| <= 3e-2, is three
     * times that; a wrong op or state moves the logits by 20% or more of their norm.
     */
    static final double BF16_REL_NORM_TOL = 3e-2;

    /**
     * The float32 GPU-CPU difference, as a share of the logits' rms, of a well-conditioned case: measured at 1e-6 to
     * 5e-6 over many seeds. The two float32 runs differ only in the order of their sums (perturbations of 2^-24), so
     * a case whose float32 difference is larger amplifies small perturbations more (random weights can make a
     * hidden state nearly cancel before a norm): its bf16 difference is allowed that many times
     * {@link #BF16_REL_NORM_TOL}. The float32 check still bounds such a case, so a wrong op, which moves float32
     * results too, is not hidden.
     */
    static final double F32_WELL_CONDITIONED = 1e-5;

    static List<DecodeEqualsPrefillTest.Case> cases() {
        return DecodeEqualsPrefillTest.cases();
    }

    @Test
    void goldenTinyInFloat32MatchesTheReference() throws Exception {
        Path dir = GoldenModel.dir();
        try (Arena arena = Arena.ofConfined(); CudaBackend gpu = CudaBackend.open("cuda", Precision.F32);
             BasedModel model = BasedModel.load(dir, gpu)) {
            Map<String, Tensor> expected = Safetensors.read(dir.resolve("expected.safetensors"), arena);
            Tensor ids = expected.get("input_ids");
            int batch = (int) ids.dim(0);
            int len = (int) ids.dim(1);
            int[] tokens = Arrays.stream(ids.toLongArray()).mapToInt(v -> (int) v).toArray();
            int[] slots = new int[batch];
            int[] lengths = new int[batch];
            for (int b = 0; b < batch; b++) {
                slots[b] = b;
                lengths[b] = len;
            }
            try (Session session = model.newSession(batch, len)) {
                float[] got = gpu.download(model.forward(session, session.batch(slots, lengths), tokens, true, null));
                float[] want = expected.get("logits").toFloatArray();
                double maxErr = GoldenModel.maxLogitError(got, want, batch * len, model.config().vocabSize(),
                        model.config().paddedVocabSize());
                System.out.printf("golden tiny on %s (f32): max |logit - reference| = %.3g%n", gpu.name(), maxErr);
                assertTrue(maxErr <= GOLDEN_TOL, "max |logit - reference| = " + maxErr);
            }

            // greedy decoding through recorded steps and the GPU sampler
            Map<String, Object> g = Json.parseObject(Files.readString(dir.resolve("greedy.json")));
            int[] prompt = ((List<?>) g.get("prompt_ids")).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
            int[] wantIds = ((List<?>) g.get("greedy_ids")).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
            try (Session session = model.newSession(1, prompt.length + wantIds.length)) {
                Sampler[] greedy = {new Sampler(SamplingParams.greedy())};
                int vocab = model.config().vocabSize();
                int[] next = {0};
                model.prefill(session, new int[] {0}, new int[][] {prompt},
                        (logits, rows, seqs) -> next[0] = gpu.sample(logits, rows, vocab, greedy)[0]);
                int[] got = new int[wantIds.length];
                for (int i = 0; i < wantIds.length; i++) {
                    got[i] = next[0];
                    Backend.Buffer logits = model.forward(session, TokenBatch.step(new int[] {0},
                            new int[] {session.position(0)}), new int[] {next[0]}, false, null);
                    next[0] = gpu.sample(logits, new int[] {0}, vocab, greedy)[0];
                }
                assertArrayEquals(wantIds, got, "greedy ids on the GPU");
            }
        }
    }

    /** The case's random weights rounded to bfloat16, so that the CPU and the GPU compute with the same weights. */
    private static ModelWeights bf16Weights(ModelConfig config, long seed) {
        ModelWeights w = DecodeEqualsPrefillTest.randomWeights(config, seed);
        Map<String, Tensor> rounded = new java.util.LinkedHashMap<>();
        for (ModelWeights.Bound b : w.named()) {
            rounded.put(b.spec().name(), Tensor.ofBf16(b.tensor().toFloatArray(), b.tensor().shape()));
        }
        return ModelWeights.bind(w.config(), rounded, "bf16 copy");
    }

    /** All-token logits of three ragged prompts (lengths 1, 37 and 90) in one call. */
    private static float[] prefillLogits(BasedModel model, int[][] prompts) {
        int maxLen = Arrays.stream(prompts).mapToInt(p -> p.length).max().orElseThrow();
        try (Session session = model.newSession(prompts.length, maxLen)) {
            int[] slots = new int[prompts.length];
            int[] lengths = new int[prompts.length];
            for (int i = 0; i < prompts.length; i++) {
                slots[i] = i;
                lengths[i] = prompts[i].length;
            }
            int[] packed = Arrays.stream(prompts).flatMapToInt(Arrays::stream).toArray();
            return model.backend().download(model.forward(session, session.batch(slots, lengths), packed, true, null));
        }
    }

    private static int[][] prompts(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[][] p = new int[DecodeEqualsPrefillTest.LENGTHS.length][];
        for (int i = 0; i < p.length; i++) {
            p[i] = r.ints(DecodeEqualsPrefillTest.LENGTHS[i], 0, DecodeEqualsPrefillTest.VOCAB).toArray();
        }
        return p;
    }

    private static double rms(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return Math.sqrt(s / v.length);
    }

    /** What a failure says: the case, what went wrong, the seed that draws the case again and its configuration. */
    private static String ctx(DecodeEqualsPrefillTest.Case c, String what) {
        return c.name() + ": " + what + " [-Dbased4j.seed=" + DecodeEqualsPrefillTest.SEED + "; " + c.config() + "]";
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void gpuMatchesCpu(DecodeEqualsPrefillTest.Case c) {
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        int[][] prompts = prompts(c.seed());
        ModelWeights weights = bf16Weights(config, c.seed());
        float[] cpu = on(new CpuBackend(), weights, m -> prefillLogits(m, prompts));
        float[] f32 = on(CudaBackend.open("cuda", Precision.F32), weights, m -> prefillLogits(m, prompts));
        float[] bf16 = on(CudaBackend.open("cuda", Precision.BF16), weights, m -> prefillLogits(m, prompts));
        double scale = rms(cpu);
        double maxF32 = 0;
        for (int i = 0; i < cpu.length; i++) {
            assertTrue(Float.isFinite(f32[i]) && Float.isFinite(bf16[i]), ctx(c, "non-finite logit at " + i));
            maxF32 = Math.max(maxF32, Math.abs(f32[i] - cpu[i]));
        }
        double relBf16 = relativeDifference(bf16, cpu);
        System.out.printf("%s: f32 max|gpu-cpu| = %.3g (%.2g of rms %.3g), bf16 ||gpu-cpu||/||cpu|| = %.3g%n",
                c.name(), maxF32, maxF32 / scale, scale, relBf16);
        assertTrue(maxF32 <= F32_REL_TOL * scale, ctx(c, "f32 max |gpu - cpu| = " + maxF32 + ", rms " + scale));
        double conditioning = Math.max(1, maxF32 / scale / F32_WELL_CONDITIONED);
        assertTrue(relBf16 <= BF16_REL_NORM_TOL * conditioning, ctx(c, "bf16 relative error " + relBf16
                + " (allowed " + BF16_REL_NORM_TOL + " x " + conditioning + ", the float32 difference's excess)"));
    }

    /**
     * The logits of two decode steps after the prompts' prefill: the prefill of fresh prompts in bf16 runs on the
     * parallel kernels of training and leaves the state with its own kernel, from which the decode goes on. Against
     * the CPU in float32 within {@link #BF16_REL_NORM_TOL}, times the case's conditioning (the float32 GPU run's
     * difference from the CPU over {@link #F32_WELL_CONDITIONED}), as the prefill itself is; or within twice what the
     * bf16 prefill of the prompts with the two tokens appended differs from the CPU by at the same six positions
     * (capped as the conditioning is). Six positions are few: where one of them sits behind a sharply peaked window
     * (a random softmax scale several times 1/sqrt(dh), as -Dbased4j.seed=30496193447 draws: 0.040 of the norm
     * here), bf16's roundings presumably move it more than the float32 runs show; another bf16 route to the same
     * logits measures that (it was 0.040 there too), and a wrong state or step, which moves the logits by 20% of
     * their norm, still fails, the other route running neither. An error the bf16 prefill shares with that route is
     * {@link #gpuMatchesCpu}'s to catch.
     */
    private static float[] decodeAfterPrefill(BasedModel model, int[][] prompts, int[][] next) {
        int maxLen = Arrays.stream(prompts).mapToInt(p -> p.length).max().orElseThrow();
        try (Session session = model.newSession(prompts.length, maxLen + next.length)) {
            int[] slots = new int[prompts.length];
            int[] lengths = new int[prompts.length];
            int[] ones = new int[prompts.length];
            for (int i = 0; i < prompts.length; i++) {
                slots[i] = i;
                lengths[i] = prompts[i].length;
                ones[i] = 1;
            }
            int[] packed = Arrays.stream(prompts).flatMapToInt(Arrays::stream).toArray();
            model.forward(session, session.batch(slots, lengths), packed, false, null);
            float[] out = new float[0];
            for (int[] step : next) {
                float[] got = model.backend().download(model.forward(session, session.batch(slots, ones), step, false,
                        null));
                float[] joined = Arrays.copyOf(out, out.length + got.length);
                System.arraycopy(got, 0, joined, out.length, got.length);
                out = joined;
            }
            return out;
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void bf16DecodeGoesOnFromAParallelPrefill(DecodeEqualsPrefillTest.Case c) {
        int[][] prompts = prompts(c.seed());
        SplittableRandom nr = new SplittableRandom(c.seed() + 1);
        int[][] next = {nr.ints(prompts.length, 0, DecodeEqualsPrefillTest.VOCAB).toArray(),
                nr.ints(prompts.length, 0, DecodeEqualsPrefillTest.VOCAB).toArray()};
        // the case's own sensitivity to bf16 rounding at these six positions: the same logits by another bf16 route,
        // the prefill of the prompts with the two tokens appended, against the CPU's
        int[][] extended = new int[prompts.length][];
        for (int i = 0; i < prompts.length; i++) {
            extended[i] = Arrays.copyOf(prompts[i], prompts[i].length + next.length);
            for (int s = 0; s < next.length; s++) {
                extended[i][prompts[i].length + s] = next[s][i];
            }
        }
        double other = bf16Difference(c, m -> lastSteps(prefillLogits(m, extended), extended, next.length));
        assertBf16NearCpu(c, "decode after a bf16 prefill", m -> decodeAfterPrefill(m, prompts, next), 2 * other);
    }

    /**
     * The logits of the last {@code steps} positions of every sequence, in the order decodeAfterPrefill gives them
     * (step by step, the sequences in order), from a prefill's logits of every position of {@code prompts} packed.
     */
    private static float[] lastSteps(float[] all, int[][] prompts, int steps) {
        int rows = Arrays.stream(prompts).mapToInt(p -> p.length).sum();
        int width = all.length / rows;
        assertEquals((long) rows * width, all.length, "a prefill's logits, a row a position");
        float[] out = new float[steps * prompts.length * width];
        for (int s = 0; s < steps; s++) {
            int start = 0;
            for (int i = 0; i < prompts.length; i++) {
                int row = start + prompts[i].length - steps + s;
                System.arraycopy(all, row * width, out, (s * prompts.length + i) * width, width);
                start += prompts[i].length;
            }
        }
        return out;
    }

    /** ||gpu - cpu|| / ||cpu|| of what {@code run} gives with the case's bf16-rounded weights, the GPU in bf16. */
    private static double bf16Difference(DecodeEqualsPrefillTest.Case c,
                                         java.util.function.Function<BasedModel, float[]> run) {
        ModelWeights weights = bf16Weights(ConfigParser.fromMap(c.name(), c.config()), c.seed());
        float[] cpu = on(new CpuBackend(), weights, run);
        return relativeDifference(on(CudaBackend.open("cuda", Precision.BF16), weights, run), cpu);
    }

    /** What {@code run} gives on {@code backend} with {@code weights}; the backend is closed after. */
    private static float[] on(Backend backend, ModelWeights weights,
                              java.util.function.Function<BasedModel, float[]> run) {
        try (Backend b = backend; BasedModel m = BasedModel.of(weights, b)) {
            return run.apply(m);
        }
    }

    /** ||got - want|| / ||want||, in double. */
    private static double relativeDifference(float[] got, float[] want) {
        double diff2 = 0;
        double norm2 = 0;
        for (int i = 0; i < want.length; i++) {
            diff2 += (double) (got[i] - want[i]) * (got[i] - want[i]);
            norm2 += (double) want[i] * want[i];
        }
        return Math.sqrt(diff2 / norm2);
    }

    /**
     * A serving engine's steps in bf16: prompts that start beside a decode token and a later piece of a prompt, in
     * one call (slots out of order), then three decode steps of all four, a fifth prompt beside four decode tokens,
     * then a piece of a prompt beside decode tokens. On the GPU in bf16 the fresh prompts of such a
     * call take the fresh-prompt kernels (linear attention's chunked form, full attention's tensor cores) as if alone
     * and the other rows the decode or token-by-token kernels; the logits of every position of both calls are held
     * to the CPU's as those of the plain calls are (the CPU and the float32 GPU feed every row alike).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void bf16MixedStepsMatchTheCpu(DecodeEqualsPrefillTest.Case c) {
        SplittableRandom r = new SplittableRandom(c.seed() + 2);
        int vocab = DecodeEqualsPrefillTest.VOCAB;
        // slots 1 and 3 are 20 and 33 tokens into their sequences; then slots 0 and 2 start prompts of 90 and 37
        // tokens while slot 1 decodes one and slot 3 feeds 17 more of its prompt
        int[] before = r.ints(20 + 33, 0, vocab).toArray();
        int[] mixed = r.ints(90 + 1 + 17 + 37, 0, vocab).toArray();
        int[][] steps = {r.ints(4, 0, vocab).toArray(), r.ints(4, 0, vocab).toArray(), r.ints(4, 0, vocab).toArray()};
        int[] later = r.ints(5 + 3, 0, vocab).toArray();
        int[] fifth = r.ints(30 + 4, 0, vocab).toArray();
        assertBf16NearCpu(c, "a mixed step, decode steps, and a later piece of a prompt beside decode tokens", m -> {
            try (Session s = m.newSession(5, 128)) {
                m.forward(s, s.batch(new int[] {1, 3}, new int[] {20, 33}), before, false, null);
                float[] out = m.backend().download(m.forward(s, s.batch(new int[] {0, 1, 3, 2},
                        new int[] {90, 1, 17, 37}), mixed, true, null));
                for (int[] step : steps) {
                    out = joined(out, m.backend().download(m.forward(s, s.batch(new int[] {2, 0, 3, 1},
                            new int[] {1, 1, 1, 1}), step, false, null)));
                }
                // slot 4 starts a prompt beside four decode tokens (the others on the decode kernel)
                out = joined(out, m.backend().download(m.forward(s, s.batch(new int[] {1, 4, 2, 0, 3},
                        new int[] {1, 30, 1, 1, 1}), fifth, true, null)));
                // slot 1 feeds 5 more tokens after its decode steps (with a deferred update, those steps' tokens
                // are added into the state first)
                return joined(out, m.backend().download(m.forward(s, s.batch(new int[] {3, 1, 0, 2},
                        new int[] {1, 5, 1, 1}), later, true, null)));
            }
        });
    }

    /**
     * The cases with a linear-attention layer, each such layer given a head dim the deferred form takes (a multiple of
     * 4: where the random configuration drew another, its mixer takes the most heads up to 8 that give one), so that
     * every case with linear attention is run in that form whatever the seed.
     */
    static List<DecodeEqualsPrefillTest.Case> linearCases() {
        List<DecodeEqualsPrefillTest.Case> out = new java.util.ArrayList<>();
        for (DecodeEqualsPrefillTest.Case c : cases()) {
            List<io.based4j.config.MixerConfig> layers = ConfigParser.fromMap(c.name(), c.config()).layers();
            if (layers.stream().noneMatch(m -> m instanceof io.based4j.config.MixerConfig.LinearAttention)) {
                continue;
            }
            int d = (int) (long) (Long) c.config().get("n_embd");
            Map<String, Object> config = new LinkedHashMap<>(c.config());
            for (Map.Entry<String, Object> e : config.entrySet()) {
                if (e.getValue() instanceof Map<?, ?> mixer && mixer.containsKey("feature_dim")
                        && mixer.containsKey("num_heads") && d / ((Number) mixer.get("num_heads")).intValue() % 4 != 0) {
                    Map<String, Object> fitted = new LinkedHashMap<>();
                    mixer.forEach((k, v) -> fitted.put((String) k, v));
                    int heads = 8;
                    while (heads > 1 && (d % heads != 0 || (d / heads) % 4 != 0)) {
                        heads--;
                    }
                    fitted.put("num_heads", (long) heads);
                    e.setValue(fitted);
                }
            }
            DecodeEqualsPrefillTest.Case fitted = new DecodeEqualsPrefillTest.Case(c.name(), config, c.seed());
            List<io.based4j.config.MixerConfig> now = ConfigParser.fromMap(c.name(), config).layers();
            assertTrue(now.stream().allMatch(m -> !(m instanceof io.based4j.config.MixerConfig.LinearAttention l)
                    || DeferredUpdates.takes(l.featureDim(), l.headDim())), c.name() + ": every linear layer deferred");
            out.add(fitted);
        }
        return out;
    }

    /**
     * Decode equals prefill, and recorded steps op-by-op ones, with linear attention's update deferred
     * ({@link DeferredUpdates}: S written every few steps, the tokens since waiting beside it; sessions of a few
     * sequences write every step otherwise): over the 90 steps of the longest prompt every sequence's state is
     * written on some steps and only read on the others.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("linearCases")
    void deferredUpdatesDecodeAsThePrefill(DecodeEqualsPrefillTest.Case c) {
        DeferredUpdates.forced(() -> decodeEqualsPrefillAndGraphsEqualOps(c));
    }

    /** A mixed step and the decode steps after it with linear attention's update deferred, against the CPU. */
    @ParameterizedTest(name = "{0}")
    @MethodSource("linearCases")
    void deferredUpdatesInMixedSteps(DecodeEqualsPrefillTest.Case c) {
        DeferredUpdates.forced(() -> bf16MixedStepsMatchTheCpu(c));
    }

    private static float[] joined(float[] a, float[] b) {
        float[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /**
     * The logits {@code run} gives with the case's bf16-rounded weights on the CPU (float32), the GPU in float32 and
     * the GPU in bf16: float32 within {@link #F32_REL_TOL} of the rms per logit, bf16 within
     * {@link #BF16_REL_NORM_TOL} of the norm times the case's conditioning.
     */
    private static void assertBf16NearCpu(DecodeEqualsPrefillTest.Case c, String what,
                                          java.util.function.Function<BasedModel, float[]> run) {
        assertBf16NearCpu(c, what, run, 0);
    }

    /**
     * {@link #assertBf16NearCpu(DecodeEqualsPrefillTest.Case, String, java.util.function.Function)} allowing at least
     * {@code measured} (what another bf16 route to the same logits differs from the CPU's by, doubled), within the
     * same cap of 4 times {@link #BF16_REL_NORM_TOL}.
     */
    private static void assertBf16NearCpu(DecodeEqualsPrefillTest.Case c, String what,
                                          java.util.function.Function<BasedModel, float[]> run, double measured) {
        ModelWeights weights = bf16Weights(ConfigParser.fromMap(c.name(), c.config()), c.seed());
        float[] cpu = on(new CpuBackend(), weights, run);
        float[] f32 = on(CudaBackend.open("cuda", Precision.F32), weights, run);
        float[] bf16 = on(CudaBackend.open("cuda", Precision.BF16), weights, run);
        double scale = rms(cpu);
        double maxF32 = 0;
        for (int i = 0; i < cpu.length; i++) {
            assertTrue(Float.isFinite(f32[i]) && Float.isFinite(bf16[i]), ctx(c, "non-finite logit at " + i));
            maxF32 = Math.max(maxF32, Math.abs(f32[i] - cpu[i]));
        }
        double rel = relativeDifference(bf16, cpu);
        System.out.printf("%s: %s, ||gpu-cpu||/||cpu|| = %.3g (f32 max|gpu-cpu| %.2g of rms; twice another bf16"
                + " route's %.3g)%n", c.name(), what, rel, maxF32 / scale, measured);
        assertTrue(maxF32 <= F32_REL_TOL * scale, ctx(c, "f32, " + what + ": max |gpu - cpu| = " + maxF32 + ", rms "
                + scale));
        // as in gpuMatchesCpu: a case that amplifies the float32 runs' rounding more is allowed that much more in bf16,
        // at most 4 times, so that a bf16-only op (gemmRows, the bf16 attention kernels, the mixed calls) that moves
        // the logits by 20% of their norm fails whatever the float32 run says
        double conditioning = Math.min(4, Math.max(1, maxF32 / scale / F32_WELL_CONDITIONED));
        double allowed = Math.max(BF16_REL_NORM_TOL * conditioning, Math.min(4 * BF16_REL_NORM_TOL, measured));
        assertTrue(rel <= allowed, ctx(c, "bf16, " + what + ": relative error " + rel + " (allowed " + allowed + ": "
                + BF16_REL_NORM_TOL + " x " + conditioning + ", the float32 difference's excess, or " + measured
                + ", twice another bf16 route's)"));
    }

    /**
     * Decode, one token per sequence per step with the three sequences in lockstep (fewer as shorter ones end), equals
     * the all-token prefill at every position; and the same steps run op by op equal the recorded replays.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void decodeEqualsPrefillAndGraphsEqualOps(DecodeEqualsPrefillTest.Case c) {
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        int[][] prompts = prompts(c.seed());
        ModelWeights weights = DecodeEqualsPrefillTest.randomWeights(config, c.seed());
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.F32); BasedModel model = BasedModel.of(weights, gpu)) {
            float[] parallel = prefillLogits(model, prompts);
            double scale = rms(parallel);
            int padded = config.paddedVocabSize();
            int maxLen = Arrays.stream(prompts).mapToInt(p -> p.length).max().orElseThrow();
            int[] offsets = new int[prompts.length];
            for (int i = 1; i < prompts.length; i++) {
                offsets[i] = offsets[i - 1] + prompts[i - 1].length;
            }
            double worstDecode = 0;
            double worstGraph = 0;
            try (Session graphs = model.newSession(prompts.length, maxLen);
                 Session ops = model.newSession(prompts.length, maxLen).useGraphs(false)) {
                for (int t = 0; t < maxLen; t++) {
                    Lockstep step = Lockstep.at(prompts, t);
                    float[] a = gpu.download(model.forward(graphs, graphs.batch(step.active(), step.ones()),
                            step.ids(), false, null));
                    float[] b = gpu.download(model.forward(ops, ops.batch(step.active(), step.ones()), step.ids(),
                            false, null));
                    for (int j = 0; j < step.active().length; j++) {
                        int row = offsets[step.active()[j]] + t;
                        for (int v = 0; v < padded; v++) {
                            worstDecode = Math.max(worstDecode,
                                    Math.abs(a[j * padded + v] - parallel[row * padded + v]));
                            worstGraph = Math.max(worstGraph, Math.abs(a[j * padded + v] - b[j * padded + v]));
                        }
                    }
                }
            }
            System.out.printf("%s: decode vs prefill %.3g, graph vs ops %.3g (rms %.3g)%n", c.name(), worstDecode,
                    worstGraph, scale);
            assertTrue(worstDecode <= F32_REL_TOL * scale, ctx(c, "decode differs from prefill by " + worstDecode));
            // the same kernels on the same inputs: only cuBLAS could pick another algorithm when recording
            assertTrue(worstGraph <= 1e-6 * scale, ctx(c, "recorded steps differ from op-by-op ones by " + worstGraph));
        }
    }

    /**
     * Programmatic dependent launches ({@link CudaBackend#programmaticLaunches}): each kernel may start as the one
     * before it finishes and waits for it before reading anything that one writes (gemv version 3 loads the weights,
     * which no kernel of a decode step writes, before it waits there), so the prefill and the recorded decode steps give
     * the logits of the usual launches. The same kernels on the same inputs in the same order; only cuBLAS could pick
     * another algorithm when recording (as for graphs against ops above, 1e-6 of the rms), while a kernel that read
     * its input before the kernel making it had finished would be off by the size of the logits.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void programmaticLaunchesGiveTheSameLogits(DecodeEqualsPrefillTest.Case c) {
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        int[][] prompts = prompts(c.seed());
        ModelWeights weights = DecodeEqualsPrefillTest.randomWeights(config, c.seed());
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16); BasedModel model = BasedModel.of(weights, gpu)) {
            gpu.programmaticLaunches(false);
            float[][] usual = {prefillLogits(model, prompts), decodeLogits(model, prompts)};
            try {
                gpu.programmaticLaunches(true);
            } catch (IllegalStateException e) {  // a GPU below compute capability 9 refuses them, saying why
                assertTrue(e.getMessage().contains("compute capability 9"), e.getMessage());
                return;
            }
            float[][] programmatic = {prefillLogits(model, prompts), decodeLogits(model, prompts)};
            for (int k = 0; k < 2; k++) {
                double bound = 1e-6 * rms(usual[k]);
                double worst = 0;
                for (int i = 0; i < usual[k].length; i++) {
                    worst = Math.max(worst, Math.abs(usual[k][i] - programmatic[k][i]));
                }
                assertTrue(worst <= bound, ctx(c, (k == 0 ? "prefill" : "decode") + " logits differ by " + worst
                        + " with programmatic launches (allowed " + bound + ")"));
            }
        }
    }

    /** A decode step through the prompts in lockstep: the sequences with a token at the step, their tokens, one each. */
    private record Lockstep(int[] active, int[] ids, int[] ones) {
        static Lockstep at(int[][] prompts, int step) {
            int[] active = java.util.stream.IntStream.range(0, prompts.length).filter(i -> prompts[i].length > step)
                    .toArray();
            int[] ones = new int[active.length];
            Arrays.fill(ones, 1);
            return new Lockstep(active, Arrays.stream(active).map(i -> prompts[i][step]).toArray(), ones);
        }
    }

    /** The last logits of every decode step (recorded and replayed) through the prompts, all steps one after another. */
    private static float[] decodeLogits(BasedModel model, int[][] prompts) {
        int maxLen = Arrays.stream(prompts).mapToInt(p -> p.length).max().orElseThrow();
        java.util.List<float[]> steps = new java.util.ArrayList<>();
        try (Session session = model.newSession(prompts.length, maxLen)) {
            for (int t = 0; t < maxLen; t++) {
                Lockstep step = Lockstep.at(prompts, t);
                steps.add(model.backend().download(model.forward(session, session.batch(step.active(), step.ones()),
                        step.ids(), false, null)));
            }
        }
        int total = steps.stream().mapToInt(a -> a.length).sum();
        float[] all = new float[total];
        int at = 0;
        for (float[] a : steps) {
            System.arraycopy(a, 0, all, at, a.length);
            at += a.length;
        }
        return all;
    }
}
