package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.backend.Backend;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.memory.HostMemory;
import io.based4j.memory.NotEnoughMemoryException;
import io.based4j.memory.Sizes;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sizes of models, sessions and activations are computed in 64 bits and checked against the host's memory before
 * anything is allocated or read: a refusal is one line with the bytes needed and free, never an
 * {@link OutOfMemoryError}, a negative size or an {@link ArrayIndexOutOfBoundsException}.
 */
class MemoryCheckTest {
    private static final long KIB = 1L << 10;
    private static final long GIB = 1L << 30;

    @TempDir
    Path tmp;

    /** The golden tiny model's config.json with some fields replaced, in a new directory that holds no weights. */
    private Path configOnly(String name, Map<String, Object> changes) throws IOException {
        Map<String, Object> config = new LinkedHashMap<>(Json.parseObject(
                Files.readString(GoldenModel.dir().resolve("config.json"))));
        config.putAll(changes);
        Path dir = Files.createDirectories(tmp.resolve(name));
        Files.writeString(dir.resolve("config.json"), Json.write(config));
        return dir;
    }

    @Test
    void anAbsurdConfigIsRefusedFromItsSizesBeforeAnyWeightIsRead() throws IOException {
        // parseable and within every per-tensor limit, but 13 trillion parameters
        Path dir = configOnly("absurd", Map.of("n_embd", 16384L, "n_layer", 4096L, "n_inner", 32768L));
        long params = ModelWeights.parameterCount(ConfigParser.read(dir.resolve("config.json")));
        assertTrue(params > 10_000_000_000_000L, "parameters " + params);
        // the directory holds no checkpoint at all: the refusal comes before the loader looks for one
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> BasedModel.load(dir, new CpuBackend()));
        assertEquals(Sizes.times(params, 2), e.needed(), "2 bytes a parameter, the least a checkpoint stores");
        assertTrue(e.needed() > e.free());
        assertTrue(e.getMessage().startsWith("model " + dir + " needs " + Sizes.human(2 * params) + " for its weights"
                + " (" + Sizes.count(params) + " parameters of 2 bytes or more) but only "), e.getMessage());
        assertTrue(e.getMessage().contains(" is free (memory available on this machine"), e.getMessage());
    }

    @Test
    void weightsAreCheckedFromTheConfigThenExactlyAgainstAnInjectedBudget() {
        Path golden = GoldenModel.dir();
        ModelConfig config = ConfigParser.read(golden.resolve("config.json"));
        long params = ModelWeights.parameterCount(config);
        // less than 2 bytes a parameter: refused from the config
        NotEnoughMemoryException fromConfig = assertThrows(NotEnoughMemoryException.class,
                () -> BasedModel.load(golden, new CpuBackend(HostMemory.budget(GIB, params))));
        assertEquals(2 * params, fromConfig.needed());
        assertEquals(params, fromConfig.free());
        // between 2 and 4 bytes a parameter: the config check passes, the float32 file's mapped pages do not fit
        NotEnoughMemoryException exact = assertThrows(NotEnoughMemoryException.class,
                () -> BasedModel.load(golden, new CpuBackend(HostMemory.budget(GIB, 3 * params))));
        assertEquals(4 * params, exact.needed());
        assertEquals("model " + golden + " needs " + Sizes.human(4 * params) + " for its weights (" + Sizes.count(params)
                + " parameters) but only " + Sizes.human(3 * params) + " is free (memory available outside the Java"
                + " heap)", exact.getMessage());
        // with room for them it loads
        try (BasedModel m = BasedModel.load(golden, new CpuBackend(HostMemory.budget(GIB, 4 * params)))) {
            assertEquals(params, m.parameterCount());
        }
    }

    @Test
    void parameterCountFromTheConfigMatchesTheLoadedWeights() {
        try (BasedModel m = BasedModel.load(GoldenModel.dir(), new CpuBackend())) {
            assertEquals(m.parameterCount(), ModelWeights.parameterCount(m.config()));
        }
        ModelConfig b1 = Presets.get("based-1b");
        try (Arena arena = Arena.ofShared()) {
            // the 1B preset's parameters from the config alone, without allocating them
            long params = ModelWeights.parameterCount(b1);
            assertTrue(params > 1_000_000_000L && params < 1_500_000_000L, "based-1b parameters " + params);
            ModelConfig small = ConfigParser.fromMap("small", Map.of("n_embd", 16L, "n_layer", 2L, "n_head", 2L,
                    "vocab_size", 40L, "n_inner", 32L));
            long sum = Initializer.stateDict(small, 1, arena).values().stream().mapToLong(t -> t.numel()).sum();
            assertEquals(ModelWeights.parameterCount(small), sum);
        }
    }

    @Test
    void theInitializerRefusesWeightsThatCannotFitBeforeAllocating() {
        ModelConfig huge = ConfigParser.fromMap("huge", Map.of("n_embd", 16384L, "n_layer", 4096L, "n_head", 16L,
                "vocab_size", 50257L, "n_inner", 32768L));
        try (Arena arena = Arena.ofShared()) {
            NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                    () -> Initializer.stateDict(huge, 1, arena));
            assertTrue(e.getMessage().startsWith("initializing a model of "), e.getMessage());
            assertTrue(e.getMessage().contains(" for its float32 weights but only "), e.getMessage());
            // an injected budget refuses the tiny model too
            ModelConfig tiny = ConfigParser.read(GoldenModel.dir().resolve("config.json"));
            assertThrows(NotEnoughMemoryException.class,
                    () -> Initializer.stateDict(tiny, 1, arena, HostMemory.budget(GIB, 64 * KIB)));
        }
    }

    @Test
    void aSessionTooLargeForTheHeapIsRefusedBeforeItsStateIsAllocated() {
        try (BasedModel m = BasedModel.load(GoldenModel.dir(), new CpuBackend())) {
            // every layer's state is fixed (conv, linear attention, sliding window): 10^8 sequences need terabytes
            NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                    () -> m.newSession(100_000_000, 16));
            assertTrue(e.getMessage().startsWith("a session of 100,000,000 sequences of up to 16 tokens (recurrent"
                    + " state "), e.getMessage());
            assertTrue(e.getMessage().contains(" but only ") && e.getMessage().contains("Java heap"), e.getMessage());
            assertTrue(e.needed() > e.free());
        }
    }

    @Test
    void aSessionIsCheckedAgainstAnInjectedHeapBudget() {
        Backend backend = new CpuBackend(HostMemory.budget(256 * KIB, GIB));
        try (BasedModel m = BasedModel.load(GoldenModel.dir(), backend)) {
            // one sequence of 8 tokens: a few KiB of state and activations
            m.newSession(1, 8).close();
            NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class, () -> m.newSession(64, 2048));
            assertEquals(256 * KIB, e.free());
            assertTrue(e.getMessage().contains(" but only 256.0 KiB is free (Java heap of at most 256.0 KiB"),
                    e.getMessage());
        }
    }

    @Test
    void aFullAttentionCacheOfTwoBillionTokensIsRefusedNotOverflowed() throws IOException {
        // the golden model with its sliding-window layers turned into full attention (the same weights)
        Path dir = configOnly("full-attention", Map.of());
        Map<String, Object> config = new LinkedHashMap<>(Json.parseObject(Files.readString(dir.resolve("config.json"))));
        config.remove("alt_mixer_2");
        Files.writeString(dir.resolve("config.json"), Json.write(config));
        Files.copy(GoldenModel.dir().resolve("model.safetensors"), dir.resolve("model.safetensors"));
        for (Backend backend : new Backend[] {new CpuBackend(), new ReferenceBackend()}) {
            try (BasedModel m = BasedModel.load(dir, backend)) {
                assertTrue(m.hasGrowingState());
                // 2 x 4 bytes x 64 x (2^31 - 1) tokens per attention layer: the product overflows an int many times
                NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                        () -> m.newSession(1, Integer.MAX_VALUE));
                assertTrue(e.getMessage().startsWith("a session of 1 sequence of up to 2,147,483,647 tokens"
                        + " (recurrent state 2.0 TiB"), e.getMessage());
            }
        }
    }

    @Test
    void activationsLongerThanOneJavaArrayAreRefusedClearly() {
        try (CpuBackend backend = new CpuBackend()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> backend.allocate(65536, 65536));
            assertEquals("activations: 65,536 x 65,536 = 4,294,967,296 values, more than one Java array holds"
                    + " (2,147,483,639)", e.getMessage());
        }
        // within the array limit but beyond the heap: refused before allocating
        try (CpuBackend backend = new CpuBackend(HostMemory.budget(GIB, GIB))) {
            NotEnoughMemoryException tooBig = assertThrows(NotEnoughMemoryException.class,
                    () -> backend.allocate(1 << 20, 2000));
            assertTrue(tooBig.getMessage().startsWith("a buffer of 1,048,576 x 2,000 activations needs 7.8 GiB but"
                    + " only 1.0 GiB is free"), tooBig.getMessage());
        }
    }

    @Test
    void stateSizesSaturateInsteadOfWrapping() {
        // a wide model the parser accepts (its Wqkv, 3d x d, must stay within one tensor)
        ModelConfig config = ConfigParser.fromMap("attention", Map.of("n_embd", 16384L, "n_layer", 1L, "n_head", 1L,
                "vocab_size", 8L, "n_inner", 0L));
        // 2 x 4 bytes x 16,384 x (2^31 - 1) fits a long; the state of 2^31 such sequences does not
        long perSequence = StateSize.total(config, Integer.MAX_VALUE);
        assertEquals(8L * 16384 * Integer.MAX_VALUE, perSequence);
        assertEquals(Long.MAX_VALUE, Sizes.times(perSequence, Integer.MAX_VALUE));
    }
}
