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
 */
public record ModelWeights(ModelConfig config, Tensor embedding, Tensor head, Tensor finalNorm, List<Layer> layers) {

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
    static Tensor[] mixerTensors(Mixer mixer) {
        return switch (mixer) {
            case ConvWeights c -> new Tensor[] {c.inProj(), c.inBias(), c.conv(), c.outProj(), c.outBias()};
            case LinearWeights lw -> new Tensor[] {lw.projQ(), lw.projK(), lw.projV(), lw.outProj()};
            case AttentionWeights a -> new Tensor[] {a.wqkv(), a.qkvBias(), a.outProj(), a.outBias()};
        };
    }

    /** Every distinct weight tensor (a tied head counted once). */
    public List<Tensor> tensors() {
        List<Tensor> out = new ArrayList<>(List.of(embedding, finalNorm));
        if (head != embedding) {
            out.add(head);
        }
        for (Layer l : layers) {
            for (Tensor t : mixerTensors(l.mixer())) {
                if (t != null) {
                    out.add(t);
                }
            }
            for (Tensor t : new Tensor[] {l.norm1(), l.norm2(), l.fc1(), l.fc2()}) {
                if (t != null) {
                    out.add(t);
                }
            }
        }
        return out;
    }

    /**
     * The shape of every weight tensor {@code config} defines, under its state-dict name, in a fixed order: the
     * embedding; per layer {@code norm1}, the mixer's tensors, then {@code norm2}, {@code fc1}, {@code fc2}; the final
     * norm; the head when it is not tied. Attention biases the configuration leaves open are left out.
     */
    public static Map<String, long[]> shapes(ModelConfig config) {
        Map<String, long[]> out = new LinkedHashMap<>();
        long d = config.dModel();
        long vp = config.paddedVocabSize();
        out.put("transformer.embeddings.word_embeddings.weight", new long[] {vp, d});
        for (int i = 0; i < config.nLayer(); i++) {
            String p = "transformer.layers." + i + ".";
            out.put(p + "norm1.weight", new long[] {d});
            String m = p + "mixer.";
            switch (config.layer(i)) {
                case MixerConfig.BaseConv c -> {
                    long inner = 2L * c.dModel();
                    out.put(m + "in_proj.weight", new long[] {2 * inner, d});
                    if (c.bias()) {
                        out.put(m + "in_proj.bias", new long[] {2 * inner});
                    }
                    out.put(m + "conv.conv.weight", new long[] {inner, 1, c.kernel()});
                    out.put(m + "out_proj.weight", new long[] {d, inner});
                    if (c.bias()) {
                        out.put(m + "out_proj.bias", new long[] {d});
                    }
                }
                case MixerConfig.LinearAttention l -> {
                    long qk = (long) l.numHeads() * l.featureDim();
                    out.put(m + "proj_q.weight", new long[] {qk, d});
                    out.put(m + "proj_k.weight", new long[] {qk, d});
                    out.put(m + "proj_v.weight", new long[] {d, d});
                    out.put(m + "out_proj.weight", new long[] {d, d});
                }
                case MixerConfig.Attention a -> {
                    out.put(m + "Wqkv.weight", new long[] {3 * d, d});
                    if (Boolean.TRUE.equals(a.qkvBias())) {
                        out.put(m + "Wqkv.bias", new long[] {3 * d});
                    }
                    out.put(m + "out_proj.weight", new long[] {d, d});
                    if (Boolean.TRUE.equals(a.outBias())) {
                        out.put(m + "out_proj.bias", new long[] {d});
                    }
                }
            }
            if (config.hasMlp()) {
                long h = config.mlpHidden();
                out.put(p + "norm2.weight", new long[] {d});
                out.put(p + "mlp.fc1.weight", new long[] {2 * h, d});
                out.put(p + "mlp.fc2.weight", new long[] {d, h});
            }
        }
        out.put("transformer.ln_f.weight", new long[] {d});
        if (!config.tieWordEmbeddings()) {
            out.put("lm_head.weight", new long[] {vp, d});
        }
        return out;
    }

