package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The parallel form over packed ragged prompts, token-by-token decoding and chunked prefill give the same logits at
 * every position, on the fast CPU backend and on the scalar reference, and the two backends agree with each other.
 *
 * <p>Configurations are small and random (width, heads, depth, MLP width, rotary dims, tied or untied head), drawn
 * from a seed printed in every failure message ({@code -Dbased4j.seed=...} reproduces a run). Weights are random with
 * O(1)-scale effects: matrices N(0, 1/fan_in) so activations stay O(1), linear-attention s = q.k/sqrt(f) and
 * attention scores are O(1) (so the s^2 term and the softmax shape matter), norms U(0.6, 1.4), biases U(-0.5, 0.5),
 * conv taps U(-0.8, 0.8), embeddings N(0, 1) so logits have a standard deviation of a few units.
 *
 * <p>Tolerance: every path computes the same function in float32 (unit roundoff u ~ 6e-8) with a different
 * summation order (chunked versus recurrent linear attention, tiled versus single-row matmuls, the reference's
 * unmerged features and full key history). Each layer's output then differs by a small multiple of sqrt(n) u
 * relative (n <= a few hundred terms per sum, ~1e-6), the residual stream carries these through a few layers and
 * the logits are dot products of d <= 48 terms of the normalised final residual: observed differences are ~1e-6 of
 * the logit scale. The bound is {@code 1e-4 * rms(logits)} per logit, 100 times that, while a wrong state
 * continuation (lost token, wrong position, wrong window) moves logits by O(1e-2 .. 1) of their scale.
 */
class DecodeEqualsPrefillTest {
    static final long SEED = Long.getLong("based4j.seed", System.nanoTime());
    static final double REL_TOL = 1e-4;
    /**
     * The fast CPU backend against the scalar reference: both float32, summing in different orders. Over 58 seeds of
     * the 12 cases the largest difference was 1.4e-4 of the logit scale (a sliding-window-only model, at two
     * positions where sharply peaked attention amplifies the rounding differences; typical cases stay under 1e-5),
     * so the bound leaves a margin of 7 over that. The errors this comparison exists to catch (a key too many or
     * too few in a window, a wrong rotary pair, a wrong feature-map term) move logits by 1e-2 of the scale or more.
     */
    static final double CROSS_BACKEND_REL_TOL = 1e-3;
    static final int VOCAB = 101;
    static final int[] LENGTHS = {1, 37, 90};

    record Case(String name, Map<String, Object> config, long seed) {
        @Override
        public String toString() {
            return name;
        }
    }

    // ------------------------------------------------------------------ configurations

    private static int pick(SplittableRandom r, int... options) {
        return options[r.nextInt(options.length)];
    }

    private static List<Integer> divisors(int d, boolean evenQuotient) {
        List<Integer> out = new ArrayList<>();
        for (int h = 1; h <= d; h++) {
            if (d % h == 0 && d / h >= 2 && (!evenQuotient || (d / h) % 2 == 0)) {
                out.add(h);
            }
        }
        return out;
    }

    private static Map<String, Object> common(SplittableRandom r, int nLayer) {
        int d = pick(r, 24, 32, 40, 48);
        List<Integer> heads = divisors(d, true);
        heads.removeIf(h -> h > 8);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model_type", "gpt2");
        m.put("n_embd", (long) d);
        m.put("n_layer", (long) nLayer);
        m.put("n_head", (long) (int) heads.get(r.nextInt(heads.size())));
        m.put("n_inner", r.nextInt(5) == 0 ? 0L : (long) (8 + r.nextInt(90))); // 0: no MLP; else rounds to 256
        m.put("vocab_size", (long) VOCAB);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("layer_norm_epsilon", 1e-5);
        m.put("rms_norm", true);
        m.put("activation_function", "swiglu");
        m.put("rotary_emb_fraction", 1.0);
        m.put("tie_word_embeddings", r.nextInt(3) != 0);
        return m;
    }

    private static int dModel(Map<String, Object> m) {
        return (int) (long) (Long) m.get("n_embd");
    }

    private static int headDim(Map<String, Object> m) {
        return dModel(m) / (int) (long) (Long) m.get("n_head");
    }

    private static Map<String, Object> linear(SplittableRandom r, Map<String, Object> root, int f) {
        List<Integer> heads = divisors(dModel(root), false);
        heads.removeIf(h -> h > 8);
        return Presets.linearMixer(f, heads.get(r.nextInt(heads.size())));
    }

