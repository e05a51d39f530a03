package io.based4j.train.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading a token folder: the manifest decides which shards make the dataset, and every error names its file. */
class TokenDatasetTest {
    @TempDir
    Path tmp;

    /** A folder holding {@code val-a.bin} = [1, 2, 3], {@code val-b.bin} = [], {@code val-c.bin} = [4, 5]. */
    private Path threeShards() {
        Path dir = tmp.resolve("d");
        TokenShard.write(dir.resolve("val-a.bin"), new int[] {1, 2, 3});
        TokenShard.write(dir.resolve("val-b.bin"), new int[0]);
        TokenShard.write(dir.resolve("val-c.bin"), new int[] {4, 5});
        return dir;
    }

    private static Map<String, List<TokenManifest.Shard>> valShards(long a, long b, long c) {
        Map<String, List<TokenManifest.Shard>> m = new LinkedHashMap<>();
        m.put("val", List.of(new TokenManifest.Shard("val-a.bin", a), new TokenManifest.Shard("val-b.bin", b),
                new TokenManifest.Shard("val-c.bin", c)));
        m.put("train", List.of());
        return m;
    }

    private static Map<String, Object> fields() {
        Map<String, Object> f = new LinkedHashMap<>();
        f.put("vocab_size", 50257);
        f.put("eos_token_id", 50256);
        return f;
    }

    /** Rewrites one field of {@code dir/data.json}. */
    private static void edit(Path dir, String key, Object value) throws IOException {
        Path file = dir.resolve(TokenManifest.FILE);
        Map<String, Object> m = Json.parseObject(Files.readString(file));
        m.put(key, value);
        Files.writeString(file, Json.writePretty(m));
    }