    /**
     * Parameters {@code config} defines (a tied head counted once), computed in 64 bits from the configuration alone,
     * before any weight is read; {@link Long#MAX_VALUE} when the count does not fit in a long.
     */
    public static long parameterCount(ModelConfig config) {
        long n = 0;
        for (long[] shape : shapes(config).values()) {
            n = Sizes.plus(n, Sizes.product(shape));
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

        private Tensor take(String key, long... shape) {
            Tensor t = tensors.remove(key);
            if (t == null) {
                throw new WeightsException(source + ": missing tensor '" + key + "' (expected shape "
                        + Arrays.toString(shape) + ")");
            }
            return check(key, t, shape);
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

        private Tensor takeOptional(String key, Boolean expected, long... shape) {
            boolean present = tensors.containsKey(key);
            if (expected != null && expected != present) {
                throw new WeightsException(source + ": tensor '" + key + "' is " + (present ? "present" : "missing")
                        + " but the configuration says " + (expected ? "it exists" : "there is no such bias"));
            }
            return present ? take(key, shape) : null;
        }

        ModelWeights bind() {
            int d = config.dModel();
            long vp = config.paddedVocabSize();
            Tensor emb = take("transformer.embeddings.word_embeddings.weight", vp, d);
            Tensor head;
            if (config.tieWordEmbeddings()) {
                Tensor copy = tensors.remove("lm_head.weight");
                if (copy != null) {
                    check("lm_head.weight", copy, vp, d);
                }
                head = emb;
            } else {
                head = take("lm_head.weight", vp, d);
            }
            Tensor lnF = take("transformer.ln_f.weight", d);
            List<Layer> layers = new ArrayList<>();
            List<MixerConfig> mixers = new ArrayList<>();
            for (int i = 0; i < config.nLayer(); i++) {
                String p = "transformer.layers." + i + ".";
                Tensor n1 = take(p + "norm1.weight", d);
                Tensor n2 = null;
                Tensor fc1 = null;
                Tensor fc2 = null;
                if (config.hasMlp()) {
                    int h = config.mlpHidden();
                    n2 = take(p + "norm2.weight", d);
                    fc1 = take(p + "mlp.fc1.weight", 2L * h, d);
                    fc2 = take(p + "mlp.fc2.weight", d, h);
                } else {
                    // the reference implementation's MLP of width 0 and its norm, if written: they add nothing
                    for (Map.Entry<String, long[]> e : Map.of("norm2.weight", new long[] {d}, "mlp.fc1.weight",
                            new long[] {0, d}, "mlp.fc2.weight", new long[] {d, 0}).entrySet()) {
                        Tensor t = tensors.remove(p + e.getKey());
                        if (t != null) {
                            check(p + e.getKey(), t, e.getValue());
                        }
                    }
                }
                MixerConfig mc = config.layer(i);
                String m = p + "mixer.";
                Mixer mixer;
                switch (mc) {
                    case MixerConfig.BaseConv c -> {
                        long inner = c.innerWidth();
                        mixer = new ConvWeights(take(m + "in_proj.weight", 2 * inner, d),
                                c.bias() ? take(m + "in_proj.bias", 2 * inner) : null,
                                take(m + "conv.conv.weight", inner, 1, c.kernel()),
                                take(m + "out_proj.weight", d, inner),
                                c.bias() ? take(m + "out_proj.bias", d) : null);
                    }
                    case MixerConfig.LinearAttention l -> {
                        long qk = (long) l.numHeads() * l.featureDim();
                        mixer = new LinearWeights(take(m + "proj_q.weight", qk, d), take(m + "proj_k.weight", qk, d),
                                take(m + "proj_v.weight", d, d), take(m + "out_proj.weight", d, d));
                    }
                    case MixerConfig.Attention a -> {
                        Tensor wqkv = take(m + "Wqkv.weight", 3L * d, d);
                        Tensor qkvBias = takeOptional(m + "Wqkv.bias", a.qkvBias(), 3L * d);
                        Tensor out = take(m + "out_proj.weight", d, d);
                        Tensor outBias = takeOptional(m + "out_proj.bias", a.outBias(), d);
                        Tensor invFreq = tensors.remove(m + "rotary_emb.inv_freq");
                        if (invFreq != null) {
                            check(m + "rotary_emb.inv_freq", invFreq, a.rotaryDim() / 2);
                        }
                        mc = a.withBiases(qkvBias != null, outBias != null);
                        mixer = new AttentionWeights(wqkv, qkvBias, out, outBias);
                    }
                }
                mixers.add(mc);
                layers.add(new Layer(n1, n2, fc1, fc2, mixer));
            }
            if (!tensors.isEmpty()) {
                throw new WeightsException(source + ": unexpected tensor" + (tensors.size() > 1 ? "s " : " ")
                        + new TreeSet<>(tensors.keySet()) + " for this configuration");
            }
            return new ModelWeights(config.withLayers(mixers), emb, head, lnF, layers);
        }
    }
}
