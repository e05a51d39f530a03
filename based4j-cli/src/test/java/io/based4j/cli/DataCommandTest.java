package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.data.TokenDataset;
import io.based4j.train.data.TokenManifest;
import io.based4j.train.data.TokenShard;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code based4j data tokenize}: shards, the validation split, the manifest and input errors. */
class DataCommandTest {
    static final Gpt2Tokenizer TOK = Gpt2Tokenizer.load();
    static final int EOS = 50256;

    static final String DOC_A = """
            The first document talks about linear attention. BASED combines a Taylor feature map
            with a short sliding window, and keeps a fixed-size recurrent state per sequence.
            It has a few lines, numbers like 1234 and 3.14, and "quoted" words.
            """;
    static final String DOC_B = "Second document: Ünïcödé text, emoji \uD83D\uDE00, tabs\tand  double  spaces.\n"
            + "Another line here with more words to make the split interesting.\n";

    @TempDir
    Path tmp;

    record Result(int code, String out, String err) {
    }

    static Result run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return new Result(code, out.toString(), err.toString());
    }

    static int[] readAll(Path dir, String split) {
        try (TokenDataset ds = TokenDataset.open(dir, split)) {
            int[] t = new int[(int) ds.count()];
            ds.read(0, t, 0, t.length);
            return t;
        }
    }

    static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    static long ceil(double f, int n) {
        return (long) Math.ceil(new java.math.BigDecimal(Double.toString(f))
                .multiply(java.math.BigDecimal.valueOf(n)).doubleValue());
    }

    @Test
    void tokenizesTwoFilesWithAValidationSplit() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path b = Files.writeString(tmp.resolve("b.txt"), DOC_B);
        Path out = tmp.resolve("tokens");
        Result r = run("data", "tokenize", "--input", a.toString(), b.toString(), "--out", out.toString(),
                "--val-fraction", "0.1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("documents") && r.out().contains("tokens/s"), r.out());

        int[] ta = TOK.encode(DOC_A);
        int[] tb = TOK.encode(DOC_B);
        int va = (int) ceil(0.1, ta.length);
        int vb = (int) ceil(0.1, tb.length);
        assertTrue(va >= 1 && vb >= 1);
        assertEquals(va, DataCommand.valTokens(ta.length, 0.1));
        assertEquals(vb, DataCommand.valTokens(tb.length, 0.1));
        int[] train = readAll(out, "train");
        int[] val = readAll(out, "val");
        assertArrayEquals(concat(Arrays.copyOf(ta, ta.length - va), new int[] {EOS},
                Arrays.copyOf(tb, tb.length - vb), new int[] {EOS}), train);
        assertArrayEquals(concat(Arrays.copyOfRange(ta, ta.length - va, ta.length), new int[] {EOS},
                Arrays.copyOfRange(tb, tb.length - vb, tb.length), new int[] {EOS}), val);

        // the shards decode back to the documents with an end-of-text token between them
        String trainText = TOK.decode(train);
        String valText = TOK.decode(val);
        String[] tp = trainText.split("<\\|endoftext\\|>", -1);
        String[] vp = valText.split("<\\|endoftext\\|>", -1);
        assertEquals(3, tp.length);
        assertEquals("", tp[2]);
        assertEquals(DOC_A, tp[0] + vp[0]);
        assertEquals(DOC_B, tp[1] + vp[1]);

        Map<String, Object> m = Json.parseObject(Files.readString(out.resolve("data.json")));
        assertEquals("based4j-tokens", m.get("format"));
        assertEquals(2L, m.get("version"));
        assertEquals("gpt2", m.get("tokenizer"));
        assertEquals(50257L, m.get("vocab_size"));
        assertEquals(50256L, m.get("eos_token_id"));
        assertEquals((long) train.length, m.get("train_tokens"));
        assertEquals((long) val.length, m.get("val_tokens"));
        assertEquals(2L, m.get("documents"));
        assertEquals(List.of(a.toString(), b.toString()), m.get("inputs"));
        try (TokenDataset ds = TokenDataset.open(out, "train")) {
            assertEquals(50257, ds.vocabSize());
            assertEquals(EOS, ds.eosTokenId());
        }
        try (Stream<Path> s = Files.list(out)) {
            assertTrue(s.noneMatch(p -> p.getFileName().toString().endsWith(".tmp")));
        }

        // the manifest lists the shards, which are all the folder holds besides it
        List<Path> shards = new ArrayList<>(listed(out, "train"));
        shards.addAll(listed(out, "val"));
        assertEquals(2, shards.size());
        try (Stream<Path> s = Files.list(out)) {
            assertEquals(Stream.concat(Stream.of(out.resolve("data.json")), shards.stream()).sorted().toList(),
                    s.sorted().toList());
        }

        // the output is deterministic
        Path out2 = tmp.resolve("tokens2");
        assertEquals(0, run("data", "tokenize", "--input", a.toString(), b.toString(), "--out", out2.toString(),
                "--val-fraction", "0.1").code());
        for (String split : List.of("train", "val")) {
            assertArrayEquals(Files.readAllBytes(listed(out, split).getFirst()),
                    Files.readAllBytes(listed(out2, split).getFirst()));
        }
    }

    /** The shard files {@code dir/data.json} lists for {@code split}. */
    static List<Path> listed(Path dir, String split) {
        return TokenManifest.read(dir).shards(split).stream().map(s -> dir.resolve(s.file())).toList();
    }

    @Test
    void directoriesSmallShardsAndNoValidation() throws IOException {
        Path dir = tmp.resolve("corpus");
        Files.createDirectories(dir.resolve("sub"));
        Path z = Files.writeString(dir.resolve("z.txt"), DOC_B);
        Path x = Files.writeString(dir.resolve("sub/x.txt"), DOC_A);
        Path e = Files.writeString(dir.resolve("empty.txt"), "");
        Path out = tmp.resolve("out");
        // a first run with a validation split and many shards
        Result r = run("data", "tokenize", "--input", dir.toString(), "--out", out.toString(), "--shard-tokens", "7");
        assertEquals(0, r.code(), r.err());
        int[] ta = TOK.encode(DOC_A);
        int[] tb = TOK.encode(DOC_B);
        int va = (int) DataCommand.valTokens(ta.length, 0.05);
        int vb = (int) DataCommand.valTokens(tb.length, 0.05);
        // sorted: empty.txt, sub/x.txt, z.txt
        assertTrue(e.compareTo(x) < 0 && x.compareTo(z) < 0);
        int[] train = readAll(out, "train");
        assertArrayEquals(concat(Arrays.copyOf(ta, ta.length - va), new int[] {EOS},
                Arrays.copyOf(tb, tb.length - vb), new int[] {EOS}), train);
        try (TokenDataset ds = TokenDataset.open(out, "train")) {
            assertEquals((train.length + 6) / 7, ds.shards().size());
            for (TokenShard s : ds.shards()) {
                assertTrue(s.count() <= 7 && s.count() > 0);
            }
        }
        Map<String, Object> m = Json.parseObject(Files.readString(out.resolve("data.json")));
        assertEquals(3L, m.get("documents"));

        // a second run into the same directory without validation replaces the dataset and its shards
        r = run("data", "tokenize", "--input", x.toString(), "--out", out.toString(), "--val-fraction", "0",
                "--overwrite");
        assertEquals(0, r.code(), r.err());
        assertArrayEquals(concat(ta, new int[] {EOS}), readAll(out, "train"));
        try (Stream<Path> s = Files.list(out)) {
            assertEquals(List.of(out.resolve("data.json"), listed(out, "train").getFirst()), s.sorted().toList());
        }
        assertEquals(List.of(), listed(out, "val"));
        m = Json.parseObject(Files.readString(out.resolve("data.json")));
        assertEquals(0L, m.get("val_tokens"));
        assertEquals((long) ta.length + 1, m.get("train_tokens"));
    }

    @Test
    void missingInputIsOneLineNamingIt() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path missing = tmp.resolve("does-not-exist.txt");
        Path out = tmp.resolve("out");
        Result r = run("data", "tokenize", "--input", a.toString(), missing.toString(), "--out", out.toString(),
                "--val-fraction", "0.1");
        assertEquals(1, r.code());
        String err = r.err().strip();
        assertEquals(1, err.lines().count(), err);
        assertTrue(err.startsWith("based4j: error: "), err);
        assertTrue(err.contains(missing.toString()), err);
        assertFalse(err.contains("\tat "), err);
        assertFalse(Files.exists(out.resolve("data.json")));
    }

    @Test
    void invalidUtf8AndBadOptionsAreReported() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path bad = Files.write(tmp.resolve("latin1.txt"), new byte[] {'c', 'a', 'f', (byte) 0xE9, ' ', 'x'});
        Path out = tmp.resolve("out");
        Result r = run("data", "tokenize", "--input", a.toString(), bad.toString(), "--out", out.toString());
        assertEquals(1, r.code());
        String err = r.err().strip();
        assertEquals(1, err.lines().count(), err);
        assertTrue(err.contains(bad.toString()) && err.contains("UTF-8") && err.contains("offset 3"), err);
        assertFalse(Files.exists(out), "the folder the failed run created is removed again");

        r = run("data", "tokenize", "--input", a.toString(), "--out", out.toString(), "--val-fraction", "1");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--val-fraction"), r.err());
        r = run("data", "tokenize", "--input", a.toString(), "--out", out.toString(), "--shard-tokens", "0");
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--shard-tokens"), r.err());
        Path emptyDir = Files.createDirectories(tmp.resolve("nothing"));
        r = run("data", "tokenize", "--input", emptyDir.toString(), "--out", out.toString());
        assertEquals(1, r.code());
        assertTrue(r.err().contains(emptyDir.toString()), r.err());
        r = run("data", "tokenize", "--out", out.toString());
        assertEquals(2, r.code());
        assertTrue(r.err().contains("--input"), r.err());
    }

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

    static void assertUnchanged(Map<String, byte[]> before, Path dir) throws IOException {
        Map<String, byte[]> now = snapshot(dir);
        assertEquals(before.keySet(), now.keySet());
        before.forEach((k, v) -> assertArrayEquals(v, now.get(k), k));
    }

    static void assertOneErrorLine(Result r, String... words) {
        assertEquals(1, r.code(), r.err());
        String err = r.err().strip();
        assertEquals(1, err.lines().count(), err);
        assertTrue(err.startsWith("based4j: error: "), err);
        for (String w : words) {
            assertTrue(err.contains(w), "'" + w + "' missing from: " + err);
        }
    }

    @Test
    void aFailedRunOverADatasetLeavesItIntact() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path b = Files.writeString(tmp.resolve("b.txt"), DOC_B);
        Path out = tmp.resolve("tokens");
        assertEquals(0, run("data", "tokenize", "--input", b.toString(), "--out", out.toString(), "--shard-tokens",
                "5").code());
        int[] train = readAll(out, "train");
        int[] val = readAll(out, "val");
        Files.writeString(out.resolve("README"), "notes of the user");
        Map<String, byte[]> before = snapshot(out);

        // the valid document is tokenized into several complete shards before the invalid one fails the run
        Path bad = Files.write(tmp.resolve("z-latin1.txt"), new byte[] {'c', 'a', 'f', (byte) 0xE9});
        assertTrue(TOK.encode(DOC_A).length > 3 * 5);
        Result r = run("data", "tokenize", "--input", a.toString(), bad.toString(), "--out", out.toString(),
                "--shard-tokens", "5", "--overwrite");
        assertOneErrorLine(r, bad.toString(), "UTF-8");
        assertUnchanged(before, out);
        assertArrayEquals(train, readAll(out, "train"));
        assertArrayEquals(val, readAll(out, "val"));
    }

    @Test
    void aFolderThatHoldsAnythingIsRefusedWithoutOverwrite() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path out = tmp.resolve("tokens");
        assertEquals(0, run("data", "tokenize", "--input", a.toString(), "--out", out.toString()).code());
        Map<String, byte[]> before = snapshot(out);
        Result r = run("data", "tokenize", "--input", a.toString(), "--out", out.toString());
        assertOneErrorLine(r, "--out " + out, "a token dataset (data.json and 2 shard files)", "--overwrite");
        assertUnchanged(before, out);

        Path notes = Files.createDirectories(tmp.resolve("notes"));
        Files.writeString(notes.resolve("todo.txt"), "mine");
        r = run("data", "tokenize", "--input", a.toString(), "--out", notes.toString());
        assertOneErrorLine(r, "--out " + notes, "1 entry (todo.txt)", "--overwrite");
        assertEquals(List.of("todo.txt"), List.copyOf(snapshot(notes).keySet()));

        // a data.json that is not a token manifest is not replaced, not even with --overwrite
        Path other = Files.createDirectories(tmp.resolve("other"));
        Files.writeString(other.resolve("data.json"), "{\"format\": \"someone-else\"}");
        r = run("data", "tokenize", "--input", a.toString(), "--out", other.toString(), "--overwrite");
        assertOneErrorLine(r, other.resolve("data.json").toString(), "not a based4j token manifest");
        assertEquals("{\"format\": \"someone-else\"}", Files.readString(other.resolve("data.json")));

        // an output path that cannot be a folder is named before any work
        Path plain = Files.writeString(tmp.resolve("plain"), "x");
        r = run("data", "tokenize", "--input", a.toString(), "--out", plain.toString());
        assertOneErrorLine(r, plain + ": exists and is not a directory");
        r = run("data", "tokenize", "--input", a.toString(), "--out", plain.resolve("tokens").toString());
        assertOneErrorLine(r, plain.resolve("tokens").toString(), "cannot create the folder");

        // the text may not lie inside the token folder (an earlier run's shards are not text)
        Files.createDirectories(out.resolve("text"));
        Path inside = Files.writeString(out.resolve("text/doc.txt"), DOC_B);
        r = run("data", "tokenize", "--input", inside.toString(), "--out", out.toString(), "--overwrite");
        assertOneErrorLine(r, inside.toString(), "inside --out");
    }

    @Test
    void overwriteReplacesTheDatasetAndKeepsFilesItDoesNotList() throws IOException {
        Path a = Files.writeString(tmp.resolve("a.txt"), DOC_A);
        Path b = Files.writeString(tmp.resolve("b.txt"), DOC_B);
        Path out = tmp.resolve("tokens");
        assertEquals(0, run("data", "tokenize", "--input", a.toString(), "--out", out.toString(), "--shard-tokens",
                "10").code());
        List<Path> old = new ArrayList<>(listed(out, "train"));
        old.addAll(listed(out, "val"));
        assertTrue(old.size() > 2);
        // a foreign file, and a valid shard with a shard's name that the dataset does not list
        Files.writeString(out.resolve("notes.txt"), "mine");
        TokenShard.write(out.resolve("train-00000.bin"), new int[] {1, 2, 3});
        byte[] foreignShard = Files.readAllBytes(out.resolve("train-00000.bin"));

        Result r = run("data", "tokenize", "--input", b.toString(), "--out", out.toString(), "--val-fraction", "0",
                "--overwrite");
        assertEquals(0, r.code(), r.err());
        assertArrayEquals(concat(TOK.encode(DOC_B), new int[] {EOS}), readAll(out, "train"));
        for (Path p : old) {
            assertFalse(Files.exists(p), p + " of the replaced dataset is deleted");
        }
        assertEquals("mine", Files.readString(out.resolve("notes.txt")));
        assertArrayEquals(foreignShard, Files.readAllBytes(out.resolve("train-00000.bin")));
        assertEquals(Set.of("data.json", "notes.txt", "train-00000.bin", listed(out, "train").getFirst()
                .getFileName().toString()), snapshot(out).keySet());
    }

    @Test
    void byteOrderMarkIsDropped() throws IOException {
        byte[] text = "Hello there.\n".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        byte[] withBom = new byte[text.length + 3];
        withBom[0] = (byte) 0xEF;
        withBom[1] = (byte) 0xBB;
        withBom[2] = (byte) 0xBF;
        System.arraycopy(text, 0, withBom, 3, text.length);
        Path f = Files.write(tmp.resolve("bom.txt"), withBom);
        assertEquals("Hello there.\n", DataCommand.readUtf8(f));
    }

    @Test
    void chunkedEncodingEqualsWholeEncoding() throws IOException {
        // real text of this repository plus synthetic text full of awkward whitespace
        List<String> texts = new ArrayList<>();
        for (String f : List.of("../README.md", "../docs", "src/main/java/io/based4j/cli/Main.java")) {
            Path p = Path.of(f);
            if (Files.isRegularFile(p)) {
                texts.add(Files.readString(p));
            } else if (Files.isDirectory(p)) {
                try (Stream<Path> s = Files.walk(p)) {
                    for (Path q : s.filter(Files::isRegularFile).filter(q -> q.toString().endsWith(".md")).sorted()
                            .limit(10).toList()) {
                        texts.add(Files.readString(q));
                    }
                }
            }
        }
        Random r = new Random(11);
        String[] pieces = {"word", "Word", " ", "  ", "\n", "\n\n", "\r\n", "\t", "x", "42", "'s", "'ll", ".", ",",
            "\u00a0", "\u3000", "é", "日本", "\uD83D\uDE00", "-", "   \n", " \n", "\n ", "A", "7", "::", "\u2028"};
        for (int t = 0; t < 20; t++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < 3000; i++) {
                sb.append(pieces[r.nextInt(pieces.length)]);
            }
            texts.add(sb.toString());
        }
        for (String text : texts) {
            int[] whole = TOK.encode(text);
            for (int chunk : new int[] {1, 16, 100, 4096}) {
                assertArrayEquals(whole, DataCommand.encodeChunked(TOK, text, chunk),
                        "chunk " + chunk + " of a text of " + text.length() + " chars");
            }
        }
        assertTrue(texts.size() > 20);
        // the cut rule does cut real text
        String lines = IntStream.range(0, 200).mapToObj(i -> "line number " + i + " ends here.\n")
                .reduce("", String::concat);
        assertArrayEquals(TOK.encode(lines), DataCommand.encodeChunked(TOK, lines, 10));
    }
}
