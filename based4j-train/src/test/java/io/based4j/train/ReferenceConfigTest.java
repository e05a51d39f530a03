package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.checkpoint.Safetensors;
import io.based4j.config.ConfigParser;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.model.Initializer;
import io.based4j.model.ModelWeights;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.CpuTrainBackend;
import io.based4j.train.mqar.MqarSlice;
import io.based4j.train.mqar.MqarTrainer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The config.json a checkpoint carries, read the way the reference PyTorch implementation reads it
 * ({@link ReferenceConfig}): the parameters the reference then creates must be exactly the tensors of the
 * checkpoint's model.safetensors (a strict state-dict load), and its layers the model based4j trained. The reader is
 * itself checked against a checkpoint the reference wrote (models/golden-tiny).
 */
class ReferenceConfigTest {
    static final Path GOLDEN = Path.of("../models/golden-tiny");

    @TempDir
    Path tmp;

    private static Map<String, Object> json(Path file) throws IOException {
        return Json.parseObject(Json.readFile(file, ConfigParser.MAX_FILE_BYTES));
    }

    /** The tensors of a safetensors file by name, each as its shape in a list (comparable with equals). */
    private static Map<String, List<Long>> shapesOf(Path file) {
        try (Arena arena = Arena.ofShared()) {
            Map<String, List<Long>> out = new TreeMap<>();
            Safetensors.read(file, arena).forEach((k, t) -> out.put(k, asList(t.shape())));
            return out;
        }
    }

    private static Map<String, List<Long>> comparable(Map<String, long[]> shapes) {
        Map<String, List<Long>> out = new TreeMap<>();
        shapes.forEach((k, s) -> out.put(k, asList(s)));
        return out;
    }

    private static List<Long> asList(long[] shape) {
        return Arrays.stream(shape).boxed().toList();
    }

    @Test
    void theReaderFindsExactlyTheTensorsOfTheCheckpointTheReferenceWrote() throws IOException {
        Map<String, Object> config = json(GOLDEN.resolve("config.json"));
        ReferenceConfig.Reading r = ReferenceConfig.read(config);
        assertEquals(List.of(), r.problems());
        assertEquals(shapesOf(GOLDEN.resolve("model.safetensors")), comparable(r.tensors()));
        // and it reads the same layers as based4j's parser does
        assertNull(ReferenceConfig.difference(ConfigParser.fromMap("golden", config), config));
        assertEquals(List.of("conv", "linear-attn", "swa", "conv", "linear-attn", "swa"),
                r.layers().stream().map(m -> m.kind()).toList());
    }

    @Test
    void theReadersDefaultsAreThoseOfGpt2ConfigAndTheReference() {
        // a config that names only the mixer: GPT2Config's 768 wide, 12 layers of 12 heads, 50257 tokens unpadded,
        // 1024 learned positions, a gelu_new MLP 4 x 768 wide with biases, LayerNorms with biases, an untied head
        // absent (tie_word_embeddings defaults to true)
        Map<String, Object> config = new LinkedHashMap<>();
        ReferenceConfig.Reading r = ReferenceConfig.read(config);
        Map<String, List<Long>> t = comparable(r.tensors());
        assertEquals(List.of(50257L, 768L), t.get(ReferenceConfig.EMBEDDING));
        assertEquals(List.of(1024L, 768L), t.get("transformer.embeddings.position_embeddings.weight"));
        assertEquals(List.of(3072L, 768L), t.get("transformer.layers.11.mlp.fc1.weight"));
        assertEquals(List.of(3072L), t.get("transformer.layers.11.mlp.fc1.bias"));
        assertEquals(List.of(768L), t.get("transformer.layers.0.mlp.fc2.bias"));
        assertEquals(List.of(2304L), t.get("transformer.layers.0.mixer.Wqkv.bias"));
        assertEquals(List.of(768L), t.get("transformer.layers.0.mixer.out_proj.bias"));
        assertEquals(List.of(768L), t.get("transformer.layers.0.norm1.bias"));
        assertEquals(List.of(768L), t.get("transformer.ln_f.bias"));
        assertTrue(!t.containsKey("lm_head.weight") && !t.containsKey("transformer.layers.12.norm1.weight"));
        assertEquals(1e-5, r.normEps());
        assertEquals("gelu_new", r.activation());
        // a swiglu MLP without n_inner is 8/3 of the width, rounded up to a multiple of 256; the aliases win
        config.put("activation_function", "swiglu");
        config.put("n_embd", 100L);
        config.put("hidden_size", 96L);
        config.put("n_positions", 2048L);
        config.put("max_position_embeddings", 0L);
        t = comparable(ReferenceConfig.read(config).tensors());
        assertEquals(List.of(512L, 96L), t.get("transformer.layers.0.mlp.fc1.weight")); // 8 * 96 / 3 = 256
        assertTrue(!t.containsKey("transformer.embeddings.position_embeddings.weight"));
    }

