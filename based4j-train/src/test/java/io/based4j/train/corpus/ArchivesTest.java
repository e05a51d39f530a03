package io.based4j.train.corpus;

import static io.based4j.train.corpus.Fixtures.utf8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading .deb and .tgz package archives: members, compressions, long names, and damaged or cut archives. */
class ArchivesTest {
    static final String LONG = "usr/share/doc/x/" + "deeply/nested/".repeat(8) + "file-with-a-long-name.txt";

    @TempDir
    Path tmp;

    static Map<String, byte[]> files() {
        Map<String, byte[]> f = new LinkedHashMap<>();
        f.put("usr/share/doc/x/", new byte[0]); // a directory entry: not a file
        f.put("usr/share/doc/x/a.txt", utf8("first\n"));
        f.put(LONG, utf8("long name\n"));
        f.put("usr/share/doc/x/odd.txt", utf8("odd-sized member"));
        return f;
    }

    private Map<String, byte[]> read(Path archive) throws IOException {
        Map<String, byte[]> got = new LinkedHashMap<>();
        Extract.files(archive, (name, size, data) -> {
            byte[] b = data.readAllBytes();
            assertEquals(size, b.length, name);
            got.put(name, b);
        });
        return got;
    }

    private Path write(String name, byte[] bytes) throws IOException {
        Path p = tmp.resolve(name);
        Files.write(p, bytes);
        return p;
    }

    private static void assertFiles(Map<String, byte[]> got) {
        assertEquals(List.of("usr/share/doc/x/a.txt", LONG, "usr/share/doc/x/odd.txt"), List.copyOf(got.keySet()));
        assertArrayEquals(utf8("long name\n"), got.get(LONG));
        assertArrayEquals(utf8("odd-sized member"), got.get("usr/share/doc/x/odd.txt"));
    }

    @Test
    void debWithXzGzOrPlainDataTarGivesItsFilesInOrder() throws IOException {
        assertTrue(LONG.length() > 100, "the long name needs a GNU long-name entry");
        for (String suffix : List.of(".xz", ".gz", "")) {
            Map<String, byte[]> got = read(write("x" + suffix.replace('.', '-') + ".deb", Fixtures.deb(files(),
                    suffix)));
            assertFiles(got);
        }
    }

    @Test
    void tgzGivesItsFiles() throws IOException {
        Map<String, byte[]> got = read(write("p.tgz", Fixtures.tgz(Map.of("data/a.txt", utf8("hello")))));
        assertEquals(List.of("package/data/a.txt"), List.copyOf(got.keySet()));
        assertArrayEquals(utf8("hello"), got.get("package/data/a.txt"));
    }

    @Test
    void anArchiveCutShortIsAnErrorAtEveryLength() throws IOException {
        byte[] deb = Fixtures.deb(files());
        byte[] tgz = Fixtures.tgz(Map.of("a.txt", utf8("x".repeat(3000))));
        // cut at the start, inside the ar headers, inside the compressed data, and just before the end
        for (int cut : new int[] {4, 70, deb.length / 2, deb.length - 1}) {
            Path p = write("cut" + cut + ".deb", Arrays.copyOf(deb, cut));
            assertThrows(IOException.class, () -> read(p), "deb cut at " + cut);
        }
        for (int cut : new int[] {5, tgz.length / 2, tgz.length - 1}) {
            Path p = write("cut" + cut + ".tgz", Arrays.copyOf(tgz, cut));
            assertThrows(IOException.class, () -> read(p), "tgz cut at " + cut);
        }
    }

    @Test
    void aTarWithoutItsEndMarkerIsCutShort() throws IOException {
        byte[] tar = Fixtures.tar(Map.of("a.txt", utf8("abc")));
        byte[] noEnd = Arrays.copyOf(tar, tar.length - 1024); // the entry is whole, the end marker missing
        Path p = write("noend.tgz", Fixtures.gzip(noEnd));
        IOException e = assertThrows(IOException.class, () -> read(p));
        assertTrue(e.getMessage().contains("cut short"), e.getMessage());
    }

    @Test
    void aDamagedTarHeaderIsReported() throws IOException {
        byte[] tar = Fixtures.tar(Map.of("a.txt", utf8("abc")));
        tar[10] ^= 0x20; // a byte of the name: the header checksum no longer matches
        Path p = write("bad.tgz", Fixtures.gzip(tar));
        IOException e = assertThrows(IOException.class, () -> read(p));
        assertTrue(e.getMessage().contains("damaged"), e.getMessage());
    }

    @Test
    void unsupportedCompressionAndNonPackagesAreNamed() throws IOException {
        byte[] zst = Fixtures.ar(Map.of("debian-binary", utf8("2.0\n"), "data.tar.zst", new byte[] {1, 2, 3}));
        Path p = write("z.deb", zst);
        IOException e = assertThrows(IOException.class, () -> read(p));
        assertTrue(e.getMessage().contains("data.tar.zst compression is not supported"), e.getMessage());

        Path notDeb = write("n.deb", utf8("this is not an archive"));
        e = assertThrows(IOException.class, () -> read(notDeb));
        assertTrue(e.getMessage().contains("not a Debian package"), e.getMessage());

        Path noData = write("d.deb", Fixtures.ar(Map.of("debian-binary", utf8("2.0\n"))));
        e = assertThrows(IOException.class, () -> read(noData));
        assertTrue(e.getMessage().contains("no data.tar"), e.getMessage());
    }
}
