package io.based4j.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.cpu.CpuBackend;
import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.model.BasedModel;
import io.based4j.model.ModelWeights;
import io.based4j.sampling.SamplingParams;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class GeneratorTest {
    static final Path GOLDEN = Path.of("../models/golden-tiny");
    static final int[] PROMPT = {665, 687, 51, 918, 391, 74, 705, 770, 261, 425, 98, 761, 663, 725, 931, 257};

    /** The golden model with its config changed by {@code edit}. */
    static BasedModel golden(CpuBackend backend, Arena arena, Map<String, Object> overrides) throws IOException {
        Map<String, Object> raw = new LinkedHashMap<>(Json.parseObject(Files.readString(GOLDEN.resolve("config.json"))));
        raw.putAll(overrides);
        ModelConfig cfg = ConfigParser.fromMap("test", raw);
        var ckpt = CheckpointFiles.open(GOLDEN, arena);
        return BasedModel.of(ModelWeights.bind(cfg, ckpt.tensors(), "golden"), backend);
    }

    static GenerationRequest greedy(int n, List<String> stops) {
        return new GenerationRequest(PROMPT, n, SamplingParams.greedy(), stops, true);
    }

    @Test
    void stopsAtTheEndOfTextToken() throws IOException {
        // greedy continuation of this prompt is 257 257 257 257 971 ...; make 971 the end-of-text token
        try (Arena arena = Arena.ofShared(); CpuBackend backend = new CpuBackend();
             BasedModel model = golden(backend, arena, Map.of("eos_token_id", 971L))) {
            GenerationResult r = new Generator(model, Gpt2Tokenizer.load()).generate(List.of(greedy(20, List.of())), null).get(0);
            assertArrayEquals(new int[] {257, 257, 257, 257}, r.tokens());
            assertEquals(GenerationResult.Finish.EOS, r.finish());
        }
    }

    @Test
    void stopStringsCutTheTextAndStreamingAgrees() throws IOException {
        Gpt2Tokenizer tok = Gpt2Tokenizer.load();
        try (Arena arena = Arena.ofShared(); CpuBackend backend = new CpuBackend();
             BasedModel model = golden(backend, arena, Map.of())) {
            Generator g = new Generator(model, tok);
            GenerationResult full = g.generate(List.of(greedy(24, List.of())), null).get(0);
            assertEquals(GenerationResult.Finish.LENGTH, full.finish());
            assertEquals(tok.decode(full.tokens()), full.text());
            String text = full.text();
            // a stop string that straddles token boundaries, somewhere in the middle of the text
            String stop = text.substring(text.length() / 2, text.length() / 2 + 3);
            List<String> streamed = new ArrayList<>();
            GenerationResult cut = g.generate(List.of(greedy(24, List.of("never appears", stop))),
                    (seq, id, piece) -> streamed.add(piece)).get(0);
            assertEquals(GenerationResult.Finish.STOP, cut.finish());
            assertEquals(text.substring(0, text.indexOf(stop)), cut.text());
            assertEquals(cut.text(), String.join("", streamed));
        }
    }

    @Test
    void zeroNewTokensAndBadPrompts() throws IOException {
        try (Arena arena = Arena.ofShared(); CpuBackend backend = new CpuBackend();
             BasedModel model = golden(backend, arena, Map.of())) {
            Generator g = new Generator(model, Gpt2Tokenizer.load());
            GenerationResult r = g.generate(List.of(greedy(0, List.of())), null).get(0);
            assertEquals(0, r.tokens().length);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> g.generate(List.of(GenerationRequest.of(new int[] {5, 1000}, 3, SamplingParams.greedy())), null));
            assertTrue(e.getMessage().contains("1000"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> GenerationRequest.of(new int[0], 3, SamplingParams.greedy()));
        }
    }

    @Test
    void stopMatcherHoldsBackPossibleStarts() {
        StopMatcher m = new StopMatcher(List.of("END", "\n\n"));
        assertEquals("abc", m.accept("abc"));
        assertEquals("x", m.accept("xE"));  // "E" might begin "END"
        assertEquals("", m.accept("N"));
        assertEquals("ENo", m.accept("o"));  // it did not
        assertEquals("line", m.accept("line\n"));
        assertEquals("", m.accept("\nmore"));
        assertTrue(m.stopped());
        assertEquals("", m.accept("ignored"));
        assertEquals("", m.finish());
        StopMatcher open = new StopMatcher(List.of("END"));
        assertEquals("", open.accept("EN"));
        assertEquals("EN", open.finish());
    }
}
