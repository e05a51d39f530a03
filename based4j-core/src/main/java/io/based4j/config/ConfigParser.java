package io.based4j.config;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** Reads a checkpoint's {@code config.json} (a GPT2Config dump with mixer dicts) into a {@link ModelConfig}. */
public final class ConfigParser {
    static final String CONV = "convolution.BaseConv";
    static final String LINEAR = "linear_attention.LinearAttention";
    static final String SLIDING = "slide_attention.SlidingAttention";
    static final String TAYLOR = "linear_attention.TaylorExp";

    private final String source;
    private final Map<String, Object> root;

    private ConfigParser(String source, Map<String, Object> root) {
        this.source = source;
        this.root = root;
    }

    /** Parses {@code file}; errors name the file and the field. */
    public static ModelConfig read(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new ConfigException(file + ": not found");
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot read (" + e.getMessage() + ")");
        }
        return parse(file.toString(), text);
    }

    public static ModelConfig parse(String source, String json) {
        Map<String, Object> root;
        try {
            root = Json.parseObject(json);
        } catch (JsonException e) {
            throw new ConfigException(source + ": " + e.getMessage());
        }
        return fromMap(source, root);
    }

    public static ModelConfig fromMap(String source, Map<String, Object> root) {
        return new ConfigParser(source, root).build();
    }

    private ConfigException error(String field, String what) {
        return new ConfigException(source + ": field '" + field + "' " + what);
    }

    private ModelConfig build() {
        int d = positiveInt(root, "n_embd", null);
        int nLayer = positiveInt(root, "n_layer", null);
        int nHead = positiveInt(root, "n_head", null);
        if (d % nHead != 0) {
            throw error("n_head", "(" + nHead + ") does not divide n_embd (" + d + ")");
        }
        int vocab = positiveInt(root, "vocab_size", null);
        int padMultiple = root.get("pad_vocab_size_multiple") == null ? 1 : positiveInt(root, "pad_vocab_size_multiple", null);
        int padded = (vocab + padMultiple - 1) / padMultiple * padMultiple;
        int mlpHidden;
        Object inner = root.get("n_inner");
        if (inner == null) {
            mlpHidden = roundUp(4 * d, 256);
        } else {
            int n = nonNegativeInt(root, "n_inner", null);
            mlpHidden = n == 0 ? 0 : roundUp(n, 256);
        }
        double eps = root.get("layer_norm_epsilon") == null ? 1e-5 : positiveDouble(root, "layer_norm_epsilon", null);
        boolean tie = root.get("tie_word_embeddings") == null || bool(root, "tie_word_embeddings", null);
        if (root.get("rms_norm") instanceof Boolean b && !b) {
            throw error("rms_norm", "is false: only RMSNorm models are supported");
        }
        Object act = root.get("activation_function");
        if (act != null && !"swiglu".equals(act) && mlpHidden > 0) {
            throw error("activation_function", "is \"" + act + "\": only the swiglu MLP is supported");
        }

        Set<Integer> alt = layerSet("alt_mixer_layers", nLayer);
        Set<Integer> alt2 = layerSet("alt_mixer_2_layers", nLayer);
        List<MixerConfig> layers = new ArrayList<>(nLayer);
        for (int i = 0; i < nLayer; i++) {
            String key = alt2.contains(i) ? "alt_mixer_2" : alt.contains(i) ? "alt_mixer" : "mixer";
            layers.add(mixer(key, d, nHead));
        }
        return new ModelConfig(d, nLayer, nHead, vocab, padded, mlpHidden, eps, tie, layers, root);
    }

    private static int roundUp(int n, int multiple) {
        return (n + multiple - 1) / multiple * multiple;
    }

    private Set<Integer> layerSet(String field, int nLayer) {
        Object v = root.get(field);
        Set<Integer> out = new HashSet<>();
        if (v == null) {
            return out;
        }
        if (!(v instanceof List<?> list)) {
            throw error(field, "must be a list of layer indices, found " + Json.typeName(v));
        }
        for (Object o : list) {
            if (!(o instanceof Long l) || l < 0 || l >= nLayer) {
                throw error(field, "holds " + o + ", which is not a layer index in [0, " + nLayer + ")");
            }
            out.add(l.intValue());
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private MixerConfig mixer(String key, int d, int nHead) {
        Object v = root.get(key);
        if (v == null) {
            return attention(key, Map.of(), d, nHead, Integer.MAX_VALUE);
        }
        if (!(v instanceof Map)) {
            throw error(key, "must be an object with a _target_, found " + Json.typeName(v));
        }
        Map<String, Object> m = (Map<String, Object>) v;
        Object target = m.get("_target_");
        if (!(target instanceof String t)) {
            throw error(key + "._target_", "is missing or not a string");
        }
        if (t.endsWith(CONV)) {
            int expand = m.get("expand_proj") == null ? 4 : positiveInt(m, "expand_proj", key);
            if (expand != 4) {
                throw error(key + ".expand_proj", "is " + expand + ": only 4 is supported");
            }
            boolean bias = m.get("use_bias") == null || bool(m, "use_bias", key);
            return new MixerConfig.BaseConv(d, 3, bias);
        }
        if (t.endsWith(LINEAR)) {
            int f = positiveInt(m, "feature_dim", key);
            int heads = m.get("num_heads") == null ? nHead : positiveInt(m, "num_heads", key);
            if (d % heads != 0) {
                throw error(key + ".num_heads", "(" + heads + ") does not divide n_embd (" + d + ")");
            }
            Object fm = m.get("feature_map");
            if (fm instanceof Map<?, ?> fmap) {
                Object ft = fmap.get("_target_");
                if (!(ft instanceof String fs) || !fs.endsWith(TAYLOR)) {
                    throw error(key + ".feature_map._target_", "is " + ft + ": only TaylorExp is supported");
                }
                Object in = fmap.get("input_dim");
                if (in != null && !(in instanceof Long l && l == f)) {
                    throw error(key + ".feature_map.input_dim", "is " + in + " but feature_dim is " + f);
                }
            } else if (fm != null) {
                throw error(key + ".feature_map", "must be an object, found " + Json.typeName(fm));
            }
            double eps;
            if (m.get("eps") != null) {
                eps = positiveDouble(m, "eps", key);
            } else {
                Object impl = m.get("parallel_implementation");
                eps = impl instanceof String s && s.startsWith("fla_") ? 1e-6 : 1e-12;
            }
            return new MixerConfig.LinearAttention(d, heads, f, d / heads, eps);
        }
        if (t.endsWith(SLIDING)) {
            int w = positiveInt(m, "window_size", key);
            return attention(key, m, d, nHead, w / 2);
        }
        throw error(key + "._target_", "names unknown mixer '" + t + "' (known: " + CONV + ", " + LINEAR + ", "
                + SLIDING + ", or no mixer dict for attention)");
    }

    private MixerConfig.Attention attention(String key, Map<String, Object> m, int d, int nHead, int window) {
        int heads = m.get("num_heads") == null ? nHead : positiveInt(m, "num_heads", key);
        if (d % heads != 0) {
            throw error(key + ".num_heads", "(" + heads + ") does not divide n_embd (" + d + ")");
        }
        if (m.get("num_heads_kv") != null && !m.get("num_heads_kv").equals((long) heads)) {
            throw error(key + ".num_heads_kv", "is " + m.get("num_heads_kv") + ": grouped-query attention is not supported");
        }
        int dh = d / heads;
        int rotaryDim;
        if (m.get("rotary_emb_dim") != null) {
            rotaryDim = nonNegativeInt(m, "rotary_emb_dim", key);
        } else {
            double frac = root.get("rotary_emb_fraction") == null ? 0.0 : nonNegativeDouble(root, "rotary_emb_fraction", null);
            rotaryDim = (int) (frac * dh);
        }
        double base;
        if (m.get("rotary_emb_base") != null) {
            base = positiveDouble(m, "rotary_emb_base", key);
        } else if (root.get("rotary_emb_base") != null) {
            base = positiveDouble(root, "rotary_emb_base", null);
        } else {
            base = 10000.0;
        }
        boolean interleaved = m.get("rotary_emb_interleaved") != null ? bool(m, "rotary_emb_interleaved", key)
                : root.get("rotary_emb_interleaved") != null && bool(root, "rotary_emb_interleaved", null);
        double scale = m.get("softmax_scale") != null ? positiveDouble(m, "softmax_scale", key) : 1.0 / Math.sqrt(dh);
        Boolean qkvBias = optionalBool(m, root, "qkv_proj_bias", key);
        Boolean outBias = optionalBool(m, root, "out_proj_bias", key);
        if (m.get("causal") instanceof Boolean c && !c) {
            throw error(key + ".causal", "is false: a language model's attention must be causal");
        }
        try {
            return new MixerConfig.Attention(d, heads, dh, window, rotaryDim, base, interleaved, scale, qkvBias, outBias);
        } catch (ConfigException e) {
            throw new ConfigException(source + ": " + key + ": " + e.getMessage());
        }
    }

    private Boolean optionalBool(Map<String, Object> m, Map<String, Object> fallback, String field, String key) {
        if (m.get(field) != null) {
            return bool(m, field, key);
        }
        if (fallback.get(field) != null) {
            return bool(fallback, field, null);
        }
        return null;
    }

    private String name(String key, String field) {
        return key == null ? field : key + "." + field;
    }

    private long integer(Map<String, Object> m, String field, String key) {
        Object v = m.get(field);
        if (v == null) {
            throw error(name(key, field), "is missing");
        }
        if (v instanceof Long l) {
            return l;
        }
        if (v instanceof Double dv && dv == Math.rint(dv) && Math.abs(dv) < 1e15) {
            return (long) (double) dv;
        }
        throw error(name(key, field), "must be an integer, found " + Json.typeName(v) + " " + v);
    }

    private int positiveInt(Map<String, Object> m, String field, String key) {
        long v = integer(m, field, key);
        if (v <= 0 || v > Integer.MAX_VALUE) {
            throw error(name(key, field), "must be a positive integer, found " + v);
        }
        return (int) v;
    }

    private int nonNegativeInt(Map<String, Object> m, String field, String key) {
        long v = integer(m, field, key);
        if (v < 0 || v > Integer.MAX_VALUE) {
            throw error(name(key, field), "must be a non-negative integer, found " + v);
        }
        return (int) v;
    }

    private double number(Map<String, Object> m, String field, String key) {
        Object v = m.get(field);
        if (v == null) {
            throw error(name(key, field), "is missing");
        }
        if (!(v instanceof Number n)) {
            throw error(name(key, field), "must be a number, found " + Json.typeName(v));
        }
        return n.doubleValue();
    }

    private double positiveDouble(Map<String, Object> m, String field, String key) {
        double v = number(m, field, key);
        if (!(v > 0) || Double.isInfinite(v)) {
            throw error(name(key, field), "must be a positive number, found " + v);
        }
        return v;
    }

    private double nonNegativeDouble(Map<String, Object> m, String field, String key) {
        double v = number(m, field, key);
        if (!(v >= 0) || Double.isInfinite(v)) {
            throw error(name(key, field), "must be a non-negative number, found " + v);
        }
        return v;
    }

    private boolean bool(Map<String, Object> m, String field, String key) {
        Object v = m.get(field);
        if (!(v instanceof Boolean b)) {
            throw error(name(key, field), "must be true or false, found " + Json.typeName(v));
        }
        return b;
    }
}