    @Test
    void aReleasedConfigIsAlreadyComplete() throws IOException {
        Map<String, Object> golden = json(GOLDEN.resolve("config.json"));
        assertEquals(golden, ModelSpec.complete("golden", golden));
    }

    /**
     * The short form of golden-tiny's shape gives the config the reference wrote for it, but for three fields: no
     * bos/eos ids outside GPT-2's vocabulary, no special_initializer (based4j initializes with initializer_range,
     * which is all the reference does with either value) and the rotary fraction written as a float.
     */
    @Test
    void theShortFormOfGoldenTinysShapeGivesTheConfigTheReferenceWroteForIt() throws IOException {
        Map<String, Object> golden = json(GOLDEN.resolve("config.json"));
        Map<String, Object> ours = ModelSpec.configMap(64, List.of("conv", "linear", "swa", "conv", "linear", "swa"),
                4, 4, 8, 16, 128, 1000, true, true, 1e-5);
        assertEquals(golden.keySet(), ours.keySet());
        Map<String, Object> expected = new LinkedHashMap<>(golden);
        expected.put("bos_token_id", null);
        expected.put("eos_token_id", null);
        expected.put("special_initializer", false);
        expected.put("rotary_emb_fraction", 1.0);
        assertEquals(expected, ours);
    }

