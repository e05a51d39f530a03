package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.TrainingBackend;
import io.based4j.config.ModelConfig;
import io.based4j.tensor.Tensor;
import io.based4j.train.AdamW;
import io.based4j.train.ModelSpec;
import io.based4j.train.Param;
import io.based4j.train.TrainModel;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Training steps recorded as CUDA graphs ({@link TrainModel#trainStep} over {@link CudaBackend#stepRecorder}) give
 * what the same steps give op by op, bit for bit: the same kernels run with the same arguments, only the step's
 * ids, targets, rate and update number are staged by the host before each replay.
 */
@GpuTest
class RecordedStepTest {
    static final int VOCAB = 37;

    static Stream<Arguments> models() {
        return Stream.of(
                Arguments.of("conv, linear and swa layers with MLP, bf16", List.of("conv", "linear", "swa"), 64L,
                        Precision.BF16),
                Arguments.of("conv, linear and swa layers with MLP, f32", List.of("conv", "linear", "swa"), 64L,
                        Precision.F32),
                Arguments.of("attention, bf16", List.of("attn", "attn"), 64L, Precision.BF16),
                Arguments.of("the MQAR shape: conv then linear, no MLP, bf16", List.of("conv", "linear"), 0L,
                        Precision.BF16),
                Arguments.of("the MQAR shape, f32", List.of("conv", "linear"), 0L, Precision.F32));
    }

    static ModelConfig config(List<String> layers, long nInner) {
        return ModelSpec.parse("test", ModelSpec.configMap(32, layers, 2, 2, 16, 6, nInner, VOCAB, true, true, 1e-5));
    }

    /** Steps of two shapes, the smaller first (so the larger one grows the scratch a recorded step reads). */
    static final int[][] SHAPES = {{2, 19}, {3, 40}};

    /**
     * Random ids with next-token targets, ignored at the same number of positions in every batch of a shape (so
     * every batch of a shape has the same loss scale and replays one recording): a few of them for models with an
     * MLP; for the MQAR shape, as in recall tasks, all but three positions a sequence, drawn anew for each batch (so
     * the loss runs over the gathered scored rows, which change from replay to replay).
     */
    static int[][] batch(int batch, int seqLen, long seed, boolean sparse) {
        SplittableRandom r = new SplittableRandom(seed);
        int n = batch * seqLen;
        int[] ids = r.ints(n, 0, VOCAB).toArray();
        int[] targets = new int[n];
        for (int i = 0; i < n; i++) {
            boolean last = i % seqLen == seqLen - 1;
            targets[i] = last || sparse || i % 5 == 2 ? TrainingBackend.IGNORE_INDEX : ids[i + 1];
        }
        if (sparse) {
            for (int b = 0; b < batch; b++) {
                for (int p : r.ints(0, seqLen - 1).distinct().limit(3).toArray()) {
                    targets[b * seqLen + p] = r.nextInt(VOCAB);
                }
            }
        }
        return new int[][] {ids, targets};
    }

    static int[][] batch(int batch, int seqLen, long seed) {
        return batch(batch, seqLen, seed, false);
    }

    static int counted(int[] targets) {
        int c = 0;
        for (int t : targets) {
            c += t == TrainingBackend.IGNORE_INDEX ? 0 : 1;
        }
        return c;
    }

    /** The summed loss of each of 12 steps (shapes alternating in pairs, a rate that changes every step). */
    static double[] train(TrainModel model, AdamW opt, boolean sparse) {
        double[] losses = new double[12];
        List<TrainingBackend.Readout> pending = new ArrayList<>();
        for (int s = 0; s < losses.length; s++) {
            int[] shape = SHAPES[(s / 2) % 2];
            int[][] b = batch(shape[0], shape[1], 100 + s, sparse);
            double lr = 3e-3 * (1 + 0.1 * s);
            TrainModel.Step step = model.trainStep(b[0], b[1], shape[0], shape[1], 1.0 / counted(b[1]), opt, lr);
            pending.add(step.loss());
            step.norm().value();
        }
        for (int s = 0; s < losses.length; s++) {
            losses[s] = pending.get(s).value();
        }
        return losses;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void recordedStepsGiveTheStepsOpByOpBitForBit(String name, List<String> layers, long nInner, Precision p) {
        ModelConfig config = config(layers, nInner);
        boolean sparse = nInner == 0;
        try (Arena arena = Arena.ofShared()) {
            Map<String, Tensor> init = CudaTrainModelTest.state(config, 5, arena);
            double[] want;
            Map<String, float[]> wantWeights = new java.util.HashMap<>();
            try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
                TrainModel model = new TrainModel(config, init, gpu, name).recordSteps(false);
                want = train(model, new AdamW(model, AdamW.Settings.DEFAULTS), sparse);
                for (Param q : model.params()) {
                    wantWeights.put(q.name(), gpu.download(q.value()));
                }
                assertEquals(0, model.recordedStepShapes());
            }
            try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
                TrainModel model = new TrainModel(config, init, gpu, name);
                double[] got = train(model, new AdamW(model, AdamW.Settings.DEFAULTS), sparse);
                assertEquals(List.of(), model.stepRecordRefusals(), "steps the backend would not record");
                assertEquals(SHAPES.length, model.recordedStepShapes(), "shapes replayed from a recording");
                assertArrayEquals(want, got, "summed losses, recorded against op by op");
                for (Param q : model.params()) {
                    assertArrayEquals(wantWeights.get(q.name()), gpu.download(q.value()),
                            "weights of " + q.name() + " after 12 steps");
                }
                model.releaseActivations();
                assertEquals(0, model.recordedStepShapes(), "recordings close with the activations they run on");
            }
            // both shapes in the first rows of one set of activations made for the larger one: the same steps
            try (CudaBackend gpu = CudaBackend.open("cuda", p)) {
                TrainModel model = new TrainModel(config, init, gpu, name);
                model.reserveActivations(SHAPES[1][0] * SHAPES[1][1]);
                double[] got = train(model, new AdamW(model, AdamW.Settings.DEFAULTS), sparse);
                assertEquals(1, model.activationSets(), "sets of activations holding memory");
                assertEquals(SHAPES.length, model.recordedStepShapes(), "shapes replayed from a recording");
                assertArrayEquals(want, got, "summed losses, shapes sharing one set of activations");
                for (Param q : model.params()) {
                    assertArrayEquals(wantWeights.get(q.name()), gpu.download(q.value()),
                            "weights of " + q.name() + " after 12 steps on shared activations");
                }
            }
        }
    }

    /** A model of the MQAR shape (a conv layer, then linear attention; no MLP) on {@code gpu}. */
    static TrainModel mqarShaped(CudaBackend gpu, Arena arena) {
        ModelConfig config = config(List.of("conv", "linear"), 0L);
        return new TrainModel(config, CudaTrainModelTest.state(config, 5, arena), gpu, "test");
    }

    @Test
    void aPassThatAllocatesIsNotRecordedAndNothingOfItRuns() {
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            TrainModel model = mqarShaped(gpu, arena);
            AdamW opt = new AdamW(model, AdamW.Settings.DEFAULTS);
            int[][] b = batch(2, 19, 7);
            model.trainStep(b[0], b[1], 2, 19, 0.1, opt, 1e-3).norm().value();  // allocates the shape's buffers
            Map<String, float[]> before = new java.util.HashMap<>();
            for (Param q : model.params()) {
                before.put(q.name(), gpu.download(q.value()));
            }
            TrainingBackend.StepNotRecordable e = assertThrows(TrainingBackend.StepNotRecordable.class,
                    () -> gpu.stepRecorder().record(b[0], b[1], () -> {
                        gpu.allocate(4, 4);
                        return () -> 0;
                    }, opt.slots(), new TrainingBackend.AdamWUpdate(1e-3, 0.9, 0.95, 1e-8, 1.0, 2)));
            assertTrue(e.getMessage().contains("allocates device memory"), e.getMessage());
            for (Param q : model.params()) {
                assertArrayEquals(before.get(q.name()), gpu.download(q.value()), q.name() + " is unchanged");
            }
            // the backend goes on as before: the next steps record and run
            model.trainStep(b[0], b[1], 2, 19, 0.1, opt, 1e-3).norm().value();
            model.trainStep(b[0], b[1], 2, 19, 0.1, opt, 1e-3).norm().value();
            assertEquals(1, model.recordedStepShapes());
        }
    }

    @Test
    void aReplayChecksItsInputsFirst() {
        try (Arena arena = Arena.ofShared(); CudaBackend gpu = CudaBackend.open("cuda", Precision.BF16)) {
            TrainModel model = mqarShaped(gpu, arena);
            AdamW opt = new AdamW(model, AdamW.Settings.DEFAULTS);
            int[][] b = batch(2, 19, 7);
            for (int s = 0; s < 3; s++) {
                model.trainStep(b[0], b[1], 2, 19, 0.1, opt, 1e-3).norm().value();
            }
            assertEquals(1, model.recordedStepShapes());
            int[] badIds = b[0].clone();
            badIds[5] = VOCAB;
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> model.trainStep(badIds, b[1], 2, 19, 0.1, opt, 1e-3));
            assertEquals("token id 37 at position 5 is outside the vocabulary [0, 37)", e.getMessage());
            int[] badTargets = b[1].clone();
            badTargets[0] = -3;
            e = assertThrows(IllegalArgumentException.class,
                    () -> model.trainStep(b[0], badTargets, 2, 19, 0.1, opt, 1e-3));
            assertEquals("target -3 at position 0 is outside the vocabulary [0, 37)", e.getMessage());
            assertEquals(3, opt.step(), "a refused replay takes no update");
        }
    }
}
