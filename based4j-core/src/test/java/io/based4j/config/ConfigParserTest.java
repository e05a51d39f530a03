package io.based4j.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.model.Presets;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading config.json (BASED-SPEC section 1) into layers, and errors that name the field (or the file). */
class ConfigParserTest {
    @TempDir
    Path dir;

    static Path goldenConfig() {
        return GoldenModel.dir().resolve("config.json");
    }

    // ------------------------------------------------------------------ valid configurations

    @Test
    void goldenConfigParsesToTheRightLayers() {
        ModelConfig c = ConfigParser.read(goldenConfig());
        assertEquals(64, c.dModel());
        assertEquals(6, c.nLayer());
        assertEquals(4, c.nHead());
        assertEquals(1000, c.vocabSize());
        assertEquals(1000, c.paddedVocabSize(), "1000 is already a multiple of 8");
        assertEquals(256, c.mlpHidden(), "n_inner 128 rounds up to 256");
        assertEquals(1e-5, c.normEps());
        assertTrue(c.tieWordEmbeddings());
        assertEquals(List.of("conv", "linear-attn", "swa", "conv", "linear-attn", "swa"),
                c.layers().stream().map(MixerConfig::kind).toList());

        MixerConfig.BaseConv conv = assertInstanceOf(MixerConfig.BaseConv.class, c.layer(0));
        assertEquals(new MixerConfig.BaseConv(64, 3, true), conv);
        assertEquals(128, conv.innerWidth());

        MixerConfig.LinearAttention lin = assertInstanceOf(MixerConfig.LinearAttention.class, c.layer(1));
        assertEquals(8, lin.featureDim());
        assertEquals(4, lin.numHeads());
        assertEquals(16, lin.headDim());
        assertEquals(1e-12, lin.eps(), "quadratic implementation: eps 1e-12");
        assertEquals(1 + 8 + 36, lin.expandedDim());

        MixerConfig.Attention swa = assertInstanceOf(MixerConfig.Attention.class, c.layer(2));
        assertTrue(swa.sliding());
        assertEquals(8, swa.window(), "window_size 16 -> 8 keys back");
        assertEquals(4, swa.numHeads());
        assertEquals(16, swa.headDim());
        assertEquals(16, swa.rotaryDim());
        assertEquals(10000.0, swa.rotaryBase());
        assertFalse(swa.rotaryInterleaved());
        assertEquals(0.25, swa.softmaxScale());
        assertEquals(Boolean.FALSE, swa.qkvBias());
        assertEquals(Boolean.FALSE, swa.outBias());
        assertEquals(c.layer(2), c.layer(5));
        assertEquals(c.layer(1), c.layer(4));
    }

    @Test
    void presetsParse() {
        for (String name : Presets.NAMES) {
            ModelConfig c = Presets.get(name);
            assertEquals(50257, c.vocabSize(), name);
            assertEquals(50264, c.paddedVocabSize(), name);
            assertEquals(2 * c.dModel(), c.mlpHidden(), name + ": n_inner 2d is a multiple of 256");
            assertEquals(c.nLayer(), c.layers().size());
        }
        ModelConfig b = Presets.get("based-360m");
        assertEquals(1024, b.dModel());
        assertEquals(27, b.nLayer());
        for (int i = 0; i < 27; i++) {
            String want = List.of(1, 6, 11, 16, 21).contains(i) ? "linear-attn"
                    : List.of(2, 7, 12, 17, 22).contains(i) ? "swa" : "conv";
            assertEquals(want, b.layer(i).kind(), "based-360m layer " + i);
        }
        assertEquals(new MixerConfig.LinearAttention(1024, 16, 16, 64, 1e-12), b.layer(1));
        MixerConfig.Attention swa = (MixerConfig.Attention) b.layer(2);
        assertEquals(64, swa.window());
        assertEquals(64, swa.rotaryDim(), "rotary_emb_fraction 1.0 of head dim 64");
        assertEquals(0.125, swa.softmaxScale(), 1e-15);

        ModelConfig b1 = Presets.get("based-1b");
        assertEquals(1792, b1.dModel());
        assertEquals(List.of(1, 6, 11, 16, 21, 27, 33),
                java.util.stream.IntStream.range(0, 36).filter(i -> b1.layer(i).kind().equals("linear-attn")).boxed().toList());
        assertEquals(List.of(2, 7, 12, 17, 22, 28, 34),
                java.util.stream.IntStream.range(0, 36).filter(i -> b1.layer(i).kind().equals("swa")).boxed().toList());
        assertEquals(112, ((MixerConfig.LinearAttention) b1.layer(1)).headDim());

        ModelConfig a = Presets.get("attn-360m");
        assertTrue(a.layers().stream().allMatch(m -> m instanceof MixerConfig.Attention at && !at.sliding()));
        MixerConfig.Attention at = (MixerConfig.Attention) a.layer(0);
        assertEquals(Boolean.FALSE, at.qkvBias());
        assertEquals(64, at.rotaryDim());
    }

