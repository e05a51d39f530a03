package io.based4j.model;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Recurrent state bytes per sequence, by layer kind (BASED-SPEC section 4): the dial the paper is about. Conv,
 * linear attention and sliding-window state are fixed; full attention's KV cache grows with the context. Every state
 * is float32 but the attention key/value cache and BaseConv's history, {@code cacheValueBytes} a value ({@link
 * io.based4j.backend.Backend#cacheValueBytes}: 4 unless said otherwise). Sizes are computed in 64 bits and saturate
 * at {@link Long#MAX_VALUE} (see {@link Sizes}).
 */
public final class StateSize {
    private StateSize() {
    }

    /** Bytes of one layer's state for one sequence at {@code contextLength} tokens, all of it float32. */
    public static long layerBytes(MixerConfig mixer, int contextLength) {
        return layerBytes(mixer, contextLength, 4);
    }

    /** Bytes of one layer's state for one sequence at {@code contextLength} tokens. */
    public static long layerBytes(MixerConfig mixer, int contextLength, int cacheValueBytes) {
        return switch (mixer) {
            case MixerConfig.BaseConv c -> Sizes.product(cacheValueBytes, 2L * c.dModel(), c.kernel() - 1L);
            case MixerConfig.LinearAttention l -> Sizes.product(4, l.numHeads(), l.expandedDim(), l.headDim() + 1L);
            case MixerConfig.Attention a -> Sizes.product(2L * cacheValueBytes, a.dModel(),
                    a.sliding() ? a.window() : contextLength);
        };
    }

    /** Bytes per sequence summed by layer kind ("conv", "linear-attn", "swa", "attn"), in first-seen order. */
    public static Map<String, Long> byKind(ModelConfig config, int contextLength) {
        return byKind(config, contextLength, 4);
    }

    /** {@link #byKind(ModelConfig, int)} with the key/value cache and conv history {@code cacheValueBytes} a value. */
    public static Map<String, Long> byKind(ModelConfig config, int contextLength, int cacheValueBytes) {
        Map<String, Long> out = new LinkedHashMap<>();
        for (MixerConfig m : config.layers()) {
            out.merge(m.kind(), layerBytes(m, contextLength, cacheValueBytes), Sizes::plus);
        }
        return out;
    }

    public static long total(ModelConfig config, int contextLength) {
        return total(config, contextLength, 4);
    }

    /** {@link #total(ModelConfig, int)} with the key/value cache and conv history {@code cacheValueBytes} a value. */
    public static long total(ModelConfig config, int contextLength, int cacheValueBytes) {
        return byKind(config, contextLength, cacheValueBytes).values().stream().mapToLong(Long::longValue)
                .reduce(0, Sizes::plus);
    }

    /** "12.3 KiB" style ({@link Sizes#human}). */
    public static String human(long bytes) {
        return Sizes.human(bytes);
    }
}
