package io.based4j.model;

import io.based4j.config.ModelConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.MemoryNeed;
import io.based4j.memory.Sizes;
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
 * Fresh weights for a configuration, initialised as the released models were (BASED-SPEC section 6), each by its
 * {@link WeightSpec.Kind}: Linear and Embedding N(0, 0.02); every {@code out_proj} and {@code fc2}
 * N(0, 0.02 / sqrt(2 n_layer)); biases 0; norms 1; conv taps uniform in +-1/sqrt(3). Deterministic for a seed,
 * whatever the thread count.
 */
public final class Initializer {
    private static final int CHUNK = 1 << 20;

    private Initializer() {
    }

    /**
     * A state dict (HF key names) of float32 tensors allocated in {@code arena}, which must be shared: the tensors
     * are filled in parallel. Refused before anything is allocated when the weights do not fit in the memory the
     * machine has available.
     */
    public static Map<String, Tensor> stateDict(ModelConfig config, long seed, Arena arena) {
        return stateDict(config, seed, arena, HostMemory.system());
    }

    /** {@link #stateDict(ModelConfig, long, Arena)}, checking the weights' size against {@code memory}. */
    public static Map<String, Tensor> stateDict(ModelConfig config, long seed, Arena arena, HostMemory memory) {
        long params = ModelWeights.parameterCount(config);
        memory.require(MemoryNeed.offHeap("initializing a model of " + Sizes.count(params) + " parameters",
                Sizes.times(params, Float.BYTES), "for its float32 weights"));
        Map<String, Tensor> out = new LinkedHashMap<>();
        double std = 0.02;
        double outStd = 0.02 / Math.sqrt(2.0 * config.nLayer());
        List<Runnable> fills = new ArrayList<>();
        SplittableRandom seeds = new SplittableRandom(seed);
        for (WeightSpec w : ModelWeights.freshSpecs(config)) {
            long[] shape = w.shape();
            Tensor t = switch (w.kind()) {
                case NORM -> constant(arena, 1f, shape);
                case BIAS -> constant(arena, 0f, shape);
                case CONV_TAPS -> uniform(arena, fills, seeds.nextLong(), 1.0 / Math.sqrt(shape[2]), shape);
                case RESIDUAL_MATRIX -> normal(arena, fills, seeds.nextLong(), outStd, shape);
                case EMBEDDING, HEAD, MATRIX -> normal(arena, fills, seeds.nextLong(), std, shape);
            };
            out.put(w.name(), t);
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
