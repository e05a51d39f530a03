package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.config.ModelConfig;
import io.based4j.model.Initializer;
import io.based4j.model.ModelWeights;
import io.based4j.model.WeightSpec;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.CpuBuf;
import io.based4j.train.cpu.CpuTrainBackend;
import java.lang.foreign.Arena;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class OptimizerTest {

    @Test
    void scheduleWarmsUpLinearlyThenFollowsTheCosineToTheFloor() {
        LrSchedule s = new LrSchedule(8e-4, 200, 1e-6, 8e-5, 1200);
        assertEquals(1e-6, s.lr(0), 1e-18);
        assertEquals(1e-6 + (8e-4 - 1e-6) / 2, s.lr(100), 1e-15);
        assertEquals(8e-4, s.lr(200), 1e-15);
        assertEquals((8e-4 + 8e-5) / 2, s.lr(700), 1e-15);
        assertEquals(8e-5, s.lr(1200), 1e-15);
        assertEquals(8e-5, s.lr(5000), 1e-15);
        for (long t = 201; t <= 1200; t++) {
            assertTrue(s.lr(t) <= s.lr(t - 1), "not decreasing at " + t);
        }
        assertThrows(IllegalArgumentException.class, () -> new LrSchedule(0, 1, 0, 0, 10));
        assertThrows(IllegalArgumentException.class, () -> new LrSchedule(1e-3, 1, 0, 0, 0));
    }

    private static TrainModel model(Arena arena) {
        ModelConfig c = ModelSpec.parse("t", ModelSpec.configMap(8, List.of("conv", "linear"), 2, 2, 2, 4, 16, 11,
                true, true, 1e-5));
        return new TrainModel(c, Initializer.stateDict(c, 1, arena), new CpuTrainBackend(), "t");
    }

    private static double[] v(Backend.Buffer b) {
        return ((CpuBuf) b).data();
    }

    /** AdamW as PyTorch's torch.optim.AdamW computes it, written out per element. */
    @Test
    void adamwMatchesTheTextbookUpdateWithDecayGroupsAndClipping() {
        try (Arena arena = Arena.ofShared()) {
            TrainModel m = model(arena);
            AdamW.Settings st = new AdamW.Settings(0.9, 0.95, 1e-8, 0.1, 0.5);
            AdamW opt = new AdamW(m, st);
            Map<String, double[]> p = new HashMap<>();
            Map<String, double[]> mom1 = new HashMap<>();
            Map<String, double[]> mom2 = new HashMap<>();
            for (Param q : m.params()) {
                p.put(q.name(), v(q.value()).clone());
                mom1.put(q.name(), new double[v(q.value()).length]);
                mom2.put(q.name(), new double[v(q.value()).length]);
            }
            SplittableRandom r = new SplittableRandom(4);
            double[] lrs = {1e-2, 3e-3, 5e-4};
            for (int step = 1; step <= 3; step++) {
                double sq = 0;
                for (Param q : m.params()) {
                    double[] g = v(q.grad());
                    for (int i = 0; i < g.length; i++) {
                        g[i] = (r.nextDouble() - 0.5) * (step == 2 ? 10 : 0.01);
                        sq += g[i] * g[i];
                    }
                }
                double norm = Math.sqrt(sq);
                double clip = norm > st.gradClip() ? st.gradClip() / (norm + 1e-6) : 1;
                Map<String, double[]> grads = new HashMap<>();
                for (Param q : m.params()) {
                    grads.put(q.name(), v(q.grad()).clone());
                }
                double lr = lrs[step - 1];
                assertEquals(norm, opt.update(lr).value(), 1e-12 * norm);
                for (Param q : m.params()) {
                    double[] pe = p.get(q.name());
                    double[] m1 = mom1.get(q.name());
                    double[] m2 = mom2.get(q.name());
                    double[] g = grads.get(q.name());
                    double wd = q.decay() ? 0.1 : 0.0;
                    for (int i = 0; i < pe.length; i++) {
                        double gi = g[i] * clip;
                        pe[i] -= lr * wd * pe[i];
                        m1[i] = 0.9 * m1[i] + 0.1 * gi;
                        m2[i] = 0.95 * m2[i] + 0.05 * gi * gi;
                        double mhat = m1[i] / (1 - Math.pow(0.9, step));
                        double vhat = m2[i] / (1 - Math.pow(0.95, step));
                        pe[i] -= lr * mhat / (Math.sqrt(vhat) + 1e-8);
                        assertEquals(pe[i], v(q.value())[i], 1e-15, q.name() + "[" + i + "] after update " + step);
                    }
                }
            }
            assertEquals(3, opt.step());
        }
    }

    @Test
    void decayGroupsFollowTheRecipe() {
        // every kind of weight (over two models, as one config.json names at most three mixers): conv with biases,
        // linear attention, sliding and full attention, an MLP, an untied head
        for (List<String> layers : List.of(List.of("conv", "linear", "swa"), List.of("attn", "linear"))) {
            checkDecayGroups(ModelSpec.parse("recipe", ModelSpec.configMap(32, layers, 2, 2, 4, 8, 64, 100, false, true,
                    1e-5)));
        }
    }

    private static void checkDecayGroups(ModelConfig config) {
        List<WeightSpec> specs = ModelWeights.freshSpecs(config);
        assertTrue(specs.stream().anyMatch(w -> w.name().equals("lm_head.weight")), specs.toString());
        for (WeightSpec w : specs) {
            String n = w.name();
            // BASED-SPEC section 6, stated on the names: matrices and conv taps decay; biases, norms, embeddings and
            // the head do not
            boolean recipe = !(n.endsWith(".bias") || n.endsWith("norm1.weight") || n.endsWith("norm2.weight")
                    || n.equals("transformer.ln_f.weight") || n.contains("word_embeddings") || n.equals("lm_head.weight"));
            assertEquals(recipe, w.kind().decays(), n);
            assertEquals(n.endsWith("out_proj.weight") || n.endsWith("fc2.weight"),
                    w.kind() == WeightSpec.Kind.RESIDUAL_MATRIX, n + ": the scaled initialisation");
        }
        // and a trained model's parameters carry their spec's group
        try (Arena arena = Arena.ofShared(); CpuTrainBackend backend = new CpuTrainBackend()) {
            TrainModel model = new TrainModel(config, Initializer.stateDict(config, 1, arena), backend, "init");
            for (Param q : model.params()) {
                WeightSpec w = specs.stream().filter(x -> x.name().equals(q.name())).findFirst().orElseThrow();
                assertEquals(w.kind().decays(), q.decay(), q.name());
            }
            assertEquals(specs.size(), model.params().size());
        }
    }

    @Test
    void aDivergedGradientStopsTheRunWithAMessage() {
        try (Arena arena = Arena.ofShared()) {
            TrainModel m = model(arena);
            AdamW opt = new AdamW(m, AdamW.Settings.DEFAULTS);
            v(m.params().iterator().next().grad())[0] = Double.NaN;
            Map<String, double[]> before = new java.util.HashMap<>();
            for (Param q : m.params()) {
                before.put(q.name(), v(q.value()).clone());
            }
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> opt.update(1e-3));
            assertTrue(e.getMessage().contains("diverged") && e.getMessage().contains("update 1"), e.getMessage());
            for (Param q : m.params()) {
                org.junit.jupiter.api.Assertions.assertArrayEquals(before.get(q.name()), v(q.value()),
                        q.name() + " is unchanged by the refused update");
            }
        }
    }

    @Test
    void optimizerStateRoundTripsExactly() {
        try (Arena arena = Arena.ofShared()) {
            TrainModel m = model(arena);
            AdamW opt = new AdamW(m, AdamW.Settings.DEFAULTS);
            for (Param q : m.params()) {
                java.util.Arrays.fill(v(q.grad()), 0.25);
            }
            opt.update(1e-3);
            Map<String, Tensor> state = opt.state();
            TrainModel m2 = new TrainModel(m.config(), m.exactStateDict(), new CpuTrainBackend(), "copy");
            AdamW opt2 = new AdamW(m2, AdamW.Settings.DEFAULTS);
            opt2.restore(state, opt.step(), "state");
            for (Param q : m.params()) {
                java.util.Arrays.fill(v(q.grad()), -0.5);
                java.util.Arrays.fill(v(m2.param(q.name()).grad()), -0.5);
            }
            opt.update(2e-3);
            opt2.update(2e-3);
            for (Param q : m.params()) {
                org.junit.jupiter.api.Assertions.assertArrayEquals(v(q.value()), v(m2.param(q.name()).value()),
                        q.name());
            }
        }
    }
}
