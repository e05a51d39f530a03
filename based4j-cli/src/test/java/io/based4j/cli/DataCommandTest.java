package io.based4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.json.Json;
import io.based4j.tokenizer.Gpt2Tokenizer;
import io.based4j.train.data.TokenDataset;
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
        assertEquals(1L, m.get("version"));
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

        // the output is deterministic
        Path out2 = tmp.resolve("tokens2");
        assertEquals(0, run("data", "tokenize", "--input", a.toString(), b.toString(), "--out", out2.toString(),
                "--val-fraction", "0.1").code());
        assertArrayEquals(Files.readAllBytes(out.resolve("train-00000.bin")),
                Files.readAllBytes(out2.resolve("train-00000.bin")));
        assertArrayEquals(Files.readAllBytes(out.resolve("val-00000.bin")),
                Files.readAllBytes(out2.resolve("val-00000.bin")));
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

        // a second run into the same directory without validation removes the old shards
        r = run("data", "tokenize", "--input", x.toString(), "--out", out.toString(), "--val-fraction", "0");
        assertEquals(0, r.code(), r.err());
        assertArrayEquals(concat(ta, new int[] {EOS}), readAll(out, "train"));
        try (Stream<Path> s = Files.list(out)) {
            List<String> names = s.map(p -> p.getFileName().toString()).sorted().toList();
            assertEquals(List.of("data.json", "train-00000.bin"), names);
        }
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
        assertFalse(Files.exists(out.resolve("data.json")));
        try (Stream<Path> s = Files.list(out)) {
            assertTrue(s.noneMatch(p -> p.getFileName().toString().endsWith(".tmp")));
        }

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
