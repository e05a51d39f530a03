package io.based4j.checkpoint;

import io.based4j.GoldenModel;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CheckpointFilesTest {
    @TempDir
    Path dir;

    private static Tensor floats(float... values) {
        return Tensor.ofFloats(values, values.length);
    }

    private static Map<String, Tensor> tensors(Object... keysAndTensors) {
        Map<String, Tensor> map = new LinkedHashMap<>();
        for (int i = 0; i < keysAndTensors.length; i += 2) {
            map.put((String) keysAndTensors[i], (Tensor) keysAndTensors[i + 1]);
        }
        return map;
    }

    /** Two shards: a and b in the first, c in the second; the index lists them as a, c, b. */
    private Path shardedSafetensors() throws IOException {
        Safetensors.write(dir.resolve("model-00001-of-00002.safetensors"),
                tensors("a", floats(1f, 2f), "b", floats(3f)), Map.of("format", "pt"));
        Safetensors.write(dir.resolve("model-00002-of-00002.safetensors"),
                tensors("c", Tensor.ofLongs(new long[] {4, 5, 6}, 3)), Map.of("format", "pt"));
        writeIndex("model.safetensors.index.json", """
                {"metadata": {"total_size": 36},
                 "weight_map": {"a": "model-00001-of-00002.safetensors",
                                "c": "model-00002-of-00002.safetensors",
                                "b": "model-00001-of-00002.safetensors"}}""");
        return dir.resolve("model.safetensors.index.json");
    }

    private void writeIndex(String name, String json) throws IOException {
        Files.writeString(dir.resolve(name), json);
    }

    private static CheckpointException refused(Path path) {
        return assertThrows(CheckpointException.class, () -> {
            try (Arena arena = Arena.ofConfined()) {
                CheckpointFiles.open(path, arena);
            }
        });
    }

    @Test
    void readsAShardedSafetensorsCheckpoint() throws IOException {
        Path index = shardedSafetensors();
        try (Arena arena = Arena.ofConfined()) {
            LoadedCheckpoint checkpoint = CheckpointFiles.open(dir, arena);
            assertEquals(LoadedCheckpoint.SAFETENSORS_SHARDED, checkpoint.format());
            assertEquals(index, checkpoint.source());
            assertEquals(List.of("a", "c", "b"), List.copyOf(checkpoint.tensors().keySet()));
            assertArrayEquals(new float[] {1f, 2f}, checkpoint.tensors().get("a").toFloatArray());
            assertArrayEquals(new float[] {3f}, checkpoint.tensors().get("b").toFloatArray());
            assertEquals(DType.I64, checkpoint.tensors().get("c").dtype());
            assertArrayEquals(new long[] {4, 5, 6}, checkpoint.tensors().get("c").toLongArray());

            LoadedCheckpoint viaIndex = CheckpointFiles.open(index, arena);
            assertEquals(List.of("a", "c", "b"), List.copyOf(viaIndex.tensors().keySet()));
        }
    }

    @Test
    void indexKeyMissingFromItsShardIsAnError() throws IOException {
        shardedSafetensors();
        writeIndex("model.safetensors.index.json", """
                {"weight_map": {"a": "model-00001-of-00002.safetensors",
                                "ghost": "model-00002-of-00002.safetensors"}}""");
        CheckpointException e = refused(dir);
        assertEquals("model.safetensors.index.json: tensor 'ghost': the index places it in shard "
                + "'model-00002-of-00002.safetensors', which does not contain it", e.getMessage());
    }

    @Test
    void missingShardIsAnError() throws IOException {
        shardedSafetensors();
        Files.delete(dir.resolve("model-00002-of-00002.safetensors"));
        CheckpointException e = refused(dir);
        assertEquals("model.safetensors.index.json: tensor 'c': shard 'model-00002-of-00002.safetensors' "
                + "does not exist", e.getMessage());
    }

    @Test
    void shardsOutsideTheDirectoryAreRefused() throws IOException {
        writeIndex("model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../elsewhere.safetensors\"}}");
        assertTrue(refused(dir).getMessage().contains("lies outside the checkpoint directory"));
    }

    @Test
    void malformedIndexesAreRefused() throws IOException {
        writeIndex("model.safetensors.index.json", "{\"weight_map\": ");
        assertTrue(refused(dir).getMessage().startsWith("model.safetensors.index.json: not a valid index"));
        writeIndex("model.safetensors.index.json", "{\"metadata\": {}}");
        assertEquals("model.safetensors.index.json: index has no 'weight_map' object", refused(dir).getMessage());
        writeIndex("model.safetensors.index.json", "{\"weight_map\": {\"a\": 3}}");
        assertEquals("model.safetensors.index.json: tensor 'a': 'weight_map' value is not a shard file name",
                refused(dir).getMessage());
    }

    @Test
    void emptyDirectoryListsWhatWasLookedFor() {
        CheckpointException e = refused(dir);
        assertEquals(dir + ": no checkpoint found in this directory; looked for model.safetensors, "
                + "model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json", e.getMessage());
    }

    @Test
    void missingPathIsAnError() {
        Path absent = dir.resolve("absent");
        assertEquals(absent + ": no such file or directory", refused(absent).getMessage());
    }

    @Test
    void prefersSafetensorsOverPyTorch() throws IOException {
        Safetensors.write(dir.resolve("model.safetensors"), tensors("st", floats(1f)), null);
        TorchFixtures.writeCheckpoint(dir.resolve("pytorch_model.bin"), new byte[0], Map.of(), false);
        try (Arena arena = Arena.ofConfined()) {
            LoadedCheckpoint checkpoint = CheckpointFiles.open(dir, arena);
            assertEquals(LoadedCheckpoint.SAFETENSORS, checkpoint.format());
            assertEquals(dir.resolve("model.safetensors"), checkpoint.source());
            assertEquals(List.of("st"), List.copyOf(checkpoint.tensors().keySet()));
        }
    }

    private static byte[] onePickledTensor(String key, float... values) {
        TorchFixtures.Pickle p = new TorchFixtures.Pickle().proto(2).orderedDict(0).mark();
        p.unicode(key).tensor("FloatStorage", "0", values.length, 0, new long[] {values.length}, new long[] {1}, 0);
        return p.op('u').op('.').bytes();
    }

    @Test
    void readsPyTorchFilesAndShards() throws IOException {
        TorchFixtures.writeCheckpoint(dir.resolve("pytorch_model-00001-of-00002.bin"),
                onePickledTensor("x", 1f, 2f), Map.of("0", TorchFixtures.floats(1f, 2f)), false);
        TorchFixtures.writeCheckpoint(dir.resolve("pytorch_model-00002-of-00002.bin"),
                onePickledTensor("y", 3f), Map.of("0", TorchFixtures.floats(3f)), false);
        writeIndex("pytorch_model.bin.index.json", """
                {"weight_map": {"x": "pytorch_model-00001-of-00002.bin", "y": "pytorch_model-00002-of-00002.bin"}}""");
        try (Arena arena = Arena.ofConfined()) {
            LoadedCheckpoint sharded = CheckpointFiles.open(dir, arena);
            assertEquals(LoadedCheckpoint.PYTORCH_SHARDED, sharded.format());
            assertArrayEquals(new float[] {1f, 2f}, sharded.tensors().get("x").toFloatArray());
            assertArrayEquals(new float[] {3f}, sharded.tensors().get("y").toFloatArray());

            LoadedCheckpoint single = CheckpointFiles.open(dir.resolve("pytorch_model-00002-of-00002.bin"), arena);
            assertEquals(LoadedCheckpoint.PYTORCH, single.format());
            assertEquals(List.of("y"), List.copyOf(single.tensors().keySet()));
        }
    }

    @Test
    void opensTheGoldenModelDirectory() {
        try (Arena arena = Arena.ofConfined()) {
            LoadedCheckpoint checkpoint = CheckpointFiles.open(GoldenModel.dir(), arena);
            assertEquals(LoadedCheckpoint.SAFETENSORS, checkpoint.format());
            assertEquals("model.safetensors", checkpoint.source().getFileName().toString());
            assertEquals(48, checkpoint.tensors().size());
            assertArrayEquals(new long[] {1000, 64},
                    checkpoint.tensors().get("transformer.embeddings.word_embeddings.weight").shape());
        }
    }

    @Test
    void unknownFileKindsAreRefused() throws IOException {
        Path file = dir.resolve("weights.npz");
        Files.write(file, new byte[] {1, 2, 3});
        assertTrue(refused(file).getMessage().startsWith("weights.npz: not a recognized checkpoint file"));
    }

    @Test
    void loadedTensorsAreUnmodifiable() throws IOException {
        Safetensors.write(dir.resolve("model.safetensors"), tensors("st", floats(1f)), null);
        try (Arena arena = Arena.ofConfined()) {
            LoadedCheckpoint checkpoint = CheckpointFiles.open(dir, arena);
            assertThrows(UnsupportedOperationException.class, () -> checkpoint.tensors().remove("st"));
        }
    }
}
