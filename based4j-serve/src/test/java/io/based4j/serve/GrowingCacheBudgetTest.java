package io.based4j.serve;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.backend.cpu.CpuBackend;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.model.BasedModel;
import io.based4j.model.Initializer;
import io.based4j.tokenizer.Gpt2Tokenizer;
import java.lang.foreign.Arena;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A server over a model with full attention, whose key/value caches grow with their sequences (made a page at a
 * time, not whole at the start): the session is still refused when its caches at their longest would not fit, and a
 * prefix cache must leave them room, as when they were made whole.
 */
class GrowingCacheBudgetTest {
    @Test
    void keyValueCachesCountAtTheirLongestBesideThePrefixCache() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("model_type", "gpt2");
        m.put("n_embd", 32L);
        m.put("n_layer", 1L);
        m.put("n_head", 4L);
        m.put("n_inner", 0L);
        m.put("vocab_size", 50257L);
        m.put("pad_vocab_size_multiple", 8L);
        m.put("layer_norm_epsilon", 1e-5);
        m.put("rms_norm", true);
        m.put("activation_function", "swiglu");
        m.put("rotary_emb_fraction", 1.0);
        m.put("tie_word_embeddings", true);
        ModelConfig config = ConfigParser.fromMap("one layer of full attention", m);
        Gpt2Tokenizer tokenizer = Gpt2Tokenizer.load();
        try (CpuBackend backend = new CpuBackend(); Arena arena = Arena.ofShared();
             BasedModel model = BasedModel.of(Initializer.weights(config, 1, arena), backend)) {
            int step = 2 - 1 + Math.max(1, backend.exactSplit()) + 1;
            // 2 sequences of 50 million tokens: 12.8 GB of keys and values each, more than a test's heap
            IllegalStateException tooLong = assertThrows(IllegalStateException.class,
                    () -> new Engine(model, tokenizer, new EngineOptions(2, 50_000_000, step, 2)));
            assertTrue(tooLong.getMessage().startsWith("a session of 2 sequences of up to 50,000,000 tokens"),
                    tooLong.getMessage());

            // caches and a prefix cache of 60% of the free heap each: either fits alone, not both
            Runtime rt = Runtime.getRuntime();
            long free = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
            long bytesPerToken = 2L * 2 * Float.BYTES * 32;  // keys and values of 2 sequences, width 32
            int tokens = (int) Math.min(60_000_000, (long) (0.6 * free) / bytesPerToken);
            long prefix = (long) (0.6 * free);
            IllegalStateException both = assertThrows(IllegalStateException.class,
                    () -> new Engine(model, tokenizer, new EngineOptions(2, tokens, step, 2, prefix)));
            assertTrue(both.getMessage().startsWith("the prefix cache beside the key/value caches of 2 sequences of up"
                    + " to " + tokens + " tokens needs "), both.getMessage());
            try (Engine fits = new Engine(model, tokenizer, new EngineOptions(2, 4096, step, 2, 1 << 20))) {
                assertTrue(fits.metrics() != null);
            }
        }
    }
}
