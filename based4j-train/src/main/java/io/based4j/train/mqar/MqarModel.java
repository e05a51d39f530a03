package io.based4j.train.mqar;

import io.based4j.train.ModelSpec;

import java.util.List;
import java.util.Map;

/**
 * One model of the recall study: the mixer under test and its size. What does not apply to a mixer is 0: the
 * feature dimension is BASED's, the window sliding-window attention's.
 *
 * @param mixer {@code based}, {@code sliding} or {@code attention}
 * @param dModel the model width d
 * @param featureDim BASED's Taylor feature dimension f
 * @param window sliding window attention's keys a query sees back, the w of MQAR-SPEC's {@code 4 * 2 d w}
 */
public record MqarModel(String mixer, int dModel, int featureDim, int window) {
    /** The mixers the trainer builds. */
    public static final List<String> MIXERS = List.of("based", "sliding", "attention");

    public MqarModel {
        if (!MIXERS.contains(mixer)) {
            throw new IllegalArgumentException("unknown MQAR mixer '" + mixer + "' (based, sliding or attention)");
        }
        if (dModel < 1) {
            throw new IllegalArgumentException(mixer + ": d_model must be >= 1, got " + dModel);
        }
        if (mixer.equals("based") != (featureDim != 0) || featureDim < 0) {
            throw new IllegalArgumentException(mixer.equals("based") ? "based: feature_dim must be >= 1, got "
                    + featureDim : mixer + ": has no feature_dim (BASED's)");
        }
        if (mixer.equals("sliding") != (window != 0) || window < 0) {
            throw new IllegalArgumentException(mixer.equals("sliding") ? "sliding: window must be >= 1, got "
                    + window : mixer + ": has no window (sliding window attention's)");
        }
    }

    public static MqarModel based(int dModel, int featureDim) {
        return new MqarModel("based", dModel, featureDim, 0);
    }

    public static MqarModel sliding(int dModel, int window) {
        return new MqarModel("sliding", dModel, 0, window);
    }

    public static MqarModel attention(int dModel) {
        return new MqarModel("attention", dModel, 0, 0);
    }

    /**
     * The model's config.json: a short convolution, then the mixer with {@code heads} heads, tied embeddings, no
     * MLP, no rotary embedding.
     */
    public Map<String, Object> configMap(int heads) {
        String kind = switch (mixer) {
            case "based" -> "linear";
            case "attention" -> "attn";
            default -> "swa";
        };
        // config.json's window_size counts both sides of a query: window keys back is 2 * window
        return ModelSpec.configMap(dModel, List.of("conv", kind), heads, heads, featureDim, 2 * window, 0,
                MqarGenerator.DEFAULT_VOCAB, true, false, 1e-5);
    }

    /** Recurrent state in bytes as the paper's figure counts it ({@link MqarGenerator#stateBytes}). */
    public long stateBytes() {
        return MqarGenerator.stateBytes(mixer, dModel, featureDim, window);
    }

    /** {@code based d64 f16}, {@code sliding d128 w64}, {@code attention d64}. */
    public String label() {
        return mixer + " d" + dModel + (featureDim > 0 ? " f" + featureDim : "") + (window > 0 ? " w" + window : "");
    }

    /** What sets the model apart within its mixer, as the plot's table shows it: {@code f 16}, {@code w 64}, or -. */
    public String dial() {
        return featureDim > 0 ? "f " + featureDim : window > 0 ? "w " + window : "-";
    }

    @Override
    public String toString() {
        return label();
    }
}
