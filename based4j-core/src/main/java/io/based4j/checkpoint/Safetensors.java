package io.based4j.checkpoint;

import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header mapping each
 * tensor name to {@code {"dtype", "shape", "data_offsets"}} (plus an optional {@code "__metadata__"} object of
 * strings), then the raw little-endian tensor bytes. Offsets are relative to the start of the data section.
 *
 * <p>Reading validates the header strictly: every tensor must fit the data section exactly as its dtype and
 * shape say, and no two tensors may share bytes. Gaps between tensors and bytes after the last one are allowed.
 */
public final class Safetensors {
    /** Largest header accepted; real headers are a few hundred kilobytes at most. */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;
    static final String METADATA_KEY = "__metadata__";

    private static final int LENGTH_BYTES = 8;
    private static final int WRITE_CHUNK_BYTES = 8 << 20;
    private static final ValueLayout.OfLong U64_LE = Tensor.I64_LE;

    private Safetensors() {
    }

    /** One validated header entry; {@code begin} and {@code end} are relative to the data section. */
    private record Entry(String key, DType dtype, long[] shape, long begin, long end) {
        boolean isEmpty() {
            return begin == end;
        }

        String range() {
            return "[" + begin + ", " + end + ")";
        }
    }

    /** A validated header: where the data section starts in the file, the metadata and the tensor entries. */
    private record Header(long dataStart, Map<String, String> metadata, List<Entry> entries) {
    }

    // ------------------------------------------------------------------ reading

