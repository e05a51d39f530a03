package io.based4j.checkpoint;

import io.based4j.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * A zip archive held in a memory segment (usually a mapped file), read from its central directory. Stored
 * entries are returned as zero-copy slices; deflated entries are inflated into an arena. ZIP64 archives (over
 * 4 GB or 65535 entries) are supported; encrypted and multi-disk archives are not.
 */
final class ZipArchive {
    /** One central directory entry; {@code dataOffset} is where its (compressed) bytes start in the archive. */
    record Entry(String name, int method, long compressedSize, long size, int crc, long dataOffset) {
        static final int STORED = 0;
        static final int DEFLATED = 8;
    }

    private static final ValueLayout.OfShort U16 = Tensor.I16_LE;
    private static final ValueLayout.OfInt U32 = Tensor.I32_LE;
    private static final ValueLayout.OfLong U64 = Tensor.I64_LE;

    private static final int LOCAL_HEADER_SIG = 0x04034b50;
    private static final int CENTRAL_HEADER_SIG = 0x02014b50;
    private static final int END_SIG = 0x06054b50;
    private static final int ZIP64_END_SIG = 0x06064b50;
    private static final int ZIP64_LOCATOR_SIG = 0x07064b50;
    private static final int ZIP64_EXTRA_ID = 0x0001;

    private static final int LOCAL_HEADER_BYTES = 30;
    private static final int CENTRAL_HEADER_BYTES = 46;
    private static final int END_BYTES = 22;
    private static final int ZIP64_LOCATOR_BYTES = 20;
    private static final int ZIP64_END_BYTES = 56;
    private static final int MAX_COMMENT_BYTES = 0xffff;
    private static final long U16_MAX = 0xffffL;
    private static final long U32_MAX = 0xffff_ffffL;
    private static final int INFLATE_CHUNK_BYTES = 1 << 30;

    private final Path file;
    private final MemorySegment data;
    private final Map<String, Entry> entries;

    private ZipArchive(Path file, MemorySegment data, Map<String, Entry> entries) {
        this.file = file;
        this.data = data;
        this.entries = entries;
    }

    /** Reads the central directory of the archive in {@code data}; {@code file} names it in error messages. */
    static ZipArchive read(Path file, MemorySegment data) {
        long end = findEndRecord(file, data);
        long count = u16(data, end + 10);
        long directorySize = u32(data, end + 12);
        long directoryOffset = u32(data, end + 16);

        long locator = end - ZIP64_LOCATOR_BYTES;
        if (locator >= 0 && data.get(U32, locator) == ZIP64_LOCATOR_SIG) {
            long zip64End = data.get(U64, locator + 8);
            if (zip64End < 0 || zip64End > locator - ZIP64_END_BYTES
                    || data.get(U32, zip64End) != ZIP64_END_SIG) {
                throw CheckpointException.of(file, "ZIP64 end of central directory record is missing or damaged");
            }
            count = data.get(U64, zip64End + 32);
            directorySize = data.get(U64, zip64End + 40);
            directoryOffset = data.get(U64, zip64End + 48);
        }
        if (directoryOffset < 0 || directorySize < 0 || directoryOffset > end
                || directorySize > end - directoryOffset) {
            throw CheckpointException.of(file, "central directory [" + directoryOffset + ", +" + directorySize
                    + ") lies outside the archive; the file is truncated or damaged");
        }
        MemorySegment directory = data.asSlice(directoryOffset, directorySize);

        Map<String, Entry> entries = new LinkedHashMap<>();
        long pos = 0;
        for (long i = 0; i < count; i++) {
            pos = readCentralHeader(file, data, directory, pos, entries);
        }
        return new ZipArchive(file, data, Collections.unmodifiableMap(entries));
    }

    Map<String, Entry> entries() {
        return entries;
    }

    /** The entry named {@code name}, or null. */
    Entry entry(String name) {
        return entries.get(name);
    }

    /**
     * The uncompressed bytes of {@code entry}: a slice of the archive when it is stored, else inflated into
     * {@code arena}.
     */
    MemorySegment content(Entry entry, Arena arena) {
        MemorySegment raw = data.asSlice(entry.dataOffset(), entry.compressedSize());
        return switch (entry.method()) {
            case Entry.STORED -> raw;
            case Entry.DEFLATED -> inflate(entry, raw, arena);
            default -> throw error(entry, "uses compression method " + entry.method()
                    + "; only stored and deflated entries are supported");
        };
    }

