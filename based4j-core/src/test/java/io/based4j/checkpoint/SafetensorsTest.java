package io.based4j.checkpoint;

import io.based4j.GoldenModel;
import io.based4j.json.Json;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SafetensorsTest {
    @TempDir
    Path dir;

    static Tensor f16(float[] values, long... shape) {
        MemorySegment seg = MemorySegment.ofArray(new byte[values.length * 2]);
        for (int i = 0; i < values.length; i++) {
            seg.setAtIndex(Tensor.I16_LE, i, Float.floatToFloat16(values[i]));
        }
        return new Tensor(DType.F16, shape, seg);
    }

    private static Map<String, Tensor> sampleTensors() {
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("layers.0.weight", Tensor.ofFloats(new float[] {1.5f, -2f, 3.25f, 4f, 5f, -6.5f}, 2, 3));
        tensors.put("layers.0.bf16", Tensor.ofBf16(new float[] {1f, -0.5f, 256f, 3.140625f}, 4));
        tensors.put("layers.0.f16", f16(new float[] {0.5f, -1.25f, 65504f, 0f}, 2, 2));
        tensors.put("ids", Tensor.ofLongs(new long[] {-1, Long.MAX_VALUE, 0}, 3));
        tensors.put("scalar", Tensor.ofFloats(new float[] {42f}));
        tensors.put("empty", Tensor.ofFloats(new float[0], 0, 5));
        return tensors;
    }

    private static List<String> fileNames(Path dir) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void roundTripKeepsOrderDtypesShapesAndValues() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Map<String, Tensor> written = sampleTensors();
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("format", "pt");
        metadata.put("note", "non-ASCII: ü ∑");
        Safetensors.write(file, written, metadata);

        assertEquals(List.of("model.safetensors"), fileNames(dir));
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> read = Safetensors.read(file, arena);
            assertEquals(List.copyOf(written.keySet()), List.copyOf(read.keySet()));
            for (String key : written.keySet()) {
                Tensor expected = written.get(key);
                Tensor actual = read.get(key);
                assertEquals(expected.dtype(), actual.dtype(), key);
                assertArrayEquals(expected.shape(), actual.shape(), key);
                assertEquals(-1, expected.data().mismatch(actual.data()), key);
                assertTrue(actual.data().isMapped(), key + " is a slice of the mapped file");
            }
            assertArrayEquals(new float[] {1.5f, -2f, 3.25f, 4f, 5f, -6.5f}, read.get("layers.0.weight").toFloatArray());
            assertArrayEquals(new float[] {1f, -0.5f, 256f, 3.140625f}, read.get("layers.0.bf16").toFloatArray());
            assertArrayEquals(new float[] {0.5f, -1.25f, 65504f, 0f}, read.get("layers.0.f16").toFloatArray());
            assertArrayEquals(new long[] {-1, Long.MAX_VALUE, 0}, read.get("ids").toLongArray());
            assertEquals(0, read.get("scalar").rank());
            assertEquals(42f, read.get("scalar").getFloat(0));
            assertArrayEquals(new long[] {0, 5}, read.get("empty").shape());
            assertEquals(0, read.get("empty").data().byteSize());
        }
        assertEquals(metadata, Safetensors.readMetadata(file));
    }

    @Test
    void writesTheStandardLayout() throws IOException {
        Path file = dir.resolve("layout.safetensors");
        Safetensors.write(file, sampleTensors(), Map.of("format", "pt"));
        byte[] bytes = Files.readAllBytes(file);
        long headerLength = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        assertEquals(0, headerLength % 8, "header padded to a multiple of 8");
        String header = new String(bytes, 8, (int) headerLength, StandardCharsets.UTF_8);
        String trimmed = header.stripTrailing();
        assertTrue(trimmed.endsWith("}"));
        assertTrue(header.substring(trimmed.length()).chars().allMatch(c -> c == ' '), "padding is spaces");
        Map<String, Object> json = Json.parseObject(header);
        assertEquals(Map.of("format", "pt"), json.get("__metadata__"));
        assertEquals(List.of("__metadata__", "layers.0.weight", "layers.0.bf16", "layers.0.f16", "ids", "scalar",
                "empty"), List.copyOf(json.keySet()));
        long expectedBegin = 0;
        for (Map.Entry<String, Object> e : json.entrySet()) {
            if (!e.getKey().equals("__metadata__")) {
                List<?> offsets = (List<?>) ((Map<?, ?>) e.getValue()).get("data_offsets");
                assertEquals(expectedBegin, offsets.get(0), "tensors are back to back: " + e.getKey());
                expectedBegin = (Long) offsets.get(1);
            }
        }
        assertEquals(8 + headerLength + expectedBegin, bytes.length);
    }

    @Test
    void noMetadataMeansNoMetadataEntry() throws IOException {
        Path file = dir.resolve("plain.safetensors");
        Safetensors.write(file, Map.of("x", Tensor.ofFloats(new float[] {1f}, 1)), null);
        assertEquals(Map.of(), Safetensors.readMetadata(file));
        assertFalse(Files.readString(file, StandardCharsets.ISO_8859_1).contains("__metadata__"));
    }

    @Test
    void overwriteReplacesTheFile() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Safetensors.write(file, Map.of("a", Tensor.ofFloats(new float[] {1f}, 1)), null);
        Safetensors.write(file, Map.of("b", Tensor.ofFloats(new float[] {2f, 3f}, 2)), Map.of("v", "2"));
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> read = Safetensors.read(file, arena);
            assertEquals(List.of("b"), List.copyOf(read.keySet()));
            assertArrayEquals(new float[] {2f, 3f}, read.get("b").toFloatArray());
        }
        assertEquals(List.of("model.safetensors"), fileNames(dir));
    }

    @Test
    void writeIntoMissingDirectoryFailsAndLeavesNothing() throws IOException {
        Path file = dir.resolve("missing").resolve("model.safetensors");
        CheckpointException e = assertThrows(CheckpointException.class,
                () -> Safetensors.write(file, sampleTensors(), null));
        assertTrue(e.getMessage().startsWith("model.safetensors: "), e.getMessage());
        assertEquals(List.of(), fileNames(dir));
    }

    @Test
    void failureWhileWritingKeepsTheOldFileAndRemovesTheTempFile() throws IOException {
        Path file = dir.resolve("model.safetensors");
        Safetensors.write(file, Map.of("old", Tensor.ofFloats(new float[] {7f}, 1)), null);
        byte[] before = Files.readAllBytes(file);

        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("fine", Tensor.ofFloats(new float[] {1f, 2f}, 2));
        Arena closed = Arena.ofConfined();
        MemorySegment gone = closed.allocate(16);
        tensors.put("freed", new Tensor(DType.F32, new long[] {4}, gone));
        closed.close();

        CheckpointException e = assertThrows(CheckpointException.class,
                () -> Safetensors.write(file, tensors, null));
        assertTrue(e.getMessage().startsWith("model.safetensors: tensor 'freed': "), e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(file));
        assertEquals(List.of("model.safetensors"), fileNames(dir));
    }

    @Test
    void reservedNameIsRefusedBeforeAnythingIsWritten() throws IOException {
        Path file = dir.resolve("model.safetensors");
        CheckpointException e = assertThrows(CheckpointException.class, () -> Safetensors.write(file,
                Map.of("__metadata__", Tensor.ofFloats(new float[] {1f}, 1)), null));
        assertTrue(e.getMessage().contains("__metadata__"), e.getMessage());
        assertEquals(List.of(), fileNames(dir));
    }

    // ------------------------------------------------------------------ golden files

    static List<Path> tinyDirs() {
        return GoldenModel.all();
    }

    @ParameterizedTest
    @MethodSource("tinyDirs")
    void readsTheGoldenModel(Path tiny) {
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> model = Safetensors.read(tiny.resolve("model.safetensors"), arena);
            assertEquals(48, model.size());
            assertEquals("transformer.embeddings.word_embeddings.weight", model.keySet().iterator().next());
            Tensor wqkv = model.get("transformer.layers.2.mixer.Wqkv.weight");
            assertEquals(DType.F32, wqkv.dtype());
            assertArrayEquals(new long[] {192, 64}, wqkv.shape());
            assertEquals(0.2448636144399643f, wqkv.getFloat(0));
            assertEquals(-0.003917560447007418f, wqkv.getFloat(1));
            Tensor lnF = model.get("transformer.ln_f.weight");
            assertArrayEquals(new long[] {64}, lnF.shape());
            assertEquals(1.003959059715271f, lnF.getFloat(0));
            assertArrayEquals(new long[] {128, 1, 3}, model.get("transformer.layers.0.mixer.conv.conv.weight").shape());
        }
        assertEquals(Map.of("format", "pt"), Safetensors.readMetadata(tiny.resolve("model.safetensors")));
    }

    @ParameterizedTest
    @MethodSource("tinyDirs")
    void readsTheGoldenExpectations(Path tiny) {
        Path file = tiny.resolve("expected.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> expected = Safetensors.read(file, arena);
            assertEquals(List.of("input_ids", "hidden_states", "logits"), List.copyOf(expected.keySet()));
            Tensor ids = expected.get("input_ids");
            assertEquals(DType.I64, ids.dtype());
            assertArrayEquals(new long[] {2, 64}, ids.shape());
            assertArrayEquals(new long[] {665, 687, 51, 918, 391, 74, 705, 770},
                    Arrays.copyOf(ids.toLongArray(), 8));
            assertArrayEquals(new long[] {6, 64, 64}, expected.get("hidden_states").shape());
            Tensor logits = expected.get("logits");
            assertArrayEquals(new long[] {2, 64, 1000}, logits.shape());
            assertEquals(-17.01303482055664f, logits.getFloat(0));
        }
        assertEquals("tiny", Safetensors.readMetadata(file).get("preset"));
    }

    @ParameterizedTest
    @MethodSource("tinyDirs")
    void rewritingTheGoldenModelReproducesItByteForByte(Path tiny) throws IOException {
        Path source = tiny.resolve("model.safetensors");
        Path copy = dir.resolve("copy.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            Safetensors.write(copy, Safetensors.read(source, arena), Safetensors.readMetadata(source));
        }
        assertEquals(-1, Files.mismatch(source, copy));
    }

    @Test
    void repositoryCopyMatchesTheSharedGoldenFiles() throws IOException {
        Path shared = GoldenModel.shared();
        org.junit.jupiter.api.Assumptions.assumeTrue(shared != null, "shared golden files not present");
        Path resources = GoldenModel.dir();
        for (String name : List.of("model.safetensors", "expected.safetensors", "config.json", "greedy.json")) {
            assertEquals(-1, Files.mismatch(shared.resolve(name), resources.resolve(name)), name);
        }
    }
}
