package io.based4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.cuda.CudaBackend;
import io.based4j.cuda.GpuTest;
import io.based4j.cuda.Precision;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * cuBLASLt's products on programmatic edges ({@code -Dbased4j.cuda.ltProgrammatic=true}) at the widths of based-1b
 * (d 1,792, the MLP's 3,584, BaseConv's 7,168 in-projection, linear attention's 16 heads of 16 features, the window's
 * 16 heads), so that the products are the ones cuBLASLt runs in that model's decode steps at 128 and 1,024 sequences
 * (its nvjet kernels on an H200; all but the head, whose vocabulary is smaller here), in three layers, one of each
 * mixer. Every plan is probed on the first decode step; recorded and replayed steps, in which the products whose
 * plans the probe saw wait are launched while the kernel before them still runs, give the logits of the same steps
 * run op by op, in which no product starts before the kernel before it has ended: a probe that passed a kernel that
 * does not wait would leave its product reading its input early, off by the size of the logits. (On an H200 with
 * the CUDA 13 cuBLASLt no plan here waits, so no product takes an edge and the test holds the probe to that.) The same
 * kernels and plans in the same order on the same inputs: the bound is that of the graph tests of
 * {@link GpuModelTest}, 1e-6 of the logits' rms.
 *
 * <p>At 1 and 4 sequences the same three layers hold the kernels that read their state before the wait for the kernel
 * before them (linear attention's decode version 6 at heads of 112, a block a (sequence, head), and the window's items'
 * form): their recorded steps, launched programmatically, against the same steps op by op, with the same bound.
 */
@GpuTest
class ProgrammaticEdgesAtReleasedWidthsTest {
    private static final int PROMPT = 8;
    /** Past the 8th step, where linear attention's deferred state is written. */
    private static final int STEPS = 10;

    /** based-1b's widths in three layers: BaseConv, linear attention, the sliding window. */
    private static ModelConfig threeLayers() {
        Map<String, Object> m = new LinkedHashMap<>(Presets.configMap("based-1b"));
        m.put("n_layer", 3L);
        m.put("alt_mixer_layers", List.of(1L));
        m.put("alt_mixer_2_layers", List.of(2L));
        m.put("vocab_size", 4096L);
        return ConfigParser.fromMap("based-1b's widths in 3 layers", m);
    }

    @ParameterizedTest(name = "batch {0}")
    @ValueSource(ints = {1, 4})
    void stateReadBeforeTheWaitGivesTheLogitsOfStepsRunOpByOp(int batch) {
        ModelConfig config = threeLayers();
        try (CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16);
             BasedModel model = BasedModel.of(DecodeEqualsPrefillTest.randomWeights(config, 13), gpu)) {
            double[] worstAndRms = recordedAgainstOps(gpu, model, config, batch);
            System.out.printf("[ProgrammaticEdgesAtReleasedWidthsTest] batch %d, state read before the wait: recorded "
                    + "against op by op %.3g (rms %.3g)%n", batch, worstAndRms[0], worstAndRms[1]);
            assertTrue(worstAndRms[0] <= 1e-6 * worstAndRms[1], "batch " + batch + ": recorded steps differ from "
                    + "op-by-op ones by " + worstAndRms[0] + " (rms " + worstAndRms[1] + ")");
        }
    }

    @ParameterizedTest(name = "batch {0}")
    @ValueSource(ints = {128, 1024})
    void recordedStepsOnTheEdgesGiveTheLogitsOfStepsRunOpByOp(int batch) {
        ModelConfig config = threeLayers();
        ModelWeights weights = DecodeEqualsPrefillTest.randomWeights(config, 11);
        String property = "based4j.cuda.ltProgrammatic";
        String before = System.getProperty(property);
        System.setProperty(property, "true");
        CudaBackend opened;
        try {
            opened = CudaBackend.open("cuda", Precision.BF16);
        } finally {
            if (before == null) {
                System.clearProperty(property);
            } else {
                System.setProperty(property, before);
            }
        }
        try (CudaBackend gpu = opened; BasedModel model = BasedModel.of(weights, gpu)) {
            assumeTrue(gpu.productEdges().probing(),
                    "programmatic edges need compute capability 9 and a driver that records them");
            double[] worstAndRms = recordedAgainstOps(gpu, model, config, batch);
            double worst = worstAndRms[0];
            double rms = worstAndRms[1];
            CudaBackend.ProductEdges edges = gpu.productEdges();
            System.out.printf("[ProgrammaticEdgesAtReleasedWidthsTest] batch %d: %d plans probed, %d of them wait, "
                            + "%d products recorded on programmatic edges; recorded against op by op %.3g (rms %.3g)%n",
                    batch, edges.probedPlans(), edges.waitingPlans(), edges.productsOnEdges(), worst, rms);
            assertTrue(edges.probedPlans() > 0, "no plan was probed on the first decode step (a plan whose probe "
                    + "the library or the driver refused is counted as not probed)");
            assertEquals(edges.waitingPlans() > 0, edges.productsOnEdges() > 0,
                    "products take programmatic edges exactly where plans wait: " + edges);
            assertTrue(worst <= 1e-6 * rms, "batch " + batch + ": recorded steps with " + edges.productsOnEdges()
                    + " products on programmatic edges differ from op-by-op ones by " + worst + " (rms " + rms + ")");
        }
    }

    /**
     * A prompt of {@link #PROMPT} tokens in each of {@code batch} sequences, then {@link #STEPS} decode steps, in a
     * session that records its steps and one that runs them op by op: the largest difference of their logits and the
     * largest rms of a step's logits op by op.
     */
    private static double[] recordedAgainstOps(CudaBackend gpu, BasedModel model, ModelConfig config, int batch) {
        SplittableRandom r = new SplittableRandom(batch);
        int vocab = config.vocabSize();
        int[] prompts = r.ints((long) batch * PROMPT, 0, vocab).toArray();
        int[][] steps = new int[STEPS][];
        for (int t = 0; t < STEPS; t++) {
            steps[t] = r.ints(batch, 0, vocab).toArray();
        }
        int[] slots = new int[batch];
        int[] lengths = new int[batch];
        int[] ones = new int[batch];
        for (int i = 0; i < batch; i++) {
            slots[i] = i;
            lengths[i] = PROMPT;
            ones[i] = 1;
        }
        double worst = 0;
        double rms = 0;
        try (Session graphs = model.newSession(batch, PROMPT + STEPS);
             Session ops = model.newSession(batch, PROMPT + STEPS).useGraphs(false)) {
            model.forward(graphs, graphs.batch(slots, lengths), prompts, false, null);
            model.forward(ops, ops.batch(slots, lengths), prompts, false, null);
            for (int t = 0; t < STEPS; t++) {
                float[] a = gpu.download(model.forward(graphs, graphs.batch(slots, ones), steps[t], false, null));
                float[] b = gpu.download(model.forward(ops, ops.batch(slots, ones), steps[t], false, null));
                assertEquals(b.length, a.length);
                double s = 0;
                for (int i = 0; i < a.length; i++) {
                    worst = Math.max(worst, Math.abs(a[i] - b[i]));
                    s += (double) b[i] * b[i];
                }
                rms = Math.max(rms, Math.sqrt(s / b.length));
            }
        }
        return new double[] {worst, rms};
    }
}