    private static IllegalArgumentException refused(Path dir, String split, String... words) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(dir, split));
        for (String w : words) {
            assertTrue(e.getMessage().contains(w), "'" + w + "' missing from: " + e.getMessage());
        }
        return e;
    }

    @Test
    void readsTheListedShardsInOrderIncludingEmptyOnes() throws IOException {
        Path dir = threeShards();
        // shard-named files the manifest does not list are no part of the dataset
        TokenShard.write(dir.resolve("val-0.bin"), new int[] {9, 9});
        Files.writeString(dir.resolve("val-00000.bin"), "not a shard");
        TokenManifest.write(dir, fields(), valShards(3, 0, 2), "t1");
        try (TokenDataset ds = TokenDataset.open(dir, "val")) {
            assertEquals(5, ds.count());
            assertEquals(3, ds.shards().size());
            assertEquals(50257, ds.vocabSize());
            assertEquals(50256, ds.eosTokenId());
            int[] all = new int[5];
            ds.read(0, all, 0, 5);
            assertArrayEquals(new int[] {1, 2, 3, 4, 5}, all);
            assertEquals(4, ds.get(3));
            int[] two = new int[2];
            ds.read(2, two, 0, 2);
            assertArrayEquals(new int[] {3, 4}, two);
        }
        Map<String, Object> m = Json.parseObject(Files.readString(dir.resolve("data.json")));
        assertEquals(2L, m.get("version"));
        assertEquals(5L, m.get("val_tokens"));
        assertEquals(0L, m.get("train_tokens"));
        assertTrue(TokenDataset.hasTokens(dir, "val"));
        assertFalse(TokenDataset.hasTokens(dir, "train"));
        refused(dir, "train", "data.json", "train split is empty");
        refused(dir, "test", "data.json", "declares no test split");
        assertThrows(IllegalArgumentException.class, () -> TokenDataset.hasTokens(dir, "test"));
        assertThrows(IllegalArgumentException.class, () -> TokenDataset.open(dir, "../x"));
    }

    @Test
    void aFolderWithoutManifestIsRefused() throws IOException {
        Path none = tmp.resolve("none");
        refused(none, "train", none.toString(), "no such directory");
        Path dir = threeShards();
        TokenShard.write(dir.resolve("train-00000.bin"), new int[] {1, 2});
        refused(dir, "train", dir.resolve("data.json").toString(), "not a token folder", "based4j data tokenize");
        assertThrows(IllegalArgumentException.class, () -> TokenDataset.hasTokens(dir, "val"));
    }

    @Test
    void listedShardsMustExistBeValidAndHoldTheStatedCounts() throws IOException {
        Path dir = threeShards();
        TokenManifest.write(dir, fields(), valShards(3, 0, 2), "t1");

        // a listed shard holding another count than its entry
        TokenShard.write(dir.resolve("val-c.bin"), new int[] {4, 5, 6});
        IllegalArgumentException e = refused(dir, "val", dir.resolve("val-c.bin").toString(), "holds 3 tokens");
        assertTrue(e.getMessage().contains("data.json says 2"), e.getMessage());

        // a listed shard that is not a shard
        Files.writeString(dir.resolve("val-c.bin"), "plain text, no header at all, long enough to be read");
        refused(dir, "val", dir.resolve("val-c.bin").toString(), "not a based4j token shard");

        // a listed shard that is missing
        Files.delete(dir.resolve("val-c.bin"));
        refused(dir, "val", dir.resolve("val-c.bin").toString(), "no such file", "data.json");
    }

    @Test
    void aManifestAtOddsWithItselfOrNotAManifestIsNamed() throws IOException {
        Path dir = threeShards();
        TokenManifest.write(dir, fields(), valShards(3, 0, 2), "t1");
        String good = Files.readString(dir.resolve("data.json"));
        String file = dir.resolve("data.json").toString();

        edit(dir, "val_tokens", 7);
        refused(dir, "val", file, "val_tokens is 7", "add up to 5");

        Map<String, Object> m = Json.parseObject(good);
        ((Map<String, Object>) m.get("shards")).put("val", List.of(Map.of("file", "../elsewhere/val-a.bin",
                "tokens", 5)));
        Files.writeString(dir.resolve("data.json"), Json.write(m));
        refused(dir, "val", file, "shards.val[0].file", "val-*.bin");

        ((Map<String, Object>) m.get("shards")).put("val", List.of(Map.of("file", "val-a.bin", "tokens", 3),
                Map.of("file", "val-a.bin", "tokens", 2)));
        Files.writeString(dir.resolve("data.json"), Json.write(m));
        refused(dir, "val", file, "lists shard val-a.bin twice");

        ((Map<String, Object>) m.get("shards")).put("val", List.of(Map.of("file", "train-a.bin", "tokens", 5)));
        Files.writeString(dir.resolve("data.json"), Json.write(m));
        refused(dir, "val", file, "val-*.bin");

        m.remove("shards");
        Files.writeString(dir.resolve("data.json"), Json.write(m));
        refused(dir, "val", file, "\"shards\" must be an object");

        Files.writeString(dir.resolve("data.json"), good.replace("\"version\": 2", "\"version\": 3"));
        refused(dir, "val", file, "unsupported manifest version 3");
        Files.writeString(dir.resolve("data.json"), good.replace("based4j-tokens", "other"));
        refused(dir, "val", file, "not a based4j token manifest", "other");
        Files.writeString(dir.resolve("data.json"), "{\"format\": \"based4j-tokens\", ");
        refused(dir, "val", file);
        Files.write(dir.resolve("data.json"), new byte[] {'{', (byte) 0xE9, '}'});
        refused(dir, "val", file, "not UTF-8");
        Files.delete(dir.resolve("data.json"));
        Files.createDirectory(dir.resolve("data.json"));
        refused(dir, "val", file, "not a regular file");
    }

    @Test
    void versionOneManifestsAreStillRead() throws IOException {
        // as older builds wrote them: counts only, shards numbered from 00000
        Path dir = tmp.resolve("v1");
        TokenShard.write(dir.resolve("train-00000.bin"), new int[] {1, 2});
        TokenShard.write(dir.resolve("train-00001.bin"), new int[] {3});
        TokenShard.write(dir.resolve("train-00002.bin"), new int[] {7, 7, 7}); // stale: beyond the count
        Files.writeString(dir.resolve("data.json"), """
                {"format": "based4j-tokens", "version": 1, "vocab_size": 50257, "eos_token_id": 50256,
                 "train_tokens": 3, "val_tokens": 0, "train_shards": 2, "val_shards": 0}
                """);
        try (TokenDataset ds = TokenDataset.open(dir, "train")) {
            int[] all = new int[(int) ds.count()];
            ds.read(0, all, 0, all.length);
            assertArrayEquals(new int[] {1, 2, 3}, all);
        }
        assertFalse(TokenDataset.hasTokens(dir, "val"));
        edit(dir, "train_tokens", 5);
        refused(dir, "train", dir.resolve("data.json").toString(), "train_tokens = 5", "hold 3 tokens");
        edit(dir, "train_shards", 4);
        refused(dir, "train", dir.resolve("train-00003.bin").toString(), "no such file");
    }
}
