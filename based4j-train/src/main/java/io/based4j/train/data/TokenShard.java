package io.based4j.train.data;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Objects;

/**
 * A memory-mapped file of uint16 token ids.
 *
 * <p>Layout (all little-endian): a 32-byte header
 * <pre>
 *   offset  0  8 bytes  magic "B4JTOKNS" (ASCII)
 *   offset  8  u32      version = 1
 *   offset 12  u32      bytes per token = 2
 *   offset 16  u64      token count N
 *   offset 24  u64      reserved = 0
 * </pre>
 * followed by exactly {@code N} unsigned 16-bit tokens. The file size must be {@code 32 + 2 * N}.
 *
 * <p>An open shard may be read from any number of threads; {@link #close()} unmaps it, after which reads fail.
 */
public final class TokenShard implements AutoCloseable {
    public static final int HEADER_BYTES = 32;
    public static final int VERSION = 1;
    public static final int BYTES_PER_TOKEN = 2;
    /** The largest token id a shard can hold. */
    public static final int MAX_TOKEN = 0xFFFF;
    static final String MAGIC_TEXT = "B4JTOKNS";
    static final byte[] MAGIC = MAGIC_TEXT.getBytes(StandardCharsets.US_ASCII);

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment segment;
    private final long count;

    private TokenShard(Path path, Arena arena, MemorySegment segment, long count) {
        this.path = path;
        this.arena = arena;
        this.segment = segment;
        this.count = count;
    }

