package io.based4j.train.corpus;

import static io.based4j.train.corpus.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Fetching sources from a registry on the loopback interface: downloads, checks, documents and the manifest. */
class CorpusFetcherTest {
    static final String DEB_POOL = "main/f/fake-docs/fake-docs_1.0-1_all.deb";
    static final String NPM_PATH = "@test/texts/-/texts-2.0.0.tgz";

    @TempDir
    Path tmp;
    Path out;
    TestRegistry registry;
    final List<String> notes = new ArrayList<>();

    @BeforeEach
    void start() throws IOException {
        registry = new TestRegistry();
        out = tmp.resolve("corpus");
    }

    @AfterEach
    void stop() {
        registry.close();
    }

    static byte[] debBytes() {
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put("usr/share/doc/fake/guide/intro.rst", utf8("Intro\n=====\n\nUse ``x`` here.\n"));
        files.put("usr/share/doc/fake/notes.rst", utf8("Notes on :func:`y`.\n"));
        files.put("usr/share/doc/fake/empty.rst", utf8(".. toctree::\n   :maxdepth: 1\n"));
        files.put("usr/share/doc/fake/skip.html", utf8("<p>not taken</p>"));
        return Fixtures.deb(files);
    }

    static byte[] tgzBytes() {
        return Fixtures.tgz(Map.of("data/speech.txt", utf8("Fellow citizens,\r\nwe meet again.\r\n")));
    }

    /** A source of the .rst files of a Debian package, pinned to {@code pinned} (sha and size). */
    static CorpusSource debSource(byte[] pinned) {
        return new CorpusSource("fake-docs", "Fake documentation", "GPL-2.0", true,
                List.of(PackageFile.deb("fake-docs", "1.0-1", DEB_POOL, Downloader.sha256(pinned), pinned.length)),
                (a, docs) -> Extract.matching(a.getFirst(), Pattern.compile("usr/share/doc/fake/(.+)\\.rst"),
                        m -> m.group(1) + ".txt", Markup::rst, docs));
    }

    static CorpusSource npmSource(byte[] pinned) {
        return new CorpusSource("texts", "Test speeches", "CC0-1.0", true,
                List.of(PackageFile.npm("@test/texts", "2.0.0", Downloader.sha256(pinned), pinned.length)),
                (a, docs) -> Extract.matching(a.getFirst(), Pattern.compile("package/data/(.+)\\.txt"),
                        m -> m.group(1) + ".txt", Markup::tidy, docs));
    }

    List<CorpusFetcher.Result> fetch(Registries r, CorpusSource... sources) {
        try (Downloader d = new Downloader(Duration.ofSeconds(10), notes::add)) {
            return new CorpusFetcher(out, r, d, false, notes::add).fetch(List.of(sources));
        }
    }

    List<CorpusFetcher.Result> fetch(CorpusSource... sources) {
        return fetch(registry.registries(), sources);
    }