    private static Map<String, Object> sliding(SplittableRandom r, Map<String, Object> root, int windowSize) {
        int dh = headDim(root);
        Map<String, Object> s = Presets.slidingMixer(windowSize, (int) (long) (Long) root.get("n_head"));
        s.put("rotary_emb_dim", (long) pick(r, 0, 2 * (dh / 4), dh));
        s.put("rotary_emb_interleaved", r.nextBoolean());
        if (r.nextBoolean()) {
            s.put("softmax_scale", 0.3 + r.nextDouble());
        }
        return s;
    }

    /** Full attention layers (no mixer dict) take rotary settings and biases from the root. */
    private static void fullAttention(SplittableRandom r, Map<String, Object> root, boolean qkvBias, boolean outBias) {
        root.put("qkv_proj_bias", qkvBias);
        root.put("out_proj_bias", outBias);
        root.put("rotary_emb_fraction", headDim(root) % 4 == 0 && r.nextBoolean() ? 0.5 : 1.0);
        root.put("rotary_emb_interleaved", r.nextBoolean());
        root.put("rotary_emb_base", r.nextBoolean() ? 10000.0 : 300.0);
    }

    private static List<Long> layers(int... idx) {
        return Arrays.stream(idx).mapToObj(i -> (long) i).toList();
    }

    static List<Case> cases() {
        SplittableRandom r = new SplittableRandom(SEED);
        List<Case> out = new ArrayList<>();
        {
            Map<String, Object> m = common(r, 3 + r.nextInt(4));
            m.put("mixer", Presets.convMixer());
            out.add(new Case("conv only", m, r.nextLong()));
        }
        for (int f : new int[] {4, 8, 16}) {
            Map<String, Object> m = common(r, 3 + r.nextInt(2));
            m.put("mixer", linear(r, m, f));
            out.add(new Case("linear attention only f=" + f, m, r.nextLong()));
        }
        for (int w : new int[] {2, 6, 16}) {
            Map<String, Object> m = common(r, 3 + r.nextInt(4));
            m.put("mixer", sliding(r, m, w));
            out.add(new Case("sliding window only window_size=" + w, m, r.nextLong()));
        }
        {
            Map<String, Object> m = common(r, 3 + r.nextInt(3));
            fullAttention(r, m, false, false);
            out.add(new Case("full attention without biases", m, r.nextLong()));
        }
        {
            Map<String, Object> m = common(r, 3 + r.nextInt(3));
            fullAttention(r, m, true, true);
            out.add(new Case("full attention with Wqkv and out_proj biases", m, r.nextLong()));
        }
        {
            Map<String, Object> m = common(r, 3);
            fullAttention(r, m, true, false);
            out.add(new Case("full attention with a Wqkv bias only", m, r.nextLong()));
        }
        {
            // the released layout in small: conv, linear attention, sliding window, conv, linear attention, ...
            Map<String, Object> m = common(r, 6);
            m.put("mixer", Presets.convMixer());
            m.put("alt_mixer", linear(r, m, pick(r, 8, 16)));
            m.put("alt_mixer_layers", layers(1, 4));
            m.put("alt_mixer_2", sliding(r, m, 16));
            m.put("alt_mixer_2_layers", layers(2, 5));
            out.add(new Case("BASED mix", m, r.nextLong()));
        }
        {
            // full attention next to the recurrent mixers
            Map<String, Object> m = common(r, 4);
            fullAttention(r, m, r.nextBoolean(), r.nextBoolean());
            m.put("alt_mixer", Presets.convMixer());
            m.put("alt_mixer_layers", layers(0, 3));
            m.put("alt_mixer_2", linear(r, m, 8));
            m.put("alt_mixer_2_layers", layers(2));
            out.add(new Case("conv, attention and linear attention mix", m, r.nextLong()));
        }
        return out;
    }

    // ------------------------------------------------------------------ weights

