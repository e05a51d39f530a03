package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.config.MixerConfig;
import io.based4j.config.ModelConfig;
import io.based4j.train.TrainConfig;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The language-model comparison's configurations (docs/compare): the three architectures they name, parameter
 * counts within 2% of BASED's, and everything else the same as each other and as the built-in model's training.
 */
class CompareConfigsTest {
    static final Path DIR = Path.of("../docs/compare");

    private static TrainConfig read(String name) {
        return TrainConfig.read(DIR.resolve(name + ".yaml"));
    }

    private static Set<String> mixers(ModelConfig cfg) {
        return cfg.layers().stream().map(m -> switch (m) {
            case MixerConfig.BaseConv c -> "conv";
            case MixerConfig.LinearAttention l -> "linear";
            case MixerConfig.Attention a -> a.sliding() ? "swa" : "attn";
        }).collect(Collectors.toSet());
    }

    @Test
    void theArchitecturesAreBasedFullAttentionAndSlidingWindowsOnly() {
        ModelConfig builtin = TrainConfig.read(Path.of("../models/based-small/train.yaml")).model();
        assertEquals(builtin, read("based").model(), "BASED is the built-in model's architecture");
        assertEquals(Set.of("attn"), mixers(read("transformer").model()));
        assertEquals(Set.of("swa"), mixers(read("swa").model()));
    }

    @Test
    void parameterCountsMatchWithinTwoPercent() {
        long based = InfoCommand.parameterCount(read("based").model());
        assertEquals(19_243_520, based); // models/based-small/README.md
        for (String other : List.of("transformer", "swa")) {
            ModelConfig cfg = read(other).model();
            long params = InfoCommand.parameterCount(cfg);
            double gap = Math.abs(params - based) / (double) based;
            // the comparison is of equal parameter count; the SwiGLU width goes by 256, so a layer is the step
            assertTrue(gap < 0.02, other + ": " + params + " parameters, " + 100 * gap + "% from BASED's " + based);
            assertEquals(256, cfg.dModel());
            assertTrue(cfg.tieWordEmbeddings());
            assertTrue(cfg.hasMlp());
        }
    }

    @Test
    void dataBatchUpdatesAndScheduleAreTheSameAsTheBuiltInModels() {
        TrainConfig builtin = TrainConfig.read(Path.of("../models/based-small/train.yaml"));
        for (String name : List.of("based", "transformer", "swa")) {
            TrainConfig c = read(name);
            assertEquals(builtin.data().normalize(), c.data().normalize(), name);
            assertEquals(builtin.seqLen(), c.seqLen(), name);
            assertEquals(builtin.batchSize(), c.batchSize(), name);
            assertEquals(builtin.gradAccum(), c.gradAccum(), name);
            assertEquals(builtin.steps(), c.steps(), name);
            assertEquals(builtin.seed(), c.seed(), name);
            assertEquals(builtin.schedule(), c.schedule(), name);
            assertEquals(builtin.optimizer(), c.optimizer(), name);
            assertEquals(builtin.evalBatches(), c.evalBatches(), name);
        }
    }
}
