package io.based4j.checkpoint;

import io.based4j.json.IoErrors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds and reads the weights of a model directory laid out as Hugging Face does: a single safetensors file, a
 * sharded safetensors checkpoint with an index, a PyTorch {@code .bin} file, or sharded {@code .bin} files
 * with an index, tried in that order.
 */
public final class CheckpointFiles {
    public static final String SAFETENSORS_FILE = "model.safetensors";
    public static final String SAFETENSORS_INDEX = "model.safetensors.index.json";
    public static final String PYTORCH_FILE = "pytorch_model.bin";
    public static final String PYTORCH_INDEX = "pytorch_model.bin.index.json";

    /**
     * Largest index file read (16 MiB, the JSON reader's default text limit). An index holds one short line per
     * tensor: a thousand tensors take about 100 KB.
     */
    static final long MAX_INDEX_BYTES = Json.DEFAULT_MAX_CHARS;

    /** The file names {@link #open} looks for in a directory, in order of preference. */
    public static final List<String> CANDIDATES = List.of(SAFETENSORS_FILE, SAFETENSORS_INDEX, PYTORCH_FILE,
            PYTORCH_INDEX);

    /** Reads one checkpoint file into a tensor map. */
    @FunctionalInterface
    private interface Reader {
        Map<String, Tensor> read(Path file, Arena arena);
    }

    private CheckpointFiles() {
    }

    /**
     * Reads the checkpoint at {@code path}: a model directory (see {@link #CANDIDATES}), or a single
     * {@code .safetensors}, {@code .bin} / {@code .pt} / {@code .pth} or {@code .index.json} file. Tensors are
     * memory-mapped into {@code arena} and stay valid until it is closed.
     *
     * @throws CheckpointException when nothing readable is found or a file is invalid
     */
    public static LoadedCheckpoint open(Path path, Arena arena) {
        if (Files.isDirectory(path)) {
            for (String name : CANDIDATES) {
                Path file = path.resolve(name);
                if (Files.isRegularFile(file)) {
                    return openFile(file, arena);
                }
            }
            throw new CheckpointException(path + ": no checkpoint found in this directory; looked for "
                    + String.join(", ", CANDIDATES));
        }
        if (Files.isRegularFile(path)) {
            return openFile(path, arena);
        }
        throw new CheckpointException(path + ": no such file or directory");
    }

    private static LoadedCheckpoint openFile(Path file, Arena arena) {
        String name = CheckpointException.name(file);
        if (name.endsWith(".safetensors.index.json")) {
            return openSharded(file, arena, LoadedCheckpoint.SAFETENSORS_SHARDED, Safetensors::read);
        }
        if (name.endsWith(".bin.index.json")) {
            return openSharded(file, arena, LoadedCheckpoint.PYTORCH_SHARDED, TorchCheckpoint::read);
        }
        if (name.endsWith(".safetensors")) {
            return new LoadedCheckpoint(file, Safetensors.read(file, arena), LoadedCheckpoint.SAFETENSORS);
        }
        if (name.endsWith(".bin") || name.endsWith(".pt") || name.endsWith(".pth")) {
            return new LoadedCheckpoint(file, TorchCheckpoint.read(file, arena), LoadedCheckpoint.PYTORCH);
        }
        throw CheckpointException.of(file, "not a recognized checkpoint file; expected a .safetensors, .bin, "
                + ".pt or .pth file, or a .safetensors.index.json or .bin.index.json index");
    }

    /**
     * Reads a sharded checkpoint. The index's {@code weight_map} (tensor name to shard file, relative to the
     * index) is authoritative: every listed tensor must be in its shard, and the result holds exactly the
     * listed tensors, in index order.
     */
    private static LoadedCheckpoint openSharded(Path index, Arena arena, String format, Reader reader) {
        Map<String, String> weightMap = readWeightMap(index);
        Path dir = index.toAbsolutePath().normalize().getParent();

        Map<String, Map<String, Tensor>> shards = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : weightMap.entrySet()) {
            String shard = e.getValue();
            if (shards.containsKey(shard)) {
                continue;
            }
            Path shardFile = dir.resolve(shard).normalize();
            if (!shardFile.startsWith(dir)) {
                throw CheckpointException.ofTensor(index, e.getKey(), "shard '" + shard
                        + "' lies outside the checkpoint directory");
            }
            if (!Files.isRegularFile(shardFile)) {
                throw CheckpointException.ofTensor(index, e.getKey(), "shard '" + shard + "' does not exist");
            }
            shards.put(shard, reader.read(shardFile, arena));
        }

        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : weightMap.entrySet()) {
            Tensor tensor = shards.get(e.getValue()).get(e.getKey());
            if (tensor == null) {
                throw CheckpointException.ofTensor(index, e.getKey(), "the index places it in shard '"
                        + e.getValue() + "', which does not contain it");
            }
            tensors.put(e.getKey(), tensor);
        }
        return new LoadedCheckpoint(index, tensors, format);
    }

    private static Map<String, String> readWeightMap(Path index) {
        Map<String, Object> json;
        try {
            json = Json.parseObject(Json.readFile(index, MAX_INDEX_BYTES));
        } catch (IOException e) {
            throw CheckpointException.of(index, "cannot read file: " + IoErrors.reason(e), e);
        } catch (JsonException e) {
            throw CheckpointException.of(index, "not a valid index: " + e.getMessage(), e);
        }
        if (!(json.get("weight_map") instanceof Map<?, ?> map)) {
            throw CheckpointException.of(index, "index has no 'weight_map' object");
        }
        if (map.isEmpty()) {
            throw CheckpointException.of(index, "index 'weight_map' is empty");
        }
        Map<String, String> weightMap = new LinkedHashMap<>();
        List<String> bad = new ArrayList<>();
        for (Map.Entry<?, ?> e : map.entrySet()) {
            if (e.getValue() instanceof String shard && !shard.isEmpty()) {
                weightMap.put((String) e.getKey(), shard);
            } else {
                bad.add((String) e.getKey());
            }
        }
        if (!bad.isEmpty()) {
            throw CheckpointException.ofTensor(index, bad.getFirst(), "'weight_map' value is not a shard file name");
        }
        return weightMap;
    }
}
