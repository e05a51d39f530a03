package io.based4j.train;

import io.based4j.backend.TrainingBackend;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.config.ModelConfig;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.model.ModelWeights;
import io.based4j.model.Session;
import io.based4j.tensor.Tensor;
import io.based4j.train.cpu.CpuBuf;
import io.based4j.train.cpu.CpuTrainBackend;
import java.lang.foreign.Arena;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Whole small models of every layer kind: gradients against float64 finite differences, logits against inference. */
class TrainModelGradTest {

    static Stream<Arguments> models() {
        return Stream.of(
                Arguments.of("conv", List.of("conv"), 32L, true, false),
                Arguments.of("linear", List.of("linear"), 32L, true, false),
                Arguments.of("swa", List.of("swa"), 32L, true, false),
                Arguments.of("attn", List.of("attn"), 32L, true, false),
                Arguments.of("attn with biases, untied head", List.of("attn"), 32L, false, true),
                Arguments.of("based mix, no MLP", List.of("conv", "linear", "swa"), 0L, true, false),
                Arguments.of("mqar shape", List.of("conv", "linear"), 0L, true, false));
    }

    static ModelConfig config(List<String> layers, long nInner, boolean tie, boolean biases) {
        // d 8, 2 heads of 4; linear attention f 3 over 2 heads; window_size 6 = 3 keys back; vocab 37 padded to 40
        Map<String, Object> m = ModelSpec.configMap(8, layers, 2, 2, 3, 6, nInner, 37, tie, true, 1e-5);
        if (biases) {
            m.put("qkv_proj_bias", true);
            m.put("out_proj_bias", true);
        }
        return ModelSpec.parse("test", m);
    }

    /** A state dict with every tensor random (biases and norms too, so that every gradient term is exercised). */
    static Map<String, Tensor> randomState(ModelConfig config, long seed, Arena arena) {
        Map<String, Tensor> dict = Initializer.stateDict(config, seed, arena);
        SplittableRandom r = new SplittableRandom(seed);
        dict.replaceAll((k, t) -> {
            float[] v = t.toFloatArray();
            double scale = k.contains("norm") || k.contains("ln_f") ? 0.5 : 0.4;
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) ((k.contains("norm") || k.contains("ln_f") ? 1 : 0) + (r.nextDouble() * 2 - 1) * scale);
            }
            return Tensor.ofFloats(v, t.shape());
        });
        return dict;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void wholeModelGradientsMatchFiniteDifferences(String name, List<String> layers, long nInner, boolean tie,
                                                   boolean biases) {
        ModelConfig config = config(layers, nInner, tie, biases);
        try (Arena arena = Arena.ofShared()) {
            TrainModel model = new TrainModel(config, randomState(config, 7, arena), new CpuTrainBackend(), name);
            int batch = 2;
            int seqLen = 7;
            SplittableRandom r = new SplittableRandom(11);
            int[] ids = new int[batch * seqLen];
            int[] targets = new int[batch * seqLen];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = r.nextInt(37);
                targets[i] = i % 4 == 1 ? TrainingBackend.IGNORE_INDEX : r.nextInt(37);
            }
            model.zeroGrad();
            double scale = 0.37;
            model.forward(ids, targets, batch, seqLen, true, scale);
            int checkedParams = 0;
            for (Param p : model.params()) {
                double[] value = ((CpuBuf) p.value()).data();
                double[] grad = ((CpuBuf) p.grad()).data().clone();
                GradCheck.check(name + ": " + p.name(),
                        () -> scale * model.forward(ids, targets, batch, seqLen, false, 0).lossSum(), value, grad, 60);
                checkedParams++;
            }
            assertTrue(checkedParams >= 5, "checked " + checkedParams + " parameters");
        }
    }

    /**
     * The training forward computes the logits inference computes. The loss of a one-hot target is
     * {@code logsumexp - logit}, so comparing per-position losses of every target compares the log-softmax of the
     * logits of the reference backend (float32; agreement to 1e-4 absolute is float32 rounding over a few layers).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void trainingForwardMatchesInference(String name, List<String> layers, long nInner, boolean tie, boolean biases) {
        ModelConfig config = config(layers, nInner, tie, biases);
        try (Arena arena = Arena.ofShared()) {
            Map<String, Tensor> state = randomState(config, 3, arena);
            TrainModel model = new TrainModel(config, state, new CpuTrainBackend(), name);
            int seqLen = 9;
            SplittableRandom r = new SplittableRandom(5);
            int[] ids = new int[seqLen];
            for (int i = 0; i < seqLen; i++) {
                ids[i] = r.nextInt(37);
            }
            float[] logits;
            try (Backend ref = new ReferenceBackend();
                 BasedModel inference = BasedModel.of(ModelWeights.bind(config, state, name), ref);
                 Session s = inference.newSession(1, seqLen)) {
                logits = ref.download(inference.forward(s, s.batch(new int[] {0}, new int[] {seqLen}), ids, true, null));
            }
            int vp = config.paddedVocabSize();
            for (int pos = 0; pos < seqLen; pos++) {
                double max = Double.NEGATIVE_INFINITY;
                for (int v = 0; v < 37; v++) {
                    max = Math.max(max, logits[pos * vp + v]);
                }
                double sum = 0;
                for (int v = 0; v < 37; v++) {
                    sum += Math.exp(logits[pos * vp + v] - max);
                }
                double lse = max + Math.log(sum);
                for (int target : new int[] {0, 5, 36}) {
                    int[] targets = new int[seqLen];
                    java.util.Arrays.fill(targets, TrainingBackend.IGNORE_INDEX);
                    targets[pos] = target;
                    double loss = model.forward(ids, targets, 1, seqLen, false, 0).lossSum();
                    assertEquals(lse - logits[pos * vp + target], loss, 1e-4, name + " position " + pos);
                }
            }
        }
    }

    /** Two micro-batches accumulated with scale 1/N give the gradient of one batch holding both (to rounding). */
    @org.junit.jupiter.api.Test
    void gradientAccumulationEqualsOneLargeBatch() {
        ModelConfig config = config(List.of("conv", "linear", "swa"), 32L, true, false);
        try (Arena arena = Arena.ofShared()) {
            Map<String, Tensor> state = randomState(config, 9, arena);
            TrainModel whole = new TrainModel(config, state, new CpuTrainBackend(), "whole");
            TrainModel parts = new TrainModel(config, state, new CpuTrainBackend(), "parts");
            int seqLen = 6;
            SplittableRandom r = new SplittableRandom(2);
            int[] ids = new int[4 * seqLen];
            int[] targets = new int[4 * seqLen];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = r.nextInt(37);
                targets[i] = r.nextInt(37);
            }
            double scale = 1.0 / ids.length;
            whole.zeroGrad();
            double lossWhole = whole.forward(ids, targets, 4, seqLen, true, scale).lossSum();
            parts.zeroGrad();
            int half = 2 * seqLen;
            double lossParts = 0;
            for (int part = 0; part < 2; part++) {
                lossParts += parts.forward(java.util.Arrays.copyOfRange(ids, part * half, (part + 1) * half),
                        java.util.Arrays.copyOfRange(targets, part * half, (part + 1) * half), 2, seqLen, true,
                        scale).lossSum();
            }
            assertEquals(lossWhole, lossParts, 1e-12 * Math.abs(lossWhole));
            for (Param p : whole.params()) {
                GradCheck.assertClose(p.name(), ((CpuBuf) p.grad()).data(),
                        ((CpuBuf) parts.param(p.name()).grad()).data(), 1e-10, GradCheck.maxAbs(((CpuBuf) p.grad()).data()));
            }
        }
    }
}