    /** Random weights for the configuration: the key names and shapes {@link Initializer} uses, larger values. */
    static ModelWeights randomWeights(ModelConfig config, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        Map<String, Tensor> dict = new LinkedHashMap<>();
        try (Arena arena = Arena.ofShared()) { // Initializer fills tensors from several threads
            for (Map.Entry<String, Tensor> e : Initializer.stateDict(config, seed, arena).entrySet()) {
                String key = e.getKey();
                long[] shape = e.getValue().shape();
                float[] v = new float[Math.toIntExact(e.getValue().numel())];
                for (int i = 0; i < v.length; i++) {
                    double x;
                    if (key.endsWith(".bias")) {
                        x = r.nextDouble(-0.5, 0.5);
                    } else if (key.endsWith("norm1.weight") || key.endsWith("norm2.weight") || key.endsWith("ln_f.weight")) {
                        x = r.nextDouble(0.6, 1.4);
                    } else if (key.contains("conv.conv.weight")) {
                        x = r.nextDouble(-0.8, 0.8);
                    } else if (key.contains("word_embeddings") || key.startsWith("lm_head")) {
                        x = r.nextGaussian();
                    } else {
                        x = r.nextGaussian() / Math.sqrt(shape[shape.length - 1]);
                    }
                    v[i] = (float) x;
                }
                dict.put(key, Tensor.ofFloats(v, shape));
            }
        }
        return ModelWeights.bind(config, dict, "random weights");
    }

    // ------------------------------------------------------------------ the test

    private static String ctx(Case c, String backend, String what) {
        return c.name() + " on " + backend + ": " + what + " [seed=" + SEED + " -Dbased4j.seed=" + SEED + "]";
    }

    static double rms(float[] logits) {
        double s = 0;
        for (float v : logits) {
            s += (double) v * v;
        }
        return Math.sqrt(s / logits.length);
    }

    /** Largest |diff| seen by {@link #assertRow} in this test, for the verbose report. */
    private double largestDiff;

