package io.based4j.train;

import io.based4j.backend.TrainingBackend;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.config.ModelConfig;
import io.based4j.memory.HostMemory;
import io.based4j.memory.NotEnoughMemoryException;
import io.based4j.memory.Sizes;
import io.based4j.model.Initializer;
import io.based4j.train.cpu.CpuTrainBackend;
import io.based4j.train.data.TokenShard;
import io.based4j.train.mqar.MqarSlice;
import io.based4j.train.mqar.MqarTrainer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A training run's memory (parameters, gradients, AdamW moments, activations for batch x seq_len, the loss's logits
 * block) is planned in 64 bits and checked before the initializer allocates or the first update runs; a refusal names
 * the bytes needed and free and the setting to lower.
 */
class TrainMemoryCheckTest {
    private static final long MIB = 1L << 20;
    private static final long GIB = 1L << 30;

    @TempDir
    Path tmp;

    private static ModelConfig model(int d, List<String> layers, int vocab) {
        return ModelSpec.parse("test model", ModelSpec.configMap(d, layers, 4, 4, 8, 16, 2L * d, vocab, true, true,
                1e-5));
    }

    /** Settings as a YAML file would give them, over a small shard of tokens. */
    private TrainConfig settings(int d, int vocab, int seqLen, int batch, Path out) {
        Path data = tmp.resolve("data");
        int[] tokens = new int[4096];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = i % 100;
        }
        TokenShard.write(data.resolve("train-00000.bin"), tokens);
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("model", new LinkedHashMap<>(Map.of("d_model", d, "layers", List.of("conv", "linear", "swa"),
                "vocab_size", vocab)));
        s.put("data", new LinkedHashMap<>(Map.of("dir", data.toString(), "seq_len", seqLen)));
        s.put("train", new LinkedHashMap<>(Map.of("steps", 2, "batch_size", batch, "out", out.toString())));
        s.put("eval", new LinkedHashMap<>(Map.of("interval", 0)));
        return TrainConfig.from(new Settings("test settings", "", s), null);
    }

    private static Trainer trainer(TrainConfig cfg, TrainingBackend backend) {
        return new Trainer(cfg, backend, new PrintWriter(new StringWriter()), false);
    }

    @Test
    void aBatchThatCannotFitIsRefusedBeforeTrainingStartsNamingTheSetting() {
        Path out = tmp.resolve("run");
        // 256 x 4,096 tokens of a d-256 model: tens of GiB of float64 activations, beyond the tests' heap (-Xmx6g)
        TrainConfig cfg = settings(256, 50257, 4096, 256, out);
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> trainer(cfg, new CpuTrainBackend()).run(null, Long.MAX_VALUE));
        String m = e.getMessage();
        assertTrue(m.startsWith("training at batch_size 256 x seq_len 4,096 needs "), m);
        assertTrue(m.contains("activations of 1,048,576 tokens") && m.contains(" but only ")
                && m.contains("Java heap"), m);
        assertTrue(m.endsWith("; lower batch_size or seq_len"), m);
        assertTrue(e.needed() > e.free());
        assertFalse(Files.exists(out), "nothing was written for a refused run");
    }

    @Test
    void aSmallRunIsRefusedByAnInjectedBudgetAndAcceptedWithoutIt() {
        ModelConfig config = model(64, List.of("conv", "linear", "swa"), 1000);
        long params = io.based4j.model.ModelWeights.parameterCount(config);
        // room for the parameters, gradients and moments (4 float64 each) but not for 64 x 512 tokens of activations
        long budget = 4 * 8 * params + 4 * MIB;
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> TrainMemory.check(config, 64, 512, new CpuTrainBackend(HostMemory.budget(budget, GIB))));
        assertEquals(budget, e.free());
        long activations = 8 * TrainModel.activationValues(config, 64 * 512);
        assertTrue(e.needed() > activations, "the need includes the activations");
        assertTrue(e.getMessage().contains("activations of 32,768 tokens " + Sizes.human(activations)),
                e.getMessage());
        assertTrue(e.getMessage().endsWith("; lower batch_size or seq_len"), e.getMessage());
        assertDoesNotThrow(() -> TrainMemory.check(config, 2, 16, new CpuTrainBackend(HostMemory.budget(budget,
                GIB))));
    }

    @Test
    void aModelTooLargeToTrainIsNamedAsSuch() {
        ModelConfig config = model(1024, List.of("attn", "attn"), 65536);
        NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                () -> TrainMemory.check(config, 1, 16, new CpuTrainBackend(HostMemory.budget(256 * MIB, GIB))));
        assertTrue(e.getMessage().startsWith("a model of "), e.getMessage());
        assertTrue(e.getMessage().contains("(parameters, gradients and two AdamW moments, 64-bit) but only 256.0 MiB"
                + " is free"), e.getMessage());
        assertTrue(e.getMessage().endsWith("; a smaller model is needed (d_model, layers or vocab_size)"),
                e.getMessage());
    }

    @Test
    void batchTimesLengthBeyondOneJavaArrayIsRefusedNotOverflowed() {
        Path out = tmp.resolve("run");
        // 65,536 x 65,536 tokens: the int product wraps to 0. The settings refuse it as they are read...
        IllegalArgumentException s = assertThrows(IllegalArgumentException.class,
                () -> settings(64, 1000, 65536, 65536, out));
        assertTrue(s.getMessage().contains("train.batch_size 65536 x (data.seq_len 65536 + 1) = 4295032832 tokens per"
                + " micro-batch, more than one array holds"), s.getMessage());
        assertFalse(Files.exists(out));
        // ...and the step plan, which models built in code reach without settings, refuses it too
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TrainMemory.check(model(64, List.of("conv", "linear", "swa"), 1000), 65536, 65536,
                        new CpuTrainBackend()));
        assertEquals("batch_size 65,536 x seq_len 65,536: 4,295,032,832 tokens per batch (seq_len + 1 per sequence),"
                + " more than one Java array holds (2,147,483,639); lower batch_size or seq_len", e.getMessage());
        // fewer tokens than that, but the widest activation (fc1, 2 x 2 x 1024 wide) of all of them is not
        ModelConfig wide = model(1024, List.of("conv"), 1000);
        IllegalArgumentException w = assertThrows(IllegalArgumentException.class,
                () -> TrainMemory.check(wide, 1024, 1024, new CpuTrainBackend()));
        assertTrue(w.getMessage().startsWith("batch_size 1,024 x seq_len 1,024: the widest activation holds"
                + " 1,048,576 tokens x 4,096 = 4,294,967,296 values, more than one Java array holds"), w.getMessage());
    }

    @Test
    void aPassWhoseActivationsDoNotFitIsRefusedBeforeAllocating() {
        ModelConfig config = model(64, List.of("conv", "swa"), 1000);
        long params = io.based4j.model.ModelWeights.parameterCount(config);
        // the model fits; one pass of 8 x 256 tokens (about 2,000 float64 values a token) does not
        CpuTrainBackend backend = new CpuTrainBackend(HostMemory.budget(4 * 8 * params + MIB, GIB));
        try (Arena arena = Arena.ofShared()) {
            TrainModel m = new TrainModel(config, Initializer.stateDict(config, 1, arena), backend, "initializer");
            int[] ids = new int[8 * 256];
            NotEnoughMemoryException e = assertThrows(NotEnoughMemoryException.class,
                    () -> m.forward(ids, ids, 8, 256, true, 1.0));
            assertTrue(e.getMessage().startsWith("the activations of a pass of 8 x 256 tokens needs "), e.getMessage());
            // a pass that fits runs
            int[] small = new int[4];
            assertTrue(Double.isFinite(m.forward(small, small, 1, 4, true, 1.0).lossSum()));
        }
    }

    @Test
    void buffersLongerThanOneJavaArrayAreRefusedClearly() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> new CpuTrainBackend().allocate(1 << 20, 1 << 12));
        assertEquals("training buffer: 1,048,576 x 4,096 = 4,294,967,296 values, more than one Java array holds"
                + " (2,147,483,639)", e.getMessage());
    }

    private static MqarTrainer.Run mqar(int batch, List<MqarSlice> train) {
        return new MqarTrainer.Run("based", 64, 16, 64, 1, 3e-3, 0.1, 1, batch, 0, train,
                List.of(new MqarSlice(64, 4, 10)), 0, 0, 0.99, 0);
    }

    @Test
    void mqarRefusesTooManyExamplesAndTooLargeBatchesBeforeGeneratingThem() {
        StringWriter log = new StringWriter();
        // 300 million examples of 64 tokens: 143 GiB of inputs and targets
        NotEnoughMemoryException many = assertThrows(NotEnoughMemoryException.class, () -> new MqarTrainer(
                mqar(256, List.of(new MqarSlice(64, 4, 300_000_000))), new CpuTrainBackend(), new PrintWriter(log),
                false).train());
        assertTrue(many.getMessage().startsWith("training at --batch 256 x slice length L 64 needs "),
                many.getMessage());
        assertTrue(many.getMessage().contains("examples 143.1 GiB"), many.getMessage());
        assertTrue(many.getMessage().endsWith("; fewer examples (the COUNT of the --train and --test slices)"),
                many.getMessage());
        // a batch of 2,000 examples of 2,048 tokens: activations of 4 million tokens, tens of GiB
        NotEnoughMemoryException big = assertThrows(NotEnoughMemoryException.class, () -> new MqarTrainer(
                mqar(2_000, List.of(new MqarSlice(2048, 8, 2_000))), new CpuTrainBackend(), new PrintWriter(log),
                false).train());
        assertTrue(big.getMessage().startsWith("training at --batch 2,000 x slice length L 2,048 needs "),
                big.getMessage());
        assertTrue(big.getMessage().endsWith("; lower --batch or slice length L"), big.getMessage());
        assertEquals("", log.toString(), "nothing ran before the refusals");
    }
}
