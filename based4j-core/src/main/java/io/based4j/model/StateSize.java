package io.based4j.model;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Recurrent state bytes per sequence (float32), by layer kind (BASED-SPEC section 4): the dial the paper is about.
 * Conv, linear attention and sliding-window state are fixed; full attention's KV cache grows with the context.
 * Sizes are computed in 64 bits and saturate at {@link Long#MAX_VALUE} (see {@link Sizes}).
 */
public final class StateSize {
    private StateSize() {
    }

    /** Bytes of one layer's state for one sequence at {@code contextLength} tokens. */
    public static long layerBytes(MixerConfig mixer, int contextLength) {
        return switch (mixer) {
            case MixerConfig.BaseConv c -> Sizes.product(4, 2L * c.dModel(), c.kernel() - 1L);
            case MixerConfig.LinearAttention l -> Sizes.product(4, l.numHeads(), l.expandedDim(), l.headDim() + 1L);
            case MixerConfig.Attention a -> Sizes.product(2 * 4, a.dModel(), a.sliding() ? a.window() : contextLength);
        };
    }

    /** Bytes per sequence summed by layer kind ("conv", "linear-attn", "swa", "attn"), in first-seen order. */
    public static Map<String, Long> byKind(ModelConfig config, int contextLength) {
        Map<String, Long> out = new LinkedHashMap<>();
        for (MixerConfig m : config.layers()) {
            out.merge(m.kind(), layerBytes(m, contextLength), Sizes::plus);
        }
        return out;
    }

    public static long total(ModelConfig config, int contextLength) {
        return byKind(config, contextLength).values().stream().mapToLong(Long::longValue).reduce(0, Sizes::plus);
    }

    /** "12.3 KiB" style ({@link Sizes#human}). */
    public static String human(long bytes) {
        return Sizes.human(bytes);
    }
}
