package io.based4j.eval;

import io.based4j.config.ModelConfig;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;

/** The context a model was built for, as its config.json states it, and the window length evaluation uses by default. */
public final class ContextLength {
    /** Window length when the model states no smaller context: long enough for real text, small enough for logits. */
    public static final int DEFAULT = 1024;

    private ContextLength() {
    }

    /**
     * The smallest {@code l_max} of the model's mixers ({@code mixer}, {@code alt_mixer}, {@code alt_mixer_2}) and its
     * {@code n_positions}, where config.json states them as positive integers; empty when it states none.
     */
    public static OptionalInt ofModel(ModelConfig config) {
        Map<String, Object> raw = config.raw();
        int least = Integer.MAX_VALUE;
        for (String key : List.of("mixer", "alt_mixer", "alt_mixer_2")) {
            if (raw.get(key) instanceof Map<?, ?> mixer) {
                least = Math.min(least, positive(mixer.get("l_max")));
            }
        }
        least = Math.min(least, positive(raw.get("n_positions")));
        return least == Integer.MAX_VALUE ? OptionalInt.empty() : OptionalInt.of(least);
    }

    /** {@value #DEFAULT} tokens, or the model's context where it is smaller. */
    public static int defaultSeqLen(ModelConfig config) {
        return Math.min(DEFAULT, ofModel(config).orElse(DEFAULT));
    }

    private static int positive(Object v) {
        return v instanceof Long l && l > 0 ? (int) Math.min(l, Integer.MAX_VALUE) : Integer.MAX_VALUE;
    }
}
