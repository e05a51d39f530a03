package io.based4j.train.corpus;

import java.io.BufferedInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.zip.GZIPInputStream;
import org.tukaani.xz.XZInputStream;

/**
 * The files inside package archives: a Debian package ({@code .deb}: an ar archive whose {@code data.tar.xz},
 * {@code .gz} or plain {@code data.tar} member holds the installed files) and an npm package ({@code .tgz}: a
 * gzip-compressed tar archive).
 */
final class Archives {
    private static final byte[] AR_MAGIC = "!<arch>\n".getBytes(StandardCharsets.US_ASCII);
    private static final int AR_HEADER = 60;

    private Archives() {
    }

    /** Calls {@code visitor} for each regular file of the Debian package {@code deb}, in archive order. */
    static void debFiles(Path deb, TarReader.Visitor visitor) throws IOException {
        try (InputStream in = new BufferedInputStream(Files.newInputStream(deb), 1 << 16)) {
            byte[] magic = in.readNBytes(AR_MAGIC.length);
            if (!Arrays.equals(magic, AR_MAGIC)) {
                throw new IOException("not a Debian package (no ar archive header)");
            }
            byte[] header = new byte[AR_HEADER];
            while (true) {
                int got = in.readNBytes(header, 0, AR_HEADER);
                if (got == 0) {
                    throw new IOException("the package has no data.tar member");
                }
                if (got < AR_HEADER || header[58] != '`' || header[59] != '\n') {
                    throw new EOFException("ar archive is cut short or damaged (member header)");
                }
                String name = ascii(header, 0, 16);
                if (name.endsWith("/")) {
                    name = name.substring(0, name.length() - 1);
                }
                long size = parseSize(ascii(header, 48, 10));
                Bounded member = new Bounded(in, size, "ar member " + name);
                if (name.startsWith("data.tar")) {
                    try (InputStream tar = decompress(member, name.substring("data.tar".length()))) {
                        TarReader.read(tar, visitor);
                        drain(tar);
                    }
                    return;
                }
                member.skipRest();
                if (size % 2 == 1 && in.read() < 0) {
                    throw new EOFException("ar archive is cut short after member " + name);
                }
            }
        }
    }

    /** Calls {@code visitor} for each regular file of the gzip-compressed tar archive {@code tgz}. */
    static void tgzFiles(Path tgz, TarReader.Visitor visitor) throws IOException {
        try (InputStream in = new GZIPInputStream(new BufferedInputStream(Files.newInputStream(tgz), 1 << 16),
                1 << 16)) {
            TarReader.read(in, visitor);
            drain(in);
        }
    }

    /**
     * Reads what follows the tar archive's end marker to the end of the compressed stream, so that its trailer is
     * checked too (the xz index and footer, the gzip CRC and length): a cut there is an error as well.
     */
    private static void drain(InputStream in) throws IOException {
        in.transferTo(OutputStream.nullOutputStream());
    }

    private static InputStream decompress(InputStream member, String suffix) throws IOException {
        return switch (suffix) {
            case ".xz" -> new XZInputStream(new BufferedInputStream(member, 1 << 16));
            case ".gz" -> new GZIPInputStream(member, 1 << 16);
            case "" -> member;
            default -> throw new IOException("data.tar" + suffix + " compression is not supported (only .xz, .gz)");
        };
    }

    private static String ascii(byte[] b, int off, int len) {
        return new String(b, off, len, StandardCharsets.US_ASCII).strip();
    }

    private static long parseSize(String s) throws IOException {
        try {
            long v = Long.parseLong(s);
            if (v < 0) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new IOException("ar archive is damaged (member size '" + s + "')", e);
        }
    }
}