    /**
     * Maps a shard read-only and validates its header and size.
     *
     * @throws IllegalArgumentException naming the file when it is not a valid version-1 token shard
     * @throws UncheckedIOException when the file cannot be opened or mapped
     */
    public static TokenShard open(Path file) {
        Objects.requireNonNull(file, "file");
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < HEADER_BYTES) {
                throw new IllegalArgumentException(file + ": too short for a based4j token shard (" + size
                        + " bytes, the header alone is " + HEADER_BYTES + ")");
            }
            MemorySegment seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            byte[] magic = new byte[MAGIC.length];
            MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, 0, magic, 0, magic.length);
            if (!Arrays.equals(magic, MAGIC)) {
                throw new IllegalArgumentException(file + ": not a based4j token shard (magic " + printable(magic)
                        + ", expected \"" + MAGIC_TEXT + "\")");
            }
            long version = Integer.toUnsignedLong(seg.get(U32, 8));
            if (version != VERSION) {
                throw new IllegalArgumentException(file + ": unsupported token shard version " + version
                        + " (this build reads version " + VERSION + ")");
            }
            long bpt = Integer.toUnsignedLong(seg.get(U32, 12));
            if (bpt != BYTES_PER_TOKEN) {
                throw new IllegalArgumentException(file + ": unsupported bytes per token " + bpt
                        + " (expected " + BYTES_PER_TOKEN + ")");
            }
            long count = seg.get(U64, 16);
            long held = (size - HEADER_BYTES) / BYTES_PER_TOKEN;
            if (count < 0 || Long.compareUnsigned(count, held) > 0) {
                throw new IllegalArgumentException(file + ": truncated: header says " + Long.toUnsignedString(count)
                        + " tokens, file holds " + held);
            }
            long expected = HEADER_BYTES + BYTES_PER_TOKEN * count;
            if (size != expected) {
                throw new IllegalArgumentException(file + ": trailing bytes: header says " + count
                        + " tokens (" + expected + " bytes), file is " + size + " bytes");
            }
            return new TokenShard(file, arena, seg, count);
        } catch (IOException e) {
            arena.close();
            throw ioError("cannot open token shard", file, e);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static String printable(byte[] b) {
        StringBuilder sb = new StringBuilder("\"");
        for (byte x : b) {
            int c = x & 0xFF;
            if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
                sb.append((char) c);
            } else {
                sb.append(String.format("\\x%02x", c));
            }
        }
        return sb.append('"').toString();
    }

    public Path path() {
        return path;
    }

    /** Number of tokens in the shard. */
    public long count() {
        return count;
    }

    /** Token {@code i} as an unsigned value in [0, 65535]. */
    public int get(long i) {
        if (i < 0 || i >= count) {
            throw new IndexOutOfBoundsException("token " + i + " outside [0, " + count + ") of " + path);
        }
        return Short.toUnsignedInt(segment.get(U16, HEADER_BYTES + BYTES_PER_TOKEN * i));
    }

    /** Copies tokens {@code [from, from + n)} into {@code dst[off .. off + n)}. */
    public void read(long from, int[] dst, int off, int n) {
        Objects.checkFromIndexSize(off, n, dst.length);
        if (from < 0 || n < 0 || from > count - n) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + n) + ") outside [0, " + count
                    + ") of " + path);
        }
        long base = HEADER_BYTES + BYTES_PER_TOKEN * from;
        short[] scratch = new short[Math.min(n, 8192)];
        for (int done = 0; done < n; ) {
            int m = Math.min(scratch.length, n - done);
            MemorySegment.copy(segment, U16, base + (long) BYTES_PER_TOKEN * done, scratch, 0, m);
            for (int k = 0; k < m; k++) {
                dst[off + done + k] = Short.toUnsignedInt(scratch[k]);
            }
            done += m;
        }
    }

    /** Unmaps the file. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "TokenShard[" + path + ", " + count + " tokens]";
    }

    /** Writes all of {@code tokens} as a shard (see {@link #write(Path, int[], int, int)}). */
    public static void write(Path file, int[] tokens) {
        write(file, tokens, 0, tokens.length);
    }

    /**
     * Writes {@code tokens[from, to)} as a shard, atomically: the data goes to {@code file.tmp}, which is then
     * renamed over {@code file}.
     *
     * @throws IllegalArgumentException when a token lies outside [0, 65535] (naming its value and index)
     */
    public static void write(Path file, int[] tokens, int from, int to) {
        Objects.requireNonNull(file, "file");
        Objects.checkFromToIndex(from, to, tokens.length);
        checkTokens(tokens, from, to - from, 0, file);
        Path tmp = tmpPath(file);
        try {
            Path parent = file.toAbsolutePath().getParent();
            if (parent != null) {
                Files.createDirectories(parent);
            }
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                writeFully(ch, header(to - from), 0);
                ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
                long pos = HEADER_BYTES;
                for (int i = from; i < to; i++) {
                    if (!buf.hasRemaining()) {
                        buf.flip();
                        pos += writeFully(ch, buf, pos);
                        buf.clear();
                    }
                    buf.putShort((short) tokens[i]);
                }
                buf.flip();
                writeFully(ch, buf, pos);
                ch.force(true);
            }
            moveAtomically(tmp, file);
        } catch (IOException e) {
            deleteQuietly(tmp);
            throw ioError("cannot write token shard", file, e);
        }
    }

    // ------------------------------------------------------------------ helpers shared within the package

    /**
     * An unchecked I/O error naming {@code file}: its message reads {@code "WHAT FILE: REASON"}, and its cause is a
     * {@link FileSystemException} for the same file (wrapping {@code e}), so that a handler showing only the cause
     * still names it.
     */
    static UncheckedIOException ioError(String what, Path file, IOException e) {
        String reason = reason(e);
        if (e instanceof FileSystemException f && f.getFile() != null && !f.getFile().equals(file.toString())) {
            reason = f.getFile() + ": " + reason; // the error concerns another file (a temporary one, say)
        }
        FileSystemException named = new FileSystemException(file.toString(), null, what + ": " + reason);
        named.initCause(e);
        return new UncheckedIOException(what + " " + file + ": " + reason, named);
    }

    /** The reason of an I/O error in a few words, without the file name a {@link FileSystemException} carries. */
    static String reason(IOException e) {
        if (e instanceof FileSystemException f && f.getReason() != null && !f.getReason().isBlank()) {
            return f.getReason();
        }
        if (e instanceof NoSuchFileException) {
            return "no such file or directory";
        }
        if (e instanceof AccessDeniedException) {
            return "permission denied";
        }
        if (e instanceof FileAlreadyExistsException) {
            return "already exists";
        }
        String r = e instanceof FileSystemException ? null : e.getMessage();
        return r == null || r.isBlank() ? e.getClass().getSimpleName() : r;
    }

    static Path tmpPath(Path file) {
        return file.resolveSibling(file.getFileName() + ".tmp");
    }

    static ByteBuffer header(long count) {
        ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        h.put(MAGIC).putInt(VERSION).putInt(BYTES_PER_TOKEN).putLong(count).putLong(0L);
        return h.flip();
    }

    /** Checks that {@code tokens[off, off+n)} fit in uint16; {@code base} is the index reported for {@code off}. */
    static void checkTokens(int[] tokens, int off, int n, long base, Object where) {
        for (int i = 0; i < n; i++) {
            int t = tokens[off + i];
            if (t < 0 || t > MAX_TOKEN) {
                throw new IllegalArgumentException(where + ": token " + t + " (at index " + (base + i)
                        + ") does not fit in a token shard (ids must be in [0, " + MAX_TOKEN + "])");
            }
        }
    }

    static int writeFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        int n = 0;
        while (buf.hasRemaining()) {
            n += ch.write(buf, pos + n);
        }
        return n;
    }

    static void moveAtomically(Path tmp, Path file) throws IOException {
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // best effort clean-up of a temporary file
        }
    }
}
