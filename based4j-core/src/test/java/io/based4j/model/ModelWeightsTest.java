package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Binding a state dict to a configuration (BASED-SPEC section 3): what is accepted, what is refused and that refusals
 * name the key; and the recurrent state sizes of the released shapes (section 4), computed by hand.
 */
class ModelWeightsTest {
    private static final int D = 32;
    private static final String SRC = "test.safetensors";

    /** Initializer fills tensors from several threads, so the arena must be shared. */
    private final Arena arena = Arena.ofShared();

    @AfterEach
    void close() {
        arena.close();
    }

    // ------------------------------------------------------------------ configurations

    private static Map<String, Object> root(int nLayer) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n_embd", (long) D);
        m.put("n_layer", (long) nLayer);
        m.put("n_head", 4L);
        m.put("n_inner", 64L);
        m.put("vocab_size", 50L);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("rotary_emb_fraction", 1.0);
        m.put("tie_word_embeddings", true);
        return m;
    }

    /** Four layers: conv, linear attention, sliding window, conv. */
    private static Map<String, Object> basedMap() {
        Map<String, Object> m = root(4);
        m.put("mixer", Map.of("_target_", "based.models.mixers.convolution.BaseConv", "use_bias", true));
        m.put("alt_mixer", Map.of("_target_", "based.models.mixers.linear_attention.LinearAttention",
                "feature_dim", 4L, "num_heads", 2L));
        m.put("alt_mixer_layers", List.of(1L));
        m.put("alt_mixer_2", Map.of("_target_", "based.models.mixers.slide_attention.SlidingAttention",
                "window_size", 8L, "num_heads", 4L));
        m.put("alt_mixer_2_layers", List.of(2L));
        return m;
    }

    private static ModelConfig config(Map<String, Object> m) {
        return ConfigParser.fromMap("test config", m);
    }

    private Map<String, Tensor> dict(ModelConfig config) {
        return new LinkedHashMap<>(Initializer.stateDict(config, 7, arena));
    }

    private static Tensor zeros(long... shape) {
        return Tensor.ofFloats(new float[Math.toIntExact(Tensor.numel(shape))], shape);
    }

    private static ModelWeights.WeightsException refused(ModelConfig config, Map<String, Tensor> tensors) {
        return assertThrows(ModelWeights.WeightsException.class, () -> ModelWeights.bind(config, tensors, SRC));
    }

    private static void assertMentions(Exception e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message \"" + e.getMessage() + "\" should mention " + p);
        }
    }

    // ------------------------------------------------------------------ binding

    @Test
    void completeStateDictBinds() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> t = dict(config);
        ModelWeights w = ModelWeights.bind(config, t, SRC);
        assertSame(t.get("transformer.embeddings.word_embeddings.weight"), w.embedding());
        assertSame(w.embedding(), w.head(), "tied head is the embedding");
        assertEquals(List.of("conv", "linear-attn", "swa", "conv"),
                w.config().layers().stream().map(MixerConfig::kind).toList());
        assertTrue(w.layers().get(0).mixer() instanceof ModelWeights.ConvWeights);
        assertTrue(w.layers().get(1).mixer() instanceof ModelWeights.LinearWeights);
        assertTrue(w.layers().get(2).mixer() instanceof ModelWeights.AttentionWeights);
        assertSame(t.get("transformer.layers.1.mixer.proj_k.weight"),
                ((ModelWeights.LinearWeights) w.layers().get(1).mixer()).projK());
    }

    @Test
    void missingKeyIsNamed() {
        ModelConfig config = config(basedMap());
        for (String key : List.of("transformer.layers.1.mixer.proj_k.weight", "transformer.ln_f.weight",
                "transformer.layers.0.mixer.conv.conv.weight", "transformer.layers.3.mlp.fc2.weight",
                "transformer.layers.2.mixer.Wqkv.weight", "transformer.embeddings.word_embeddings.weight")) {
            Map<String, Tensor> t = dict(config);
            assertTrue(t.remove(key) != null, key);
            assertMentions(refused(config, t), SRC, key, "missing");
        }
    }

    @Test
    void unexpectedKeyIsNamed() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> t = dict(config);
        t.put("transformer.layers.0.mixer.extra.weight", zeros(3));
        assertMentions(refused(config, t), SRC, "transformer.layers.0.mixer.extra.weight", "unexpected");

        // a key of another mixer kind: a Wqkv in a conv layer
        t = dict(config);
        t.put("transformer.layers.3.mixer.Wqkv.weight", zeros(3 * D, D));
        assertMentions(refused(config, t), "transformer.layers.3.mixer.Wqkv.weight");

        // a layer past n_layer
        t = dict(config);
        t.put("transformer.layers.4.norm1.weight", zeros(D));
        assertMentions(refused(config, t), "transformer.layers.4.norm1.weight");
    }

    @Test
    void wrongShapeIsNamedWithBothShapes() {
        ModelConfig config = config(basedMap());
        int h = config.mlpHidden();
        Map<String, Tensor> t = dict(config);
        t.put("transformer.layers.0.mlp.fc1.weight", zeros(2L * h + 1, D));
        assertMentions(refused(config, t), "transformer.layers.0.mlp.fc1.weight", "[" + (2 * h + 1) + ", " + D + "]",
                "[" + 2 * h + ", " + D + "]");

        t = dict(config);
        t.put("transformer.layers.0.mixer.conv.conv.weight", zeros(2L * D, 3)); // the middle dim of [2d, 1, 3] is missing
        assertMentions(refused(config, t), "transformer.layers.0.mixer.conv.conv.weight", "[64, 1, 3]");

        t = dict(config);
        t.put("transformer.layers.1.mixer.proj_q.weight", zeros(2L * 8, D)); // feature_dim 8 instead of 4
        assertMentions(refused(config, t), "transformer.layers.1.mixer.proj_q.weight", "[8, 32]");

        t = dict(config);
        t.put("transformer.embeddings.word_embeddings.weight", zeros(50, D)); // not padded to 56
        assertMentions(refused(config, t), "transformer.embeddings.word_embeddings.weight", "[56, 32]");
    }

    @Test
    void nonFloatingPointTensorIsRefused() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> t = dict(config);
        t.put("transformer.ln_f.weight", Tensor.ofLongs(new long[D], D));
        assertMentions(refused(config, t), "transformer.ln_f.weight", "I64");
    }

    @Test
    void modelPrefixIsStripped() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> plain = dict(config);
        Map<String, Tensor> prefixed = new LinkedHashMap<>();
        plain.forEach((k, v) -> prefixed.put("model." + k, v));
        ModelWeights w = ModelWeights.bind(config, prefixed, SRC);
        assertSame(plain.get("transformer.ln_f.weight"), w.finalNorm());

        // the same key with and without the prefix is ambiguous
        prefixed.put("transformer.ln_f.weight", plain.get("transformer.ln_f.weight"));
        assertMentions(refused(config, prefixed), "transformer.ln_f.weight");
    }

    @Test
    void metricsAndDecayBuffersAreDropped() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> t = dict(config);
        t.put("metrics.num_tokens", Tensor.ofLongs(new long[] {12345}, 1));
        t.put("model.train_metrics.loss", zeros(1));
        t.put("transformer.layers.0.metrics.seen", zeros(4, 4));
        t.put("transformer.decay.decay", zeros(2, 7, 7));
        t.put("model.transformer.decay.decay", zeros(3));
        ModelWeights w = ModelWeights.bind(config, t, SRC);
        assertEquals(4, w.layers().size());
    }

    @Test
    void tiedHeadMayBePresentAsACopy() {
        ModelConfig config = config(basedMap());
        Map<String, Tensor> t = dict(config);
        Tensor copy = zeros(config.paddedVocabSize(), D);
        t.put("lm_head.weight", copy);
        ModelWeights w = ModelWeights.bind(config, t, SRC);
        assertSame(w.embedding(), w.head(), "a tied head computes with the embedding");

        // a copy of the wrong shape is still refused
        t = dict(config);
        t.put("lm_head.weight", zeros(config.vocabSize(), D));
        assertMentions(refused(config, t), "lm_head.weight");
    }

    @Test
    void untiedHeadIsRequired() {
        Map<String, Object> m = basedMap();
        m.put("tie_word_embeddings", false);
        ModelConfig config = config(m);
        Map<String, Tensor> t = dict(config);
        Tensor head = t.get("lm_head.weight");
        ModelWeights w = ModelWeights.bind(config, t, SRC);
        assertSame(head, w.head());
        assertNotSame(w.embedding(), w.head());

        t.remove("lm_head.weight");
        assertMentions(refused(config, t), "lm_head.weight", "missing");
    }

    @Test
    void attentionBiasesAreInferredFromTheWeightsWhenTheConfigIsSilent() {
        Map<String, Object> m = root(3); // no mixer dict: full attention, and no qkv_proj_bias / out_proj_bias
        ModelConfig config = config(m);
        MixerConfig.Attention before = (MixerConfig.Attention) config.layer(0);
        assertNull(before.qkvBias());
        assertNull(before.outBias());
        Map<String, Tensor> t = dict(config);
        Tensor qkvBias = zeros(3L * D);
        Tensor outBias = zeros(D);
        t.put("transformer.layers.0.mixer.Wqkv.bias", qkvBias);
        t.put("transformer.layers.2.mixer.out_proj.bias", outBias);
        ModelWeights w = ModelWeights.bind(config, t, SRC);
        MixerConfig.Attention a0 = (MixerConfig.Attention) w.config().layer(0);
        MixerConfig.Attention a1 = (MixerConfig.Attention) w.config().layer(1);
        MixerConfig.Attention a2 = (MixerConfig.Attention) w.config().layer(2);
        assertEquals(Boolean.TRUE, a0.qkvBias());
        assertEquals(Boolean.FALSE, a0.outBias());
        assertEquals(Boolean.FALSE, a1.qkvBias());
        assertEquals(Boolean.FALSE, a1.outBias());
        assertEquals(Boolean.FALSE, a2.qkvBias());
        assertEquals(Boolean.TRUE, a2.outBias());
        assertSame(qkvBias, ((ModelWeights.AttentionWeights) w.layers().get(0).mixer()).qkvBias());
        assertSame(outBias, ((ModelWeights.AttentionWeights) w.layers().get(2).mixer()).outBias());

        // an inferred bias still has to have the right shape
        t = dict(config);
        t.put("transformer.layers.1.mixer.Wqkv.bias", zeros(D));
        assertMentions(refused(config, t), "transformer.layers.1.mixer.Wqkv.bias", "[96]");
    }

    @Test
    void attentionBiasContradictingTheConfigIsRefused() {
        Map<String, Object> m = root(2);
        m.put("qkv_proj_bias", true);
        m.put("out_proj_bias", false);
        ModelConfig config = config(m);
        Map<String, Tensor> t = dict(config);
        assertTrue(t.containsKey("transformer.layers.0.mixer.Wqkv.bias"));
        ModelWeights.bind(config, t, SRC); // consistent: binds

        t.remove("transformer.layers.1.mixer.Wqkv.bias");
        assertMentions(refused(config, t), "transformer.layers.1.mixer.Wqkv.bias", "missing", "configuration");

        t = dict(config);
        t.put("transformer.layers.0.mixer.out_proj.bias", zeros(D));
        assertMentions(refused(config, t), "transformer.layers.0.mixer.out_proj.bias", "present", "configuration");
    }

    @Test
    void noMlpMeansNoMlpKeys() {
        Map<String, Object> m = basedMap();
        m.put("n_inner", 0L);
        ModelConfig config = config(m);
        assertFalse(config.hasMlp());
        Map<String, Tensor> t = dict(config);
        assertFalse(t.containsKey("transformer.layers.0.mlp.fc1.weight"));
        ModelWeights.bind(config, t, SRC);
        t.put("transformer.layers.0.mlp.fc1.weight", zeros(2, D));
        assertMentions(refused(config, t), "transformer.layers.0.mlp.fc1.weight");
    }

    // ------------------------------------------------------------------ state sizes

    /*
     * By hand, float32 (4 bytes), from BASED-SPEC section 4 and MixerConfig:
     *  - BaseConv keeps the last kernel-1 = 2 values of u1, which is 2d wide: 4 * 2 * 2d bytes.
     *  - LinearAttention keeps S [H, F, dh] and z [H, F] with merged features F = 1 + f + f(f+1)/2 (153 at f = 16):
     *    4 * H * F * (dh + 1) bytes.
     *  - SlidingAttention (window_size 128 -> 64 keys back) keeps keys and values of the last 64 tokens: 2 * 4 * 64 * d.
     *  - full attention keeps keys and values of every token: 2 * 4 * t * d.
     * based-360m: d 1024, 27 layers, 5 linear (H 16, dh 64), 5 SWA, 17 conv.
     *    conv 4*2*2048 = 16384 per layer, 17 layers 278528; linear 4*16*153*65 = 636480 per layer, 5 layers 3182400;
     *    swa 2*4*64*1024 = 524288 per layer, 5 layers 2621440; total 6082368 (5.8 MiB), at any context length.
     * based-1b: d 1792, 36 layers, 7 linear (H 16, dh 112), 7 SWA, 22 conv.
     *    conv 4*2*3584 = 28672, 22 layers 630784; linear 4*16*153*113 = 1106496, 7 layers 7745472;
     *    swa 2*4*64*1792 = 917504, 7 layers 6422528; total 14798784.
     * attn-360m: 24 layers of 2*4*1024 = 8192 bytes per token: 196608 per token, 402653184 at 2048 tokens.
     * attn-1b: 36 layers of 2*4*1792 = 14336 bytes per token: 516096 per token.
     */
    @Test
    void stateSizesOfPresets() {
        ModelConfig b360 = Presets.get("based-360m");
        for (int ctx : new int[] {1, 2048, 100_000}) {
            assertEquals(Map.of("conv", 278528L, "linear-attn", 3182400L, "swa", 2621440L), StateSize.byKind(b360, ctx));
            assertEquals(6082368L, StateSize.total(b360, ctx));
        }
        assertEquals(List.of("conv", "linear-attn", "swa"), List.copyOf(StateSize.byKind(b360, 1).keySet()),
                "kinds in first-seen order");
        assertEquals(16384L, StateSize.layerBytes(b360.layer(0), 7));
        assertEquals(636480L, StateSize.layerBytes(b360.layer(1), 7));
        assertEquals(524288L, StateSize.layerBytes(b360.layer(2), 7));

        ModelConfig b1 = Presets.get("based-1b");
        assertEquals(Map.of("conv", 630784L, "linear-attn", 7745472L, "swa", 6422528L), StateSize.byKind(b1, 2048));
        assertEquals(14798784L, StateSize.total(b1, 2048));

        ModelConfig a360 = Presets.get("attn-360m");
        assertEquals(Map.of("attn", 402653184L), StateSize.byKind(a360, 2048));
        // states in bf16 (2 bytes a value) halve attention's key/value cache and BaseConv's history, not linear
        // attention's state
        assertEquals(Map.of("attn", 201326592L), StateSize.byKind(a360, 2048, 2));
        assertEquals(Map.of("conv", 315392L, "linear-attn", 7745472L, "swa", 3211264L), StateSize.byKind(b1, 2048, 2));
        assertEquals(196608L, StateSize.total(a360, 1));
        ModelConfig a1 = Presets.get("attn-1b");
        assertEquals(516096L * 1000, StateSize.total(a1, 1000));

        assertEquals("5.8 MiB", StateSize.human(6082368L));
        assertEquals("1000 B", StateSize.human(1000));
    }

    /** The sizes reported match what the CPU backend allocates per sequence, for every layer kind. */
    @Test
    void stateSizeMatchesCpuBackendStates() {
        List<MixerConfig> mixers = new java.util.ArrayList<>();
        for (String name : Presets.NAMES) {
            mixers.addAll(Presets.get(name).layers().stream().distinct().toList());
        }
        mixers.add(new MixerConfig.BaseConv(5, 3, false));
        mixers.add(new MixerConfig.LinearAttention(15, 3, 1, 5, 1e-12));
        mixers.add(new MixerConfig.LinearAttention(64, 1, 32, 64, 1e-6));
        mixers.add(new MixerConfig.Attention(24, 4, 6, 1, 6, 10000, false, 0.4, false, false));
        mixers.add(new MixerConfig.Attention(24, 4, 6, 3, 0, 10000, true, 0.4, true, true));
        mixers.add(new MixerConfig.Attention(24, 4, 6, Integer.MAX_VALUE, 2, 10000, false, 0.4, null, null));
        int maxLength = 100;
        try (Backend cpu = new CpuBackend()) {
            for (MixerConfig m : mixers) {
                Backend.MixerState state = cpu.allocateState(m, 2, maxLength);
                for (int ctx : new int[] {1, 37, maxLength}) {
                    assertEquals(StateSize.layerBytes(m, ctx), state.bytesPerSequence(ctx), m + " at " + ctx + " tokens");
                }
            }
        }
    }
}
