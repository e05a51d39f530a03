package io.based4j.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link GemmChoices}: what it keeps, how its file is written and read, and what it does where it cannot write. */
class GemmChoicesTest {
    @TempDir
    Path dir;

    @Test
    void aLineIsAKeyAnIndexAndACount() {
        var e = GemmChoices.parse("H200|cublasLt 130000|1,0,4096\t3\t8");
        assertNotNull(e);
        assertEquals("H200|cublasLt 130000|1,0,4096", e.getKey());
        assertEquals(new GemmChoices.Choice(3, 8), e.getValue());
        for (String bad : new String[] {"", "key", "key\t3", "key\t3\t8\t9", "\t3\t8", "key\tx\t8", "key\t8\t8",
            "key\t-1\t8"}) {
            assertNull(GemmChoices.parse(bad), "'" + bad + "' is not a choice");
        }
        assertThrows(IllegalArgumentException.class, () -> new GemmChoices.Choice(8, 8));
    }

    @Test
    void theFirstChoiceForAKeyStaysAndIsWrittenToTheFile() throws IOException {
        Path file = dir.resolve("sub").resolve("choices.tsv");
        GemmChoices c = GemmChoices.unshared(file);
        assertNull(c.get("a"));
        assertEquals(new GemmChoices.Choice(2, 8), c.put("a", new GemmChoices.Choice(2, 8)));
        assertEquals(new GemmChoices.Choice(2, 8), c.put("a", new GemmChoices.Choice(5, 8)), "the first choice stays");
        c.put("b", new GemmChoices.Choice(0, 3));
        assertEquals(List.of("a\t2\t8", "b\t0\t3"), Files.readAllLines(file));
        assertNull(c.problem());
        try (var listing = Files.list(file.getParent())) {
            assertEquals(List.of("choices.tsv", "choices.tsv.lock"),
                    listing.map(f -> f.getFileName().toString()).sorted().toList(),
                    "no temporary file is left beside the choices and their lock");
        }
        GemmChoices later = GemmChoices.unshared(file);  // as a later process reads them
        assertEquals(2, later.size());
        assertEquals(new GemmChoices.Choice(2, 8), later.get("a"));
    }

    @Test
    void choicesAnotherProcessWroteMeanwhileAreKept() throws IOException {
        Path file = dir.resolve("choices.tsv");
        GemmChoices mine = GemmChoices.unshared(file);
        mine.put("a", new GemmChoices.Choice(1, 8));
        // another process, which read the file before "a" was there, adds "b" and its own "a"
        Files.write(file, List.of("a\t4\t8", "b\t2\t8", "a line of another version"));
        mine.put("c", new GemmChoices.Choice(0, 8));
        assertEquals(List.of("a\t4\t8", "b\t2\t8", "c\t0\t8"), Files.readAllLines(file),
                "the file keeps what it held first");
        assertEquals(new GemmChoices.Choice(1, 8), mine.get("a"), "this process keeps the choice its plans use");
        assertEquals(new GemmChoices.Choice(2, 8), mine.get("b"));
    }

    @Test
    void aChoiceAnotherProcessMadeForTheSameProductIsTaken() throws IOException {
        Path file = dir.resolve("choices.tsv");
        GemmChoices mine = GemmChoices.unshared(file);
        assertNull(mine.get("a"));  // the file is read (it is not there yet)
        Files.write(file, List.of("a\t4\t8"));  // another process chose meanwhile
        assertEquals(new GemmChoices.Choice(4, 8), mine.put("a", new GemmChoices.Choice(1, 8)));
        assertEquals(new GemmChoices.Choice(4, 8), mine.get("a"));
        assertEquals(List.of("a\t4\t8"), Files.readAllLines(file));
    }

    @Test
    void aChoiceForAnotherAnswerOfTheHeuristicIsReplaced() throws IOException {
        Path file = dir.resolve("choices.tsv");
        Files.write(file, List.of("a\t4\t8", "b\t1\t8"));
        GemmChoices c = GemmChoices.unshared(file);
        assertEquals(new GemmChoices.Choice(4, 8), c.get("a"));
        assertEquals(new GemmChoices.Choice(2, 6), c.put("a", new GemmChoices.Choice(2, 6), true));
        assertEquals(List.of("a\t2\t6", "b\t1\t8"), Files.readAllLines(file));
        assertTrue(Files.isRegularFile(dir.resolve("choices.tsv.lock")), "the lock file beside it");
    }

    @Test
    void aFileThatCannotBeReadIsNotWrittenOver() throws IOException {
        Path file = dir.resolve("choices.tsv");
        byte[] notUtf8 = {(byte) 0xff, (byte) 0xfe, 'a', '\t', '1', '\t', '2', '\n'};
        Files.write(file, notUtf8);
        GemmChoices c = GemmChoices.unshared(file);
        assertEquals(new GemmChoices.Choice(0, 3), c.put("k", new GemmChoices.Choice(0, 3)));
        assertNotNull(c.problem());
        assertTrue(c.problem().contains("reading"), c.problem());
        assertArrayEquals(notUtf8, Files.readAllBytes(file), "the unreadable file is left as it was");
    }

    @Test
    void aFileThatCannotBeWrittenLeavesTheChoicesInMemory() throws IOException {
        Path notADirectory = Files.writeString(dir.resolve("plain"), "x");
        GemmChoices c = GemmChoices.unshared(notADirectory.resolve("choices.tsv"));
        c.put("a", new GemmChoices.Choice(1, 2));
        assertEquals(new GemmChoices.Choice(1, 2), c.get("a"));
        assertNotNull(c.problem());
        assertTrue(c.problem().contains("locking") || c.problem().contains("writing"), c.problem());
        assertEquals("x", Files.readString(notADirectory), "nothing of the user's is touched");
    }

    @Test
    void oneStoreAFileInAProcess() {
        Path file = dir.resolve("choices.tsv");
        assertSame(GemmChoices.of(file), GemmChoices.of(dir.resolve(".").resolve("choices.tsv")));
        assertNull(GemmChoices.of(null).file());
        assertTrue(GemmChoices.defaultFile().endsWith(Path.of("based4j", "gemm-choices.tsv")));
    }
}
