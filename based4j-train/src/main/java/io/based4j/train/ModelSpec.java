package io.based4j.train;

import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.json.IoErrors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.model.Presets;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A model shape written as a short list of layer kinds ({@code conv}, {@code linear}, {@code swa}, {@code attn}), or
 * a given {@code config.json}, turned into the complete {@code config.json} a checkpoint carries (BASED-SPEC section
 * 1), so that a trained model loads in {@code generate} and in the reference implementation like a released one.
 */
public final class ModelSpec {
    public static final List<String> KINDS = List.of("conv", "linear", "swa", "attn");

    private ModelSpec() {
    }

    /**
     * Reads a {@code model} section: either {@code config: FILE} (a config.json, relative to {@code base}) or the
     * short form {@code d_model, layers, heads, feature_dim, window_size, n_inner, vocab_size, tie_embeddings,
     * rotary}. The result is {@link #complete}: a given file gains the fields it lacks.
     */
    public static Map<String, Object> configMap(Settings model, Path base) {
        String file = model.string("config", null);
        if (file != null) {
            Path p = base == null ? Path.of(file) : base.resolve(file);
            Map<String, Object> map;
            try {
                map = Json.parseObject(Json.readFile(p, ConfigParser.MAX_FILE_BYTES), ConfigParser.MAX_FILE_BYTES);
            } catch (JsonException e) {
                throw new Settings.SettingsException(p + ": " + e.getMessage());
            } catch (IOException e) {
                throw new Settings.SettingsException("cannot read model config " + p + ": " + IoErrors.reason(e));
            }
            model.finish();
            return complete(p.toString(), map);
        }
        int d = model.integer("d_model", 256, 8, 65536);
        List<String> layers = model.strings("layers");
        if (layers == null || layers.isEmpty()) {
            throw new Settings.SettingsException("model.layers must list the layer kinds, e.g. [conv, linear, swa, conv]"
                    + " (kinds: " + String.join(", ", KINDS) + ")");
        }
        if (layers.size() > ConfigParser.MAX_LAYERS) {
            throw model.problem("model.layers lists " + layers.size() + " layers, more than the "
                    + ConfigParser.MAX_LAYERS + " a model may have");
        }
        int heads = model.integer("heads", 4, 1, d);
        int f = model.integer("feature_dim", 16, 1, 64);
        int linearHeads = model.integer("linear_heads", heads, 1, d);
        int window = model.integer("window_size", 128, 2, 1 << 20);
        long nInner = model.integer("n_inner", 2L * d, 0, 1L << 20);
        int vocab = model.integer("vocab_size", 50257, 2, 65536);
        boolean tie = model.bool("tie_embeddings", true);
        boolean rotary = model.bool("rotary", true);
        double eps = model.number("norm_eps", 1e-5, 1e-12, 1);
        model.finish();
        return configMap(d, layers, heads, linearHeads, f, window, nInner, vocab, tie, rotary, eps);
    }

    /** The complete config.json for a list of layer kinds. */
    public static Map<String, Object> configMap(int d, List<String> layers, int heads, int linearHeads, int featureDim,
                                                int windowSize, long nInner, int vocab, boolean tie, boolean rotary,
                                                double eps) {
        Map<String, List<Long>> byKind = new LinkedHashMap<>();
        for (int i = 0; i < layers.size(); i++) {
            String k = layers.get(i);
            if (!KINDS.contains(k)) {
                throw new Settings.SettingsException("unknown layer kind '" + k + "' at model.layers[" + i + "] (kinds: "
                        + String.join(", ", KINDS) + ")");
            }
            byKind.computeIfAbsent(k, x -> new ArrayList<>()).add((long) i);
        }
        if (d % heads != 0 || d % linearHeads != 0) {
            throw new Settings.SettingsException("model.d_model " + d + " must be divisible by heads (" + heads
                    + ") and linear_heads (" + linearHeads + ")");
        }
        // The format has a default mixer and two alternates; attention is the default mixer left out.
        List<String> explicit = new ArrayList<>(byKind.keySet());
        explicit.remove("attn");
        int slots = byKind.containsKey("attn") ? 2 : 3;
        if (explicit.size() > slots) {
            throw new Settings.SettingsException("model.layers uses " + byKind.keySet() + ", but config.json names at"
                    + " most three mixers (mixer, alt_mixer, alt_mixer_2) and a layer is attention only when mixer is"
                    + " absent, so conv, linear, swa and attn cannot all appear in one model");
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n_embd", (long) d);
        m.put("n_layer", (long) layers.size());
        m.put("n_head", (long) heads);
        m.put("n_inner", nInner);
        m.put("vocab_size", (long) vocab);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("layer_norm_epsilon", eps);
        m.put("rotary_emb_fraction", rotary ? 1.0 : 0.0);
        m.put("tie_word_embeddings", tie);
        String[] slotNames = byKind.containsKey("attn") ? new String[] {"alt_mixer", "alt_mixer_2"}
                : new String[] {"mixer", "alt_mixer", "alt_mixer_2"};
        for (int s = 0; s < explicit.size(); s++) {
            String kind = explicit.get(s);
            Map<String, Object> mixer = switch (kind) {
                case "conv" -> Presets.convMixer();
                case "linear" -> Presets.linearMixer(featureDim, linearHeads);
                case "swa" -> Presets.slidingMixer(windowSize, heads);
                default -> throw new IllegalStateException(kind);
            };
            m.put(slotNames[s], mixer);
            if (!slotNames[s].equals("mixer")) {
                m.put(slotNames[s] + "_layers", byKind.get(kind));
            }
        }
        return complete("model settings", m);
    }

    /**
     * {@code map} with the complete field set of a released config.json, each field it lacks filled with the value
     * that describes the model based4j reads from it. Refused, before anything is trained, when the reference
     * implementation would read the result as another model, or not load its checkpoint with a strict state-dict
     * load (a field based4j does not read, such as MLP biases or position embeddings, set to build what based4j
     * does not have).
     */
    public static Map<String, Object> complete(String source, Map<String, Object> map) {
        Map<String, Object> full = ReleasedFields.complete(map, ConfigParser.fromMap(source, map));
        String problem = ReferenceConfig.difference(ConfigParser.fromMap(source, full), full);
        if (problem != null) {
            throw new Settings.SettingsException(source + ": a checkpoint of this model would not load in the reference"
                    + " implementation as based4j trains it: " + problem);
        }
        return full;
    }

    /** Parses a config map as inference would (the same checks and errors). */
    public static ModelConfig parse(String source, Map<String, Object> configMap) {
        return ConfigParser.fromMap(source, configMap);
    }
}
