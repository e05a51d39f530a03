package io.based4j.config;

import io.based4j.json.IoErrors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import java.io.IOException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Reads a checkpoint's {@code config.json} (a GPT2Config dump with mixer dicts) into a {@link ModelConfig}.
 *
 * <p>Every size is computed in 64 bits and checked before anything is built from it: a field whose value cannot
 * be represented, or would make a weight tensor larger than {@link #MAX_TENSOR_ELEMENTS}, is refused with its name
 * and value, as are layer counts and windows beyond the generous bounds below. So a hostile or mistyped
 * configuration fails here, at once, rather than while the model is being allocated.
 */
public final class ConfigParser {
    static final String CONV = "convolution.BaseConv";
    static final String LINEAR = "linear_attention.LinearAttention";
    static final String SLIDING = "slide_attention.SlidingAttention";
    static final String TAYLOR = "linear_attention.TaylorExp";

    /** Largest config.json read (1 MiB): released ones are 1 to 3 KB, so this is several hundred times that. */
    public static final long MAX_FILE_BYTES = 1L << 20;

    /**
     * Most layers accepted. The deepest published language models have fewer than 200 layers (GPT-3 96, the
     * largest BASED model 36); 4096 is twenty times that, and refuses a hostile n_layer (2^31 - 1) before a list of
     * that many mixers is built.
     */
    public static final int MAX_LAYERS = 4096;

    /**
     * Longest sliding window accepted (window_size, in tokens). Released BASED models use 64 to 128 and other
     * sliding-window models at most a few thousand; a window's key/value state is allocated for every sequence
     * before a token is read, so a window is bounded by something far beyond any real context: 2^20 tokens, the
     * longest training sequence the trainer accepts.
     */
    public static final int MAX_WINDOW_SIZE = 1 << 20;

    /**
     * Most elements of one weight tensor: the longest Java array. The trainer holds each tensor in one array,
     * the CPU backends copy small weights into arrays, and activation widths and weight rows are {@code int}s.
     */
    public static final long MAX_TENSOR_ELEMENTS = Integer.MAX_VALUE - 8;

    private final String source;
    private final Map<String, Object> root;

    private ConfigParser(String source, Map<String, Object> root) {
        this.source = source;
        this.root = root;
    }

    /** Parses {@code file}; errors name the file and the field. Files over {@link #MAX_FILE_BYTES} are refused unread. */
    public static ModelConfig read(Path file) {
        String text;
        try {
            text = Json.readFile(file, MAX_FILE_BYTES);
        } catch (NoSuchFileException e) {
            throw new ConfigException(file + ": not found");
        } catch (JsonException e) {
            throw new ConfigException(file + ": " + e.getMessage());
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot read (" + IoErrors.reason(e) + ")");
        }
        return parse(file.toString(), text);
    }

    public static ModelConfig parse(String source, String json) {
        Map<String, Object> root;
        try {
            root = Json.parseObject(json, MAX_FILE_BYTES);
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
        int d = intIn(root, "n_embd", null, 1, Integer.MAX_VALUE);
        checkTensor("n_embd", d, "every mixer's output projection", d, d);
        int nLayer = intIn(root, "n_layer", null, 1, MAX_LAYERS);
        int nHead = intIn(root, "n_head", null, 1, Integer.MAX_VALUE);
        if (d % nHead != 0) {
            throw error("n_head", "(" + nHead + ") does not divide n_embd (" + d + ")");
        }
        int vocab = intIn(root, "vocab_size", null, 1, Integer.MAX_VALUE);
        int padMultiple = root.get("pad_vocab_size_multiple") == null ? 1
                : intIn(root, "pad_vocab_size_multiple", null, 1, Integer.MAX_VALUE);
        long padded = roundUp(vocab, padMultiple);
        if (padded > Integer.MAX_VALUE) {
            throw error("vocab_size", "is " + vocab + ": padded to a multiple of pad_vocab_size_multiple ("
                    + padMultiple + ") it is " + padded + ", more than " + Integer.MAX_VALUE + " rows");
        }
        checkTensor("vocab_size", padded == vocab ? vocab : vocab + " (padded to " + padded + ")",
                "with n_embd " + d + " the embedding", padded, d);
        long mlpHidden;
        Object inner = root.get("n_inner");
        if (inner == null) {
            mlpHidden = roundUp(4L * d, 256);
            checkTensor("n_embd", d + " (n_inner defaults to 4 x n_embd, rounded up to " + mlpHidden + ")",
                    "each MLP's fc1", 2 * mlpHidden, d);
        } else {
            long n = intIn(root, "n_inner", null, 0, Integer.MAX_VALUE);
            mlpHidden = n == 0 ? 0 : roundUp(n, 256);
            checkTensor("n_inner", n + " (rounded up to " + mlpHidden + ")", "each MLP's fc1", 2 * mlpHidden, d);
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
        Map<String, MixerConfig> mixers = new HashMap<>();
        List<MixerConfig> layers = new ArrayList<>(nLayer);
        for (int i = 0; i < nLayer; i++) {
            String key = alt2.contains(i) ? "alt_mixer_2" : alt.contains(i) ? "alt_mixer" : "mixer";
            MixerConfig m = mixers.get(key);
            if (m == null) {
                m = mixer(key, d, nHead);
                mixers.put(key, m);
            }
            layers.add(m);
        }
        return new ModelConfig(d, nLayer, nHead, vocab, (int) padded, (int) mlpHidden, eps, tie, layers, root);
    }

    /** {@code n} rounded up to a multiple of {@code multiple}, in 64 bits (both are at most 2^31 - 1). */
    private static long roundUp(long n, long multiple) {
        return (n + multiple - 1) / multiple * multiple;
    }

    /**
     * Refuses {@code field} (shown with {@code value}) when it makes a {@code rows x cols} weight tensor with more
     * than {@link #MAX_TENSOR_ELEMENTS} elements.
     */
    private void checkTensor(String field, Object value, String tensor, long rows, long cols) {
        if (cols > 0 && rows > MAX_TENSOR_ELEMENTS / cols) {
            throw error(field, "is " + value + ": " + tensor + " would be " + rows + " x " + cols
                    + " elements, more than a tensor may hold (" + MAX_TENSOR_ELEMENTS + ")");
        }
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
            int expand = m.get("expand_proj") == null ? 4 : intIn(m, "expand_proj", key, 1, Integer.MAX_VALUE);
            if (expand != 4) {
                throw error(key + ".expand_proj", "is " + expand + ": only 4 is supported");
            }
            boolean bias = m.get("use_bias") == null || bool(m, "use_bias", key);
            checkTensor("n_embd", d, key + "'s in_proj (4 x n_embd rows)", 4L * d, d);
            return new MixerConfig.BaseConv(d, 3, bias);
        }
        if (t.endsWith(LINEAR)) {
            int f = intIn(m, "feature_dim", key, 1, MixerConfig.LinearAttention.MAX_FEATURE_DIM);
            int heads = m.get("num_heads") == null ? nHead : intIn(m, "num_heads", key, 1, Integer.MAX_VALUE);
            if (d % heads != 0) {
                throw error(key + ".num_heads", "(" + heads + ") does not divide n_embd (" + d + ")");
            }
            checkTensor("n_embd", d, key + "'s proj_q (num_heads x feature_dim rows)", (long) heads * f, d);
            checkTensor("n_embd", d, key + "'s proj_v", d, d);
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
            int w = intIn(m, "window_size", key, 1, MAX_WINDOW_SIZE);
            return attention(key, m, d, nHead, w / 2);
        }
        throw error(key + "._target_", "names unknown mixer '" + t + "' (known: " + CONV + ", " + LINEAR + ", "
                + SLIDING + ", or no mixer dict for attention)");
    }

    private MixerConfig.Attention attention(String key, Map<String, Object> m, int d, int nHead, int window) {
        int heads = m.get("num_heads") == null ? nHead : intIn(m, "num_heads", key, 1, Integer.MAX_VALUE);
        if (d % heads != 0) {
            throw error(key + ".num_heads", "(" + heads + ") does not divide n_embd (" + d + ")");
        }
        checkTensor("n_embd", d, key + "'s Wqkv (3 x n_embd rows)", 3L * d, d);
        if (m.get("num_heads_kv") != null && !m.get("num_heads_kv").equals((long) heads)) {
            throw error(key + ".num_heads_kv", "is " + m.get("num_heads_kv") + ": grouped-query attention is not supported");
        }
        int dh = d / heads;
        int rotaryDim;
        if (m.get("rotary_emb_dim") != null) {
            rotaryDim = intIn(m, "rotary_emb_dim", key, 0, dh);
        } else {
            double frac = root.get("rotary_emb_fraction") == null ? 0.0 : fraction(root, "rotary_emb_fraction", null);
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

    /** An integer field in {@code [min, max]}; the message names the field, the value and the range. */
    private int intIn(Map<String, Object> m, String field, String key, int min, int max) {
        long v = integer(m, field, key);
        if (v < min || v > max) {
            String range = max == Integer.MAX_VALUE
                    ? (min == 0 ? "a non-negative integer" : min == 1 ? "a positive integer" : "an integer >= " + min)
                      + " that fits 32 bits"
                    : "an integer in [" + min + ", " + max + "]";
            throw error(name(key, field), "must be " + range + ", found " + v);
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

    private double fraction(Map<String, Object> m, String field, String key) {
        double v = number(m, field, key);
        if (!(v >= 0 && v <= 1)) {
            throw error(name(key, field), "must be a number in [0, 1], found " + v);
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