    /** Compares {@code got} row {@code gotRow} with {@code want} row {@code wantRow}: |diff| <= tol each. */
    private void assertRow(String what, float[] want, int wantRow, float[] got, int gotRow, int cols, double tol) {
        double worst = 0;
        int at = -1;
        for (int j = 0; j < cols; j++) {
            float w = want[wantRow * cols + j];
            float g = got[gotRow * cols + j];
            double err = Math.abs((double) g - w);
            if (Double.isNaN(err) || err > worst) {
                worst = Double.isNaN(err) ? Double.POSITIVE_INFINITY : err;
                at = j;
            }
        }
        largestDiff = Math.max(largestDiff, worst);
        if (worst > tol) {
            fail(what + ": logit " + at + " is " + got[gotRow * cols + at] + ", expected " + want[wantRow * cols + at]
                    + " (|diff| " + worst + " > " + tol + ")");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void decodeAndChunkedPrefillMatchParallelForm(Case c) {
        ModelConfig config = ConfigParser.fromMap(c.name(), c.config());
        ModelWeights weights = randomWeights(config, c.seed());
        SplittableRandom r = new SplittableRandom(c.seed() ^ 0x5eed);
        int[][] tokens = new int[LENGTHS.length][];
        for (int s = 0; s < LENGTHS.length; s++) {
            tokens[s] = r.ints(LENGTHS[s], 0, VOCAB).toArray();
        }
        int[] split = new int[LENGTHS.length];
        for (int s = 0; s < LENGTHS.length; s++) {
            split[s] = LENGTHS[s] == 1 ? 1 : 1 + r.nextInt(LENGTHS[s] - 1);
        }
        int[] packed = Arrays.stream(tokens).flatMapToInt(Arrays::stream).toArray();
        int[] offsets = new TokenBatch(new int[] {0, 1, 2}, new int[3], LENGTHS).offsets();
        int maxLength = Arrays.stream(LENGTHS).max().orElseThrow();
        int cols = config.paddedVocabSize();

        Map<String, Supplier<Backend>> backends = new LinkedHashMap<>();
        backends.put("cpu", CpuBackend::new);
        backends.put("reference", ReferenceBackend::new);
        Map<String, float[]> parallelByBackend = new LinkedHashMap<>();
        double scale = 0;
        for (Map.Entry<String, Supplier<Backend>> be : backends.entrySet()) {
            String name = be.getKey();
            try (Backend backend = be.getValue().get(); BasedModel model = BasedModel.of(weights, backend)) {
                // the parallel form over the three ragged sequences packed in one batch
                Session session = model.newSession(3, maxLength);
                float[] parallel = backend.download(model.forward(session,
                        session.batch(new int[] {0, 1, 2}, LENGTHS), packed, true, null));
                assertEquals(packed.length * cols, parallel.length, ctx(c, name, "logits size"));
                parallelByBackend.put(name, parallel);
                scale = rms(parallel);
                assertTrue(scale > 0.1 && scale < 100, ctx(c, name, "logit scale " + scale + " is not O(1..10)"));
                double tol = REL_TOL * scale;

                // token by token, all sequences that are still running together in one batch per step
                Session dec = model.newSession(3, maxLength);
                for (int t = 0; t < maxLength; t++) {
                    int step = t;
                    int[] active = Arrays.stream(new int[] {0, 1, 2}).filter(s -> LENGTHS[s] > step).toArray();
                    int[] ids = Arrays.stream(active).map(s -> tokens[s][step]).toArray();
                    int[] ones = new int[active.length];
                    Arrays.fill(ones, 1);
                    float[] got = backend.download(model.forward(dec, dec.batch(active, ones), ids, false, null));
                    for (int i = 0; i < active.length; i++) {
                        assertRow(ctx(c, name, "decoded sequence " + active[i] + " position " + t), parallel,
                                offsets[active[i]] + t, got, i, cols, tol);
                    }
                }
                for (int s = 0; s < 3; s++) {
                    assertEquals(LENGTHS[s], dec.position(s));
                }

                // chunked prefill: a first piece of every sequence, then the rest (slots in another order)
                Session chunked = model.newSession(3, maxLength);
                int[] first = new int[3];
                List<Integer> firstTokens = new ArrayList<>();
                for (int s = 0; s < 3; s++) {
                    first[s] = split[s];
                    for (int t = 0; t < split[s]; t++) {
                        firstTokens.add(tokens[s][t]);
                    }
                }
                float[] got1 = backend.download(model.forward(chunked, chunked.batch(new int[] {0, 1, 2}, first),
                        firstTokens.stream().mapToInt(Integer::intValue).toArray(), true, null));
                int row = 0;
                for (int s = 0; s < 3; s++) {
                    for (int t = 0; t < split[s]; t++) {
                        assertRow(ctx(c, name, "chunked prefill piece 1, sequence " + s + " position " + t), parallel,
                                offsets[s] + t, got1, row++, cols, tol);
                    }
                }
                List<Integer> rest = new ArrayList<>();
                List<Integer> restLengths = new ArrayList<>();
                List<Integer> restTokens = new ArrayList<>();
                for (int s = 2; s >= 0; s--) {
                    if (split[s] < LENGTHS[s]) {
                        rest.add(s);
                        restLengths.add(LENGTHS[s] - split[s]);
                        for (int t = split[s]; t < LENGTHS[s]; t++) {
                            restTokens.add(tokens[s][t]);
                        }
                    }
                }
                float[] got2 = backend.download(model.forward(chunked,
                        chunked.batch(rest.stream().mapToInt(Integer::intValue).toArray(),
                                restLengths.stream().mapToInt(Integer::intValue).toArray()),
                        restTokens.stream().mapToInt(Integer::intValue).toArray(), true, null));
                row = 0;
                for (int s : rest) {
                    for (int t = split[s]; t < LENGTHS[s]; t++) {
                        assertRow(ctx(c, name, "chunked prefill piece 2 (split at " + split[s] + "), sequence " + s
                                + " position " + t), parallel, offsets[s] + t, got2, row++, cols, tol);
                    }
                }
            }
        }

        // the fast backend against the scalar reference, whole model
        float[] cpu = parallelByBackend.get("cpu");
        float[] ref = parallelByBackend.get("reference");
        for (int s = 0; s < 3; s++) {
            for (int t = 0; t < LENGTHS[s]; t++) {
                assertRow(ctx(c, "cpu vs reference", "sequence " + s + " position " + t), ref, offsets[s] + t, cpu,
                        offsets[s] + t, cols, CROSS_BACKEND_REL_TOL * scale);
            }
        }
        if (Boolean.getBoolean("based4j.verbose")) {
            double maxDiff = 0;
            for (int i = 0; i < cpu.length; i++) {
                maxDiff = Math.max(maxDiff, Math.abs(cpu[i] - ref[i]));
            }
            System.out.println(c.name() + ": layers " + config.layers().stream().map(MixerConfig::kind).toList()
                    + ", logit rms " + scale + ", cpu vs reference max |diff| " + maxDiff + " = "
                    + maxDiff / scale + " of the scale; largest difference of any comparison "
                    + largestDiff / scale + " of the scale");
        }
    }
}
