package io.based4j.train.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenShardTest {
    @TempDir
    Path tmp;

    static int[] randomTokens(int n, long seed) {
        Random r = new Random(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(65536);
        }
        t[0] = 0;
        if (n > 1) {
            t[1] = 65535;
        }
        return t;
    }

    @Test
    void roundTrip() throws IOException {
        int[] tokens = randomTokens(10_000, 1);
        Path f = tmp.resolve("a.bin");
        TokenShard.write(f, tokens, 0, tokens.length);
        assertEquals(32 + 2L * tokens.length, Files.size(f));
        assertFalse(Files.exists(tmp.resolve("a.bin.tmp")));
        byte[] head = Arrays.copyOf(Files.readAllBytes(f), 32);
        ByteBuffer h = ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals("B4JTOKNS", new String(head, 0, 8, java.nio.charset.StandardCharsets.US_ASCII));
        assertEquals(1, h.getInt(8));
        assertEquals(2, h.getInt(12));
        assertEquals(tokens.length, h.getLong(16));
        assertEquals(0, h.getLong(24));
        try (TokenShard s = TokenShard.open(f)) {
            assertEquals(tokens.length, s.count());
            assertEquals(f, s.path());
            assertEquals(65535, s.get(1));
            int[] all = new int[tokens.length];
            s.read(0, all, 0, all.length);
            assertArrayEquals(tokens, all);
            int[] part = new int[105];
            s.read(1234, part, 5, 100);
            assertArrayEquals(Arrays.copyOfRange(tokens, 1234, 1334), Arrays.copyOfRange(part, 5, 105));
            for (int i = 0; i < tokens.length; i += 97) {
                assertEquals(tokens[i], s.get(i));
            }
            assertThrows(IndexOutOfBoundsException.class, () -> s.get(tokens.length));
            assertThrows(IndexOutOfBoundsException.class, () -> s.read(tokens.length - 5, new int[10], 0, 10));
        }
        // a sub-range, and an empty shard
        Path g = tmp.resolve("b.bin");
        TokenShard.write(g, tokens, 10, 20);
        try (TokenShard s = TokenShard.open(g)) {
            int[] got = new int[10];
            s.read(0, got, 0, 10);
            assertArrayEquals(Arrays.copyOfRange(tokens, 10, 20), got);
        }
        Path e = tmp.resolve("e.bin");
        TokenShard.write(e, new int[0]);
        try (TokenShard s = TokenShard.open(e)) {
            assertEquals(0, s.count());
        }
    }

    @Test
    void writeReplacesAnExistingFile() throws IOException {
        Path f = tmp.resolve("a.bin");
        TokenShard.write(f, new int[] {1, 2, 3});
        TokenShard.write(f, new int[] {4, 5});
        try (TokenShard s = TokenShard.open(f)) {
            assertEquals(2, s.count());
            assertEquals(4, s.get(0));
        }
    }

    @Test
    void tokensOutsideUint16AreRefused() {
        Path f = tmp.resolve("big.bin");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TokenShard.write(f, new int[] {1, 2, 65536, 4}, 0, 4));
        assertTrue(e.getMessage().contains("65536"), e.getMessage());
        assertTrue(e.getMessage().contains("index 2"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> TokenShard.write(f, new int[] {-1}));
        assertTrue(e.getMessage().contains("-1"), e.getMessage());
        assertFalse(Files.exists(f));
        assertFalse(Files.exists(tmp.resolve("big.bin.tmp")));
        try (ShardWriter w = new ShardWriter(tmp.resolve("w"), "train", 10)) {
            e = assertThrows(IllegalArgumentException.class, () -> w.append(new int[] {5, 70000}, 0, 2));
            assertTrue(e.getMessage().contains("70000"), e.getMessage());
            assertEquals(0, w.written());
        }
    }

    private Path corrupt(String name, Consumer<ByteBuffer> edit, int newSize) throws IOException {
        Path f = tmp.resolve(name);
        TokenShard.write(f, new int[] {1, 2, 3, 4, 5});
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(f)).order(ByteOrder.LITTLE_ENDIAN);
        edit.accept(b);
        byte[] bytes = Arrays.copyOf(b.array(), newSize);
        Files.write(f, bytes);
        return f;
    }

    private static void assertBad(Path f, String... words) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TokenShard.open(f).close());
        assertTrue(e.getMessage().contains(f.toString()), e.getMessage());
        for (String w : words) {
            assertTrue(e.getMessage().contains(w), "'" + w + "' missing from: " + e.getMessage());
        }
    }

    @Test
    void everyCorruptionIsReportedWithTheFileAndTheProblem() throws IOException {
        assertBad(corrupt("short.bin", b -> { }, 20), "too short", "20 bytes");
        assertBad(corrupt("empty.bin", b -> { }, 0), "too short");
        assertBad(corrupt("magic.bin", b -> b.put(0, (byte) 'X'), 42), "not a based4j token shard");
        assertBad(corrupt("version.bin", b -> b.putInt(8, 2), 42), "unsupported", "version 2");
        assertBad(corrupt("bpt.bin", b -> b.putInt(12, 4), 42), "bytes per token 4");
        assertBad(corrupt("trunc.bin", b -> { }, 40), "truncated: header says 5 tokens, file holds 4");
        assertBad(corrupt("count.bin", b -> b.putLong(16, 6), 42), "truncated: header says 6 tokens, file holds 5");
        assertBad(corrupt("huge.bin", b -> b.putLong(16, -1L), 42), "truncated");
        assertBad(corrupt("trailing.bin", b -> { }, 43), "trailing bytes", "5 tokens");
        assertBad(corrupt("trailing2.bin", b -> b.putLong(16, 3), 42), "trailing bytes", "3 tokens");
        // a text file is not a shard
        Path text = tmp.resolve("notes.bin");
        Files.writeString(text, "this is a plain text file, not tokens at all");
        assertBad(text, "not a based4j token shard");
        // a missing file is an I/O error naming the file
        Path missing = tmp.resolve("missing.bin");
        Exception e = assertThrows(java.io.UncheckedIOException.class, () -> TokenShard.open(missing));
        assertTrue(e.getCause().getMessage().contains("missing.bin"));
    }

    @Test
    void shardWriterSplitsAtShardBoundariesAndReadsBack() throws IOException {
        int[] tokens = randomTokens(2_345, 7);
        Path dir = tmp.resolve("data");
        List<Path> shards;
        try (ShardWriter w = new ShardWriter(dir, "train-x", 500)) {
            // append in uneven pieces that straddle shard boundaries
            int pos = 0;
            int[] pieces = {1, 498, 3, 700, 0, 143, 1000};
            for (int p : pieces) {
                w.append(tokens, pos, p);
                pos += p;
            }
            assertEquals(tokens.length, pos);
            assertEquals(tokens.length, w.written());
            assertEquals(4, w.shards().size()); // the fifth is finished on close
            w.close();
            shards = w.shards();
            assertEquals(List.of(500L, 500L, 500L, 500L, 345L), w.entries().stream().map(TokenManifest.Shard::tokens)
                    .toList());
            assertEquals(5 * 32 + 2L * tokens.length, w.bytes());
        }
        assertEquals(5, shards.size());
        assertEquals(dir.resolve("train-x-00000.bin"), shards.get(0));
        assertEquals(dir.resolve("train-x-00004.bin"), shards.get(4));
        try (Stream<Path> s = Files.list(dir)) {
            assertTrue(s.noneMatch(p -> p.toString().endsWith(".tmp")));
        }
        int[] all = new int[tokens.length];
        int at = 0;
        for (Path p : shards) {
            try (TokenShard s = TokenShard.open(p)) {
                s.read(0, all, at, (int) s.count());
                at += (int) s.count();
            }
        }
        assertEquals(tokens.length, at);
        assertArrayEquals(tokens, all);
    }

    @Test
    void shardWriterTouchesNoFileItDidNotWrite() throws IOException {
        Path dir = tmp.resolve("w");
        Files.createDirectories(dir);
        // someone else's file with the temporary name of the writer's second shard
        Path foreignNext = Files.writeString(dir.resolve("train-00001.bin.tmp"), "not mine either");
        try (ShardWriter w = new ShardWriter(dir, "train", 4)) {
            // writing stops at the second shard, naming it
            java.io.UncheckedIOException e = assertThrows(java.io.UncheckedIOException.class,
                    () -> w.append(new int[] {1, 2, 3, 4, 5, 6}));
            assertTrue(e.getMessage().contains("train-00001.bin"), e.getMessage());
            w.abort();
        }
        assertEquals("not mine either", Files.readString(foreignNext));
        // the abort deleted the one shard it completed, and only that
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("train-00001.bin.tmp"), s.map(p -> p.getFileName().toString()).toList());
        }
        // a complete shard of the same name is never replaced
        Files.delete(foreignNext);
        Files.writeString(dir.resolve("val-00000.bin"), "mine? no");
        try (ShardWriter w = new ShardWriter(dir, "val", 4)) {
            java.io.UncheckedIOException e = assertThrows(java.io.UncheckedIOException.class,
                    () -> w.append(new int[] {1, 2, 3, 4}));
            assertTrue(e.getMessage().contains("val-00000.bin") && e.getMessage().contains("exists"), e.getMessage());
        }
        assertEquals("mine? no", Files.readString(dir.resolve("val-00000.bin")));
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of("val-00000.bin"), s.map(p -> p.getFileName().toString()).toList());
        }
        assertThrows(IllegalArgumentException.class, () -> new ShardWriter(dir, "a/b", 2));
        assertThrows(IllegalArgumentException.class, () -> new ShardWriter(dir, "train", 0));
    }

    // ------------------------------------------------------------------ WindowSampler

    private TokenDataset dataset(int n) {
        Path dir = tmp.resolve("ws" + n);
        int[] tokens = new int[n];
        for (int i = 0; i < n; i++) {
            tokens[i] = i % 65536;
        }
        try (DatasetWriter w = DatasetWriter.create(dir, 3000)) {
            w.split("train").append(tokens);
            w.commit(Map.of());
        }
        return TokenDataset.open(dir, "train");
    }

    @Test
    void windowSamplerIsAPureFunctionOfSeedStepAndIndex() {
        try (TokenDataset ds = dataset(10_000)) {
            int window = 65;
            WindowSampler a = new WindowSampler(ds, window, 42);
            WindowSampler b = new WindowSampler(ds, window, 42);
            WindowSampler c = new WindowSampler(ds, window, 43);
            int batch = 16;
            int[] x = new int[batch * window];
            int[] y = new int[batch * window];
            a.batch(5, batch, x);
            // the other sampler builds other steps first: order of calls does not matter
            b.batch(9, batch, y);
            b.batch(0, batch, y);
            b.batch(5, batch, y);
            assertArrayEquals(x, y);
            int[] z = new int[batch * window];
            a.batch(6, batch, z);
            assertFalse(Arrays.equals(x, z), "different steps give different batches");
            c.batch(5, batch, z);
            assertFalse(Arrays.equals(x, z), "different seeds give different batches");
            // windows are consecutive tokens starting at start(step, i)
            for (int i = 0; i < batch; i++) {
                long s = a.start(5, i);
                for (int k = 0; k < window; k++) {
                    assertEquals((s + k) % 65536, x[i * window + k]);
                }
            }
            // starts stay in range and cover it
            long max = ds.count() - window;
            long lo = Long.MAX_VALUE;
            long hi = Long.MIN_VALUE;
            Set<Long> distinct = new HashSet<>();
            for (int step = 0; step < 200; step++) {
                for (int i = 0; i < 50; i++) {
                    long s = a.start(step, i);
                    assertTrue(s >= 0 && s <= max, "start " + s);
                    lo = Math.min(lo, s);
                    hi = Math.max(hi, s);
                    distinct.add(s);
                    assertEquals(s, a.start(step, i));
                }
            }
            assertTrue(lo < max / 50 && hi > max - max / 50, lo + " .. " + hi);
            assertTrue(distinct.size() > 5000, "distinct starts " + distinct.size());
            assertNotEquals(a.start(1, 2), a.start(2, 1));
            assertThrows(IllegalArgumentException.class, () -> a.batch(0, 4, new int[10]));
        }
    }

    @Test
    void windowSamplerNeedsOneWindow() {
        try (TokenDataset ds = dataset(100)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new WindowSampler(ds, 101, 1));
            assertTrue(e.getMessage().contains("100 tokens") && e.getMessage().contains("101"), e.getMessage());
            WindowSampler exact = new WindowSampler(ds, 100, 1);
            for (int i = 0; i < 10; i++) {
                assertEquals(0, exact.start(i, i));
            }
        }
    }

    @Test
    void evalStartsAreEvenlySpacedAndDisjoint() {
        assertArrayEquals(new long[0], WindowSampler.evalStarts(10, 11, 5));
        assertArrayEquals(new long[] {0}, WindowSampler.evalStarts(15, 10, 5));
        assertArrayEquals(new long[] {0, 10, 20}, WindowSampler.evalStarts(30, 10, 5));
        assertArrayEquals(new long[] {0, 45, 90}, WindowSampler.evalStarts(100, 10, 3));
        assertArrayEquals(new long[0], WindowSampler.evalStarts(100, 10, 0));
        List<long[]> cases = new ArrayList<>();
        cases.add(WindowSampler.evalStarts(1_000_003, 2049, 100));
        cases.add(WindowSampler.evalStarts(1_000_003, 2049, 10_000));
        cases.add(WindowSampler.evalStarts(7_000_000_000L, 2049, 1000));
        for (long[] s : cases) {
            assertTrue(s.length > 0);
            assertEquals(0, s[0]);
            for (int i = 1; i < s.length; i++) {
                assertTrue(s[i] - s[i - 1] >= 2049, "overlap at " + i);
            }
        }
        assertEquals(100, cases.get(0).length);
        assertEquals(1_000_003 / 2049, cases.get(1).length);
        assertEquals(1_000_003 - 2049, cases.get(1)[cases.get(1).length - 1]);
        assertEquals(7_000_000_000L - 2049, cases.get(2)[999]);
        assertThrows(IllegalArgumentException.class, () -> WindowSampler.evalStarts(10, 0, 1));
    }
}
