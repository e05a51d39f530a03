package io.based4j.cli;

import io.based4j.checkpoint.CheckpointFiles;
import io.based4j.checkpoint.LoadedCheckpoint;
import io.based4j.checkpoint.Safetensors;
import io.based4j.config.ConfigParser;
import io.based4j.tensor.DType;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code based4j export}: a model folder for inference from a checkpoint (a training checkpoint, a released model):
 * its config.json and the weights as one {@code model.safetensors} in bf16 or float32, written into a folder beside
 * the target and renamed into place once whole.
 */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Write a model folder for inference (config.json and model.safetensors) from a checkpoint,"
                + " with its weights in bf16 (half the size) or float32.",
            "",
            "The folder is written beside --out and renamed into place once complete; an existing --out is only"
                    + " replaced with --overwrite."})
final class ExportCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "DIR", required = true,
            description = "A checkpoint folder (config.json with model.safetensors or pytorch_model.bin).")
    Path model;

    @Option(names = "--out", paramLabel = "DIR", required = true, description = "The model folder to write.")
    Path out;

    @Option(names = "--dtype", paramLabel = "TYPE", defaultValue = "bf16",
            description = "Weights' type: bf16 or f32 (default ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--overwrite", description = "Replace --out if it exists.")
    boolean overwrite;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        if (!dtype.equals("bf16") && !dtype.equals("f32")) {
            throw new UsageException("--dtype must be bf16 or f32, got '" + dtype + "'");
        }
        if (!Files.isDirectory(model)) {
            throw new IllegalArgumentException("--model " + model + ": not a folder");
        }
        Path config = model.resolve("config.json");
        ConfigParser.read(config);  // a bad config is refused before anything is written
        Path target = out.toAbsolutePath().normalize();
        if (target.equals(model.toAbsolutePath().normalize())) {
            throw new UsageException("--out is the --model folder itself");
        }
        if (Files.exists(target) && !overwrite) {
            throw new IllegalArgumentException("--out " + out + " exists; give --overwrite to replace it");
        }
        Path parent = target.getParent();
        if (parent == null || !Files.isDirectory(parent)) {
            throw new IllegalArgumentException("--out " + out + ": folder " + parent + " does not exist");
        }
        // a new folder beside the target (created as any folder is, so its permissions follow the umask)
        Path tmp = parent.resolve("." + target.getFileName() + ".export-" + ProcessHandle.current().pid() + "-"
                + Long.toHexString(System.nanoTime()));
        Files.createDirectory(tmp);
        long params = 0;
        long bytes;
        try {
            Map<String, Tensor> weights = new LinkedHashMap<>();
            try (Arena arena = Arena.ofConfined()) {
                LoadedCheckpoint ckpt = CheckpointFiles.open(model, arena);
                for (Map.Entry<String, Tensor> e : ckpt.tensors().entrySet()) {
                    Tensor t = e.getValue();
                    params += t.numel();
                    weights.put(e.getKey(), convert(t));
                }
                Safetensors.write(tmp.resolve(CheckpointFiles.SAFETENSORS_FILE), weights,
                        Map.of("format", "pt", "producer", "based4j export", "dtype", dtype));
            }
            Files.copy(config, tmp.resolve("config.json"));
            bytes = Files.size(tmp.resolve(CheckpointFiles.SAFETENSORS_FILE));
            swapIn(tmp, target);
        } catch (IOException | RuntimeException e) {
            deleteTree(tmp);
            throw e;
        }
        spec.commandLine().getOut().printf("wrote %s: %,d parameters in %s, %.1f MB%n", out, params, dtype,
                bytes / 1e6);
        return 0;
    }

    /** Float tensors in the chosen type; others (integer buffers) as they are. */
    private Tensor convert(Tensor t) {
        if (t.dtype() != DType.F32 && t.dtype() != DType.BF16 && t.dtype() != DType.F16) {
            return t;
        }
        float[] v = t.toFloatArray();
        return dtype.equals("bf16") ? Tensor.ofBf16(v, t.shape()) : Tensor.ofFloats(v, t.shape());
    }

    /** Renames the finished folder into place; an old one is moved aside first and deleted once the new one is in. */
    private static void swapIn(Path tmp, Path target) throws IOException {
        Path old = null;
        if (Files.exists(target)) {
            old = target.resolveSibling("." + target.getFileName() + ".old-" + ProcessHandle.current().pid());
            Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
        }
        try {
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            if (old != null) {
                Files.move(old, target, StandardCopyOption.ATOMIC_MOVE);
            }
            throw e;
        }
        if (old != null) {
            deleteTree(old);
        }
    }

    private static void deleteTree(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
