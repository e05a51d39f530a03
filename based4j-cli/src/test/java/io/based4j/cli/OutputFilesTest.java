package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.cli.CliTest.Result;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Files a command is told to write (--json, forward --out) are checked before any work starts: the folder must
 * exist, and an existing path must be a regular file (a link, a device, a pipe or a folder is refused and left alone).
 */
class OutputFilesTest {
    @TempDir
    Path tmp;

    static void assertOneLineNaming(Result r, String... parts) {
        assertEquals(1, r.code(), r.err());
        String err = r.err().strip();
        assertEquals(1, err.split("\n").length, "one line: " + err);
        assertTrue(err.startsWith("based4j: error: "), err);
        for (String part : parts) {
            assertTrue(err.contains(part), "names " + part + ": " + err);
        }
        assertEquals("", r.out(), "no work done");
    }

    @Test
    void aJsonFileInAFolderThatDoesNotExistIsRefusedBeforeTheWork() {
        Path missing = tmp.resolve("no-such-folder");
        String json = missing.resolve("out.json").toString();
        // each would run for a while (a copy bandwidth test, a GPU, a training run) before writing its results
        for (String[] args : List.of(
                new String[] {"bench", "cpu", "--preset", "based-360m", "--json", json},
                new String[] {"bench", "gpu", "--json", json},
                new String[] {"mqar", "train", "--d-model", "8", "--epochs", "1", "--train", "16:2:8",
                    "--test", "16:2:8", "--json", json})) {
            Result r = CliTest.run(args);
            assertOneLineNaming(r, "--json " + json, "directory " + missing + " does not exist");
        }
    }

    @Test
    void aJsonPathThatIsAFolderIsRefused() throws IOException {
        Path dir = Files.createDirectory(tmp.resolve("results"));
        Result r = CliTest.run("mqar", "train", "--d-model", "8", "--epochs", "1", "--train", "16:2:8", "--test",
                "16:2:8", "--json", dir.toString());
        assertOneLineNaming(r, "--json " + dir, "is a directory");
        assertTrue(Files.isDirectory(dir));
    }

    Result forward(Path out) throws IOException {
        Path ids = tmp.resolve("ids.json");
        Files.writeString(ids, "[[1, 2, 3]]");
        return CliTest.run("forward", "--model", CliTest.GOLDEN.toString(), "--ids", ids.toString(), "--out",
                out.toString());
    }

    @Test
    void forwardRefusesASymbolicLinkAndLeavesItAndItsTarget() throws IOException {
        Path target = tmp.resolve("precious.txt");
        Files.writeString(target, "keep me");
        Path link = Files.createSymbolicLink(tmp.resolve("logits.safetensors"), target);
        assertOneLineNaming(forward(link), "--out " + link, "is a symbolic link");
        assertTrue(Files.isSymbolicLink(link));
        assertEquals(target, Files.readSymbolicLink(link));
        assertEquals("keep me", Files.readString(target));
        assertOnly(tmp, "ids.json", "logits.safetensors", "precious.txt");
    }

    @Test
    void forwardRefusesAPipe() throws IOException, InterruptedException {
        Path fifo = tmp.resolve("logits.fifo");
        Process mkfifo = new ProcessBuilder("mkfifo", fifo.toString()).inheritIO().start();
        assertEquals(0, mkfifo.waitFor());
        assertOneLineNaming(forward(fifo), "--out " + fifo, "not a regular file");
        assertTrue(Files.readAttributes(fifo, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS).isOther(),
                "still the pipe");
        assertOnly(tmp, "ids.json", "logits.fifo");
    }

    @Test
    void forwardRefusesAFolderAndLeavesItsFiles() throws IOException {
        Path dir = Files.createDirectory(tmp.resolve("logits"));
        Files.writeString(dir.resolve("inside.txt"), "keep me");
        assertOneLineNaming(forward(dir), "--out " + dir, "is a directory");
        assertEquals("keep me", Files.readString(dir.resolve("inside.txt")));
        assertOnly(tmp, "ids.json", "logits");
    }

    @Test
    void forwardWritesOverARegularFile() throws IOException {
        Path out = Files.writeString(tmp.resolve("logits.safetensors"), "old");
        Result r = forward(out);
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(out, LinkOption.NOFOLLOW_LINKS) && Files.size(out) > 3);
        assertOnly(tmp, "ids.json", "logits.safetensors");
    }

    /** The folder holds exactly these names (nothing half-written or left behind). */
    static void assertOnly(Path dir, String... names) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            assertEquals(List.of(names), files.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }
}
