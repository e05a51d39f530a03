package io.based4j.checkpoint;

import io.based4j.checkpoint.TorchFixtures.Pickle;
import io.based4j.json.Json;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TorchCheckpointTest {
    private static final float[] STORAGE_0 = {0f, 1.5f, 3f, 4.5f, 6f, 7.5f, 9f, 10.5f};
    private static final float[] STORAGE_1 = {1f, -2.5f, 0.0078125f, 256f};

    @TempDir
    Path dir;

    /**
     * {@code OrderedDict(w=FloatStorage '0'[2:8] as 2x3, b=BFloat16Storage '1' as 4, step=7)} with the
     * {@code _metadata} attribute state a module's state dict carries.
     */
    private static byte[] stateDictPickle() {
        Pickle p = new Pickle().proto(2);
        p.orderedDict(0).op('q').op(1);
        p.mark();
        p.unicode("w").tensor("FloatStorage", "0", 8, 2, new long[] {2, 3}, new long[] {3, 1}, 0);
        p.unicode("b").tensor("BFloat16Storage", "1", 4, 0, new long[] {4}, new long[] {1}, 0);
        p.unicode("step").integer(7);
        p.op('u');
        p.op('}').unicode("_metadata").op('}').op('s').op('b');
        return p.op('.').bytes();
    }

    private static Map<String, byte[]> storages() {
        Map<String, byte[]> storages = new LinkedHashMap<>();
        storages.put("0", TorchFixtures.floats(STORAGE_0));
        storages.put("1", TorchFixtures.bf16(STORAGE_1));
        return storages;
    }

    private Path checkpoint(byte[] pickle, Map<String, byte[]> storages, boolean deflate) throws IOException {
        Path file = dir.resolve("pytorch_model.bin");
        TorchFixtures.writeCheckpoint(file, pickle, storages, deflate);
        return file;
    }

    private static CheckpointException refused(Path file) {
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                TorchCheckpoint.read(file, arena);
            }
        });
        assertTrue(e.getMessage().startsWith(file.getFileName() + ": "), e.getMessage());
        return e;
    }

    private static void assertMessage(CheckpointException e, String... fragments) {
        for (String fragment : fragments) {
            assertTrue(e.getMessage().contains(fragment), "'" + e.getMessage() + "' should mention '" + fragment + "'");
        }
    }

    @Test
    void readsAHandBuiltStateDict() throws IOException {
        Path file = checkpoint(stateDictPickle(), storages(), false);
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(file, arena);
            assertEquals(List.of("w", "b"), List.copyOf(tensors.keySet()), "non-tensor 'step' is skipped");
            Tensor w = tensors.get("w");
            assertEquals(DType.F32, w.dtype());
            assertArrayEquals(new long[] {2, 3}, w.shape());
            assertArrayEquals(Arrays.copyOfRange(STORAGE_0, 2, 8), w.toFloatArray());
            assertTrue(w.data().isMapped(), "stored storages are used in place");
            Tensor b = tensors.get("b");
            assertEquals(DType.BF16, b.dtype());
            assertArrayEquals(new long[] {4}, b.shape());
            assertArrayEquals(STORAGE_1, b.toFloatArray());
        }
    }

    @Test
    void readsDeflatedStorages() throws IOException {
        Path file = checkpoint(stateDictPickle(), storages(), true);
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(file, arena);
            assertArrayEquals(Arrays.copyOfRange(STORAGE_0, 2, 8), tensors.get("w").toFloatArray());
            assertArrayEquals(STORAGE_1, tensors.get("b").toFloatArray());
        }
    }

    @Test
    void copiesNonContiguousViews() throws IOException {
        Pickle p = new Pickle().proto(2).orderedDict(0).mark();
        p.unicode("transposed").tensor("FloatStorage", "0", 8, 0, new long[] {3, 2}, new long[] {1, 3}, 0);
        p.unicode("column").tensor("FloatStorage", "0", 8, 1, new long[] {3}, new long[] {2}, 0);
        p.unicode("row").tensor("FloatStorage", "0", 8, 3, new long[] {1, 3}, new long[] {99, 1}, 0);
        p.op('u').op('.');
        Path file = checkpoint(p.bytes(), Map.of("0", TorchFixtures.floats(STORAGE_0)), false);
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(file, arena);
            float[] s = STORAGE_0;
            assertArrayEquals(new float[] {s[0], s[3], s[1], s[4], s[2], s[5]},
                    tensors.get("transposed").toFloatArray());
            assertArrayEquals(new float[] {s[1], s[3], s[5]}, tensors.get("column").toFloatArray());
            assertArrayEquals(new float[] {s[3], s[4], s[5]}, tensors.get("row").toFloatArray());
            assertTrue(tensors.get("row").data().isMapped(), "size-1 dims may have any stride");
        }
    }

    @Test
    void unwrapsAStateDictNestedUnderAWrapperKey() throws IOException {
        Pickle p = new Pickle().proto(2).op('}').mark();
        p.unicode("epoch").integer(3);
        p.unicode("state_dict").orderedDict(0).mark();
        p.unicode("w").tensor("FloatStorage", "0", 8, 0, new long[] {8}, new long[] {1}, 0);
        p.op('u');
        p.op('u').op('.');
        Path file = checkpoint(p.bytes(), Map.of("0", TorchFixtures.floats(STORAGE_0)), false);
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(file, arena);
            assertEquals(List.of("w"), List.copyOf(tensors.keySet()));
            assertArrayEquals(STORAGE_0, tensors.get("w").toFloatArray());
        }
    }

    @ParameterizedTest
    @CsvSource({"posix, system", "builtins, eval", "__builtin__, eval", "os, system", "subprocess, Popen",
            "torch, load", "collections, namedtuple", "torch._utils, _rebuild_device_tensor_from_numpy"})
    void refusesForbiddenGlobals(String module, String name) throws IOException {
        Path marker = dir.resolve("executed");
        Pickle p = new Pickle().proto(2).global(module, name);
        p.unicode("touch " + marker).op(0x85).op('R').op('.');
        Path file = checkpoint(p.bytes(), Map.of(), false);
        CheckpointException e = refused(file);
        assertEquals("pytorch_model.bin: data.pkl refers to forbidden global '" + module + "." + name
                + "'; only state-dict types are allowed", e.getMessage());
        assertFalse(Files.exists(marker));
    }

    @Test
    void refusesForbiddenStackGlobals() throws IOException {
        Pickle p = new Pickle().proto(4).stackGlobal("builtins", "exec");
        p.shortUnicode("print(1)").op(0x85).op('R').op('.');
        assertMessage(refused(checkpoint(p.bytes(), Map.of(), false)), "forbidden global 'builtins.exec'");
    }

    @Test
    void refusesCallingANonFunction() throws IOException {
        Pickle p = new Pickle().proto(2).global("torch", "FloatStorage").op(')').op('R').op('.');
        assertMessage(refused(checkpoint(p.bytes(), Map.of(), false)),
                "data.pkl calls torch.FloatStorage, which is not a function");
    }

    @ParameterizedTest
    @CsvSource({"10", "100", "0.5", "0.9", "-22", "-1"})
    void refusesTruncatedArchives(String cut) throws IOException {
        Path file = checkpoint(stateDictPickle(), storages(), false);
        byte[] bytes = Files.readAllBytes(file);
        double c = Double.parseDouble(cut);
        int length = c < 0 ? bytes.length + (int) c : c < 1 ? (int) (bytes.length * c) : (int) c;
        Files.write(file, Arrays.copyOf(bytes, length));
        assertMessage(refused(file), "truncated");
    }

    @Test
    void refusesATruncatedPickle() throws IOException {
        byte[] pickle = stateDictPickle();
        Path file = checkpoint(Arrays.copyOf(pickle, pickle.length / 2), storages(), false);
        assertMessage(refused(file), "pytorch_model.bin: data.pkl: pickle ends unexpectedly");
    }

    @Test
    void refusesStoragesThatDoNotMatchTheirEntries() throws IOException {
        Map<String, byte[]> shortStorage = storages();
        shortStorage.put("0", TorchFixtures.floats(1f, 2f));
        assertMessage(refused(checkpoint(stateDictPickle(), shortStorage, false)),
                "storage '0' as 8 elements of FloatStorage (32 bytes), but its archive entry holds 8 bytes");

        Map<String, byte[]> missing = storages();
        missing.remove("1");
        assertMessage(refused(checkpoint(stateDictPickle(), missing, false)),
                "refers to storage '1', but the archive has no entry 'archive/data/1'");
    }

    @Test
    void refusesViewsPastTheirStorage() throws IOException {
        Pickle p = new Pickle().proto(2).orderedDict(0).mark();
        p.unicode("w").tensor("FloatStorage", "0", 8, 4, new long[] {2, 3}, new long[] {3, 1}, 0);
        p.op('u').op('.');
        assertMessage(refused(checkpoint(p.bytes(), storages(), false)),
                "pytorch_model.bin: tensor 'w': ", "reaches element 9, but the storage holds 8 elements");
    }

    @Test
    void refusesLegacyAndNonZipFiles() throws IOException {
        Path legacy = dir.resolve("legacy.bin");
        Files.write(legacy, new Pickle().proto(2).integer(0x1950a86a20f9469cL).op('.').bytes());
        assertMessage(refused(legacy), "legacy torch.save format");

        Path empty = dir.resolve("empty.bin");
        Files.write(empty, new byte[0]);
        assertMessage(refused(empty), "not a zip archive");

        Path text = dir.resolve("notes.bin");
        Files.writeString(text, "just some text, certainly not a zip archive");
        assertMessage(refused(text), "not a zip archive");
    }

    @Test
    void refusesBigEndianArchives() throws IOException {
        Map<String, TorchFixtures.Entry> entries = new LinkedHashMap<>();
        entries.put("archive/data.pkl", TorchFixtures.Entry.stored(stateDictPickle()));
        entries.put("archive/byteorder", TorchFixtures.Entry.stored("big".getBytes(StandardCharsets.US_ASCII)));
        Path file = dir.resolve("pytorch_model.bin");
        TorchFixtures.writeZip(file, entries);
        assertMessage(refused(file), "'big' byte order");
    }

    @Test
    void refusesTopLevelValuesThatAreNotStateDicts() throws IOException {
        Path list = checkpoint(new Pickle().proto(2).op(']').op('.').bytes(), Map.of(), false);
        assertMessage(refused(list), "data.pkl holds a list instead of a state dict");

        Pickle p = new Pickle().proto(2).orderedDict(0);
        p.integer(5).tensor("FloatStorage", "0", 8, 0, new long[] {8}, new long[] {1}, 0);
        Path intKey = checkpoint(p.op('s').op('.').bytes(), storages(), false);
        assertMessage(refused(intKey), "state dict key 5 is of type int, not str");
    }

    @Test
    void refusesUnknownOpcodes() throws IOException {
        Path file = checkpoint(new Pickle().proto(2).op('i').op('.').bytes(), Map.of(), false);
        assertMessage(refused(file), "unsupported pickle opcode 0x69 ('i') at byte 2");
    }

    // ------------------------------------------------------------------ files written by PyTorch itself

    private static Path resource(String name) throws Exception {
        return Path.of(TorchCheckpointTest.class.getResource("/checkpoint/" + name).toURI());
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> expectedValues() throws Exception {
        try (InputStream in = TorchCheckpointTest.class.getResourceAsStream(
                "/checkpoint/torch_state_dict.expected.json")) {
            return Json.parseObject(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        }
    }

    private static void assertMatches(String key, Map<?, ?> expected, Tensor actual) {
        assertEquals(expected.get("dtype"), actual.dtype().name(), key);
        List<?> shape = (List<?>) expected.get("shape");
        assertArrayEquals(shape.stream().mapToLong(d -> (Long) d).toArray(), actual.shape(), key);
        List<?> values = (List<?>) expected.get("values");
        assertEquals(values.size(), actual.numel(), key);
        for (int i = 0; i < values.size(); i++) {
            if (actual.dtype().isFloatingPoint()) {
                assertEquals(((Number) values.get(i)).floatValue(), actual.getFloat(i), key + "[" + i + "]");
            } else {
                assertEquals(((Number) values.get(i)).longValue(), actual.getLong(i), key + "[" + i + "]");
            }
        }
    }

    @Test
    void readsAStateDictSavedByPyTorch() throws Exception {
        Map<String, Object> expected = expectedValues();
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(resource("torch_state_dict.bin"), arena);
            assertEquals(List.copyOf(expected.keySet()), List.copyOf(tensors.keySet()));
            for (Map.Entry<String, Object> e : expected.entrySet()) {
                assertMatches(e.getKey(), (Map<?, ?>) e.getValue(), tensors.get(e.getKey()));
            }
            assertTrue(tensors.get("extra.tail").data().isMapped());
            assertFalse(tensors.get("extra.transposed").data().isMapped(), "a strided view is copied");
        }
    }

    @Test
    void readsAWrappedCheckpointOfParametersSavedByPyTorch() throws Exception {
        Map<String, Object> expected = expectedValues();
        try (Arena arena = Arena.ofConfined()) {
            Map<String, Tensor> tensors = TorchCheckpoint.read(resource("torch_wrapped.bin"), arena);
            assertEquals(List.of("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                    "1.num_batches_tracked"), List.copyOf(tensors.keySet()));
            for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
                assertMatches(e.getKey(), (Map<?, ?>) expected.get(e.getKey()), e.getValue());
            }
        }
    }
}
