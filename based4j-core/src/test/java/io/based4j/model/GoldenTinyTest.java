package io.based4j.model;

import io.based4j.GoldenModel;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.Backend;
import io.based4j.backend.TokenBatch;
import io.based4j.backend.cpu.CpuBackend;
import io.based4j.backend.cpu.ReferenceBackend;
import io.based4j.checkpoint.Safetensors;
import io.based4j.json.Json;
import io.based4j.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The golden tiny model (every mixer kind) against tensors from the reference implementation: logits, per-layer
 * hidden states, and greedy decoding token by token.
 */
class GoldenTinyTest {
    /**
     * Logit tolerance: the reference notes that any correct float32 implementation lands within about 1e-4 of its
     * logits (std about 8); float32 summation order differs between implementations, so allow 2e-4.
     */
    static final double LOGIT_TOL = 2e-4;

    static Stream<Arguments> backends() {
        return Stream.of(Arguments.of("cpu", (Supplier<Backend>) CpuBackend::new),
                Arguments.of("reference", (Supplier<Backend>) ReferenceBackend::new));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void logitsAndHiddenStatesMatchReference(String name, Supplier<Backend> backendFactory) {
        Path dir = GoldenModel.dir();
        try (Arena arena = Arena.ofConfined(); Backend backend = backendFactory.get();
             BasedModel model = BasedModel.load(dir, backend)) {
            Map<String, Tensor> expected = Safetensors.read(dir.resolve("expected.safetensors"), arena);
            Tensor ids = expected.get("input_ids");
            int batch = (int) ids.dim(0);
            int len = (int) ids.dim(1);
            long[] flat = ids.toLongArray();
            int[] tokens = new int[flat.length];
            for (int i = 0; i < flat.length; i++) {
                tokens[i] = (int) flat[i];
            }
            Session session = model.newSession(batch, len);
            int[] slots = new int[batch];
            int[] lengths = new int[batch];
            for (int b = 0; b < batch; b++) {
                slots[b] = b;
                lengths[b] = len;
            }
            int d = model.config().dModel();
            List<float[]> hidden = new ArrayList<>();
            Backend.Buffer logits = model.forward(session, session.batch(slots, lengths), tokens, true,
                    (layer, r) -> hidden.add(backend.download(r)));
            float[] got = backend.download(logits);
            float[] want = expected.get("logits").toFloatArray();
            double maxErr = GoldenModel.maxLogitError(got, want, batch * len, model.config().vocabSize(),
                    model.config().paddedVocabSize());
            assertTrue(maxErr <= LOGIT_TOL, name + ": max |logit - reference| = " + maxErr);

            // hidden_states [layers, len, d]: the residual after each layer for batch row 0
            float[] hs = expected.get("hidden_states").toFloatArray();
            assertEquals(model.config().nLayer(), hidden.size());
            for (int layer = 0; layer < hidden.size(); layer++) {
                float[] h = hidden.get(layer);
                double scale = 0;
                double err = 0;
                for (int i = 0; i < len * d; i++) {
                    scale = Math.max(scale, Math.abs(hs[layer * len * d + i]));
                    err = Math.max(err, Math.abs(h[i] - hs[layer * len * d + i]));
                }
                // residual values grow layer by layer; float32 agreement is relative to their magnitude
                assertTrue(err <= 1e-5 * Math.max(1, scale) * 4,
                        name + ": layer " + layer + " hidden state differs by " + err + " (max |h| " + scale + ")");
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("backends")
    void greedyDecodingTokenByTokenMatchesReference(String name, Supplier<Backend> backendFactory) throws Exception {
        Path dir = GoldenModel.dir();
        Map<String, Object> g = Json.parseObject(Files.readString(dir.resolve("greedy.json")));
        int[] prompt = ((List<?>) g.get("prompt_ids")).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
        int[] want = ((List<?>) g.get("greedy_ids")).stream().mapToInt(o -> ((Long) o).intValue()).toArray();
        try (Backend backend = backendFactory.get(); BasedModel model = BasedModel.load(dir, backend)) {
            Session session = model.newSession(1, prompt.length + want.length);
            int vocab = model.config().vocabSize();
            int[] got = new int[want.length];
            // the prompt goes in token by token too: the recurrent form all the way
            float[] logits = null;
            for (int t = 0; t < prompt.length; t++) {
                logits = backend.download(model.forward(session, TokenBatch.step(new int[] {0},
                        new int[] {session.position(0)}), new int[] {prompt[t]}, false, null));
            }
            for (int i = 0; i < want.length; i++) {
                int best = 0;
                for (int v = 1; v < vocab; v++) {
                    if (logits[v] > logits[best]) {
                        best = v;
                    }
                }
                got[i] = best;
                logits = backend.download(model.forward(session, TokenBatch.step(new int[] {0},
                        new int[] {session.position(0)}), new int[] {best}, false, null));
            }
            assertArrayEquals(want, got, name + ": greedy ids");
        }
    }
}