    /**
     * Memory-maps {@code file} into {@code arena} and returns its tensors, in header order, as zero-copy slices of
     * the mapping. The tensors stay readable until {@code arena} is closed.
     *
     * @throws CheckpointException when the file cannot be read or is not a valid safetensors file
     */
    public static Map<String, Tensor> read(Path file, Arena arena) {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = channel.size();
            checkLengthPrefix(file, size);
            MemorySegment whole = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long headerLength = headerLength(file, whole.get(U64_LE, 0), size);
            byte[] headerBytes = whole.asSlice(LENGTH_BYTES, headerLength).toArray(ValueLayout.JAVA_BYTE);
            Header header = parseHeader(file, headerBytes, size);

            Map<String, Tensor> tensors = new LinkedHashMap<>();
            for (Entry e : header.entries()) {
                MemorySegment data = whole.asSlice(header.dataStart() + e.begin(), e.end() - e.begin());
                tensors.put(e.key(), new Tensor(e.dtype(), e.shape(), data));
            }
            return tensors;
        } catch (IOException e) {
            throw CheckpointException.of(file, "cannot read file: " + e, e);
        }
    }

    /**
     * The {@code "__metadata__"} strings of {@code file} (empty when it has none). Reads only the header, but
     * validates it as {@link #read} does.
     */
    public static Map<String, String> readMetadata(Path file) {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = channel.size();
            checkLengthPrefix(file, size);
            ByteBuffer prefix = ByteBuffer.allocate(LENGTH_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            readFully(channel, prefix, 0);
            long headerLength = headerLength(file, prefix.getLong(0), size);
            ByteBuffer headerBytes = ByteBuffer.allocate((int) headerLength);
            readFully(channel, headerBytes, LENGTH_BYTES);
            return parseHeader(file, headerBytes.array(), size).metadata();
        } catch (IOException e) {
            throw CheckpointException.of(file, "cannot read file: " + e, e);
        }
    }

    private static void readFully(FileChannel channel, ByteBuffer buffer, long position) throws IOException {
        long pos = position;
        while (buffer.hasRemaining()) {
            int n = channel.read(buffer, pos);
            if (n < 0) {
                throw new IOException("unexpected end of file at byte " + pos);
            }
            pos += n;
        }
    }

    private static void checkLengthPrefix(Path file, long size) {
        if (size < LENGTH_BYTES) {
            throw CheckpointException.of(file, "file is " + size
                    + " bytes long, too short to hold the 8-byte header length of a safetensors file");
        }
    }

    private static long headerLength(Path file, long headerLength, long fileSize) {
        if (headerLength < 0 || headerLength > MAX_HEADER_BYTES) {
            throw CheckpointException.of(file, "header length " + Long.toUnsignedString(headerLength)
                    + " is not plausible (limit " + MAX_HEADER_BYTES + " bytes); this is not a safetensors file");
        }
        if (headerLength > fileSize - LENGTH_BYTES) {
            throw CheckpointException.of(file, "header length " + headerLength + " runs past the end of the file ("
                    + fileSize + " bytes); the file is truncated or not a safetensors file");
        }
        return headerLength;
    }

    private static Header parseHeader(Path file, byte[] headerBytes, long fileSize) {
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(headerBytes))
                    .toString();
        } catch (CharacterCodingException e) {
            throw CheckpointException.of(file, "header is not valid UTF-8", e);
        }
        Object parsed;
        try {
            parsed = Json.parse(text, MAX_HEADER_BYTES);
        } catch (JsonException e) {
            throw CheckpointException.of(file, "header is not valid JSON: " + e.getMessage(), e);
        }
        if (!(parsed instanceof Map<?, ?> json)) {
            throw CheckpointException.of(file, "header is a JSON " + Json.typeName(parsed) + ", expected an object");
        }

        long dataStart = LENGTH_BYTES + (long) headerBytes.length;
        long dataSize = fileSize - dataStart;
        Map<String, String> metadata = Map.of();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<?, ?> field : json.entrySet()) {
            String key = (String) field.getKey();
            if (key.equals(METADATA_KEY)) {
                metadata = parseMetadata(file, field.getValue());
            } else {
                entries.add(parseEntry(file, key, field.getValue(), dataSize));
            }
        }
        checkNoOverlap(file, entries);
        return new Header(dataStart, metadata, entries);
    }

    private static Map<String, String> parseMetadata(Path file, Object value) {
        if (!(value instanceof Map<?, ?> map)) {
            throw CheckpointException.of(file, "'" + METADATA_KEY + "' is a JSON " + Json.typeName(value)
                    + ", expected an object of strings");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : map.entrySet()) {
            if (!(e.getValue() instanceof String s)) {
                throw CheckpointException.of(file, "'" + METADATA_KEY + "' entry '" + e.getKey() + "' is a JSON "
                        + Json.typeName(e.getValue()) + ", expected a string");
            }
            metadata.put((String) e.getKey(), s);
        }
        return Collections.unmodifiableMap(metadata);
    }

    private static Entry parseEntry(Path file, String key, Object value, long dataSize) {
        if (!(value instanceof Map<?, ?> fields)) {
            throw CheckpointException.ofTensor(file, key,
                    "header entry is a JSON " + Json.typeName(value) + ", expected an object");
        }
        DType dtype = parseDType(file, key, required(file, key, fields, "dtype"));
        long[] shape = parseShape(file, key, required(file, key, fields, "shape"));
        long[] offsets = parseOffsets(file, key, required(file, key, fields, "data_offsets"));
        long begin = offsets[0];
        long end = offsets[1];
        String range = "[" + begin + ", " + end + ")";
        if (begin > end) {
            throw CheckpointException.ofTensor(file, key, "data offsets " + range + " begin after they end");
        }
        if (end > dataSize) {
            throw CheckpointException.ofTensor(file, key, "data offsets " + range
                    + " run past the end of the data section (" + dataSize + " bytes)");
        }
        long expected;
        try {
            expected = Math.multiplyExact(Tensor.numel(shape), dtype.bytes());
        } catch (ArithmeticException e) {
            throw CheckpointException.ofTensor(file, key, "shape " + Arrays.toString(shape) + " is too large");
        }
        if (end - begin != expected) {
            throw CheckpointException.ofTensor(file, key, "data offsets " + range + " hold " + (end - begin)
                    + " bytes, but shape " + Arrays.toString(shape) + " of " + dtype + " needs " + expected);
        }
        return new Entry(key, dtype, shape, begin, end);
    }

    private static Object required(Path file, String key, Map<?, ?> fields, String name) {
        Object value = fields.get(name);
        if (value == null) {
            throw CheckpointException.ofTensor(file, key, "header entry has no '" + name + "'");
        }
        return value;
    }

    private static DType parseDType(Path file, String key, Object value) {
        if (!(value instanceof String name)) {
            throw CheckpointException.ofTensor(file, key,
                    "'dtype' is a JSON " + Json.typeName(value) + ", expected a string");
        }
        DType dtype = DType.fromName(name);
        if (dtype == null || !dtype.name().equals(name)) {
            throw CheckpointException.ofTensor(file, key, "unknown dtype '" + name + "' (supported: "
                    + Arrays.toString(DType.values()) + ")");
        }
        return dtype;
    }

    private static long[] parseShape(Path file, String key, Object value) {
        if (!(value instanceof List<?> dims)) {
            throw CheckpointException.ofTensor(file, key,
                    "'shape' is a JSON " + Json.typeName(value) + ", expected an array of integers");
        }
        long[] shape = new long[dims.size()];
        for (int i = 0; i < shape.length; i++) {
            if (!(dims.get(i) instanceof Long dim)) {
                throw CheckpointException.ofTensor(file, key, "'shape' " + dims + " holds a non-integer");
            }
            if (dim < 0) {
                throw CheckpointException.ofTensor(file, key, "'shape' " + dims + " has a negative dimension");
            }
            shape[i] = dim;
        }
        return shape;
    }

    private static long[] parseOffsets(Path file, String key, Object value) {
        if (!(value instanceof List<?> list) || list.size() != 2
                || !(list.get(0) instanceof Long begin) || !(list.get(1) instanceof Long end)) {
            throw CheckpointException.ofTensor(file, key, "'data_offsets' " + Json.write(value)
                    + " is not an array of two integers");
        }
        if (begin < 0 || end < 0) {
            throw CheckpointException.ofTensor(file, key, "'data_offsets' " + list + " are negative");
        }
        return new long[] {begin, end};
    }

    /** Sorts the non-empty ranges by start and checks each starts at or after every earlier one ends. */
    private static void checkNoOverlap(Path file, List<Entry> entries) {
        List<Entry> sorted = entries.stream()
                .filter(e -> !e.isEmpty())
                .sorted(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end))
                .toList();
        Entry furthest = null;
        for (Entry e : sorted) {
            if (furthest != null && e.begin() < furthest.end()) {
                throw CheckpointException.ofTensor(file, e.key(), "data offsets " + e.range()
                        + " overlap those of tensor '" + furthest.key() + "' " + furthest.range());
            }
            if (furthest == null || e.end() > furthest.end()) {
                furthest = e;
            }
        }
    }

    // ------------------------------------------------------------------ writing

    /**
     * Writes {@code tensors} (in map order, back to back) and {@code metadata} (may be null or empty) to
     * {@code file}. The file is written under a temporary name in the same directory and then atomically renamed
     * over {@code file}, so readers see either the old file or the complete new one; on failure the temporary
     * file is removed. Tensor data is streamed in chunks, so tensors of any size can be written.
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
        byte[] header = encodeHeader(file, tensors, metadata == null ? Map.of() : metadata);
        Path target = file.toAbsolutePath();
        Path temp = createTempFile(file, target);
        boolean moved = false;
        try {
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.WRITE);
                 Arena staging = Arena.ofConfined()) {
                writeFully(channel, ByteBuffer.wrap(header));
                long largest = tensors.values().stream().mapToLong(t -> t.data().byteSize()).max().orElse(0);
                MemorySegment buffer = staging.allocate(Math.clamp(largest, 1, WRITE_CHUNK_BYTES));
                for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
                    writeTensor(file, e.getKey(), e.getValue().data(), channel, buffer);
                }
                channel.force(true);
            }
            Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            moved = true;
        } catch (IOException e) {
            throw CheckpointException.of(file, "cannot write file: " + e, e);
        } finally {
            if (!moved) {
                deleteQuietly(temp);
            }
        }
    }

    private static byte[] encodeHeader(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) {
        Map<String, Object> json = new LinkedHashMap<>();
        if (!metadata.isEmpty()) {
            for (Map.Entry<String, String> e : metadata.entrySet()) {
                if (e.getKey() == null || e.getValue() == null) {
                    throw CheckpointException.of(file, "metadata entry '" + e.getKey() + "' is null");
                }
            }
            json.put(METADATA_KEY, new LinkedHashMap<>(metadata));
        }
        long offset = 0;
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            String key = e.getKey();
            if (key == null || key.equals(METADATA_KEY)) {
                throw CheckpointException.of(file, "'" + key + "' cannot be used as a tensor name");
            }
            Tensor tensor = e.getValue();
            if (tensor == null) {
                throw CheckpointException.ofTensor(file, key, "tensor is null");
            }
            long end = offset + tensor.data().byteSize();
            Map<String, Object> entry = new LinkedHashMap<>();
            entry.put("dtype", tensor.dtype().name());
            entry.put("shape", tensor.shape());
            entry.put("data_offsets", new long[] {offset, end});
            json.put(key, entry);
            offset = end;
        }
        byte[] text = Json.write(json).getBytes(StandardCharsets.UTF_8);
        int padded = (text.length + 7) & ~7;
        if (padded > MAX_HEADER_BYTES) {
            throw CheckpointException.of(file, "header would be " + padded + " bytes, more than readers accept");
        }
        ByteBuffer out = ByteBuffer.allocate(LENGTH_BYTES + padded).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(padded).put(text);
        while (out.hasRemaining()) {
            out.put((byte) ' ');
        }
        return out.array();
    }

    /** Creates an empty file next to {@code target} with a fresh hidden name. */
    private static Path createTempFile(Path file, Path target) {
        Path dir = target.getParent();
        for (int attempt = 0; ; attempt++) {
            String suffix = Long.toHexString(ThreadLocalRandom.current().nextLong());
            Path temp = dir.resolve("." + target.getFileName() + "." + suffix + ".tmp");
            try {
                return Files.createFile(temp);
            } catch (FileAlreadyExistsException e) {
                if (attempt >= 10) {
                    throw CheckpointException.of(file, "cannot create a temporary file in " + dir, e);
                }
            } catch (IOException e) {
                throw CheckpointException.of(file, "cannot create a temporary file in " + dir + ": " + e, e);
            }
        }
    }

    private static void writeTensor(Path file, String key, MemorySegment data, FileChannel channel,
                                    MemorySegment buffer) throws IOException {
        long size = data.byteSize();
        for (long off = 0; off < size; off += buffer.byteSize()) {
            long n = Math.min(buffer.byteSize(), size - off);
            try {
                MemorySegment.copy(data, off, buffer, 0, n);
            } catch (IllegalStateException | IndexOutOfBoundsException e) {
                throw CheckpointException.ofTensor(file, key, "cannot read tensor data: " + e.getMessage(), e);
            }
            writeFully(channel, buffer.asSlice(0, n).asByteBuffer());
        }
    }

    private static void writeFully(FileChannel channel, ByteBuffer bytes) throws IOException {
        while (bytes.hasRemaining()) {
            channel.write(bytes);
        }
    }

    private static void deleteQuietly(Path temp) {
        try {
            Files.deleteIfExists(temp);
        } catch (IOException ignored) {
            // The original failure is the one worth reporting.
        }
    }
}
