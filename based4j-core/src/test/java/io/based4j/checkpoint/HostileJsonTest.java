package io.based4j.checkpoint;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A hostile checkpoint's JSON (a safetensors header, a sharded index) nested or sized to exhaust the reader. */
class HostileJsonTest {
    @TempDir
    Path dir;

    private static final String DEEP = "{\"w\": " + "[".repeat(100_000);

    private Path safetensorsWithHeader(String header) throws IOException {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer out = ByteBuffer.allocate(8 + json.length).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(json.length).put(json);
        Path file = dir.resolve("model.safetensors");
        Files.write(file, out.array());
        return file;
    }

    private static void assertOneLine(CheckpointException e, String start, String... parts) {
        assertTrue(e.getMessage().startsWith(start), e.getMessage());
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "\"" + e.getMessage() + "\" should mention " + p);
        }
        assertEquals(1, e.getMessage().lines().count(), e.getMessage());
    }

    @Test
    void deeplyNestedSafetensorsHeaderIsRefused() throws IOException {
        Path file = safetensorsWithHeader(DEEP);
        CheckpointException read = assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                Safetensors.read(file, arena);
            }
        });
        assertOneLine(read, "model.safetensors: ", "header", "line 1", "deeper than the limit of 64 levels");
        CheckpointException metadata = assertThrows(CheckpointException.class, () -> Safetensors.readMetadata(file));
        assertOneLine(metadata, "model.safetensors: ", "deeper than the limit");
    }

    @Test
    void deeplyNestedShardIndexIsRefused() throws IOException {
        Path index = dir.resolve(CheckpointFiles.SAFETENSORS_INDEX);
        Files.writeString(index, DEEP);
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                CheckpointFiles.open(dir, arena);
            }
        });
        assertOneLine(e, CheckpointFiles.SAFETENSORS_INDEX + ": ", "line 1", "deeper than the limit of 64 levels");
    }

    @Test
    void oversizedShardIndexIsRefusedUnread() throws IOException {
        Path index = dir.resolve(CheckpointFiles.SAFETENSORS_INDEX);
        try (RandomAccessFile f = new RandomAccessFile(index.toFile(), "rw")) {
            f.setLength(CheckpointFiles.MAX_INDEX_BYTES + 1); // sparse: nothing is written
        }
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                CheckpointFiles.open(dir, arena);
            }
        });
        assertOneLine(e, CheckpointFiles.SAFETENSORS_INDEX + ": ", String.valueOf(CheckpointFiles.MAX_INDEX_BYTES + 1),
                "limit of " + CheckpointFiles.MAX_INDEX_BYTES + " bytes");
    }
}