    /** Every file under the folder (relative path to content), hidden ones included. */
    static Map<String, String> tree(Path dir) throws IOException {
        Map<String, String> m = new TreeMap<>();
        if (!Files.exists(dir)) {
            return m;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.filter(Files::isRegularFile).toList()) {
                m.put(dir.relativize(p).toString(), Files.readString(p, java.nio.charset.StandardCharsets.ISO_8859_1));
            }
        }
        return m;
    }

    @Test
    void fetchesExtractsAndRecordsThenASecondRunOnlyVerifies() throws IOException {
        byte[] deb = debBytes();
        byte[] tgz = tgzBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        registry.put("npm/" + NPM_PATH, tgz);
        Files.createDirectories(out);
        Files.writeString(out.resolve("README.mine"), "the user's own file");

        List<CorpusFetcher.Result> r = fetch(debSource(deb), npmSource(tgz));
        assertEquals(List.of("fetched", "fetched"), r.stream().map(CorpusFetcher.Result::status).toList());
        assertEquals(List.of(2, 1), r.stream().map(CorpusFetcher.Result::documents).toList());

        Map<String, String> files = tree(out);
        assertEquals("Intro\n\nUse x here.\n", files.get("fake-docs/guide/intro.txt"));
        assertEquals("Notes on y.\n", files.get("fake-docs/notes.txt"));
        assertEquals("Fellow citizens,\nwe meet again.\n", files.get("texts/speech.txt"));
        assertFalse(files.containsKey("fake-docs/empty.txt"), "markup that reduces to nothing is no document");
        assertEquals("the user's own file", files.get("README.mine"));
        assertEquals(Map.of(), tree(out.resolve(CorpusFetcher.DOWNLOADS)), "downloads are deleted when done");
        assertEquals(5, files.size(), "3 documents, the manifest, the user's file: " + files.keySet());

        CorpusManifest m = CorpusManifest.readIfPresent(out);
        assertEquals(List.of("fake-docs", "texts"), m.sources().stream().map(CorpusManifest.Source::name).toList());
        CorpusManifest.Source fake = m.source("fake-docs").orElseThrow();
        assertEquals("GPL-2.0", fake.licence());
        assertEquals("fake-docs 1.0-1", fake.version());
        assertEquals(List.of(Downloader.sha256(deb)), fake.packageSha256s());
        assertEquals(registry.root() + "debian/pool/" + DEB_POOL, fake.packages().getFirst().get("url"));
        for (CorpusManifest.Document d : fake.documents()) {
            byte[] b = Files.readAllBytes(out.resolve(d.path()));
            assertEquals(b.length, d.bytes());
            assertEquals(Downloader.sha256(b), d.sha256());
        }
        assertEquals(List.of(out.resolve("fake-docs/guide/intro.txt"), out.resolve("fake-docs/notes.txt"),
                out.resolve("texts/speech.txt")), m.documentFiles(out));

        // the second run downloads nothing and writes nothing
        int requests = registry.requests.size();
        Path doc = out.resolve("fake-docs/notes.txt");
        Files.setLastModifiedTime(doc, FileTime.fromMillis(1_000_000_000L));
        byte[] manifestBefore = Files.readAllBytes(out.resolve(CorpusManifest.FILE));
        List<CorpusFetcher.Result> again = fetch(debSource(deb), npmSource(tgz));
        assertEquals(List.of("verified", "verified"), again.stream().map(CorpusFetcher.Result::status).toList());
        assertEquals(requests, registry.requests.size());
        assertEquals(1_000_000_000L, Files.getLastModifiedTime(doc).toMillis());
        assertEquals(files, tree(out));
        assertTrue(Arrays.equals(manifestBefore, Files.readAllBytes(out.resolve(CorpusManifest.FILE))));
    }

    @Test
    void aMissingDocumentIsFetchedAgainAndAChangedOneIsReported() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        fetch(debSource(deb));
        Files.delete(out.resolve("fake-docs/notes.txt"));
        assertEquals("fetched", fetch(debSource(deb)).getFirst().status());
        assertEquals("Notes on y.\n", Files.readString(out.resolve("fake-docs/notes.txt")));

        Files.writeString(out.resolve("fake-docs/notes.txt"), "edited by hand\n");
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertTrue(e.getMessage().startsWith("source fake-docs: "), e.getMessage());
        assertTrue(e.getMessage().contains("notes.txt was changed after it was fetched"), e.getMessage());
        assertEquals("edited by hand\n", Files.readString(out.resolve("fake-docs/notes.txt")));
    }

    @Test
    void aFileInTheWayThatFetchDidNotWriteIsLeftAloneAndNothingIsRecorded() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        Files.createDirectories(out.resolve("fake-docs"));
        Files.writeString(out.resolve("fake-docs/notes.txt"), "mine");
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertTrue(e.getMessage().contains("notes.txt is in the way"), e.getMessage());
        assertEquals(Map.of("fake-docs/notes.txt", "mine"), tree(out).entrySet().stream()
                .filter(x -> !x.getKey().startsWith(CorpusFetcher.DOWNLOADS))
                .collect(java.util.stream.Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue)),
                "the document written before the conflict is removed again; no manifest");

        // a file identical to the document (as an interrupted run leaves) is taken as it is
        Files.writeString(out.resolve("fake-docs/notes.txt"), "Notes on y.\n");
        assertEquals(2, fetch(debSource(deb)).getFirst().documents());
    }

    @Test
    void aChecksumMismatchLeavesNothingBehind() throws IOException {
        byte[] deb = debBytes();
        byte[] other = deb.clone();
        other[other.length - 1] ^= 1; // same size, different content
        registry.put("debian/pool/" + DEB_POOL, other);
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertEquals("source fake-docs: checksum mismatch for fake-docs_1.0-1_all.deb from " + registry.root()
                + "debian/pool/" + DEB_POOL + ": SHA-256 " + Downloader.sha256(other) + ", pinned "
                + Downloader.sha256(deb) + " (nothing was kept)", e.getMessage());
        assertEquals(Map.of(), tree(out));
    }

    @Test
    void aShortDownloadIsReportedAsTruncatedAndNotKept() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, Arrays.copyOf(deb, deb.length / 2));
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertTrue(e.getMessage().startsWith("source fake-docs: "), e.getMessage());
        assertTrue(e.getMessage().contains("sent " + deb.length / 2 + " bytes, but the pinned "
                + "fake-docs_1.0-1_all.deb has " + deb.length + ": the file there is truncated"), e.getMessage());
        assertEquals(Map.of(), tree(out));
    }

    @Test
    void aLongerDownloadIsNotThePinnedFileAndNotKept() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, Arrays.copyOf(deb, deb.length + 100));
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertTrue(e.getMessage().contains("sends more than the " + deb.length + " bytes of the pinned"),
                e.getMessage());
        assertEquals(Map.of(), tree(out));
    }

    @Test
    void aTruncatedArchiveIsReportedAndLeavesNoDocuments() throws IOException {
        byte[] cut = Arrays.copyOf(debBytes(), debBytes().length - 40); // pinned as it is: the archive itself is cut
        registry.put("debian/pool/" + DEB_POOL, cut);
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(cut)));
        assertTrue(e.getMessage().startsWith("source fake-docs: cannot read fake-docs_1.0-1_all.deb: "),
                e.getMessage());
        assertTrue(e.getMessage().endsWith("(damaged or truncated archive)"), e.getMessage());
        assertEquals(1, e.getMessage().lines().count());
        assertTrue(tree(out).keySet().stream().allMatch(k -> k.startsWith(CorpusFetcher.DOWNLOADS)),
                "no document and no manifest: " + tree(out).keySet());
        assertFalse(Files.exists(out.resolve("fake-docs")), "nor the folders made for the documents");
    }

    @Test
    void aPackageTheRegistryDoesNotHaveIsNamed() {
        byte[] deb = debBytes();
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(debSource(deb)));
        assertEquals("source fake-docs: Debian package fake-docs 1.0-1 (fake-docs_1.0-1_all.deb) is not in the"
                + " registry: HTTP 404 from " + registry.root() + "debian/pool/" + DEB_POOL + " and "
                + registry.root() + "security/pool/updates/" + DEB_POOL
                + "; the pinned version may have been withdrawn", e.getMessage());
    }

    @Test
    void anUnreachableRegistryIsNamed() throws IOException {
        int closed;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            closed = s.getLocalPort();
        }
        URI dead = URI.create("http://127.0.0.1:" + closed + "/");
        byte[] tgz = tgzBytes();
        CorpusException e = assertThrows(CorpusException.class, () -> fetch(new Registries(List.of(dead), dead),
                npmSource(tgz)));
        assertEquals("source texts: npm package @test/texts 2.0.0 (texts-2.0.0.tgz) cannot be downloaded: " + dead
                + NPM_PATH + " (connection refused)", e.getMessage());
        assertEquals(Map.of(), tree(out));
    }

    @Test
    void aSecurityUpdateIsFoundInTheSecondPool() throws IOException {
        byte[] deb = debBytes();
        registry.put("security/pool/updates/" + DEB_POOL, deb);
        assertEquals(2, fetch(debSource(deb)).getFirst().documents());
        assertEquals(registry.root() + "security/pool/updates/" + DEB_POOL,
                CorpusManifest.readIfPresent(out).source("fake-docs").orElseThrow().packages().getFirst().get("url"));
    }

    @Test
    void aBrokenOffDownloadContinuesWhereItStopped() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        Path part = out.resolve(CorpusFetcher.DOWNLOADS).resolve("fake-docs_1.0-1_all.deb.part");
        Files.createDirectories(part.getParent());
        Files.write(part, Arrays.copyOf(deb, 300)); // what an interrupted run left
        assertEquals(2, fetch(debSource(deb)).getFirst().documents());
        assertEquals(List.of("debian/pool/" + DEB_POOL + " range=300-"), registry.requests);
        assertFalse(Files.exists(part));
    }

    @Test
    void aSilentServerIsGivenUpOnAndTheNextRunContinues() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        registry.stallAfter.put("debian/pool/" + DEB_POOL, 200);
        CorpusException e;
        // a 1 s stall timeout against a server silent for 4 s: the watchdog must end the read
        try (Downloader d = new Downloader(Duration.ofSeconds(1), notes::add)) {
            e = assertThrows(CorpusException.class, () -> new CorpusFetcher(out, registry.registries(), d, false,
                    notes::add).fetch(List.of(debSource(deb))));
        }
        assertEquals("source fake-docs: download of " + registry.root() + "debian/pool/" + DEB_POOL
                + " broke off after 200 of " + deb.length + " bytes (no data for 1 s); run again to continue it",
                e.getMessage());
        Path part = out.resolve(CorpusFetcher.DOWNLOADS).resolve("fake-docs_1.0-1_all.deb.part");
        assertEquals(200, Files.size(part));
        assertEquals(2, fetch(debSource(deb)).getFirst().documents());
        assertEquals("debian/pool/" + DEB_POOL + " range=200-", registry.requests.getLast());
    }

    @Test
    void aKeptDownloadIsVerifiedNotFetchedAgain() throws IOException {
        byte[] deb = debBytes();
        registry.put("debian/pool/" + DEB_POOL, deb);
        try (Downloader d = new Downloader(Duration.ofSeconds(10), notes::add)) {
            new CorpusFetcher(out, registry.registries(), d, true, notes::add).fetch(List.of(debSource(deb)));
        }
        Path kept = out.resolve(CorpusFetcher.DOWNLOADS).resolve("fake-docs_1.0-1_all.deb");
        assertTrue(Files.isRegularFile(kept));
        Files.delete(out.resolve("fake-docs/notes.txt"));
        registry.requests.clear();
        fetch(debSource(deb));
        assertEquals(List.of(), registry.requests, "the kept package file is used");
        assertTrue(Files.exists(out.resolve("fake-docs/notes.txt")));
    }
}
