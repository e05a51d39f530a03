package io.based4j.model;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Recurrent state bytes per sequence (float32), by layer kind (BASED-SPEC section 4): the dial the paper is about.
 * Conv, linear attention and sliding-window state are fixed; full attention's KV cache grows with the context.
 */
public final class StateSize {
    private StateSize() {
    }

    /** Bytes of one layer's state for one sequence at {@code contextLength} tokens. */
    public static long layerBytes(MixerConfig mixer, int contextLength) {
        return switch (mixer) {
            case MixerConfig.BaseConv c -> 4L * c.innerWidth() * (c.kernel() - 1);
            case MixerConfig.LinearAttention l -> 4L * l.numHeads() * l.expandedDim() * (l.headDim() + 1L);
            case MixerConfig.Attention a -> 2L * 4L * a.dModel() * (a.sliding() ? a.window() : contextLength);
        };
    }

    /** Bytes per sequence summed by layer kind ("conv", "linear-attn", "swa", "attn"), in first-seen order. */
    public static Map<String, Long> byKind(ModelConfig config, int contextLength) {
        Map<String, Long> out = new LinkedHashMap<>();
        for (MixerConfig m : config.layers()) {
            out.merge(m.kind(), layerBytes(m, contextLength), Long::sum);
        }
        return out;
    }

    public static long total(ModelConfig config, int contextLength) {
        return byKind(config, contextLength).values().stream().mapToLong(Long::longValue).sum();
    }

    /** "12.3 KiB" style. */
    public static String human(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format("%.1f %s", v, units[u]);
    }
}
