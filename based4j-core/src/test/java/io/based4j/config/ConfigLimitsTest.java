package io.based4j.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.GoldenModel;
import io.based4j.json.Json;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Absurd and overflowing sizes in config.json are refused by the parser itself, naming the field and its value.
 * Each case goes through {@link ConfigParser#fromMap}, which allocates nothing but the small config records: an
 * error from it means no model-sized allocation was attempted.
 */
class ConfigLimitsTest {
    @TempDir
    Path dir;

    /** The golden model's config.json with {@code field} (dotted for a mixer field) set to {@code value}. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> golden(String field, Object value) throws IOException {
        Map<String, Object> m = Json.parseObject(Files.readString(GoldenModel.dir().resolve("config.json")));
        Map<String, Object> target = m;
        String[] parts = field.split("\\.");
        for (int i = 0; i < parts.length - 1; i++) {
            target = (Map<String, Object>) target.get(parts[i]);
        }
        target.put(parts[parts.length - 1], value);
        return m;
    }

    static ConfigException refused(Map<String, Object> config, String... parts) {
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.fromMap("config.json", config));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "\"" + e.getMessage() + "\" should mention " + p);
        }
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
        return e;
    }

    @Test
    void paddedVocabularyBeyond32BitsIsRefusedNotNegative() throws IOException {
        Map<String, Object> m = golden("vocab_size", (long) Integer.MAX_VALUE);
        m.put("pad_vocab_size_multiple", 8L);
        ConfigException e = refused(m, "'vocab_size'", "2147483647", "2147483648", "pad_vocab_size_multiple");
        assertFalse(e.getMessage().contains("-"), e.getMessage());
    }

    @Test
    void hugeLayerCountsAndWindowsAreRefusedByTheirBounds() throws IOException {
        refused(golden("n_layer", (long) Integer.MAX_VALUE), "'n_layer'", "2147483647", "4096");
        refused(golden("n_layer", (long) ConfigParser.MAX_LAYERS + 1), "'n_layer'", "4097");
        refused(golden("alt_mixer_2.window_size", (long) Integer.MAX_VALUE), "'alt_mixer_2.window_size'",
                "2147483647", String.valueOf(ConfigParser.MAX_WINDOW_SIZE));
        refused(golden("alt_mixer.feature_dim", 100_000L), "'alt_mixer.feature_dim'", "100000");
        refused(golden("n_layer", 1L << 40), "'n_layer'", String.valueOf(1L << 40));
    }

    @Test
    void theLayerBoundIsInclusive() throws IOException {
        Map<String, Object> m = golden("n_layer", (long) ConfigParser.MAX_LAYERS);
        m.remove("alt_mixer_layers");
        m.remove("alt_mixer_2_layers");
        assertEquals(ConfigParser.MAX_LAYERS, ConfigParser.fromMap("config.json", m).layers().size());
    }

    @Test
    void widthsThatMakeATensorTooLargeForAnArrayAreRefused() throws IOException {
        refused(golden("n_embd", (long) Integer.MAX_VALUE), "'n_embd'", "2147483647");
        Map<String, Object> wide = golden("n_embd", 65_536L);
        refused(wide, "'n_embd'", "65536", "x 65536");
        refused(golden("n_inner", (long) Integer.MAX_VALUE), "'n_inner'", "2147483647");
        refused(golden("vocab_size", 100_000_000L), "'vocab_size'", "100000000", "embedding");
        refused(golden("alt_mixer.num_heads", (long) Integer.MAX_VALUE), "alt_mixer.num_heads", "2147483647");
        refused(golden("alt_mixer_2.rotary_emb_dim", (long) Integer.MAX_VALUE), "alt_mixer_2.rotary_emb_dim");
        refused(golden("pad_vocab_size_multiple", (long) Integer.MAX_VALUE), "'vocab_size'", "2147483647");
    }

    @Test
    void theTensorBoundIsExact() {
        // one tensor may hold Integer.MAX_VALUE - 8 elements (the longest Java array): at n_embd 1 the
        // embedding has one element per (padded) vocabulary row
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("n_embd", 1L);
        m.put("n_layer", 1L);
        m.put("n_head", 1L);
        m.put("vocab_size", ConfigParser.MAX_TENSOR_ELEMENTS);
        assertEquals(ConfigParser.MAX_TENSOR_ELEMENTS, ConfigParser.fromMap("config.json", m).paddedVocabSize());
        m.put("vocab_size", ConfigParser.MAX_TENSOR_ELEMENTS + 1);
        refused(m, "'vocab_size'", String.valueOf(ConfigParser.MAX_TENSOR_ELEMENTS + 1));
    }

    @Test
    void rotaryFractionMustBeAFraction() throws IOException {
        Map<String, Object> m = golden("rotary_emb_fraction", 1e300);
        ((Map<?, ?>) m.get("alt_mixer_2")).remove("rotary_emb_dim");
        refused(m, "'rotary_emb_fraction'", "[0, 1]");
    }

    @Test
    void anOversizedConfigFileIsRefusedUnread() throws IOException {
        Path file = dir.resolve("config.json");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(ConfigParser.MAX_FILE_BYTES + 1);
        }
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.read(file));
        assertTrue(e.getMessage().startsWith(file + ": ") && e.getMessage().contains("1048577 bytes")
                && e.getMessage().contains("limit of 1048576 bytes"), e.getMessage());
    }

    @Test
    void aDeeplyNestedConfigFileIsOneError() throws IOException {
        Path file = dir.resolve("config.json");
        // the object is level 1, so the 64th '[' (after the 11 characters of the key) is one too many
        Files.writeString(file, "{\"n_embd\": " + "[".repeat(100_000));
        ConfigException e = assertThrows(ConfigException.class, () -> ConfigParser.read(file));
        assertTrue(e.getMessage().startsWith(file + ": ") && e.getMessage().contains("line 1, column 75")
                && e.getMessage().contains("deeper than the limit of 64 levels"), e.getMessage());
    }
}
