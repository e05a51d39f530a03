package io.based4j.train;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The complete field set of a released checkpoint's {@code config.json} (BASED-SPEC section 1): every GPT2Config
 * field, the reference implementation's own fields and each mixer dict with all its arguments, keys sorted as
 * transformers writes them. {@link #complete} fills each field a configuration lacks, or holds as null, with the
 * value that describes the model based4j reads from it. The reference reads a missing field with a default of its
 * own (MLP biases present, position embeddings, LayerNorm, ...), so an incomplete file would make it build another
 * model than the one trained.
 */
final class ReleasedFields {
    static final String CONV_TARGET = "based.models.mixers.convolution.BaseConv";
    static final String TAYLOR_TARGET = "based.models.mixers.linear_attention.TaylorExp";
    /** GPT-2's end-of-text token, its bos and eos id, given when the vocabulary holds it. */
    private static final long GPT2_END_OF_TEXT = 50256;
    /** The longest sequence the released mixer dicts name; BaseConv requires the argument and uses it for nothing. */
    private static final long L_MAX = 2048;
    private static final double ROTARY_BASE = 10000.0;
    private static final List<String> SLOTS = List.of("mixer", "alt_mixer", "alt_mixer_2");

    private ReleasedFields() {
    }

    /**
     * A copy of {@code given} with every field of the complete set, describing {@code config} (read from it): the
     * given fields first, in their order, then those filled in; the keys of each mixer dict sorted, so that the same
     * mixer is always written the same way.
     */
    static Map<String, Object> complete(Map<String, Object> given, ModelConfig config) {
        Map<String, Object> out = copy(given);
        topLevel(out, config);
        for (String slot : SLOTS) {
            if (out.get(slot) instanceof Map<?, ?>) {
                mixerArguments(out, slot, config);
            }
        }
        out.replaceAll((k, v) -> v instanceof Map<?, ?> inner ? sorted(inner) : v);
        return out;
    }

    private static void topLevel(Map<String, Object> m, ModelConfig config) {
        boolean gpt2Vocabulary = config.vocabSize() > GPT2_END_OF_TEXT;
        MixerConfig.Attention attention = firstAttention(config);
        // transformers' PretrainedConfig and GPT2Config fields, as a model of this shape is described
        fill(m, "_name_or_path", "");
        fill(m, "activation_function", "swiglu");
        fill(m, "add_cross_attention", false);
        fill(m, "architectures", null);
        fill(m, "attn_pdrop", 0.0);
        fill(m, "bos_token_id", gpt2Vocabulary ? GPT2_END_OF_TEXT : null);
        fill(m, "chunk_size_feed_forward", 0L);
        fill(m, "dtype", null);
        fill(m, "embd_pdrop", 0.0);
        fill(m, "eos_token_id", gpt2Vocabulary ? GPT2_END_OF_TEXT : null);
        fill(m, "id2label", new LinkedHashMap<>(Map.of("0", "LABEL_0", "1", "LABEL_1")));
        fill(m, "initializer_range", 0.02);
        fill(m, "is_encoder_decoder", false);
        fill(m, "label2id", new LinkedHashMap<>(Map.of("LABEL_0", 0L, "LABEL_1", 1L)));
        fill(m, "layer_norm_epsilon", config.normEps());
        fill(m, "model_type", "gpt2");
        fill(m, "n_inner", (long) config.mlpHidden());
        fill(m, "n_positions", 0L);
        fill(m, "output_attentions", false);
        fill(m, "output_hidden_states", false);
        fill(m, "pad_token_id", null);
        fill(m, "problem_type", null);
        fill(m, "reorder_and_upcast_attn", false);
        fill(m, "resid_pdrop", 0.0);
        fill(m, "return_dict", true);
        fill(m, "scale_attn_by_inverse_layer_idx", false);
        fill(m, "scale_attn_weights", attention == null || attention.softmaxScale() != 1.0 || attention.headDim() == 1);
        fill(m, "summary_activation", null);
        fill(m, "summary_first_dropout", 0.1);
        fill(m, "summary_proj_to_labels", true);
        fill(m, "summary_type", "cls_index");
        fill(m, "summary_use_proj", true);
        fill(m, "tie_word_embeddings", config.tieWordEmbeddings());
        fill(m, "use_cache", true);
        // the reference implementation's own fields
        fill(m, "fused_bias_fc", false);
        fill(m, "fused_dropout_add_ln", false);
        fill(m, "fused_mlp", false);
        fill(m, "mlp_fc1_bias", false);
        fill(m, "mlp_fc2_bias", false);
        fill(m, "out_proj_bias", attention != null && Boolean.TRUE.equals(attention.outBias()));
        fill(m, "pad_vocab_size_multiple", 1L);
        fill(m, "qkv_proj_bias", attention != null && Boolean.TRUE.equals(attention.qkvBias()));
        fill(m, "residual_in_fp32", true);
        fill(m, "rms_norm", true);
        fill(m, "rotary_emb_fraction", attention == null ? 0.0
                : attention.rotaryDim() == attention.headDim() ? 1.0 : (double) attention.rotaryDim() / attention.headDim());
        if (attention != null && attention.rotaryBase() != ROTARY_BASE) {
            fill(m, "rotary_emb_base", attention.rotaryBase());
        }
        if (attention != null && attention.rotaryInterleaved()) {
            fill(m, "rotary_emb_interleaved", true);
        }
        fill(m, "special_initializer", false);
        fill(m, "use_flash_attn", true);
    }

    /** The reference's attention settings are global; the first attention or sliding-window layer gives them. */
    private static MixerConfig.Attention firstAttention(ModelConfig config) {
        for (MixerConfig m : config.layers()) {
            if (m instanceof MixerConfig.Attention a) {
                return a;
            }
        }
        return null;
    }

    /** Fills the arguments of the mixer dict {@code slot} from the mixer based4j reads for its layers. */
    @SuppressWarnings("unchecked")
    private static void mixerArguments(Map<String, Object> m, String slot, ModelConfig config) {
        Set<Long> alt = layerSet(m.get("alt_mixer_layers"));
        Set<Long> alt2 = layerSet(m.get("alt_mixer_2_layers"));
        int last = -1;
        for (int i = 0; i < config.nLayer(); i++) {
            String key = alt2.contains((long) i) ? "alt_mixer_2" : alt.contains((long) i) ? "alt_mixer" : "mixer";
            if (key.equals(slot)) {
                last = i;
            }
        }
        if (last < 0) {
            return; // no layer uses it
        }
        Map<String, Object> dict = (Map<String, Object>) m.get(slot);
        switch (config.layer(last)) {
            case MixerConfig.BaseConv c -> {
                fill(dict, "l_max", L_MAX);
                fill(dict, "expand_proj", 4L);
                fill(dict, "kernel_sizes", (long) c.kernel());
                fill(dict, "use_bias", c.bias());
            }
            case MixerConfig.LinearAttention l -> {
                fill(dict, "l_max", L_MAX);
                fill(dict, "feature_dim", (long) l.featureDim());
                Map<String, Object> featureMap = new LinkedHashMap<>();
                featureMap.put("_target_", TAYLOR_TARGET);
                fill(dict, "feature_map", featureMap);
                if (dict.get("feature_map") instanceof Map<?, ?> fm) {
                    fill((Map<String, Object>) fm, "input_dim", (long) l.featureDim());
                }
                fill(dict, "num_heads", (long) l.numHeads());
                fill(dict, "parallel_implementation", "quadratic");
            }
            case MixerConfig.Attention a -> {
                // what the reference writes into the dict when it builds the layer (the last one that uses it)
                fill(dict, "causal", true);
                fill(dict, "dropout", 0.0);
                fill(dict, "fused_bias_fc", false);
                fill(dict, "layer_idx", (long) last);
                fill(dict, "num_heads", (long) a.numHeads());
                fill(dict, "num_heads_kv", null);
                fill(dict, "out_proj_bias", Boolean.TRUE.equals(a.outBias()));
                fill(dict, "qkv_proj_bias", Boolean.TRUE.equals(a.qkvBias()));
                fill(dict, "rotary_emb_base", a.rotaryBase());
                fill(dict, "rotary_emb_dim", (long) a.rotaryDim());
                fill(dict, "rotary_emb_interleaved", a.rotaryInterleaved());
                fill(dict, "rotary_emb_scale_base", null);
                fill(dict, "softmax_scale", a.softmaxScale());
                fill(dict, "use_flash_attn", true);
            }
        }
    }

    /** A layer list as the configuration parser accepted it (integers); anything else is an empty set. */
    private static Set<Long> layerSet(Object v) {
        Set<Long> out = new HashSet<>();
        if (v instanceof List<?> list) {
            for (Object o : list) {
                if (o instanceof Long l) {
                    out.add(l);
                }
            }
        }
        return out;
    }

    /** Sets {@code key} unless the map holds a non-null value for it. */
    private static void fill(Map<String, Object> m, String key, Object value) {
        if (m.get(key) == null) {
            m.put(key, value);
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> copy(Map<String, Object> m) {
        Map<String, Object> out = new LinkedHashMap<>();
        m.forEach((k, v) -> out.put(k, v instanceof Map<?, ?> inner ? copy((Map<String, Object>) inner)
                : v instanceof List<?> list ? new ArrayList<>(list) : v));
        return out;
    }

    /** A copy of {@code m} with its keys, and those of the maps inside it, in sorted order. */
    private static Map<String, Object> sorted(Map<?, ?> m) {
        Map<String, Object> out = new LinkedHashMap<>();
        new TreeMap<>(m).forEach((k, v) -> out.put((String) k, v instanceof Map<?, ?> inner ? sorted(inner) : v));
        return out;
    }
}
