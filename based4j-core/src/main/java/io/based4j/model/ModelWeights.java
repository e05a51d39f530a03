package io.based4j.model;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import io.based4j.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * A checkpoint's tensors matched to the model its configuration defines (BASED-SPEC section 3): every expected key
 * present with its shape, every other key refused (after stripping {@code model.}, dropping training counters and
 * decay buffers, which have no effect on outputs).
 *
 * @param config the configuration, with attention bias flags settled by the weights where it was silent
 * @param named every distinct weight (a tied head once) with its spec, in {@link #specs} order
 */
public record ModelWeights(ModelConfig config, Tensor embedding, Tensor head, Tensor finalNorm, List<Layer> layers,
                           List<Bound> named) {
    static final String EMBEDDING = "transformer.embeddings.word_embeddings.weight";
    static final String FINAL_NORM = "transformer.ln_f.weight";
    static final String HEAD = "lm_head.weight";

    /** A weight tensor with the spec it was bound to (after the configuration's open biases are settled). */
    public record Bound(WeightSpec spec, Tensor tensor) {
    }

    public record Layer(Tensor norm1, Tensor norm2, Tensor fc1, Tensor fc2, Mixer mixer) {
    }

    public sealed interface Mixer {
    }

    public record ConvWeights(Tensor inProj, Tensor inBias, Tensor conv, Tensor outProj, Tensor outBias) implements Mixer {
    }

    public record LinearWeights(Tensor projQ, Tensor projK, Tensor projV, Tensor outProj) implements Mixer {
    }

    public record AttentionWeights(Tensor wqkv, Tensor qkvBias, Tensor outProj, Tensor outBias) implements Mixer {
    }

    /** A mixer's tensors in a fixed order per kind; absent biases are null. */
    public static Tensor[] mixerTensors(Mixer mixer) {
        return switch (mixer) {
            case ConvWeights c -> new Tensor[] {c.inProj(), c.inBias(), c.conv(), c.outProj(), c.outBias()};
            case LinearWeights lw -> new Tensor[] {lw.projQ(), lw.projK(), lw.projV(), lw.outProj()};
            case AttentionWeights a -> new Tensor[] {a.wqkv(), a.qkvBias(), a.outProj(), a.outBias()};
        };
    }

    /** Every distinct weight tensor (a tied head counted once). */
    public List<Tensor> tensors() {
        return named.stream().map(Bound::tensor).toList();
    }

    /**
     * Every weight tensor {@code config} defines, in a fixed order: the embedding; per layer {@code norm1}, the
     * mixer's tensors, then {@code norm2}, {@code fc1}, {@code fc2}; the final norm; the head when it is not tied.
     * Attention biases the configuration leaves open are optional (present only if a checkpoint holds them).
     */
    public static List<WeightSpec> specs(ModelConfig config) {
        List<WeightSpec> out = new ArrayList<>();
        long d = config.dModel();
        long vp = config.paddedVocabSize();
        out.add(new WeightSpec(EMBEDDING, new long[] {vp, d}, WeightSpec.Kind.EMBEDDING, false));
        for (int i = 0; i < config.nLayer(); i++) {
            String p = "transformer.layers." + i + ".";
            out.add(new WeightSpec(p + "norm1.weight", new long[] {d}, WeightSpec.Kind.NORM, false));
            String m = p + "mixer.";
            switch (config.layer(i)) {
                case MixerConfig.BaseConv c -> {
                    long inner = c.innerWidth();
                    out.add(new WeightSpec(m + "in_proj.weight", new long[] {2 * inner, d}, WeightSpec.Kind.MATRIX, false));
                    if (c.bias()) {
                        out.add(new WeightSpec(m + "in_proj.bias", new long[] {2 * inner}, WeightSpec.Kind.BIAS, false));
                    }
                    out.add(new WeightSpec(m + "conv.conv.weight", new long[] {inner, 1, c.kernel()},
                            WeightSpec.Kind.CONV_TAPS, false));
                    out.add(new WeightSpec(m + "out_proj.weight", new long[] {d, inner},
                            WeightSpec.Kind.RESIDUAL_MATRIX, false));
                    if (c.bias()) {
                        out.add(new WeightSpec(m + "out_proj.bias", new long[] {d}, WeightSpec.Kind.BIAS, false));
                    }
                }
                case MixerConfig.LinearAttention l -> {
                    long qk = (long) l.numHeads() * l.featureDim();
                    out.add(new WeightSpec(m + "proj_q.weight", new long[] {qk, d}, WeightSpec.Kind.MATRIX, false));
                    out.add(new WeightSpec(m + "proj_k.weight", new long[] {qk, d}, WeightSpec.Kind.MATRIX, false));
                    out.add(new WeightSpec(m + "proj_v.weight", new long[] {d, d}, WeightSpec.Kind.MATRIX, false));
                    out.add(new WeightSpec(m + "out_proj.weight", new long[] {d, d}, WeightSpec.Kind.RESIDUAL_MATRIX,
                            false));
                }
                case MixerConfig.Attention a -> {
                    out.add(new WeightSpec(m + "Wqkv.weight", new long[] {3 * d, d}, WeightSpec.Kind.MATRIX, false));
                    if (!Boolean.FALSE.equals(a.qkvBias())) {
                        out.add(new WeightSpec(m + "Wqkv.bias", new long[] {3 * d}, WeightSpec.Kind.BIAS,
                                a.qkvBias() == null));
                    }
                    out.add(new WeightSpec(m + "out_proj.weight", new long[] {d, d}, WeightSpec.Kind.RESIDUAL_MATRIX,
                            false));
                    if (!Boolean.FALSE.equals(a.outBias())) {
                        out.add(new WeightSpec(m + "out_proj.bias", new long[] {d}, WeightSpec.Kind.BIAS,
                                a.outBias() == null));
                    }
                }
            }
            if (config.hasMlp()) {
                long h = config.mlpHidden();
                out.add(new WeightSpec(p + "norm2.weight", new long[] {d}, WeightSpec.Kind.NORM, false));
                out.add(new WeightSpec(p + "mlp.fc1.weight", new long[] {2 * h, d}, WeightSpec.Kind.MATRIX, false));
                out.add(new WeightSpec(p + "mlp.fc2.weight", new long[] {d, h}, WeightSpec.Kind.RESIDUAL_MATRIX, false));
            }
        }
        out.add(new WeightSpec(FINAL_NORM, new long[] {d}, WeightSpec.Kind.NORM, false));
        if (!config.tieWordEmbeddings()) {
            out.add(new WeightSpec(HEAD, new long[] {vp, d}, WeightSpec.Kind.HEAD, false));
        }
        return out;
    }

    /** The weights a fresh model of {@code config} has: its {@link #specs} without the optional ones. */
    public static List<WeightSpec> freshSpecs(ModelConfig config) {
        return specs(config).stream().filter(w -> !w.optional()).toList();
    }

    /** The name and shape of every weight of a fresh model of {@code config}, in {@link #specs} order. */
    public static Map<String, long[]> shapes(ModelConfig config) {
        Map<String, long[]> out = new LinkedHashMap<>();
        for (WeightSpec w : freshSpecs(config)) {
            out.put(w.name(), w.shape());
        }
        return out;
    }

    /**
     * Parameters a fresh model of {@code config} has (a tied head counted once), computed in 64 bits from the
     * configuration alone, before any weight is read; {@link Long#MAX_VALUE} when the count does not fit in a long.
     */
    public static long parameterCount(ModelConfig config) {
        long n = 0;
        for (WeightSpec w : freshSpecs(config)) {
            n = Sizes.plus(n, Sizes.product(w.shape()));
        }
        return n;
    }

    /** Thrown when tensors do not match the configuration; the message names the source and the key. */
    public static final class WeightsException extends RuntimeException {
        public WeightsException(String message) {
            super(message);
        }
    }

    /** Key name normalisation: strips {@code model.}, drops keys that are not weights. Null means "drop". */
    static String normalize(String key) {
        String k = key.startsWith("model.") ? key.substring("model.".length()) : key;
        if (k.contains("metrics")) {
            return null;
        }
        if (k.equals("transformer.decay.decay") || k.matches("transformer\\.layers\\.\\d+\\.mixer\\.(fixed_)?decay")) {
            return null;
        }
        return k;
    }

    /** Binds {@code tensors} (as read from {@code source}) to {@code config}. */
    public static ModelWeights bind(ModelConfig config, Map<String, Tensor> tensors, String source) {
        Map<String, Tensor> named = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String k = normalize(e.getKey());
            if (k != null && named.put(k, e.getValue()) != null) {
                throw new WeightsException(source + ": key '" + k + "' appears twice (with and without 'model.')");
            }
        }
        return new Binder(config, named, source).bind();
    }

    private static final class Binder {
        private final ModelConfig config;
        private final Map<String, Tensor> tensors;
        private final String source;

        Binder(ModelConfig config, Map<String, Tensor> tensors, String source) {
            this.config = config;
            this.tensors = new LinkedHashMap<>(tensors);
            this.source = source;
        }

        private Tensor check(String key, Tensor t, long... shape) {
            if (!t.hasShape(shape)) {
                throw new WeightsException(source + ": tensor '" + key + "' has shape " + Arrays.toString(t.shape())
                        + ", expected " + Arrays.toString(shape));
            }
            if (!t.dtype().isFloatingPoint()) {
                throw new WeightsException(source + ": tensor '" + key + "' has dtype " + t.dtype()
                        + ", expected a floating-point type");
            }
            return t;
        }

        ModelWeights bind() {
            // every weight the configuration defines, by its spec; optional ones only when present
            Map<String, Tensor> bound = new LinkedHashMap<>();
            for (WeightSpec w : specs(config)) {
                Tensor t = tensors.remove(w.name());
                if (t == null && !w.optional()) {
                    throw new WeightsException(source + ": missing tensor '" + w.name() + "' (expected shape "
                            + Arrays.toString(w.shape()) + ")" + (w.kind() == WeightSpec.Kind.BIAS
                            ? "; the configuration says this bias exists" : ""));
                }
                if (t != null) {
                    bound.put(w.name(), check(w.name(), t, w.shape()));
                }
            }
            // keys that carry no weight of their own: a tied head's copy, attention's rotary frequencies, the
            // empty MLP a model without one is written with for the reference
            long d = config.dModel();
            Tensor copy = config.tieWordEmbeddings() ? tensors.remove(HEAD) : null;
            if (copy != null) {
                check(HEAD, copy, config.paddedVocabSize(), d);
            }
            Tensor emb = bound.get(EMBEDDING);
            Tensor head = config.tieWordEmbeddings() ? emb : bound.get(HEAD);
            List<Layer> layers = new ArrayList<>();
            List<MixerConfig> mixers = new ArrayList<>();
            for (int i = 0; i < config.nLayer(); i++) {
                String p = "transformer.layers." + i + ".";
                if (!config.hasMlp()) {
                    // the reference implementation's MLP of width 0 and its norm, if written: they add nothing
                    for (Map.Entry<String, long[]> e : Map.of("norm2.weight", new long[] {d}, "mlp.fc1.weight",
                            new long[] {0, d}, "mlp.fc2.weight", new long[] {d, 0}).entrySet()) {
                        Tensor t = tensors.remove(p + e.getKey());
                        if (t != null) {
                            check(p + e.getKey(), t, e.getValue());
                        }
                    }
                }
                String m = p + "mixer.";
                MixerConfig mc = config.layer(i);
                Mixer mixer = switch (mc) {
                    case MixerConfig.BaseConv c -> new ConvWeights(bound.get(m + "in_proj.weight"),
                            bound.get(m + "in_proj.bias"), bound.get(m + "conv.conv.weight"),
                            bound.get(m + "out_proj.weight"), bound.get(m + "out_proj.bias"));
                    case MixerConfig.LinearAttention l -> new LinearWeights(bound.get(m + "proj_q.weight"),
                            bound.get(m + "proj_k.weight"), bound.get(m + "proj_v.weight"),
                            bound.get(m + "out_proj.weight"));
                    case MixerConfig.Attention a -> {
                        Tensor invFreq = tensors.remove(m + "rotary_emb.inv_freq");
                        if (invFreq != null) {
                            check(m + "rotary_emb.inv_freq", invFreq, a.rotaryDim() / 2);
                        }
                        Tensor qkvBias = bound.get(m + "Wqkv.bias");
                        Tensor outBias = bound.get(m + "out_proj.bias");
                        mc = a.withBiases(qkvBias != null, outBias != null);
                        yield new AttentionWeights(bound.get(m + "Wqkv.weight"), qkvBias, bound.get(m + "out_proj.weight"),
                                outBias);
                    }
                };
                mixers.add(mc);
                layers.add(new Layer(bound.get(p + "norm1.weight"), bound.get(p + "norm2.weight"),
                        bound.get(p + "mlp.fc1.weight"), bound.get(p + "mlp.fc2.weight"), mixer));
            }
            for (String key : tensors.keySet()) {
                if (key.matches("transformer\\.layers\\.\\d+\\.mixer\\.(Wqkv|out_proj)\\.bias")) {
                    throw new WeightsException(source + ": tensor '" + key + "' is present but the configuration says"
                            + " there is no such bias");
                }
            }
            if (!tensors.isEmpty()) {
                throw new WeightsException(source + ": unexpected tensor" + (tensors.size() > 1 ? "s " : " ")
                        + new TreeSet<>(tensors.keySet()) + " for this configuration");
            }
            ModelConfig settled = config.withLayers(mixers);
            Map<String, WeightSpec> specs = new LinkedHashMap<>();
            for (WeightSpec w : specs(settled)) {
                specs.put(w.name(), w);
            }
            List<Bound> named = new ArrayList<>();
            bound.forEach((name, t) -> named.add(new Bound(specs.get(name), t)));
            return new ModelWeights(settled, emb, head, bound.get(FINAL_NORM), layers, List.copyOf(named));
        }
    }
}
