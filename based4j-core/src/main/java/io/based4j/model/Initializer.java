package io.based4j.model;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Fresh weights for a configuration, initialised as the released models were (BASED-SPEC section 6): Linear and
 * Embedding N(0, 0.02); every {@code out_proj} and {@code fc2} N(0, 0.02 / sqrt(2 n_layer)); biases 0; norms 1;
 * conv taps uniform in +-1/sqrt(3). Deterministic for a seed, whatever the thread count.
 */
public final class Initializer {
    private static final int CHUNK = 1 << 20;

    private Initializer() {
    }

    /**
     * A state dict (HF key names) of float32 tensors allocated in {@code arena}, which must be shared: the tensors
     * are filled in parallel.
     */
    public static Map<String, Tensor> stateDict(ModelConfig config, long seed, Arena arena) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        int d = config.dModel();
        double std = 0.02;
        double outStd = 0.02 / Math.sqrt(2.0 * config.nLayer());
        List<Runnable> fills = new ArrayList<>();
        SplittableRandom seeds = new SplittableRandom(seed);
        out.put("transformer.embeddings.word_embeddings.weight",
                normal(arena, fills, seeds.nextLong(), std, config.paddedVocabSize(), d));
        for (int i = 0; i < config.nLayer(); i++) {
            String p = "transformer.layers." + i + ".";
            out.put(p + "norm1.weight", constant(arena, 1f, d));
            switch (config.layer(i)) {
                case MixerConfig.BaseConv c -> {
                    int inner = c.innerWidth();
                    out.put(p + "mixer.in_proj.weight", normal(arena, fills, seeds.nextLong(), std, 2 * inner, d));
                    if (c.bias()) {
                        out.put(p + "mixer.in_proj.bias", constant(arena, 0f, 2 * inner));
                    }
                    out.put(p + "mixer.conv.conv.weight",
                            uniform(arena, fills, seeds.nextLong(), 1.0 / Math.sqrt(c.kernel()), inner, 1, c.kernel()));
                    out.put(p + "mixer.out_proj.weight", normal(arena, fills, seeds.nextLong(), outStd, d, inner));
                    if (c.bias()) {
                        out.put(p + "mixer.out_proj.bias", constant(arena, 0f, d));
                    }
                }
                case MixerConfig.LinearAttention l -> {
                    int qk = l.numHeads() * l.featureDim();
                    out.put(p + "mixer.proj_q.weight", normal(arena, fills, seeds.nextLong(), std, qk, d));
                    out.put(p + "mixer.proj_k.weight", normal(arena, fills, seeds.nextLong(), std, qk, d));
                    out.put(p + "mixer.proj_v.weight", normal(arena, fills, seeds.nextLong(), std, d, d));
                    out.put(p + "mixer.out_proj.weight", normal(arena, fills, seeds.nextLong(), outStd, d, d));
                }
                case MixerConfig.Attention a -> {
                    out.put(p + "mixer.Wqkv.weight", normal(arena, fills, seeds.nextLong(), std, 3 * d, d));
                    if (Boolean.TRUE.equals(a.qkvBias())) {
                        out.put(p + "mixer.Wqkv.bias", constant(arena, 0f, 3 * d));
                    }
                    out.put(p + "mixer.out_proj.weight", normal(arena, fills, seeds.nextLong(), outStd, d, d));
                    if (Boolean.TRUE.equals(a.outBias())) {
                        out.put(p + "mixer.out_proj.bias", constant(arena, 0f, d));
                    }
                }
            }
            if (config.hasMlp()) {
                int h = config.mlpHidden();
                out.put(p + "norm2.weight", constant(arena, 1f, d));
                out.put(p + "mlp.fc1.weight", normal(arena, fills, seeds.nextLong(), std, 2 * h, d));
                out.put(p + "mlp.fc2.weight", normal(arena, fills, seeds.nextLong(), outStd, d, h));
            }
        }
        out.put("transformer.ln_f.weight", constant(arena, 1f, d));
        if (!config.tieWordEmbeddings()) {
            out.put("lm_head.weight", normal(arena, fills, seeds.nextLong(), std, config.paddedVocabSize(), d));
        }
        fills.parallelStream().forEach(Runnable::run);
        return out;
    }

    /** Random weights bound to the configuration. */
    public static ModelWeights weights(ModelConfig config, long seed, Arena arena) {
        return ModelWeights.bind(config, stateDict(config, seed, arena), "initializer");
    }

    private static Tensor constant(Arena arena, float value, long... shape) {
        long n = Tensor.numel(shape);
        MemorySegment seg = arena.allocate(n * 4, 64);
        for (long i = 0; i < n; i++) {
            seg.setAtIndex(Tensor.F32_LE, i, value);
        }
        return new Tensor(DType.F32, shape, seg);
    }

    private static Tensor normal(Arena arena, List<Runnable> fills, long seed, double std, long... shape) {
        return random(arena, fills, seed, shape, r -> (float) (r.nextGaussian() * std));
    }

    private static Tensor uniform(Arena arena, List<Runnable> fills, long seed, double bound, long... shape) {
        return random(arena, fills, seed, shape, r -> (float) ((r.nextDouble() * 2 - 1) * bound));
    }

    private interface Draw {
        float next(SplittableRandom r);
    }

    /** Allocates now; queues the filling in chunks, each with its own seed, so threads do not change the values. */
    private static Tensor random(Arena arena, List<Runnable> fills, long seed, long[] shape, Draw draw) {
        long n = Tensor.numel(shape);
        MemorySegment seg = arena.allocate(n * 4, 64);
        int chunks = (int) ((n + CHUNK - 1) / CHUNK);
        SplittableRandom root = new SplittableRandom(seed);
        long[] chunkSeeds = IntStream.range(0, chunks).mapToLong(i -> root.nextLong()).toArray();
        for (int c = 0; c < chunks; c++) {
            long from = (long) c * CHUNK;
            long to = Math.min(n, from + CHUNK);
            long s = chunkSeeds[c];
            fills.add(() -> {
                SplittableRandom r = new SplittableRandom(s);
                for (long i = from; i < to; i++) {
                    seg.setAtIndex(Tensor.F32_LE, i, draw.next(r));
                }
            });
        }
        return new Tensor(DType.F32, shape, seg);
    }
}
