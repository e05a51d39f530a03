package io.based4j.train.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Writing a dataset beside the old one: swapped in when complete, nothing foreign touched, nothing left on failure. */
class DatasetWriterTest {
    @TempDir
    Path tmp;

    /** Every file of {@code dir} with its bytes. */
    static Map<String, byte[]> snapshot(Path dir) throws IOException {
        Map<String, byte[]> m = new TreeMap<>();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) {
                m.put(p.getFileName().toString(), Files.readAllBytes(p));
            }
        }
        return m;
    }

    static void assertSameFiles(Map<String, byte[]> expected, Map<String, byte[]> actual) {
        assertEquals(expected.keySet(), actual.keySet());
        expected.forEach((k, v) -> assertArrayEquals(v, actual.get(k), k));
    }

    static int[] tokens(Path dir, String split) {
        try (TokenDataset ds = TokenDataset.open(dir, split)) {
            int[] t = new int[(int) ds.count()];
            ds.read(0, t, 0, t.length);
            return t;
        }
    }

    @Test
    void commitSwapsTheNewDatasetInAndDeletesOnlyTheOldOnesShards() throws IOException {
        Path dir = tmp.resolve("d");
        TokenManifest first = DatasetWriter.writeAll(dir, new int[] {1, 2, 3}, new int[] {4});
        List<String> oldShards = first.shardFiles();
        assertEquals(2, oldShards.size());
        assertTrue(oldShards.stream().allMatch(n -> n.matches("(train|val)-[0-9a-f]{8}-00000\\.bin")), oldShards.toString());
        // files the dataset does not list, shard-like names included
        Files.writeString(dir.resolve("notes.txt"), "mine");
        TokenShard.write(dir.resolve("train-00000.bin"), new int[] {42});

        DatasetWriter.Contents before = DatasetWriter.inspect(dir);
        assertEquals(oldShards.stream().sorted().toList(), before.shardFiles());
        assertEquals(List.of("notes.txt", "train-00000.bin"), before.others());
        assertEquals("a token dataset (data.json and 2 shard files) and 2 other entries (notes.txt, train-00000.bin)",
                before.describe());

        DatasetWriter.Committed done;
        try (DatasetWriter w = DatasetWriter.create(dir, 2)) {
            assertEquals(first.fields(), w.replaced().fields());
            w.split("train").append(new int[] {5, 6, 7, 8, 9});
            w.split("val").append(new int[0]);
            // until the swap the old dataset is what the folder holds
            assertArrayEquals(new int[] {1, 2, 3}, tokens(dir, "train"));
            done = w.commit(Map.of("note", "second"));
        }
        assertArrayEquals(new int[] {5, 6, 7, 8, 9}, tokens(dir, "train"));
        assertFalse(TokenDataset.hasTokens(dir, "val"));
        assertEquals(3, done.manifest().shards("train").size());
        assertEquals("second", done.manifest().fields().get("note"));
        assertEquals(oldShards.stream().map(dir::resolve).sorted().toList(), done.deleted().stream().sorted().toList());
        assertEquals(List.of(), done.notDeleted());
        Map<String, byte[]> files = snapshot(dir);
        assertEquals("mine", new String(files.get("notes.txt")));
        assertTrue(files.containsKey("train-00000.bin"));
        for (String old : oldShards) {
            assertFalse(files.containsKey(old), old);
        }
        // data.json, the three new shards and the two foreign files: nothing else
        assertEquals(6, files.size(), files.keySet().toString());
    }

    @Test
    void anAbandonedWriteLeavesTheOldDatasetExactlyAsItWas() throws IOException {
        Path dir = tmp.resolve("d");
        DatasetWriter.writeAll(dir, new int[] {1, 2, 3}, new int[] {4});
        Files.writeString(dir.resolve("notes.txt"), "mine");
        Map<String, byte[]> before = snapshot(dir);
        try (DatasetWriter w = DatasetWriter.create(dir, 2)) {
            w.split("train").append(new int[] {5, 6, 7, 8, 9}); // two complete shards and one in progress
            w.split("val").append(new int[] {1});
            assertTrue(snapshot(dir).size() > before.size());
            // no commit: as when tokenizing fails midway
        }
        assertSameFiles(before, snapshot(dir));
        assertArrayEquals(new int[] {1, 2, 3}, tokens(dir, "train"));
        assertArrayEquals(new int[] {4}, tokens(dir, "val"));

        // a folder the write created is removed again, with the parents it created
        Path fresh = tmp.resolve("new/deeper/tokens");
        try (DatasetWriter w = DatasetWriter.create(fresh, 2)) {
            w.split("train").append(new int[] {1, 2, 3});
        }
        assertFalse(Files.exists(tmp.resolve("new")));
    }

    @Test
    void aManifestThatChangesDuringTheWriteIsNotReplaced() throws IOException {
        Path dir = tmp.resolve("d");
        DatasetWriter.writeAll(dir, new int[] {1, 2, 3}, new int[0]);
        Map<String, byte[]> other;
        try (DatasetWriter w = DatasetWriter.create(dir, 10)) {
            w.split("train").append(new int[] {9, 9});
            // another write into the same folder finishes first
            DatasetWriter.writeAll(dir, new int[] {7, 7, 7, 7}, new int[0]);
            other = snapshot(dir);
            other.keySet().removeIf(n -> n.endsWith(".tmp") || n.endsWith(".writing")); // this write's, in progress
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> w.commit(Map.of()));
            assertTrue(e.getMessage().contains(dir.resolve("data.json").toString())
                    && e.getMessage().contains("changed"), e.getMessage());
        }
        assertSameFiles(other, snapshot(dir));
        assertArrayEquals(new int[] {7, 7, 7, 7}, tokens(dir, "train"));
    }

    @Test
    void replacingAVersionOneDatasetDeletesTheShardsItCounted() throws IOException {
        Path dir = tmp.resolve("v1");
        TokenShard.write(dir.resolve("train-00000.bin"), new int[] {1, 2});
        TokenShard.write(dir.resolve("train-00001.bin"), new int[] {3});
        TokenShard.write(dir.resolve("train-00002.bin"), new int[] {7}); // not counted by the manifest: kept
        Files.writeString(dir.resolve("data.json"), "{\"format\": \"based4j-tokens\", \"version\": 1, "
                + "\"train_tokens\": 3, \"val_tokens\": 0, \"train_shards\": 2, \"val_shards\": 0}");
        DatasetWriter.writeAll(dir, new int[] {4, 5}, new int[0]);
        assertArrayEquals(new int[] {4, 5}, tokens(dir, "train"));
        assertFalse(Files.exists(dir.resolve("train-00000.bin")));
        assertFalse(Files.exists(dir.resolve("train-00001.bin")));
        assertTrue(Files.exists(dir.resolve("train-00002.bin")));
    }

    @Test
    void anUnusableFolderIsReportedBeforeAnyWork() throws IOException {
        Path file = Files.writeString(tmp.resolve("plain"), "x");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> DatasetWriter.create(file, 1));
        assertTrue(e.getMessage().contains(file + ": exists and is not a directory"), e.getMessage());
        Path below = file.resolve("tokens");
        UncheckedIOException io = assertThrows(UncheckedIOException.class, () -> DatasetWriter.create(below, 1));
        assertTrue(io.getMessage().contains(below.toString()), io.getMessage());
        assertTrue(io.getCause().getMessage().contains("plain"), io.getCause().getMessage());
        // a data.json that is not a token manifest is someone else's: not replaced
        Path dir = Files.createDirectories(tmp.resolve("d"));
        Files.writeString(dir.resolve("data.json"), "{\"format\": \"other\"}");
        e = assertThrows(IllegalArgumentException.class, () -> DatasetWriter.create(dir, 1));
        assertTrue(e.getMessage().contains(dir.resolve("data.json").toString()), e.getMessage());
        assertEquals("{\"format\": \"other\"}", Files.readString(dir.resolve("data.json")));
        assertThrows(IllegalArgumentException.class, () -> DatasetWriter.create(tmp.resolve("e"), 0));
    }

    @Test
    void filesOfAKilledWriteAreSweptAndThoseOfALiveWriteAndForeignFilesAreKept() throws IOException {
        Path dir = tmp.resolve("d");
        DatasetWriter.writeAll(dir, new int[] {1, 2, 3}, new int[] {4});
        Map<String, byte[]> dataset = snapshot(dir);
        try (DatasetWriter live = DatasetWriter.create(dir, 1)) {
            live.split("train").append(new int[] {5, 6, 7});
            // what a write killed with SIGKILL leaves: its unlocked marker, a finished shard, a shard and a manifest
            // in progress
            Files.createFile(dir.resolve(".data.json.deadbeef.writing"));
            TokenShard.write(dir.resolve("train-deadbeef-00000.bin"), new int[] {7, 8});
            Files.writeString(dir.resolve("train-deadbeef-00001.bin.tmp"), "partial");
            Files.writeString(dir.resolve("data.json.deadbeef.tmp"), "{");
            // a shard-like file no marker claims: not ours to delete
            TokenShard.write(dir.resolve("train-cafebabe-00000.bin"), new int[] {9});

            List<String> swept = DatasetWriter.sweepAbandoned(dir);

            assertEquals(List.of("data.json.deadbeef.tmp", "train-deadbeef-00000.bin", "train-deadbeef-00001.bin.tmp"),
                    swept.stream().sorted().toList());
            Map<String, byte[]> after = snapshot(dir);
            assertFalse(after.containsKey(".data.json.deadbeef.writing"), after.keySet().toString());
            assertTrue(after.containsKey("train-cafebabe-00000.bin"));
            assertTrue(after.keySet().containsAll(dataset.keySet()), "the dataset is untouched");
            long liveFiles = after.keySet().stream().filter(n -> !dataset.containsKey(n)
                    && !n.equals("train-cafebabe-00000.bin")).count();
            assertTrue(liveFiles >= 3, "the live write's marker and shards stay: " + after.keySet());
        }
        assertEquals(new java.util.TreeSet<>(List.of("train-cafebabe-00000.bin")),
                new java.util.TreeSet<>(snapshot(dir).keySet().stream().filter(n -> !dataset.containsKey(n)).toList()),
                "the abandoned live write cleaned up after itself");
    }
}
