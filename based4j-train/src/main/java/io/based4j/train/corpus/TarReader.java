package io.based4j.train.corpus;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * Reads the regular files of a tar stream in archive order: POSIX ustar entries, with GNU long names
 * ({@code ././@LongLink}) and pax {@code path} records. Directories, links and other entries are skipped. Every
 * header's checksum is checked, and a stream that ends before the archive's end marker is an {@link EOFException}:
 * a damaged or truncated archive is never read as a shorter one.
 */
final class TarReader {
    private static final int BLOCK = 512;

    /** Receives each regular file; {@code data} gives exactly its {@code size} bytes. */
    interface Visitor {
        void file(String name, long size, InputStream data) throws IOException;
    }

    private TarReader() {
    }

    /** Calls {@code visitor} for each regular file of the tar stream {@code in}. */
    static void read(InputStream in, Visitor visitor) throws IOException {
        byte[] header = new byte[BLOCK];
        String longName = null;
        int entry = 0;
        while (true) {
            readBlock(in, header, entry);
            if (allZero(header)) {
                return;
            }
            checkChecksum(header, entry);
            String name = headerName(header);
            long size = number(header, 124, 12, entry);
            byte type = header[156];
            if (longName != null) {
                name = longName;
                longName = null;
            }
            Bounded data = new Bounded(in, size, "tar entry " + name);
            switch (type) {
                case 'L' -> longName = trimNul(new String(data.readAllBytes(), StandardCharsets.UTF_8));
                case 'x' -> longName = paxPath(new String(data.readAllBytes(), StandardCharsets.UTF_8));
                case '0', 0, '7' -> visitor.file(normalize(name), size, data);
                default -> {
                    // directories, links, devices, global pax headers: nothing to read
                }
            }
            data.skipRest();
            skipPadding(in, size, name);
            entry++;
        }
    }

    /** A path without a leading {@code ./} or {@code /}. */
    static String normalize(String name) {
        String n = name;
        while (n.startsWith("./") || n.startsWith("/")) {
            n = n.substring(n.startsWith("./") ? 2 : 1);
        }
        return n;
    }

    private static void readBlock(InputStream in, byte[] block, int entry) throws IOException {
        int got = in.readNBytes(block, 0, BLOCK);
        if (got < BLOCK) {
            throw new EOFException("tar archive is cut short at entry " + (entry + 1) + " (no end marker)");
        }
    }

    private static void skipPadding(InputStream in, long size, String name) throws IOException {
        int pad = (int) ((BLOCK - size % BLOCK) % BLOCK);
        if (in.readNBytes(pad).length < pad) {
            throw new EOFException("tar entry " + name + " is cut short (padding missing)");
        }
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    private static void checkChecksum(byte[] h, int entry) throws IOException {
        long stored = number(h, 148, 8, entry);
        long sum = 0;
        for (int i = 0; i < BLOCK; i++) {
            sum += (i >= 148 && i < 156) ? ' ' : (h[i] & 0xFF);
        }
        if (sum != stored) {
            throw new IOException("tar header " + (entry + 1) + " is damaged (checksum " + sum + ", stored " + stored
                    + ")");
        }
    }

    private static String headerName(byte[] h) {
        String name = field(h, 0, 100);
        boolean ustar = new String(h, 257, 5, StandardCharsets.US_ASCII).equals("ustar");
        String prefix = ustar ? field(h, 345, 155) : "";
        return prefix.isEmpty() ? name : prefix + "/" + name;
    }

    private static String field(byte[] h, int off, int len) {
        int end = off;
        while (end < off + len && h[end] != 0) {
            end++;
        }
        return new String(h, off, end - off, StandardCharsets.UTF_8);
    }

    /** An octal field, or a base-256 one (first byte's high bit set) for sizes of 8 GiB and more. */
    private static long number(byte[] h, int off, int len, int entry) throws IOException {
        if ((h[off] & 0x80) != 0) {
            long v = h[off] & 0x7F;
            for (int i = off + 1; i < off + len; i++) {
                v = (v << 8) | (h[i] & 0xFF);
            }
            return v;
        }
        long v = 0;
        boolean any = false;
        for (int i = off; i < off + len; i++) {
            int c = h[i] & 0xFF;
            if (c == 0 || (c == ' ' && any)) {
                break;
            }
            if (c == ' ') {
                continue;
            }
            if (c < '0' || c > '7') {
                throw new IOException("tar header " + (entry + 1) + " is damaged (bad number field)");
            }
            v = v * 8 + (c - '0');
            any = true;
        }
        return v;
    }

    private static String trimNul(String s) {
        int end = s.indexOf('\0');
        return end < 0 ? s : s.substring(0, end);
    }

    /** The {@code path} of a pax header's records ({@code "LEN key=value\n"}), or null. */
    private static String paxPath(String records) {
        String path = null;
        for (String rec : records.split("\n")) {
            int sp = rec.indexOf(' ');
            int eq = rec.indexOf('=');
            if (sp > 0 && eq > sp && rec.substring(sp + 1, eq).equals("path")) {
                path = rec.substring(eq + 1);
            }
        }
        return path;
    }
}
