package io.based4j.train.corpus;

import java.io.IOException;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.Charset;
import java.nio.charset.IllegalCharsetNameException;
import java.nio.charset.StandardCharsets;
import java.nio.charset.UnsupportedCharsetException;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * The character vectors of an R lazy-load database ({@code data/Rdata.rdb} of an R package): a sequence of
 * objects, each a 4-byte big-endian length and a zlib stream that inflates to that many bytes of R's XDR
 * serialization ({@code "X\n"}, version 2 or 3). A character vector ({@code STRSXP}) is read element by element
 * ({@code CHARSXP}: flags, length, bytes; length -1 is {@code NA}); objects of other types are passed over.
 */
final class RData {
    private static final int CHARSXP = 9;
    private static final int STRSXP = 16;
    private static final int UTF8_MASK = 1 << 3;
    private static final int LATIN1_MASK = 1 << 2;
    /** Largest object inflated: far above a novel, far below what would exhaust memory. */
    private static final int MAX_OBJECT = 256 << 20;

    private RData() {
    }

    /** Every character vector of the database, in file order; {@code NA} elements are left out. */
    static List<List<String>> characterVectors(byte[] rdb) throws IOException {
        List<List<String>> vectors = new ArrayList<>();
        int p = 0;
        while (p < rdb.length) {
            if (rdb.length - p < 4) {
                throw new IOException("cut short at byte " + p);
            }
            int size = ByteBuffer.wrap(rdb, p, 4).getInt();
            if (size < 0 || size > MAX_OBJECT) {
                throw new IOException("damaged object length " + size + " at byte " + p);
            }
            Inflater inf = new Inflater();
            byte[] object = new byte[size];
            try {
                inf.setInput(rdb, p + 4, rdb.length - p - 4);
                int got = inf.inflate(object);
                if (!inf.finished() || got != size) {
                    throw new IOException("object at byte " + p + " is cut short or damaged (" + got + " of " + size
                            + " bytes)");
                }
                p = rdb.length - inf.getRemaining();
            } catch (DataFormatException e) {
                throw new IOException("object at byte " + p + " is not a zlib stream (" + e.getMessage() + ")", e);
            } finally {
                inf.end();
            }
            List<String> v = strings(object);
            if (v != null) {
                vectors.add(v);
            }
        }
        return vectors;
    }

    /** The elements of a serialized character vector, or null when the object is of another type. */
    static List<String> strings(byte[] serialized) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(serialized);
        try {
            if (b.get() != 'X' || b.get() != '\n') {
                throw new IOException("not in R's XDR serialization format");
            }
            int version = b.getInt();
            b.getInt(); // version of R that wrote it
            b.getInt(); // oldest version that reads it
            Charset nativeCharset = StandardCharsets.UTF_8;
            if (version == 3) {
                byte[] name = new byte[b.getInt()];
                b.get(name);
                nativeCharset = charset(new String(name, StandardCharsets.US_ASCII));
            } else if (version != 2) {
                throw new IOException("R serialization version " + version + " is not supported (2 or 3)");
            }
            int flags = b.getInt();
            if ((flags & 0xFF) != STRSXP) {
                return null;
            }
            long n = b.getInt();
            if (n == -1) {
                n = ((long) b.getInt() << 32) | (b.getInt() & 0xFFFFFFFFL);
            }
            if (n < 0 || n > serialized.length / 8) {
                throw new IOException("damaged vector length " + n);
            }
            List<String> out = new ArrayList<>((int) n);
            for (long i = 0; i < n; i++) {
                int f = b.getInt();
                if ((f & 0xFF) != CHARSXP) {
                    throw new IOException("element " + (i + 1) + " is not a string (type " + (f & 0xFF) + ")");
                }
                int len = b.getInt();
                if (len == -1) {
                    continue; // NA
                }
                byte[] bytes = new byte[len];
                b.get(bytes);
                int levels = f >>> 12;
                Charset cs = (levels & UTF8_MASK) != 0 ? StandardCharsets.UTF_8
                        : (levels & LATIN1_MASK) != 0 ? StandardCharsets.ISO_8859_1 : nativeCharset;
                out.add(new String(bytes, cs));
            }
            return out;
        } catch (BufferUnderflowException | IndexOutOfBoundsException | IllegalArgumentException e) {
            throw new IOException("serialized object is cut short or damaged", e);
        }
    }

    private static Charset charset(String name) throws IOException {
        try {
            return Charset.forName(name);
        } catch (IllegalCharsetNameException | UnsupportedCharsetException e) {
            throw new IOException("unknown native encoding '" + name + "'", e);
        }
    }
}