    /** The uncompressed bytes of a small entry, checked against its CRC-32. */
    byte[] bytes(Entry entry) {
        if (entry.size() > Integer.MAX_VALUE - 8) {
            throw error(entry, "is too large (" + entry.size() + " bytes) to read into memory");
        }
        try (Arena arena = Arena.ofConfined()) {
            byte[] bytes = content(entry, arena).toArray(ValueLayout.JAVA_BYTE);
            CRC32 crc = new CRC32();
            crc.update(bytes);
            if ((int) crc.getValue() != entry.crc()) {
                throw error(entry, "fails its CRC-32 check; the archive is damaged");
            }
            return bytes;
        }
    }

    private CheckpointException error(Entry entry, String what) {
        return CheckpointException.of(file, "archive entry '" + entry.name() + "' " + what);
    }

    private static long findEndRecord(Path file, MemorySegment data) {
        long size = data.byteSize();
        long lowest = Math.max(0, size - END_BYTES - MAX_COMMENT_BYTES);
        for (long pos = size - END_BYTES; pos >= lowest; pos--) {
            if (data.get(U32, pos) == END_SIG && pos + END_BYTES + u16(data, pos + 20) <= size) {
                if (u16(data, pos + 4) != 0 || u16(data, pos + 6) != 0) {
                    throw CheckpointException.of(file, "multi-disk zip archives are not supported");
                }
                return pos;
            }
        }
        throw CheckpointException.of(file, "no zip end of central directory record found; "
                + "the file is truncated or not a zip archive");
    }

    /** Reads the central header at {@code pos} of {@code directory} into {@code entries}; returns the next one. */
    private static long readCentralHeader(Path file, MemorySegment data, MemorySegment directory, long pos,
                                          Map<String, Entry> entries) {
        if (pos + CENTRAL_HEADER_BYTES > directory.byteSize() || directory.get(U32, pos) != CENTRAL_HEADER_SIG) {
            throw CheckpointException.of(file, "central directory is damaged at byte " + pos
                    + "; the archive is truncated or not a zip file");
        }
        int flags = (int) u16(directory, pos + 8);
        int method = (int) u16(directory, pos + 10);
        int crc = directory.get(U32, pos + 16);
        long compressedSize = u32(directory, pos + 20);
        long size = u32(directory, pos + 24);
        int nameLength = (int) u16(directory, pos + 28);
        int extraLength = (int) u16(directory, pos + 30);
        int commentLength = (int) u16(directory, pos + 32);
        long disk = u16(directory, pos + 34);
        long localOffset = u32(directory, pos + 42);
        long next = pos + CENTRAL_HEADER_BYTES + nameLength + extraLength + commentLength;
        if (next > directory.byteSize()) {
            throw CheckpointException.of(file, "central directory entry at byte " + pos + " runs past its end");
        }
        String name = new String(directory.asSlice(pos + CENTRAL_HEADER_BYTES, nameLength)
                .toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);

        // ZIP64 extra field: 8-byte values for exactly those fields whose 32-bit slots hold their maximum.
        MemorySegment extra = directory.asSlice(pos + CENTRAL_HEADER_BYTES + nameLength, extraLength);
        long fieldPos = findExtraField(extra, ZIP64_EXTRA_ID);
        if (fieldPos >= 0) {
            long fieldEnd = fieldPos + 4 + u16(extra, fieldPos + 2);
            long p = fieldPos + 4;
            if (size == U32_MAX) {
                size = zip64Value(file, name, extra, p, fieldEnd);
                p += 8;
            }
            if (compressedSize == U32_MAX) {
                compressedSize = zip64Value(file, name, extra, p, fieldEnd);
                p += 8;
            }
            if (localOffset == U32_MAX) {
                localOffset = zip64Value(file, name, extra, p, fieldEnd);
                p += 8;
            }
            if (disk == U16_MAX && p + 4 <= fieldEnd) {
                disk = u32(extra, p);
            }
        }
        if ((flags & 1) != 0) {
            throw CheckpointException.of(file, "archive entry '" + name + "' is encrypted");
        }
        if (disk != 0) {
            throw CheckpointException.of(file, "multi-disk zip archives are not supported");
        }
        if (method == Entry.STORED && compressedSize != size) {
            throw CheckpointException.of(file, "archive entry '" + name + "' is stored but its sizes differ ("
                    + compressedSize + " vs " + size + " bytes)");
        }
        long dataOffset = localDataOffset(file, data, name, localOffset);
        if (compressedSize < 0 || size < 0 || compressedSize > data.byteSize() - dataOffset) {
            throw CheckpointException.of(file, "archive entry '" + name + "' (" + compressedSize
                    + " bytes at byte " + dataOffset + ") runs past the end of the file ("
                    + data.byteSize() + " bytes); the archive is truncated");
        }
        if (entries.putIfAbsent(name, new Entry(name, method, compressedSize, size, crc, dataOffset)) != null) {
            throw CheckpointException.of(file, "archive holds two entries named '" + name + "'");
        }
        return next;
    }

