package io.based4j.train.corpus;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.Deflater;
import java.util.zip.GZIPOutputStream;
import org.tukaani.xz.LZMA2Options;
import org.tukaani.xz.XZOutputStream;

/** Small package archives and data files built in memory, in the formats the corpus readers take. */
final class Fixtures {
    private Fixtures() {
    }

    /** A tar archive of the files (name to content), in order; names over 100 bytes use a GNU long-name entry. */
    static byte[] tar(Map<String, byte[]> files) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (Map.Entry<String, byte[]> e : files.entrySet()) {
            String name = e.getKey();
            if (name.endsWith("/")) {
                writeEntry(out, name, new byte[0], '5');
                continue;
            }
            if (name.getBytes(StandardCharsets.UTF_8).length > 99) {
                writeEntry(out, "././@LongLink", (name + "\0").getBytes(StandardCharsets.UTF_8), 'L');
                name = name.substring(0, 99);
            }
            writeEntry(out, name, e.getValue(), '0');
        }
        out.writeBytes(new byte[1024]); // end marker: two zero blocks
        return out.toByteArray();
    }

    private static void writeEntry(ByteArrayOutputStream out, String name, byte[] data, char type) {
        byte[] h = new byte[512];
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        System.arraycopy(n, 0, h, 0, Math.min(n.length, 100));
        octal(h, 100, 8, 0644);
        octal(h, 108, 8, 0);
        octal(h, 116, 8, 0);
        octal(h, 124, 12, data.length);
        octal(h, 136, 12, 0);
        h[156] = (byte) type;
        System.arraycopy("ustar\u000000".getBytes(StandardCharsets.US_ASCII), 0, h, 257, 8);
        Arrays.fill(h, 148, 156, (byte) ' ');
        long sum = 0;
        for (byte b : h) {
            sum += b & 0xFF;
        }
        octal(h, 148, 7, sum);
        out.writeBytes(h);
        out.writeBytes(data);
        out.writeBytes(new byte[(512 - data.length % 512) % 512]);
    }

    private static void octal(byte[] h, int off, int len, long v) {
        String s = String.format("%0" + (len - 1) + "o", v);
        System.arraycopy(s.getBytes(StandardCharsets.US_ASCII), 0, h, off, len - 1);
        h[off + len - 1] = 0;
    }

    static byte[] gzip(byte[] b) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(b);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    static byte[] xz(byte[] b) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (XZOutputStream xz = new XZOutputStream(out, new LZMA2Options(1))) {
            xz.write(b);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** An ar archive of the members, in order (the layout of a .deb). */
    static byte[] ar(Map<String, byte[]> members) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes("!<arch>\n".getBytes(StandardCharsets.US_ASCII));
        for (Map.Entry<String, byte[]> m : members.entrySet()) {
            String h = String.format("%-16s%-12s%-6s%-6s%-8s%-10d`\n", m.getKey(), "0", "0", "0", "100644",
                    m.getValue().length);
            out.writeBytes(h.getBytes(StandardCharsets.US_ASCII));
            out.writeBytes(m.getValue());
            if (m.getValue().length % 2 == 1) {
                out.write('\n');
            }
        }
        return out.toByteArray();
    }

    /** A Debian package whose data.tar.xz holds the files (paths as dpkg writes them: "./usr/..."). */
    static byte[] deb(Map<String, byte[]> files) {
        return deb(files, ".xz");
    }

    /** A Debian package with its data.tar compressed as {@code suffix} (".xz", ".gz" or "" for none). */
    static byte[] deb(Map<String, byte[]> files, String suffix) {
        Map<String, byte[]> data = new LinkedHashMap<>();
        data.put("./", new byte[0]);
        files.forEach((k, v) -> data.put("./" + k, v));
        byte[] tar = tar(data);
        byte[] packed = switch (suffix) {
            case ".xz" -> xz(tar);
            case ".gz" -> gzip(tar);
            default -> tar;
        };
        Map<String, byte[]> members = new LinkedHashMap<>();
        members.put("debian-binary", "2.0\n".getBytes(StandardCharsets.US_ASCII));
        members.put("control.tar.xz", xz(tar(Map.of("./control", "Package: x\n".getBytes(StandardCharsets.UTF_8)))));
        members.put("data.tar" + suffix, packed);
        return ar(members);
    }

    /** An npm package tarball holding the files under {@code package/}. */
    static byte[] tgz(Map<String, byte[]> files) {
        Map<String, byte[]> data = new LinkedHashMap<>();
        files.forEach((k, v) -> data.put("package/" + k, v));
        return gzip(tar(data));
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    // ---------------------------------------------------------------- Unix compress

    /**
     * Encodes bytes as Unix compress does (LZW, 9 up to {@code maxBits}-bit codes in groups, the group padded when the
     * width changes), with a table clear (code 256) after every {@code clearEvery} codes when it is positive.
     */
    static byte[] compress(byte[] data, int maxBits, int clearEvery) {
        return new LzwEncoder(maxBits).encode(data, clearEvery);
    }

    private static final class LzwEncoder {
        final int maxBits;
        final int maxMax;
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] group;
        int bitOffset;
        int nBits = 9;
        int maxCode = 511;
        int freeEnt = 257;
        boolean clearFlag;

        LzwEncoder(int maxBits) {
            this.maxMax = 1 << maxBits;
            this.maxBits = maxBits;
            this.group = new byte[nBits];
        }

        byte[] encode(byte[] data, int clearEvery) {
            if (data.length == 0) {
                return new byte[0];
            }
            Map<Long, Integer> dict = new HashMap<>();
            int ent = data[0] & 0xFF;
            int sinceClear = 0;
            for (int i = 1; i < data.length; i++) {
                int c = data[i] & 0xFF;
                long key = ((long) ent << 8) | c;
                Integer code = dict.get(key);
                if (code != null) {
                    ent = code;
                    continue;
                }
                output(ent);
                sinceClear++;
                if (freeEnt < maxMax) {
                    dict.put(key, freeEnt++);
                }
                ent = c;
                if (clearEvery > 0 && sinceClear >= clearEvery) {
                    dict.clear();
                    freeEnt = 257;
                    clearFlag = true;
                    output(256);
                    sinceClear = 0;
                }
            }
            output(ent);
            out.write(group, 0, (bitOffset + 7) / 8);
            return out.toByteArray();
        }

        void output(int code) {
            for (int b = 0; b < nBits; b++) {
                if (((code >> b) & 1) != 0) {
                    group[(bitOffset + b) >> 3] |= (byte) (1 << ((bitOffset + b) & 7));
                }
            }
            bitOffset += nBits;
            if (bitOffset == nBits * 8) {
                out.writeBytes(group);
                group = new byte[nBits];
                bitOffset = 0;
            }
            if (freeEnt > maxCode || clearFlag) {
                if (bitOffset > 0) {
                    out.writeBytes(group); // the whole group, padded
                }
                bitOffset = 0;
                if (clearFlag) {
                    nBits = 9;
                    maxCode = 511;
                    clearFlag = false;
                } else {
                    nBits++;
                    maxCode = nBits == maxBits ? maxMax : (1 << nBits) - 1;
                }
                group = new byte[nBits];
            }
        }
    }

    /**
     * A data file in the Bible Retrieval System's format (version 02): the text cut into windows of
     * {@code windowSize} bytes, each compressed with 16-bit codes.
     */
    static byte[] bibleData(String text, int windowSize) {
        byte[] t = text.getBytes(StandardCharsets.ISO_8859_1);
        int wnum = (t.length + windowSize - 1) / windowSize;
        ByteArrayOutputStream windows = new ByteArrayOutputStream();
        int[] starts = new int[wnum + 1];
        int headerEnd = 92 + 4 * (wnum + 1) + 3;
        for (int w = 0; w < wnum; w++) {
            starts[w] = headerEnd + windows.size();
            windows.writeBytes(compress(Arrays.copyOfRange(t, w * windowSize, Math.min(t.length,
                    (w + 1) * windowSize)), 16, 0));
        }
        starts[wnum] = headerEnd + windows.size();
        ByteBuffer b = ByteBuffer.allocate(headerEnd + windows.size());
        b.put("EC02".getBytes(StandardCharsets.US_ASCII));
        b.put(Arrays.copyOf("Test text".getBytes(StandardCharsets.US_ASCII), 80));
        b.putInt(windowSize).putInt(wnum);
        for (int s : starts) {
            b.putInt(s);
        }
        b.put((byte) 0x1F).put((byte) 0x9D).put((byte) (0x80 | 16));
        b.put(windows.toByteArray());
        return b.array();
    }

    // ---------------------------------------------------------------- R serialization

    /** R's XDR serialization (version 3) of a character vector; null elements are NA, "latin1:" ones Latin-1. */
    static byte[] rStrings(String... elements) {
        ByteBuffer b = ByteBuffer.allocate(64 + Arrays.stream(elements).mapToInt(e -> e == null ? 8 : 8 + 4
                * e.length()).sum());
        b.put((byte) 'X').put((byte) '\n').putInt(3).putInt(0x040201).putInt(0x030500);
        b.putInt(5).put("UTF-8".getBytes(StandardCharsets.US_ASCII));
        b.putInt(16).putInt(elements.length);
        for (String e : elements) {
            if (e == null) {
                b.putInt(9).putInt(-1);
            } else if (e.startsWith("latin1:")) {
                byte[] s = e.substring(7).getBytes(StandardCharsets.ISO_8859_1);
                b.putInt(9 | (4 << 12)).putInt(s.length).put(s);
            } else {
                byte[] s = e.getBytes(StandardCharsets.UTF_8);
                b.putInt(9 | (8 << 12)).putInt(s.length).put(s);
            }
        }
        return Arrays.copyOf(b.array(), b.position());
    }

    /** An R lazy-load database: each object as a 4-byte big-endian length and its zlib stream. */
    static byte[] rdb(byte[]... objects) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (byte[] o : objects) {
            Deflater d = new Deflater();
            d.setInput(o);
            d.finish();
            byte[] buf = new byte[o.length + 64];
            int n = d.deflate(buf);
            d.end();
            out.writeBytes(ByteBuffer.allocate(4).putInt(o.length).array());
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }
}