    static Stream<Arguments> trainedModels() {
        List<MqarSlice> slices = List.of(new MqarSlice(16, 2, 4));
        return Stream.of(
                Arguments.of("BASED mix", ModelSpec.configMap(16, List.of("conv", "linear", "swa", "conv"), 2, 4, 4,
                        8, 32, 61, true, true, 1e-5)),
                Arguments.of("attention only", ModelSpec.configMap(16, List.of("attn", "attn"), 4, 4, 4, 8, 32, 50257,
                        true, true, 1e-5)),
                Arguments.of("no MLP", ModelSpec.configMap(16, List.of("conv", "linear", "swa"), 2, 2, 4, 8, 0, 61,
                        true, true, 1e-5)),
                Arguments.of("untied head, attention and a window", ModelSpec.configMap(16, List.of("swa", "attn",
                        "conv"), 2, 2, 4, 8, 300, 61, false, true, 1e-6)),
                Arguments.of("MQAR BASED", new MqarTrainer.Run("based", 16, 4, 8, 1, 1e-3, 0.1, 1, 4, 0, slices,
                        slices, 1, 0, 0.99, 1).configMap()),
                Arguments.of("MQAR sliding window", new MqarTrainer.Run("sliding", 16, 4, 8, 2, 1e-3, 0.1, 1, 4, 0,
                        slices, slices, 1, 0, 0.99, 1).configMap()),
                Arguments.of("MQAR attention", new MqarTrainer.Run("attention", 16, 4, 8, 1, 1e-3, 0.1, 1, 4, 0,
                        slices, slices, 1, 0, 0.99, 1).configMap()));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("trainedModels")
    void aCheckpointLoadsStrictlyInTheReferenceAndInBased4j(String name, Map<String, Object> configMap)
            throws IOException {
        ModelConfig trained = ModelSpec.parse(name, configMap);
        Path dir = tmp.resolve("step-1");
        try (Arena arena = Arena.ofShared()) {
            TrainModel model = new TrainModel(trained, Initializer.stateDict(trained, 5, arena), new CpuTrainBackend(),
                    "initializer");
            Checkpoint.write(dir, model, new AdamW(model, AdamW.Settings.DEFAULTS), Map.of("step", 0L));
        }
        Map<String, Object> written = json(dir.resolve(Checkpoint.CONFIG));
        ReferenceConfig.Reading r = ReferenceConfig.read(written);
        assertEquals(List.of(), r.problems());
        // a strict load: the parameters the reference creates are exactly the file's tensors, with their shapes
        Map<String, List<Long>> file = shapesOf(dir.resolve(Checkpoint.MODEL));
        assertEquals(file, comparable(r.tensors()));
        // the reference's layers are those trained
        ModelConfig reread = ConfigParser.read(dir.resolve(Checkpoint.CONFIG));
        assertNull(ReferenceConfig.difference(trained, written));
        assertEquals(ModelWeights.shapes(trained).keySet(), ModelWeights.shapes(reread).keySet());
        // based4j loads what it wrote, the reference's empty MLPs of a model without MLPs included
        try (Arena arena = Arena.ofShared()) {
            Map<String, Tensor> tensors = Safetensors.read(dir.resolve(Checkpoint.MODEL), arena);
            ModelWeights w = ModelWeights.bind(reread, tensors, dir.toString());
            assertEquals(trained.layers(), w.config().layers());
        }
        // every field of a released config is there, and each mixer dict has the arguments released ones have
        Map<String, Object> golden = json(GOLDEN.resolve("config.json"));
        for (String key : golden.keySet()) {
            if (!key.startsWith("mixer") && !key.startsWith("alt_mixer")) {
                assertTrue(written.containsKey(key), name + ": no " + key);
            }
        }
        for (String slot : List.of("mixer", "alt_mixer", "alt_mixer_2")) {
            if (written.get(slot) instanceof Map<?, ?> dict) {
                assertEquals(releasedArguments(golden, dict.get("_target_")), dict.keySet(), name + ": " + slot);
            }
        }
    }

    /** The argument names of golden-tiny's mixer dict of the same class. */
    private static Object releasedArguments(Map<String, Object> golden, Object target) {
        for (String slot : List.of("mixer", "alt_mixer", "alt_mixer_2")) {
            Map<?, ?> dict = (Map<?, ?>) golden.get(slot);
            if (dict.get("_target_").equals(target)) {
                return dict.keySet();
            }
        }
        throw new AssertionError("golden-tiny has no mixer " + target);
    }

    /**
     * A run started by an earlier version, whose checkpoint's config.json holds only the fields that version wrote,
     * resumes (its configuration read as completed, as the settings are) and goes on writing complete ones.
     */
    @Test
    void aCheckpointOfAnEarlierVersionWithFewerFieldsResumes() throws IOException {
        Path run = tmp.resolve("run");
        Map<String, Object> settings = TrainFixtures.settings(TrainFixtures.smallModel(),
                TrainFixtures.randomData(tmp.resolve("data"), 3000), 8, 6, 2, 3, 1e-2, run);
        TrainFixtures.train(TrainFixtures.config(settings), null, 3);
        Path first = run.resolve("checkpoints").resolve(Checkpoint.name(3));
        Map<String, Object> complete = json(first.resolve(Checkpoint.CONFIG));
        List<String> earlierFields = List.of("n_embd", "n_layer", "n_head", "n_inner", "vocab_size",
                "pad_vocab_size_multiple", "layer_norm_epsilon", "rms_norm", "activation_function",
                "rotary_emb_fraction", "tie_word_embeddings", "qkv_proj_bias", "out_proj_bias", "model_type",
                "mixer", "alt_mixer", "alt_mixer_layers", "alt_mixer_2", "alt_mixer_2_layers");
        Map<String, Object> earlier = new LinkedHashMap<>();
        for (String k : earlierFields) {
            earlier.put(k, complete.get(k));
        }
        earlier.put("alt_mixer_2", Map.of("_target_", "based.models.mixers.slide_attention.SlidingAttention",
                "window_size", 8L, "num_heads", 2L, "causal", true));
        Files.writeString(first.resolve(Checkpoint.CONFIG), Json.writePretty(earlier));

        Trainer.Result r = TrainFixtures.train(TrainFixtures.config(settings), run, Long.MAX_VALUE);
        assertEquals(3, r.firstStep());
        assertEquals(complete, json(run.resolve("checkpoints").resolve(Checkpoint.name(6)).resolve(Checkpoint.CONFIG)));
    }

    /** A hand-written config: n_embd 16, 2 layers of 2 heads, vocabulary 40, a BaseConv then sliding windows. */
    private static Map<String, Object> minimal() {
        Map<String, Object> conv = new LinkedHashMap<>(Map.of("_target_", ReleasedFields.CONV_TARGET));
        Map<String, Object> swa = new LinkedHashMap<>(Map.of("_target_",
                "based.models.mixers.slide_attention.SlidingAttention", "window_size", 8L));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n_embd", 16L);
        m.put("n_layer", 2L);
        m.put("n_head", 2L);
        m.put("vocab_size", 40L);
        m.put("mixer", conv);
        m.put("alt_mixer", swa);
        m.put("alt_mixer_layers", List.of(1L));
        return m;
    }

    @Test
    void aGivenConfigGainsTheFieldsItLacksAsBased4jReadsThem() {
        Map<String, Object> given = minimal();
        ModelConfig asGiven = ConfigParser.fromMap("given", given);
        Map<String, Object> full = ModelSpec.complete("given", given);
        assertEquals(minimal(), given, "the given map is left as it was");
        // based4j's readings of a missing n_inner (4 x n_embd, rounded), expand_proj (4), biases (none) and
        // positions (none) are written out, where the reference's defaults differ
        assertEquals(256L, full.get("n_inner"));
        assertEquals(0L, full.get("n_positions"));
        assertEquals(false, full.get("mlp_fc1_bias"));
        assertEquals(false, full.get("qkv_proj_bias"));
        assertEquals(true, full.get("rms_norm"));
        assertEquals(4L, ((Map<?, ?>) full.get("mixer")).get("expand_proj"));
        assertEquals(2048L, ((Map<?, ?>) full.get("mixer")).get("l_max"));
        ModelConfig completed = ConfigParser.fromMap("full", full);
        assertEquals(ModelWeights.shapes(asGiven).keySet(), ModelWeights.shapes(completed).keySet());
        assertEquals(((MixerConfig.Attention) asGiven.layer(1)).withBiases(false, false), completed.layer(1));
        assertNull(ReferenceConfig.difference(completed, full));
    }

    @Test
    @SuppressWarnings("unchecked")
    void aGivenConfigThatTheReferenceReadsAsAnotherModelIsRefusedNamingWhatDiffers() {
        Map<String, Object> biases = minimal();
        biases.put("mlp_fc1_bias", true);
        assertRefused(biases, "the reference would create transformer.layers.0.mlp.fc1.bias [512]");

        Map<String, Object> positions = minimal();
        positions.put("n_positions", 2048L);
        assertRefused(positions, "transformer.embeddings.position_embeddings.weight [2048, 16]");

        Map<String, Object> heads = minimal();
        ((Map<String, Object>) heads.get("alt_mixer")).put("num_heads", 4L);
        assertRefused(heads, "layer 1 would be Attention[dModel=16, numHeads=2");

        Map<String, Object> layerNorm = minimal();
        layerNorm.put("prenorm", false);
        assertRefused(layerNorm, "prenorm is false: the reference would build a post-norm block");
    }

    private static void assertRefused(Map<String, Object> config, String expected) {
        Settings.SettingsException e = assertThrows(Settings.SettingsException.class,
                () -> ModelSpec.complete("cfg.json", config));
        assertTrue(e.getMessage().startsWith("cfg.json: a checkpoint of this model would not load in the reference"),
                e.getMessage());
        assertTrue(e.getMessage().contains(expected), e.getMessage());
    }
}
