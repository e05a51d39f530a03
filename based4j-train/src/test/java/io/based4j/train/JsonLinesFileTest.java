package io.based4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** JSON Lines appended whole and read back, a torn last line cut off. */
class JsonLinesFileTest {
    @TempDir
    Path tmp;

    final StringWriter notes = new StringWriter();

    JsonLinesFile.Contents read(JsonLinesFile f) {
        return f.read(o -> o.containsKey("n"), "a JSON object with n", new PrintWriter(notes, true));
    }

    @Test
    void linesAppendedAreReadBackInOrder() throws IOException {
        JsonLinesFile f = new JsonLinesFile(tmp.resolve("log.jsonl"));
        assertNull(read(f), "no file yet");
        f.append(Map.of("n", 1L), true);
        f.append(Map.of("n", 2L), false);
        assertEquals("{\"n\":1}\n{\"n\":2}\n", Files.readString(f.file()));
        JsonLinesFile.Contents c = read(f);
        assertEquals(List.of(1L, 2L), c.lines().stream().map(l -> l.object().get("n")).toList());
        assertEquals(List.of(1, 2), c.lines().stream().map(JsonLinesFile.Line::number).toList());
        f.rewrite(c, c.lines());
        assertEquals("{\"n\":1}\n{\"n\":2}\n", Files.readString(f.file()), "unchanged");
        assertEquals("", notes.toString());
    }

    @Test
    void aTornLastLineIsDroppedAndAWholeOneWithoutItsLineEndGetsOne() throws IOException {
        JsonLinesFile f = new JsonLinesFile(tmp.resolve("log.jsonl"));
        Files.writeString(f.file(), "{\"n\":1}\n\n{\"n\":2}\n{\"n\":");
        JsonLinesFile.Contents c = read(f);
        assertEquals(2, c.lines().size());
        assertEquals(f.file() + ": cut off a torn last line (line 4, 5 characters), left by a run stopped while"
                + " writing it", notes.toString().strip());
        f.rewrite(c, c.lines());
        assertEquals("{\"n\":1}\n{\"n\":2}\n", Files.readString(f.file()));

        Files.writeString(f.file(), "{\"n\":1}\n{\"n\":2}");
        c = read(f);
        f.rewrite(c, c.lines());
        f.append(Map.of("n", 3L), true);
        assertEquals("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n", Files.readString(f.file()));
        assertTrue(Files.notExists(tmp.resolve("log.jsonl.tmp")));
    }

    @Test
    void aBadLineBeforeTheLastIsAnErrorNamingIt() throws IOException {
        JsonLinesFile f = new JsonLinesFile(tmp.resolve("log.jsonl"));
        Files.writeString(f.file(), "{\"n\":1}\n{\"m\":2}\n{\"n\":3}\n");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> read(f));
        assertEquals(f.file() + ": line 2 is not a JSON object with n: {\"m\":2}", e.getMessage());
    }

    @Test
    void replaceWritesTheWholeFile() throws IOException {
        JsonLinesFile f = new JsonLinesFile(tmp.resolve("best.jsonl"));
        f.replace(List.of(Map.of("n", 1L), Map.of("n", 2L)));
        f.replace(List.of(Map.of("n", 3L)));
        assertEquals("{\"n\":3}\n", Files.readString(f.file()));
    }
}
