package io.based4j.checkpoint;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipFile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ZipArchiveTest {
    @TempDir
    Path dir;

    /**
     * A zip of stored entries in which every size and offset is given in ZIP64 extra fields and the directory is
     * found through the ZIP64 end records, as writers do for archives over 4 GB.
     */
    static byte[] zip64(Map<String, byte[]> entries) {
        ByteBuffer out = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
        List<Long> offsets = new java.util.ArrayList<>();
        for (Map.Entry<String, byte[]> e : entries.entrySet()) {
            byte[] name = e.getKey().getBytes(StandardCharsets.UTF_8);
            byte[] data = e.getValue();
            offsets.add((long) out.position());
            out.putInt(0x04034b50).putShort((short) 45).putShort((short) 0).putShort((short) 0)
                    .putShort((short) 0).putShort((short) 0x21).putInt(crc(data)).putInt(-1).putInt(-1)
                    .putShort((short) name.length).putShort((short) 20).put(name)
                    .putShort((short) 1).putShort((short) 16).putLong(data.length).putLong(data.length)
                    .put(data);
        }
        long directoryOffset = out.position();
        int i = 0;
        for (Map.Entry<String, byte[]> e : entries.entrySet()) {
            byte[] name = e.getKey().getBytes(StandardCharsets.UTF_8);
            byte[] data = e.getValue();
            out.putInt(0x02014b50).putShort((short) 45).putShort((short) 45).putShort((short) 0)
                    .putShort((short) 0).putShort((short) 0).putShort((short) 0x21).putInt(crc(data))
                    .putInt(-1).putInt(-1).putShort((short) name.length).putShort((short) 28)
                    .putShort((short) 0).putShort((short) 0).putShort((short) 0).putInt(0).putInt(-1).put(name)
                    .putShort((short) 1).putShort((short) 24).putLong(data.length).putLong(data.length)
                    .putLong(offsets.get(i++));
        }
        long directorySize = out.position() - directoryOffset;
        long zip64End = out.position();
        out.putInt(0x06064b50).putLong(44).putShort((short) 45).putShort((short) 45).putInt(0).putInt(0)
                .putLong(entries.size()).putLong(entries.size()).putLong(directorySize).putLong(directoryOffset);
        out.putInt(0x07064b50).putInt(0).putLong(zip64End).putInt(1);
        out.putInt(0x06054b50).putShort((short) 0).putShort((short) 0).putShort((short) -1).putShort((short) -1)
                .putInt(-1).putInt(-1).putShort((short) 0);
        byte[] bytes = new byte[out.position()];
        out.flip().get(bytes);
        return bytes;
    }

    private static int crc(byte[] data) {
        CRC32 crc = new CRC32();
        crc.update(data);
        return (int) crc.getValue();
    }

    private static ZipArchive open(Path file, Arena arena) throws IOException {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            return ZipArchive.read(file, channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena));
        }
    }

    @Test
    void readsZip64ExtraFieldsAndEndRecords() throws IOException {
        Map<String, byte[]> entries = new LinkedHashMap<>();
        entries.put("archive/data.pkl", "pickle".getBytes(StandardCharsets.US_ASCII));
        entries.put("archive/data/0", new byte[] {1, 2, 3, 4, 5});
        entries.put("archive/data/empty", new byte[0]);
        Path file = dir.resolve("zip64.bin");
        Files.write(file, zip64(entries));

        try (ZipFile reference = new ZipFile(file.toFile())) {
            assertEquals(3, reference.size(), "the hand-made ZIP64 archive is valid");
        }
        try (Arena arena = Arena.ofConfined()) {
            ZipArchive zip = open(file, arena);
            assertEquals(List.copyOf(entries.keySet()), List.copyOf(zip.entries().keySet()));
            for (Map.Entry<String, byte[]> e : entries.entrySet()) {
                ZipArchive.Entry entry = zip.entry(e.getKey());
                assertArrayEquals(e.getValue(), zip.bytes(entry));
                MemorySegment content = zip.content(entry, arena);
                assertTrue(content.isMapped());
                assertArrayEquals(e.getValue(), content.toArray(ValueLayout.JAVA_BYTE));
            }
        }
    }

    @Test
    void readsZip64ArchivesWithManyEntries() throws IOException {
        Map<String, TorchFixtures.Entry> entries = new LinkedHashMap<>();
        for (int i = 0; i < 70_000; i++) {
            entries.put("e/" + i, TorchFixtures.Entry.stored(new byte[] {(byte) i}));
        }
        Path file = dir.resolve("many.zip");
        TorchFixtures.writeZip(file, entries);
        try (Arena arena = Arena.ofConfined()) {
            ZipArchive zip = open(file, arena);
            assertEquals(70_000, zip.entries().size());
            assertArrayEquals(new byte[] {(byte) 69_999}, zip.bytes(zip.entry("e/69999")));
        }
    }

    @Test
    void detectsDamagedEntries() throws IOException {
        Path file = dir.resolve("damaged.zip");
        Map<String, TorchFixtures.Entry> entries = new LinkedHashMap<>();
        entries.put("a", TorchFixtures.Entry.stored("hello world".getBytes(StandardCharsets.US_ASCII)));
        TorchFixtures.writeZip(file, entries);
        byte[] bytes = Files.readAllBytes(file);
        int at = new String(bytes, StandardCharsets.ISO_8859_1).indexOf("hello");
        bytes[at] = 'j';
        Files.write(file, bytes);
        try (Arena arena = Arena.ofConfined()) {
            ZipArchive zip = open(file, arena);
            CheckpointException e = assertThrows(CheckpointException.class, () -> zip.bytes(zip.entry("a")));
            assertEquals("damaged.zip: archive entry 'a' fails its CRC-32 check; the archive is damaged",
                    e.getMessage());
        }
    }

    @Test
    void torchCheckpointsMayBeZip64() throws IOException {
        TorchFixtures.Pickle p = new TorchFixtures.Pickle().proto(2).orderedDict(0).mark();
        p.unicode("w").tensor("FloatStorage", "0", 2, 0, new long[] {2}, new long[] {1}, 0);
        p.op('u').op('.');
        Map<String, byte[]> entries = new LinkedHashMap<>();
        entries.put("archive/data.pkl", p.bytes());
        entries.put("archive/data/0", TorchFixtures.floats(0.5f, -3f));
        Path file = dir.resolve("pytorch_model.bin");
        Files.write(file, zip64(entries));
        try (Arena arena = Arena.ofConfined()) {
            assertArrayEquals(new float[] {0.5f, -3f}, TorchCheckpoint.read(file, arena).get("w").toFloatArray());
        }
    }
}