    // ------------------------------------------------------------------ errors

    private static Map<String, Object> minimal() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n_embd", 64L);
        m.put("n_layer", 6L);
        m.put("n_head", 4L);
        m.put("vocab_size", 1000L);
        return m;
    }

    private static Map<String, Object> linearMixer(Object featureMapTarget) {
        Map<String, Object> fm = new LinkedHashMap<>();
        fm.put("_target_", featureMapTarget);
        Map<String, Object> l = new LinkedHashMap<>();
        l.put("_target_", "based.models.mixers.linear_attention.LinearAttention");
        l.put("feature_dim", 8L);
        l.put("feature_map", fm);
        return l;
    }

    private static ConfigException refused(Map<String, Object> m, String... parts) {
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.fromMap("cfg.json", m));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "message \"" + e.getMessage() + "\" should mention " + p);
        }
        return e;
    }

    @Test
    void minimalConfigIsFullAttentionWithDefaults() {
        ModelConfig c = ConfigParser.fromMap("cfg.json", minimal());
        assertEquals(256, c.mlpHidden(), "absent n_inner means 4d");
        assertEquals(1000, c.paddedVocabSize(), "no padding multiple");
        assertTrue(c.tieWordEmbeddings());
        MixerConfig.Attention a = (MixerConfig.Attention) c.layer(0);
        assertFalse(a.sliding());
        assertEquals(0, a.rotaryDim(), "no rotary_emb_fraction: no rotary");
        assertNull(a.qkvBias(), "bias flags left to the weights");
        assertNull(a.outBias());
        assertEquals(0.25, a.softmaxScale());
    }

    @Test
    void unknownTargetIsNamed() {
        Map<String, Object> m = minimal();
        m.put("alt_mixer", Map.of("_target_", "based.models.mixers.mamba.Mamba"));
        m.put("alt_mixer_layers", List.of(3L));
        refused(m, "based.models.mixers.mamba.Mamba", "alt_mixer");
    }

    @Test
    void missingOrMistypedFieldsAreNamed() {
        Map<String, Object> m = minimal();
        m.remove("n_embd");
        refused(m, "n_embd", "missing");

        m = minimal();
        m.put("n_embd", "64");
        refused(m, "n_embd", "integer");

        m = minimal();
        m.put("n_embd", 64.5);
        refused(m, "n_embd");

        m = minimal();
        m.put("n_layer", -1L);
        refused(m, "n_layer");

        m = minimal();
        m.put("tie_word_embeddings", "yes");
        refused(m, "tie_word_embeddings");

        m = minimal();
        m.put("mixer", Map.of("_target_", "based.models.mixers.slide_attention.SlidingAttention"));
        refused(m, "mixer.window_size", "missing");

        m = minimal();
        m.put("mixer", Map.of("feature_dim", 8L));
        refused(m, "mixer._target_");
    }

    @Test
    void layerIndexOutOfRangeIsNamed() {
        Map<String, Object> m = minimal();
        m.put("mixer", Map.of("_target_", "based.models.mixers.convolution.BaseConv"));
        m.put("alt_mixer", Map.of("_target_", "based.models.mixers.slide_attention.SlidingAttention", "window_size", 8L));
        m.put("alt_mixer_layers", List.of(1L, 6L));
        refused(m, "alt_mixer_layers", "6");

        m.put("alt_mixer_layers", List.of(-1L));
        refused(m, "alt_mixer_layers");

        m.put("alt_mixer_layers", 3L);
        refused(m, "alt_mixer_layers", "list");
    }

    @Test
    void headsMustDivideWidth() {
        Map<String, Object> m = minimal();
        m.put("n_head", 5L);
        refused(m, "n_head", "5", "64");

        m = minimal();
        Map<String, Object> lin = linearMixer("based.models.mixers.linear_attention.TaylorExp");
        lin.put("num_heads", 6L);
        m.put("mixer", lin);
        refused(m, "num_heads", "6");
    }

    @Test
    @SuppressWarnings("unchecked")
    void featureMapMustBeTaylorExp() {
        Map<String, Object> m = minimal();
        m.put("mixer", linearMixer("based.models.mixers.linear_attention.TaylorExp"));
        assertEquals(8, ((MixerConfig.LinearAttention) ConfigParser.fromMap("cfg.json", m).layer(0)).featureDim());

        m.put("mixer", linearMixer("based.models.mixers.linear_attention.PosELU"));
        refused(m, "feature_map", "PosELU", "TaylorExp");

        Map<String, Object> lin = linearMixer("based.models.mixers.linear_attention.TaylorExp");
        ((Map<String, Object>) lin.get("feature_map")).put("input_dim", 16L);
        m.put("mixer", lin);
        refused(m, "input_dim");
    }

    @Test
    void linearAttentionEpsFollowsTheImplementation() {
        Map<String, Object> m = minimal();
        Map<String, Object> lin = linearMixer("based.models.mixers.linear_attention.TaylorExp");
        lin.put("parallel_implementation", "fla_parallel");
        m.put("mixer", lin);
        assertEquals(1e-6, ((MixerConfig.LinearAttention) ConfigParser.fromMap("cfg.json", m).layer(0)).eps());
    }

    @Test
    void slidingWindowAndRotaryFromTheConfig() {
        Map<String, Object> m = minimal();
        Map<String, Object> swa = new LinkedHashMap<>();
        swa.put("_target_", "based.models.mixers.slide_attention.SlidingAttention");
        swa.put("window_size", 7L);
        m.put("mixer", swa);
        m.put("rotary_emb_fraction", 0.5);
        m.put("rotary_emb_base", 500.0);
        m.put("rotary_emb_interleaved", true);
        MixerConfig.Attention a = (MixerConfig.Attention) ConfigParser.fromMap("cfg.json", m).layer(0);
        assertEquals(3, a.window(), "window_size 7 -> 3 keys back (integer half)");
        assertEquals(8, a.rotaryDim(), "half of head dim 16");
        assertEquals(500.0, a.rotaryBase());
        assertTrue(a.rotaryInterleaved());

        m.put("rotary_emb_fraction", 0.3125); // 5 of 16 dims: odd, cannot be rotated in pairs
        refused(m, "rotary");
    }

    @Test
    void mlpWidthRoundsUpTo256() {
        long[][] cases = {{1, 256}, {128, 256}, {255, 256}, {256, 256}, {257, 512}, {2048, 2048}, {3584, 3584},
                {3585, 3840}, {0, 0}};
        for (long[] c : cases) {
            Map<String, Object> m = minimal();
            m.put("n_inner", c[0]);
            assertEquals(c[1], ConfigParser.fromMap("cfg.json", m).mlpHidden(), "n_inner " + c[0]);
        }
        Map<String, Object> m = minimal();
        m.put("n_inner", -5L);
        refused(m, "n_inner");
    }

    @Test
    void vocabularyPadding() {
        Map<String, Object> m = minimal();
        m.put("vocab_size", 50257L);
        m.put("pad_vocab_size_multiple", 8L);
        assertEquals(50264, ConfigParser.fromMap("cfg.json", m).paddedVocabSize());
        m.put("vocab_size", 101L);
        assertEquals(104, ConfigParser.fromMap("cfg.json", m).paddedVocabSize());
    }

    @Test
    void configFileThatIsNotJsonNamesTheFile() throws IOException {
        Path file = dir.resolve("config.json");
        Files.writeString(file, "{\"n_embd\": 64, oops");
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.read(file));
        assertTrue(e.getMessage().contains(file.toString()), e.getMessage());

        Files.writeString(file, "[1, 2, 3]");
        e = assertThrows(ConfigException.class, () -> ConfigParser.read(file));
        assertTrue(e.getMessage().contains(file.toString()), e.getMessage());

        Path missing = dir.resolve("nowhere/config.json");
        e = assertThrows(ConfigException.class, () -> ConfigParser.read(missing));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("not found"), e.getMessage());
    }

    @Test
    void fieldErrorsFromAFileNameTheFile() throws IOException {
        Path file = dir.resolve("config.json");
        Files.writeString(file, "{\"n_embd\": 64, \"n_layer\": 2, \"n_head\": 3, \"vocab_size\": 10}");
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.read(file));
        assertTrue(e.getMessage().contains(file.toString()) && e.getMessage().contains("n_head"), e.getMessage());
    }
}
