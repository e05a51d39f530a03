package io.based4j.model;

import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Configurations of the released model shapes, for benchmarks with random weights. */
public final class Presets {
    public static final List<String> NAMES = List.of("based-360m", "based-1b", "attn-360m", "attn-1b");

    private Presets() {
    }

    public static ModelConfig get(String name) {
        return ConfigParser.fromMap("preset " + name, configMap(name));
    }

    /** The config.json content (as the reference writes it) of a preset. */
    public static Map<String, Object> configMap(String name) {
        return switch (name) {
            case "based-360m" -> based(1024, 27, List.of(1, 6, 11, 16, 21), List.of(2, 7, 12, 17, 22));
            case "based-1b" -> based(1792, 36, List.of(1, 6, 11, 16, 21, 27, 33), List.of(2, 7, 12, 17, 22, 28, 34));
            case "attn-360m" -> attention(1024, 24);
            case "attn-1b" -> attention(1792, 36);
            default -> throw new IllegalArgumentException("unknown preset '" + name + "' (known: " + String.join(", ", NAMES) + ")");
        };
    }

    private static Map<String, Object> common(int d, int layers) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model_type", "gpt2");
        m.put("n_embd", (long) d);
        m.put("n_layer", (long) layers);
        m.put("n_head", 16L);
        m.put("n_inner", (long) (2 * d));
        m.put("vocab_size", 50257L);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("layer_norm_epsilon", 1e-5);
        m.put("rms_norm", true);
        m.put("activation_function", "swiglu");
        m.put("rotary_emb_fraction", 1.0);
        m.put("tie_word_embeddings", true);
        m.put("qkv_proj_bias", false);
        m.put("out_proj_bias", false);
        m.put("eos_token_id", 50256L);
        m.put("bos_token_id", 50256L);
        return m;
    }

    private static Map<String, Object> based(int d, int layers, List<Integer> linear, List<Integer> sliding) {
        Map<String, Object> m = common(d, layers);
        m.put("mixer", convMixer());
        m.put("alt_mixer", linearMixer(16, 16));
        m.put("alt_mixer_layers", linear.stream().map(Integer::longValue).toList());
        m.put("alt_mixer_2", slidingMixer(128, 16));
        m.put("alt_mixer_2_layers", sliding.stream().map(Integer::longValue).toList());
        return m;
    }

    /** A BaseConv mixer dict as the reference writes it (expand 4, kernel 3, biases). */
    public static Map<String, Object> convMixer() {
        Map<String, Object> conv = new LinkedHashMap<>();
        conv.put("_target_", "based.models.mixers.convolution.BaseConv");
        conv.put("l_max", 2048L);
        conv.put("expand_proj", 4L);
        conv.put("kernel_sizes", 3L);
        conv.put("use_bias", true);
        return conv;
    }

    /** A Taylor linear-attention mixer dict with feature dim {@code f} and {@code heads} heads. */
    public static Map<String, Object> linearMixer(int f, int heads) {
        Map<String, Object> fm = new LinkedHashMap<>();
        fm.put("_target_", "based.models.mixers.linear_attention.TaylorExp");
        fm.put("input_dim", (long) f);
        Map<String, Object> lin = new LinkedHashMap<>();
        lin.put("_target_", "based.models.mixers.linear_attention.LinearAttention");
        lin.put("l_max", 2048L);
        lin.put("feature_dim", (long) f);
        lin.put("feature_map", fm);
        lin.put("num_heads", (long) heads);
        lin.put("parallel_implementation", "quadratic");
        return lin;
    }

    /** A sliding-window attention mixer dict ({@code windowSize} counts both sides: windowSize / 2 keys back). */
    public static Map<String, Object> slidingMixer(int windowSize, int heads) {
        Map<String, Object> swa = new LinkedHashMap<>();
        swa.put("_target_", "based.models.mixers.slide_attention.SlidingAttention");
        swa.put("window_size", (long) windowSize);
        swa.put("num_heads", (long) heads);
        swa.put("causal", true);
        return swa;
    }

    private static Map<String, Object> attention(int d, int layers) {
        return common(d, layers);
    }
}
