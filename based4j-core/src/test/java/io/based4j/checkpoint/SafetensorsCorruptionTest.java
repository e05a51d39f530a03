package io.based4j.checkpoint;

import io.based4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Damaged and malformed safetensors files must be refused with a message naming the file and tensor. */
class SafetensorsCorruptionTest {
    private static final String NAME = "broken.safetensors";

    @TempDir
    Path dir;

    /** A file with the given header text (padded as writers do) followed by {@code dataBytes} zero bytes. */
    private Path craft(String header, int dataBytes) throws IOException {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7;
        ByteBuffer out = ByteBuffer.allocate(8 + padded + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(padded).put(json);
        while (out.position() < 8 + padded) {
            out.put((byte) ' ');
        }
        Path file = dir.resolve(NAME);
        Files.write(file, out.array());
        return file;
    }

    private static CheckpointException refused(Path file) {
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                Safetensors.read(file, arena);
            }
        });
        assertTrue(e.getMessage().startsWith(NAME + ": "), e.getMessage());
        return e;
    }

    private static void assertMessage(CheckpointException e, String... fragments) {
        for (String fragment : fragments) {
            assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' should mention '" + fragment + "'");
        }
    }

    private Path validFile() {
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("a", Tensor.ofFloats(new float[] {1f, 2f, 3f, 4f}, 2, 2));
        tensors.put("b", Tensor.ofLongs(new long[] {5, 6, 7}, 3));
        Path file = dir.resolve("valid.safetensors");
        Safetensors.write(file, tensors, Map.of("format", "pt"));
        return file;
    }

    @Test
    void truncatedFilesAreRefusedAtEveryCut() throws IOException {
        byte[] bytes = Files.readAllBytes(validFile());
        long headerLength = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        int dataStart = 8 + (int) headerLength;
        int[] cuts = {0, 1, 7, 8, 9, dataStart / 2, dataStart - 1, dataStart, dataStart + 5, dataStart + 16,
                bytes.length - 1};
        for (int cut : cuts) {
            Path file = dir.resolve(NAME);
            Files.write(file, Arrays.copyOf(bytes, cut));
            CheckpointException e = refused(file);
            if (cut < 8) {
                assertMessage(e, "too short");
            } else if (cut < dataStart) {
                assertMessage(e, "header length", "runs past the end of the file");
            } else if (cut < dataStart + 16) {
                assertMessage(e, "tensor 'a'", "run past the end of the data section");
            } else {
                assertMessage(e, "tensor 'b'", "run past the end of the data section");
            }
        }
    }

    @Test
    void headerLengthPastTheEndIsRefused() throws IOException {
        byte[] bytes = Files.readAllBytes(validFile());
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(0, bytes.length);
        Path file = dir.resolve(NAME);
        Files.write(file, bytes);
        assertMessage(refused(file), "header length " + bytes.length, "runs past the end of the file");
    }

    @Test
    void absurdHeaderLengthIsRefused() throws IOException {
        byte[] bytes = Files.readAllBytes(validFile());
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(0, -1L);
        Path file = dir.resolve(NAME);
        Files.write(file, bytes);
        assertMessage(refused(file), "not plausible");
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 200L * 1024 * 1024);
        Files.write(file, bytes);
        assertMessage(refused(file), "not plausible");
    }

    @Test
    void headerThatIsNotJsonIsRefused() throws IOException {
        assertMessage(refused(craft("{\"a\": {\"dtype\": \"F32\", ", 0)), "not valid JSON");
        assertMessage(refused(craft("not json at all", 0)), "not valid JSON");
        assertMessage(refused(craft("[1, 2, 3]", 0)), "header is a JSON array, expected an object");
        byte[] latin1 = {(byte) '{', (byte) '"', (byte) 0xff, (byte) '"', (byte) ':', (byte) '1', (byte) '}', ' '};
        Path file = dir.resolve(NAME);
        Files.write(file, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(8).put(latin1).array());
        assertMessage(refused(file), "not valid UTF-8");
    }

    @Test
    void offsetsOutOfRangeAreRefused() throws IOException {
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                + "\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 24)),
                "tensor 'x'", "data offsets [16, 32) run past the end of the data section (24 bytes)");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16)),
                "tensor 'w'", "begin after they end");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16)),
                "tensor 'w'", "negative");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 16)),
                "tensor 'w'", "not an array of two integers");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 16)),
                "tensor 'w'", "not an array of two integers");
    }

    @Test
    void overlappingOffsetsAreRefused() throws IOException {
        CheckpointException e = refused(craft("{\"first\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                + "\"second\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24));
        assertMessage(e, "tensor 'second'", "overlap", "tensor 'first'");
        // A range lying inside an earlier, longer one.
        e = refused(craft("{\"big\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
                + "\"small\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                + "\"late\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}", 32));
        assertMessage(e, "overlap", "tensor 'big'");
    }

    @Test
    void gapsAndEmptyTensorsAreAllowed() throws IOException {
        Path file = craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"none\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 16);
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = Safetensors.read(file, arena);
            assertEquals(List.of("a", "none", "b"), List.copyOf(tensors.keySet()));
            assertArrayEquals(new long[] {0}, tensors.get("none").shape());
        }
    }

    @Test
    void wrongDtypeNamesAreRefused() throws IOException {
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "unknown dtype 'F33'");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "unknown dtype 'f32'");
        assertMessage(refused(craft("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "'dtype' is a JSON number");
    }

    @Test
    void sizeShapeMismatchIsRefused() throws IOException {
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16)),
                "tensor 'w'", "hold 16 bytes, but shape [3] of F32 needs 12");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16)),
                "tensor 'w'", "needs 8");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
                + "\"data_offsets\":[0,16]}}", 16)), "tensor 'w'", "too large");
    }

    @Test
    void malformedEntriesAreRefused() throws IOException {
        assertMessage(refused(craft("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "no 'dtype'");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "no 'shape'");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4)),
                "tensor 'w'", "no 'data_offsets'");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "negative dimension");
        assertMessage(refused(craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4)),
                "tensor 'w'", "non-integer");
        assertMessage(refused(craft("{\"w\":[1,2]}", 4)), "tensor 'w'", "expected an object");
        assertMessage(refused(craft("{\"__metadata__\":{\"n\":1}}", 0)), "__metadata__", "'n'", "expected a string");
    }

    @Test
    void readMetadataValidatesToo() throws IOException {
        Path file = craft("{\"__metadata__\":{\"k\":\"v\"},"
                + "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4);
        CheckpointException e = assertThrows(CheckpointException.class, () -> Safetensors.readMetadata(file));
        assertMessage(e, NAME + ": tensor 'w'", "run past the end of the data section (4 bytes)");
    }

    @Test
    void missingFileIsReportedByName() {
        CheckpointException e = assertThrows(CheckpointException.class,
                () -> Safetensors.readMetadata(dir.resolve("absent.safetensors")));
        assertTrue(e.getMessage().startsWith("absent.safetensors: cannot read file"), e.getMessage());
    }
}
