package io.based4j.checkpoint;

import io.based4j.tensor.Tensor;

import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The tensors of a checkpoint, keyed by their names as stored (no key normalization).
 *
 * @param source  the file read: the checkpoint file itself or, for sharded checkpoints, the index file
 * @param tensors tensor name to tensor, in the order the checkpoint lists them (unmodifiable)
 * @param format  one of {@link #SAFETENSORS}, {@link #SAFETENSORS_SHARDED}, {@link #PYTORCH},
 *                {@link #PYTORCH_SHARDED}
 */
public record LoadedCheckpoint(Path source, Map<String, Tensor> tensors, String format) {
    public static final String SAFETENSORS = "safetensors";
    public static final String SAFETENSORS_SHARDED = "safetensors-sharded";
    public static final String PYTORCH = "pytorch";
    public static final String PYTORCH_SHARDED = "pytorch-sharded";

    public LoadedCheckpoint {
        tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
    }
}