    private static long zip64Value(Path file, String name, MemorySegment extra, long pos, long fieldEnd) {
        if (pos + 8 > fieldEnd || fieldEnd > extra.byteSize()) {
            throw CheckpointException.of(file, "archive entry '" + name + "' has a short ZIP64 extra field");
        }
        return extra.get(U64, pos);
    }

    /** Offset of the extra field {@code id} within {@code extra}, or -1. */
    private static long findExtraField(MemorySegment extra, int id) {
        long pos = 0;
        while (pos + 4 <= extra.byteSize()) {
            if (u16(extra, pos) == id) {
                return pos;
            }
            pos += 4 + u16(extra, pos + 2);
        }
        return -1;
    }

    /** Where the data of the entry whose local header is at {@code localOffset} starts. */
    private static long localDataOffset(Path file, MemorySegment data, String name, long localOffset) {
        if (localOffset < 0 || localOffset > data.byteSize() - LOCAL_HEADER_BYTES
                || data.get(U32, localOffset) != LOCAL_HEADER_SIG) {
            throw CheckpointException.of(file, "archive entry '" + name + "' has no local header at byte "
                    + localOffset + "; the archive is damaged");
        }
        return localOffset + LOCAL_HEADER_BYTES + u16(data, localOffset + 26) + u16(data, localOffset + 28);
    }

    private MemorySegment inflate(Entry entry, MemorySegment raw, Arena arena) {
        MemorySegment out = arena.allocate(entry.size(), 64);
        ByteBuffer overflow = ByteBuffer.allocate(1);
        Inflater inflater = new Inflater(true);
        try {
            long in = 0;
            long produced = 0;
            while (!inflater.finished()) {
                if (inflater.needsInput()) {
                    if (in == raw.byteSize()) {
                        throw error(entry, "ends before its compressed data does; the archive is damaged");
                    }
                    long n = Math.min(INFLATE_CHUNK_BYTES, raw.byteSize() - in);
                    inflater.setInput(raw.asSlice(in, n).asByteBuffer());
                    in += n;
                }
                if (produced == entry.size()) {
                    if (inflater.inflate(overflow) > 0) {
                        throw error(entry, "inflates to more than its declared " + entry.size() + " bytes");
                    }
                } else {
                    long n = Math.min(INFLATE_CHUNK_BYTES, entry.size() - produced);
                    produced += inflater.inflate(out.asSlice(produced, n).asByteBuffer());
                }
                if (inflater.needsDictionary()) {
                    throw error(entry, "needs a preset dictionary, which zip entries never use");
                }
            }
            if (produced != entry.size()) {
                throw error(entry, "inflates to " + produced + " bytes, not its declared " + entry.size());
            }
            return out;
        } catch (DataFormatException e) {
            throw CheckpointException.of(file, "archive entry '" + entry.name() + "' is not valid deflate data: "
                    + e.getMessage(), e);
        } finally {
            inflater.end();
        }
    }

    private static long u16(MemorySegment segment, long offset) {
        return Short.toUnsignedLong(segment.get(U16, offset));
    }

    private static long u32(MemorySegment segment, long offset) {
        return Integer.toUnsignedLong(segment.get(U32, offset));
    }
}
