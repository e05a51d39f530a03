package io.based4j.train;

import io.based4j.config.ConfigException;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.model.ModelWeights;
import io.based4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * A {@code config.json} read the way the reference PyTorch implementation reads it, and the parameters it then
 * creates (BASED-SPEC section 1). The reference builds a transformers {@code GPT2Config} from the file, so
 * GPT2Config's defaults apply to GPT2Config's own fields and {@code hidden_size}, {@code max_position_embeddings},
 * {@code num_attention_heads} and {@code num_hidden_layers} stand for {@code n_embd}, {@code n_positions},
 * {@code n_head} and {@code n_layer} (a file naming both gets the alias's value). Its own fields it reads with
 * defaults of its own (MLP and attention biases default to present, {@code rms_norm} to false, no vocabulary
 * padding), and each mixer dict becomes the keyword arguments of the class its {@code _target_} names, the
 * sliding-window dict after the attention settings of the top level have overwritten its heads, biases, rotary
 * and softmax scale. A checkpoint then loads by a strict state-dict load: every parameter created must be in the
 * file with its shape, and nothing else.
 *
 * <p>The reference always gives a layer an MLP and its norm: with {@code n_inner} 0 the MLP is 0 wide, its weights
 * have no elements and it adds nothing, but its tensors are still expected. A tied head is the embedding itself
 * (one parameter under two names), which a safetensors file holds once, under the embedding's name.
 */
public final class ReferenceConfig {
    static final String EMBEDDING = "transformer.embeddings.word_embeddings.weight";
    private static final Map<String, String> ALIASES = Map.of("n_embd", "hidden_size", "n_positions",
            "max_position_embeddings", "n_head", "num_attention_heads", "n_layer", "num_hidden_layers");
    private static final Set<String> GATED = Set.of("glu", "swiglu", "geglu");
    private static final Set<String> FUSABLE = Set.of("gelu_new", "gelu_fast", "gelu_approx", "gelu_pytorch_tanh",
            "relu", "sqrelu");
    private static final Set<String> ACTIVATIONS = Set.of("gelu", "gelu_new", "gelu_fast", "gelu_approx",
            "gelu_pytorch_tanh", "relu", "sqrelu", "glu", "swiglu", "geglu");
    /** The reference rounds a gated MLP's width up to a multiple of this. */
    private static final long MLP_MULTIPLE = 256;

    private ReferenceConfig() {
    }

    /**
     * What the reference builds from a configuration.
     *
     * @param tensors every parameter and persistent buffer, by state-dict name, with its shape (a tied head left out)
     * @param layers what each layer's mixer computes, in based4j's terms
     * @param normEps the epsilon of every norm
     * @param activation the MLP's activation function
     * @param problems settings the reference reads that based4j has no counterpart for, or that the reference
     *     refuses; a model with any is not one based4j trains
     */
    public record Reading(Map<String, long[]> tensors, List<MixerConfig> layers, double normEps, String activation,
                          List<String> problems) {
    }

    /** Reads {@code config} as the reference does; a field of a type the reference cannot use is an error naming it. */
    public static Reading read(Map<String, Object> config) {
        return new Reader(config).read();
    }

    /**
     * The tensors a checkpoint of {@code config} holds for the reference beyond those based4j trains: for a model
     * without MLPs, each layer's MLP of width 0 and its norm (ones), which contribute nothing to the output.
     */
    public static Map<String, Tensor> referenceOnlyTensors(ModelConfig config) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        if (config.hasMlp()) {
            return out;
        }
        int d = config.dModel();
        float[] ones = new float[d];
        Arrays.fill(ones, 1f);
        for (int i = 0; i < config.nLayer(); i++) {
            String p = "transformer.layers." + i + ".";
            out.put(p + "norm2.weight", Tensor.ofFloats(ones, d));
            out.put(p + "mlp.fc1.weight", Tensor.ofFloats(new float[0], 0, d));
            out.put(p + "mlp.fc2.weight", Tensor.ofFloats(new float[0], d, 0));
        }
        return out;
    }

    /** Every tensor a checkpoint of {@code config} holds: the trained weights and {@link #referenceOnlyTensors}. */
    public static Map<String, long[]> checkpointShapes(ModelConfig config) {
        Map<String, long[]> out = new LinkedHashMap<>(ModelWeights.shapes(config));
        referenceOnlyTensors(config).forEach((k, t) -> out.put(k, t.shape()));
        return out;
    }

    /**
     * The first way in which the reference, reading {@code map}, would build a model other than {@code config}
     * (based4j's reading of the same map) or could not load its checkpoint strictly; null when it builds the same
     * model with exactly the checkpoint's tensors.
     */
    public static String difference(ModelConfig config, Map<String, Object> map) {
        Reading r;
        try {
            r = read(map);
        } catch (IllegalArgumentException e) {
            return e.getMessage();
        }
        if (!r.problems().isEmpty()) {
            return r.problems().getFirst();
        }
        for (int i = 0; i < Math.min(r.layers().size(), config.nLayer()); i++) {
            MixerConfig ours = normalized(config.layer(i));
            if (!sameMixer(r.layers().get(i), ours)) {
                return "layer " + i + " would be " + r.layers().get(i) + " in the reference but is " + ours
                        + " in based4j";
            }
        }
        Map<String, long[]> ours = checkpointShapes(config);
        for (Map.Entry<String, long[]> e : r.tensors().entrySet()) {
            long[] shape = ours.get(e.getKey());
            if (shape == null) {
                return "the reference would create " + e.getKey() + " " + Arrays.toString(e.getValue())
                        + ", which a based4j checkpoint of this model does not hold";
            }
            if (!Arrays.equals(shape, e.getValue())) {
                return "the reference would create " + e.getKey() + " with shape " + Arrays.toString(e.getValue())
                        + ", but based4j's is " + Arrays.toString(shape);
            }
        }
        for (Map.Entry<String, long[]> e : ours.entrySet()) {
            if (!r.tensors().containsKey(e.getKey())) {
                return "the reference would not create " + e.getKey() + " " + Arrays.toString(e.getValue())
                        + ", which based4j trains";
            }
        }
        if (r.normEps() != config.normEps()) {
            return "the reference's norms would use eps " + r.normEps() + " but based4j's use " + config.normEps();
        }
        if (config.hasMlp() && !"swiglu".equals(r.activation())) {
            return "the reference's MLP would use activation_function \"" + r.activation() + "\", based4j's is swiglu";
        }
        return null;
    }

    /** An attention mixer whose biases the configuration leaves open is trained without them. */
    private static MixerConfig normalized(MixerConfig m) {
        if (m instanceof MixerConfig.Attention a && (a.qkvBias() == null || a.outBias() == null)) {
            return a.withBiases(Boolean.TRUE.equals(a.qkvBias()), Boolean.TRUE.equals(a.outBias()));
        }
        return m;
    }

    /**
     * Mixers equal in every setting. The softmax scale is compared to 1e-12 relative: the reference raises the head
     * dim to the power -0.5 and based4j divides one by its square root, which may differ in the last bit.
     */
    private static boolean sameMixer(MixerConfig a, MixerConfig b) {
        if (a instanceof MixerConfig.Attention x && b instanceof MixerConfig.Attention y) {
            return x.dModel() == y.dModel() && x.numHeads() == y.numHeads() && x.headDim() == y.headDim()
                    && x.window() == y.window() && x.rotaryDim() == y.rotaryDim()
                    && x.rotaryBase() == y.rotaryBase() && x.rotaryInterleaved() == y.rotaryInterleaved()
                    && Objects.equals(x.qkvBias(), y.qkvBias()) && Objects.equals(x.outBias(), y.outBias())
                    && Math.abs(x.softmaxScale() - y.softmaxScale()) <= 1e-12 * Math.abs(y.softmaxScale());
        }
        return a.equals(b);
    }

    /** One reading of one configuration. */
    private static final class Reader {
        private final Map<String, Object> config;
        private final Map<String, long[]> tensors = new LinkedHashMap<>();
        private final List<MixerConfig> layers = new ArrayList<>();
        private final List<String> problems = new ArrayList<>();
        private long d;
        private long nHead;
        private boolean rmsNorm;

        Reader(Map<String, Object> config) {
            this.config = config;
        }

        /** A top-level attribute as GPT2Config holds it (an alias present wins over its field), or {@code dflt}. */
        private Object attr(String field, Object dflt) {
            String alias = ALIASES.get(field);
            if (alias != null && config.containsKey(alias)) {
                return config.get(alias);
            }
            return config.containsKey(field) ? config.get(field) : dflt;
        }

        Reading read() {
            d = integer("n_embd", attr("n_embd", 768L), 1);
            long nLayer = integer("n_layer", attr("n_layer", 12L), 0);
            nHead = integer("n_head", attr("n_head", 12L), 1);
            long vocab = integer("vocab_size", attr("vocab_size", 50257L), 1);
            long pad = integer("pad_vocab_size_multiple", attr("pad_vocab_size_multiple", 1L), 1);
            long paddedVocab = (vocab + pad - 1) / pad * pad;
            Object act = attr("activation_function", "gelu_new");
            String activation = act instanceof String s ? s : String.valueOf(act);
            if (!ACTIVATIONS.contains(activation)) {
                problems.add("activation_function " + Json.write(act) + " is not one the reference accepts");
            }
            rmsNorm = truthy(attr("rms_norm", false));
            double eps = number("layer_norm_epsilon", attr("layer_norm_epsilon", 1e-5));
            unsupported("prenorm", true, "a post-norm block");
            unsupported("parallel_block", false, "parallel mixer and MLP branches");
            unsupported("word_embed_proj_dim", null, "an embedding projection");
            unsupported("fused_dense_sqrelu_dense", false, "a fused squared-ReLU MLP");
            unsupported("attn_dwconv", false, "a convolution on the attention's q, k and v");
            unsupported("rotary_emb_scale_base", null, "XPos-scaled rotary embeddings");

            tensors.put(EMBEDDING, new long[] {paddedVocab, d});
            long positions = integer("n_positions", attr("n_positions", 1024L), 0);
            if (positions > 0) {
                tensors.put("transformer.embeddings.position_embeddings.weight", new long[] {positions, d});
            }
            if (truthy(attr("fixed_decay", false))) {
                tensors.put("transformer.decay.decay", new long[] {nHead});
            }
            for (int i = 0; i < nLayer; i++) {
                String p = "transformer.layers." + i + ".";
                norm(p + "norm1");
                layers.add(mixer(i, p + "mixer."));
                norm(p + "norm2");
                mlp(p + "mlp.", activation);
            }
            norm("transformer.ln_f");
            if (!truthy(attr("tie_word_embeddings", true))) {
                tensors.put("lm_head.weight", new long[] {paddedVocab, d});
            }
            if (truthy(attr("lm_head_bias", false))) {
                tensors.put("lm_head.bias", new long[] {paddedVocab});
            }
            return new Reading(tensors, layers, eps, activation, problems);
        }

        /** Notes a field set away from {@code usual}, the value under which the reference builds what based4j does. */
        private void unsupported(String field, Object usual, String what) {
            Object v = attr(field, usual);
            boolean same = usual instanceof Boolean b ? truthy(v) == b : v == null;
            if (!same) {
                problems.add(field + " is " + Json.write(v) + ": the reference would build " + what
                        + ", which based4j does not have");
            }
        }

        private void norm(String name) {
            tensors.put(name + ".weight", new long[] {d});
            if (!rmsNorm) {
                tensors.put(name + ".bias", new long[] {d});
            }
        }

        /** Which mixer layer {@code i} gets: alt_mixer_2, then alt_mixer, by their layer lists; else mixer. */
        @SuppressWarnings("unchecked")
        private MixerConfig mixer(int i, String prefix) {
            Object value = attr("mixer", null);
            String key = "mixer";
            if (lists(attr("alt_mixer_2_layers", null), i)) {
                value = attr("alt_mixer_2", null);
                key = "alt_mixer_2";
            } else if (lists(attr("alt_mixer_layers", null), i)) {
                value = attr("alt_mixer", null);
                key = "alt_mixer";
            }
            if (value == null) {
                return attention(i, prefix, null);
            }
            if (!(value instanceof Map)) {
                throw new IllegalArgumentException(key + " is " + Json.typeName(value)
                        + ", but the reference needs a dict with a _target_");
            }
            Map<String, Object> dict = (Map<String, Object>) value;
            String target = dict.get("_target_") instanceof String s ? s : "";
            try {
                if (target.endsWith("convolution.BaseConv")) {
                    return conv(key, prefix, dict);
                }
                if (target.endsWith("linear_attention.LinearAttention")) {
                    return linear(key, prefix, dict);
                }
                if (target.endsWith("slide_attention.SlidingAttention")) {
                    return attention(i, prefix, dict);
                }
            } catch (ConfigException e) {
                problems.add(key + ": " + e.getMessage());
                return null;
            }
            problems.add(key + "._target_ " + Json.write(dict.get("_target_")) + " is not a mixer based4j has");
            return null;
        }

        private boolean lists(Object layerList, int i) {
            if (layerList == null) {
                return false;
            }
            if (!(layerList instanceof List<?> list)) {
                throw new IllegalArgumentException("a layer list is " + Json.typeName(layerList)
                        + ", but the reference needs a list of layer indices");
            }
            for (Object o : list) {
                if (o instanceof Number n && n.doubleValue() == i) {
                    return true;
                }
            }
            return false;
        }

        /** BaseConv: its l_max is required; expand_proj defaults to 2 and kernel_size to 3 (kernel_sizes is unused). */
        private MixerConfig conv(String key, String prefix, Map<String, Object> dict) {
            if (dict.get("l_max") == null) {
                problems.add(key + ".l_max is missing: the reference's BaseConv requires it");
            }
            long kernel = integer(key + ".kernel_size", dict.getOrDefault("kernel_size", 3L), 1);
            long expand = integer(key + ".expand_proj", dict.getOrDefault("expand_proj", 2L), 1);
            boolean bias = truthy(dict.getOrDefault("use_bias", true));
            long inner = expand * d / 2;
            tensors.put(prefix + "in_proj.weight", new long[] {expand * d, d});
            if (bias) {
                tensors.put(prefix + "in_proj.bias", new long[] {expand * d});
            }
            tensors.put(prefix + "out_proj.weight", new long[] {d, inner});
            if (bias) {
                tensors.put(prefix + "out_proj.bias", new long[] {d});
            }
            tensors.put(prefix + "conv.conv.weight", new long[] {inner, 1, kernel});
            if (truthy(dict.getOrDefault("use_cuda", false))) {
                // with the causal-conv1d kernels installed, the reference gives the convolution a bias
                tensors.put(prefix + "conv.conv.bias", new long[] {inner});
            }
            return new MixerConfig.BaseConv((int) d, (int) kernel, bias);
        }

        /**
         * LinearAttention: feature_dim 16 and 16 heads unless set; the feature map must be a TaylorExp dict over
         * feature_dim inputs. The denominator's eps is {@code eps}, else 1e-6 for the fla_* implementations and
         * 1e-12 otherwise (BASED-SPEC section 2).
         */
        private MixerConfig linear(String key, String prefix, Map<String, Object> dict) {
            long f = integer(key + ".feature_dim", dict.getOrDefault("feature_dim", 16L), 1);
            long heads = integer(key + ".num_heads", dict.getOrDefault("num_heads", 16L), 1);
            long dh = dict.get("head_dim") == null ? d / heads : integer(key + ".head_dim", dict.get("head_dim"), 1);
            Object implValue = dict.getOrDefault("parallel_implementation", "quadratic");
            String impl = implValue instanceof String s ? s : "";
            double eps = dict.get("eps") != null ? number(key + ".eps", dict.get("eps"))
                    : impl.startsWith("fla_") ? 1e-6 : 1e-12;
            if (!(dict.get("feature_map") instanceof Map<?, ?> fm)
                    || !(fm.get("_target_") instanceof String t && t.endsWith("linear_attention.TaylorExp"))) {
                problems.add(key + ".feature_map is " + Json.write(dict.get("feature_map"))
                        + ": based4j's linear attention is the TaylorExp feature map, given as a dict");
            } else if (!(fm.get("input_dim") instanceof Number n && n.doubleValue() == f)) {
                problems.add(key + ".feature_map.input_dim is " + Json.write(fm.get("input_dim"))
                        + ", not feature_dim " + f);
            }
            tensors.put(prefix + "proj_q.weight", new long[] {f * heads, d});
            tensors.put(prefix + "proj_k.weight", new long[] {f * heads, d});
            tensors.put(prefix + "proj_v.weight", new long[] {heads * dh, d});
            tensors.put(prefix + "out_proj.weight", new long[] {d, heads * dh});
            if (impl.equals("tk")) {
                tensors.put(prefix + "g_norm.weight", new long[] {dh});
            }
            return new MixerConfig.LinearAttention((int) d, (int) heads, (int) f, (int) dh, eps);
        }

        /**
         * Multi-head attention ({@code dict} null) or SlidingAttention: n_head heads, n_head_kv key/value heads,
         * biases, rotary and softmax scale all from the top level; a sliding window of window_size / 2 keys back.
         */
        private MixerConfig attention(int i, String prefix, Map<String, Object> dict) {
            long heads = nHead;
            Object kvValue = attr("n_head_kv", null);
            long kv = kvValue == null ? heads : integer("n_head_kv", kvValue, 1);
            if (d % heads != 0) {
                throw new IllegalArgumentException("n_head " + heads + " does not divide n_embd " + d);
            }
            long dh = d / heads;
            long configHeadDim = config.get("head_dim") == null ? d / nHead : integer("head_dim", config.get("head_dim"), 1);
            double scale = truthy(attr("scale_attn_weights", true)) ? 1.0 / Math.sqrt(configHeadDim) : 1.0;
            if (truthy(attr("scale_attn_by_inverse_layer_idx", false))) {
                scale /= i + 1;
            }
            boolean qkvBias = truthy(attr("qkv_proj_bias", true));
            boolean outBias = truthy(attr("out_proj_bias", true));
            long rotary = (long) (number("rotary_emb_fraction", attr("rotary_emb_fraction", 0.0)) * configHeadDim);
            double base = number("rotary_emb_base", attr("rotary_emb_base", 10000.0));
            boolean interleaved = truthy(attr("rotary_emb_interleaved", false));
            int window = Integer.MAX_VALUE;
            if (dict != null) {
                long size = integer("window_size", dict.getOrDefault("window_size", 128L), 0);
                window = (int) Math.min(Integer.MAX_VALUE - 1, size / 2);
            }
            long qkvRows = dh * (heads + 2 * kv);
            tensors.put(prefix + "Wqkv.weight", new long[] {qkvRows, d});
            if (qkvBias) {
                tensors.put(prefix + "Wqkv.bias", new long[] {qkvRows});
            }
            tensors.put(prefix + "out_proj.weight", new long[] {d, d});
            if (outBias) {
                tensors.put(prefix + "out_proj.bias", new long[] {d});
            }
            try {
                return new MixerConfig.Attention((int) d, (int) heads, (int) dh, window, (int) rotary, base,
                        interleaved, scale, qkvBias, outBias);
            } catch (ConfigException e) {
                problems.add("layer " + i + ": " + e.getMessage());
                return null;
            }
        }

        /**
         * The MLP: a gated MLP (fc1 twice its width) for glu, swiglu and geglu, its width n_inner (or 8/3 of
         * n_embd) rounded up to a multiple of 256; otherwise a plain MLP n_inner (or 4 n_embd) wide. Biases on
         * both linear layers unless mlp_fc1_bias / mlp_fc2_bias say otherwise.
         */
        private void mlp(String prefix, String activation) {
            boolean bias1 = truthy(attr("mlp_fc1_bias", true));
            boolean bias2 = truthy(attr("mlp_fc2_bias", true));
            Object inner = attr("n_inner", null);
            boolean fused = truthy(attr("fused_mlp", false));
            if (fused && !FUSABLE.contains(activation)) {
                problems.add("fused_mlp is true with activation_function \"" + activation
                        + "\", which the reference's fused MLP refuses");
            }
            long width;
            long fc1Rows;
            if (GATED.contains(activation) && !fused) {
                Object type = attr("mlp_type", "base");
                if (!"base".equals(type)) {
                    problems.add("mlp_type is " + Json.write(type) + ": the reference would build a three-matrix MLP,"
                            + " which based4j does not have");
                }
                width = inner == null ? (long) (8.0 * d / 3) : integer("n_inner", inner, 0);
                width = (width + MLP_MULTIPLE - 1) / MLP_MULTIPLE * MLP_MULTIPLE;
                fc1Rows = 2 * width;
            } else {
                width = inner == null ? 4 * d : integer("n_inner", inner, 0);
                fc1Rows = width;
            }
            tensors.put(prefix + "fc1.weight", new long[] {fc1Rows, d});
            if (bias1) {
                tensors.put(prefix + "fc1.bias", new long[] {fc1Rows});
            }
            tensors.put(prefix + "fc2.weight", new long[] {d, width});
            if (bias2) {
                tensors.put(prefix + "fc2.bias", new long[] {d});
            }
        }
    }

    /** Python's truth value of a JSON value. */
    static boolean truthy(Object v) {
        return switch (v) {
            case null -> false;
            case Boolean b -> b;
            case Number n -> n.doubleValue() != 0;
            case String s -> !s.isEmpty();
            case List<?> l -> !l.isEmpty();
            case Map<?, ?> m -> !m.isEmpty();
            default -> true;
        };
    }

    private static long integer(String field, Object v, long min) {
        if (v instanceof Number n && n.doubleValue() == Math.rint(n.doubleValue()) && n.doubleValue() >= min
                && Math.abs(n.doubleValue()) < 1e15) {
            return n.longValue();
        }
        throw new IllegalArgumentException(field + " is " + Json.write(v) + ", which the reference cannot use as a"
                + (min > 0 ? " positive" : " non-negative") + " integer");
    }

    private static double number(String field, Object v) {
        if (v instanceof Number n) {
            return n.doubleValue();
        }
        throw new IllegalArgumentException(field + " is " + Json.write(v) + ", which the reference cannot use as a"
                + " number");
    }
}
