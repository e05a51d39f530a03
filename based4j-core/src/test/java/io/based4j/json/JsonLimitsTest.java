package io.based4j.json;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The JSON reader on hostile text: nesting and size limits give one error naming the place and the limit. */
class JsonLimitsTest {
    @TempDir
    Path dir;

    static void assertMentions(String message, String... parts) {
        for (String p : parts) {
            assertTrue(message.contains(p), "\"" + message + "\" should mention " + p);
        }
        assertEquals(1, message.lines().count(), "one line: " + message);
    }

    @Test
    void deepNestingIsOneErrorNotAStackOverflow() {
        for (String open : List.of("[", "{\"a\":")) {
            String text = open.repeat(100_000);
            JsonException e = assertThrows(JsonException.class, () -> Json.parse(text));
            // the bracket that goes one level too deep is the 65th
            int column = open.length() * Json.MAX_DEPTH + 1;
            assertMentions(e.getMessage(), "line 1, column " + column, "deeper than the limit of 64 levels");
        }
        String mixed = "{\"a\":\n" + "[{\"b\":".repeat(50_000);
        JsonException e = assertThrows(JsonException.class, () -> Json.parse(mixed));
        assertMentions(e.getMessage(), "line 2", "deeper than the limit");
    }

    @Test
    void nestingUpToTheLimitIsAccepted() {
        String deepest = "[".repeat(Json.MAX_DEPTH) + "]".repeat(Json.MAX_DEPTH);
        Object v = Json.parse(deepest);
        for (int i = 1; i < Json.MAX_DEPTH; i++) {
            v = ((List<?>) v).getFirst();
        }
        assertEquals(List.of(), v);
        assertThrows(JsonException.class, () -> Json.parse("[" + deepest + "]"));
        // siblings do not add up: depth is how far down, not how many
        Map<String, Object> wide = Json.parseObject("{\"a\": [[1]], \"b\": [[2]], \"c\": {\"d\": {\"e\": []}}}");
        assertEquals(3, wide.size());
    }

    @Test
    void textOverTheLimitIsRefusedUnparsed() {
        JsonException e = assertThrows(JsonException.class, () -> Json.parse("[1, 2, 3]", 8));
        assertMentions(e.getMessage(), "9 characters", "limit of 8 characters");
        assertEquals(List.of(1L, 2L, 3L), Json.parse("[1, 2, 3]", 9));
        String big = " ".repeat((int) Json.DEFAULT_MAX_CHARS) + "1";
        assertThrows(JsonException.class, () -> Json.parse(big));
    }

    @Test
    void controlCharactersAreShownAsCodePoints() {
        JsonException e = assertThrows(JsonException.class, () -> Json.parse("[\u0000]"));
        assertMentions(e.getMessage(), "U+0000", "line 1, column 2");
    }

    @Test
    void readFileChecksTheSizeBeforeReading() throws IOException {
        Path file = dir.resolve("big.json");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(3L << 30); // a sparse 3 GiB file: reading it whole would exhaust the heap
        }
        JsonException e = assertThrows(JsonException.class, () -> Json.readFile(file, 1 << 20));
        assertMentions(e.getMessage(), String.valueOf(3L << 30), "limit of 1048576 bytes");

        Path small = dir.resolve("small.json");
        Files.writeString(small, "{\"é\": 1}");
        assertEquals("{\"é\": 1}", Json.readFile(small, 9)); // 9 bytes: é takes two
        assertThrows(JsonException.class, () -> Json.readFile(small, 8));
    }

    @Test
    void readFileStopsAtTheLimitWhenTheSizeIsUnknown() throws IOException {
        // a device reports size 0 and never ends: the read stops one byte past the limit
        Path zero = Path.of("/dev/zero");
        assertTrue(Files.exists(zero), "this test needs /dev/zero");
        JsonException e = assertThrows(JsonException.class, () -> Json.readFile(zero, 4096));
        assertMentions(e.getMessage(), "more than 4096 bytes");
    }

    @Test
    void readFileRefusesTextThatIsNotUtf8() throws IOException {
        Path file = dir.resolve("latin1.json");
        Files.write(file, new byte[] {'[', '"', (byte) 0xE9, '"', ']'});
        JsonException e = assertThrows(JsonException.class, () -> Json.readFile(file, 100));
        assertMentions(e.getMessage(), "not UTF-8", "offset 2");
    }
}
