package io.based4j.model;

import io.based4j.backend.Backend;
import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The activation buffers of a session's forward calls, planned from the model's shape and allocated once for at most
 * {@link #capacity} tokens per call. Each call works on views of their first rows, so the same memory serves every
 * call (which is what lets a GPU replay a recorded decode step).
 */
final class Workspace {
    /** What a buffer holds; with its width it names the buffer. */
    enum Role { RESIDUAL, NORMED, MIXED, MIXER_OUT, MLP_IN, MLP_GATE, CONV_IN, CONV_OUT, QUERY, KEY, VALUE, QKV, LAST_LOGITS }

    final int capacity;
    private final Backend backend;
    private final int padded;
    private final int slots;
    private final Map<String, Backend.Buffer> buffers = new LinkedHashMap<>();
    private Backend.Buffer allLogits;

    Workspace(ModelConfig config, Backend backend, int capacity, int slots) {
        this.backend = backend;
        this.capacity = capacity;
        this.slots = slots;
        this.padded = config.paddedVocabSize();
        plan(config).forEach((key, width) -> {
            boolean f32 = key.startsWith(Role.RESIDUAL.name()) || key.startsWith(Role.LAST_LOGITS.name());
            int rows = key.startsWith(Role.LAST_LOGITS.name()) ? slots : capacity;
            buffers.put(key, f32 ? backend.allocateF32(rows, width) : backend.allocate(rows, width));
        });
    }

    /** Every buffer the model's layers need, by role and width. */
    private static Map<String, Integer> plan(ModelConfig config) {
        Map<String, Integer> plan = new LinkedHashMap<>();
        int d = config.dModel();
        for (Role r : new Role[] {Role.RESIDUAL, Role.NORMED, Role.MIXED, Role.MIXER_OUT}) {
            put(plan, r, d);
        }
        if (config.mlpHidden() > 0) {
            put(plan, Role.MLP_IN, 2 * config.mlpHidden());
            put(plan, Role.MLP_GATE, config.mlpHidden());
        }
        for (MixerConfig m : config.layers()) {
            switch (m) {
                case MixerConfig.BaseConv c -> {
                    put(plan, Role.CONV_IN, 2 * c.innerWidth());
                    put(plan, Role.CONV_OUT, c.innerWidth());
                }
                case MixerConfig.LinearAttention l -> {
                    put(plan, Role.QUERY, l.numHeads() * l.featureDim());
                    put(plan, Role.KEY, l.numHeads() * l.featureDim());
                    put(plan, Role.VALUE, d);
                }
                case MixerConfig.Attention a -> put(plan, Role.QKV, 3 * d);
            }
        }
        put(plan, Role.LAST_LOGITS, config.paddedVocabSize());
        return plan;
    }

    private static void put(Map<String, Integer> plan, Role role, int width) {
        plan.put(role.name() + ":" + width, width);
    }

    /**
     * Bytes of a workspace for this shape when every value takes 4 bytes (an upper bound, for {@code checkFits}), in
     * 64 bits; the logits of every token, allocated on the first call that asks for them, are not included.
     */
    static long bytes(ModelConfig config, int capacity, int slots) {
        long total = 0;
        for (Map.Entry<String, Integer> e : plan(config).entrySet()) {
            long rows = e.getKey().startsWith(Role.LAST_LOGITS.name()) ? slots : capacity;
            total = Sizes.plus(total, Sizes.product(Float.BYTES, rows, e.getValue()));
        }
        return total;
    }

    /** The first {@code rows} rows of the buffer for {@code role} that is {@code cols} wide. */
    Backend.Buffer take(Role role, int rows, int cols) {
        Backend.Buffer b = buffers.get(role.name() + ":" + cols);
        if (b == null) {
            throw new IllegalStateException("the workspace holds no " + role + " buffer " + cols + " wide");
        }
        return backend.view(b, rows);
    }

    /**
     * The buffers of one call of {@code n} tokens, as the layer stack walks them: one residual stream summed into in
     * place, one normed buffer, one branch output, and the mixers' own; nothing kept for a backward.
     */
    Activations activations(ModelConfig config, int n) {
        int d = config.dModel();
        Backend.Buffer residual = take(Role.RESIDUAL, n, d);
        Backend.Buffer normed = take(Role.NORMED, n, d);
        Backend.Buffer branch = take(Role.MIXED, n, d);
        return new Activations() {
            @Override
            public Backend.Buffer residual(int layer) {
                return residual;
            }

            @Override
            public boolean keepsResiduals() {
                return false;
            }

            @Override
            public LayerBuffers layer(int layer, MixerConfig mixer) {
                Backend.Buffer[] own = switch (mixer) {
                    case MixerConfig.BaseConv c -> new Backend.Buffer[] {take(Role.CONV_IN, n, 2 * c.innerWidth()), null,
                            take(Role.CONV_OUT, n, c.innerWidth())};
                    case MixerConfig.LinearAttention l -> new Backend.Buffer[] {
                            take(Role.QUERY, n, l.numHeads() * l.featureDim()),
                            take(Role.KEY, n, l.numHeads() * l.featureDim()), take(Role.VALUE, n, d),
                            take(Role.MIXER_OUT, n, d)};
                    case MixerConfig.Attention a -> new Backend.Buffer[] {take(Role.QKV, n, 3 * d),
                            take(Role.MIXER_OUT, n, d), null};
                };
                boolean mlp = config.hasMlp();
                int h = config.mlpHidden();
                return new LayerBuffers(normed, null, own, branch, normed, null,
                        mlp ? take(Role.MLP_IN, n, 2 * h) : null, mlp ? take(Role.MLP_GATE, n, h) : null, branch);
            }

            @Override
            public Backend.Buffer finalNormed() {
                return normed;
            }

            @Override
            public Backend.Buffer finalRstd() {
                return null;
            }
        };
    }

    /** Logits for every token of a call: allocated on first use (only full-logit calls need them). */
    Backend.Buffer allLogits(int rows) {
        if (allLogits == null) {
            backend.checkFits(Sizes.product(Float.BYTES, capacity, padded), String.format(Locale.ROOT,
                    "the logits of every token of a call (%,d tokens x %,d)", capacity, padded));
            allLogits = backend.allocateF32(capacity, padded);
        }
        return backend.view(allLogits, rows);
    }

    int slots() {
        return slots;
    }

    void release() {
        buffers.values().forEach(backend::release);
        buffers.clear();
        if (allLogits != null) {
            backend.release(allLogits);
            allLogits = null;
        }
    }
}
