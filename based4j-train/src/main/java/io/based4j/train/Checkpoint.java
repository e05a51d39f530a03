package io.based4j.train;

import io.based4j.checkpoint.Safetensors;
import io.based4j.config.ConfigParser;
import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A training checkpoint: a Hugging Face layout directory that {@code based4j generate --model DIR} and the reference
 * implementation load as they are ({@code config.json} with the complete field set of BASED-SPEC section 1, and
 * float32 {@code model.safetensors}, with the reference's empty MLPs for a model without MLPs: see
 * {@link ReferenceConfig}), plus what resuming needs:
 * {@code optimizer.safetensors} (the parameters exactly, in the backend's storage type, as {@code param.NAME}, and
 * the AdamW moments) and {@code trainer.json} (the update count and run facts).
 *
 * <p>A checkpoint is written into a temporary sibling directory and renamed into place when complete, so a run
 * killed while writing leaves either the previous checkpoint or the new one, never half of one.
 */
public final class Checkpoint {
    public static final String MODEL = "model.safetensors";
    public static final String CONFIG = "config.json";
    public static final String OPTIMIZER = "optimizer.safetensors";
    public static final String TRAINER = "trainer.json";
    /** Checkpoint directories are named {@code step-NNNNNNNN} by the update they hold. */
    public static final String PREFIX = "step-";
    /** trainer.json and run.json hold a few dozen facts; anything near a megabyte is not one of ours. */
    static final long FACTS_MAX_BYTES = 1 << 20;
    private static final String TMP_SUFFIX = ".tmp";

    private Checkpoint() {
    }

    /** A checkpoint read back. */
    public record Loaded(Path dir, ModelConfig config, Map<String, Tensor> params, Map<String, Tensor> optimizer,
                         Map<String, Object> trainer) {
        public long step() {
            Object s = trainer.get("step");
            if (!(s instanceof Number n)) {
                throw new IllegalArgumentException(dir.resolve(TRAINER) + ": 'step' is missing or not a number");
            }
            return n.longValue();
        }
    }

    /** Writes {@code dir} atomically (replacing an older checkpoint of the same name). */
    public static void write(Path dir, TrainModel model, AdamW optimizer, Map<String, Object> trainer) {
        Path tmp = dir.resolveSibling(dir.getFileName() + TMP_SUFFIX);
        deleteTree(tmp);
        createDirectories(tmp);
        writeText(tmp.resolve(CONFIG), Json.writePretty(model.config().raw()) + "\n");
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        meta.put("producer", "based4j train");
        meta.put("step", String.valueOf(optimizer.step()));
        Map<String, Tensor> weights = new LinkedHashMap<>(model.floatStateDict());
        weights.putAll(ReferenceConfig.referenceOnlyTensors(model.config()));
        Safetensors.write(tmp.resolve(MODEL), weights, meta);
        Map<String, Tensor> opt = new LinkedHashMap<>();
        model.exactStateDict().forEach((k, v) -> opt.put("param." + k, v));
        opt.putAll(optimizer.state());
        Safetensors.write(tmp.resolve(OPTIMIZER), opt, Map.of("producer", "based4j train"));
        writeText(tmp.resolve(TRAINER), Json.writePretty(trainer) + "\n");
        Path old = dir.resolveSibling(dir.getFileName() + ".old");
        if (Files.exists(dir)) {
            deleteTree(old);
            AtomicFiles.rename(dir, old);
        }
        AtomicFiles.rename(tmp, dir);
        deleteTree(old);
    }

    private static void createDirectories(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void writeText(Path file, String text) {
        try {
            Files.writeString(file, text, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /** Deletes a file or a directory tree; an error names the file that could not be deleted. */
    public static void deleteTree(Path p) {
        if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        List<Path> all;
        try (Stream<Path> s = Files.walk(p)) {
            all = s.sorted(Comparator.reverseOrder()).toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + p + ": " + e.getMessage(), e);
        } catch (UncheckedIOException e) {
            throw new UncheckedIOException("cannot list " + p + ": " + e.getCause().getMessage(), e.getCause());
        }
        for (Path q : all) {
            try {
                Files.delete(q);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot delete " + q + ": " + e.getMessage(), e);
            }
        }
    }

    /**
     * Reads a checkpoint directory, or the newest {@code step-*} checkpoint under a run directory's
     * {@code checkpoints/}. Every missing or corrupt file is an error naming it.
     */
    public static Loaded read(Path dirOrRun, Arena arena) {
        Path dir = resolve(dirOrRun);
        for (String f : List.of(CONFIG, MODEL, OPTIMIZER, TRAINER)) {
            if (!Files.isRegularFile(dir.resolve(f))) {
                throw new IllegalArgumentException(dir + " is not a complete training checkpoint: " + f + " is missing");
            }
        }
        // read as the settings are, complete: a checkpoint of an earlier version lacks fields it now carries
        Path configFile = dir.resolve(CONFIG);
        ModelConfig config = ModelSpec.parse(configFile.toString(),
                ModelSpec.complete(configFile.toString(), ConfigParser.read(configFile).raw()));
        Map<String, Tensor> opt = Safetensors.read(dir.resolve(OPTIMIZER), arena);
        Map<String, Tensor> params = new LinkedHashMap<>();
        Map<String, Tensor> moments = new LinkedHashMap<>();
        opt.forEach((k, v) -> {
            if (k.startsWith("param.")) {
                params.put(k.substring(6), v);
            } else {
                moments.put(k, v);
            }
        });
        if (params.isEmpty()) {
            throw new IllegalArgumentException(dir.resolve(OPTIMIZER) + " holds no parameters (param.*)");
        }
        Map<String, Object> trainer;
        try {
            trainer = Json.parseObject(Json.readFile(dir.resolve(TRAINER), FACTS_MAX_BYTES));
        } catch (IOException | RuntimeException e) {
            throw new IllegalArgumentException(dir.resolve(TRAINER) + " is not readable JSON: " + e.getMessage(), e);
        }
        return new Loaded(dir, config, params, moments, trainer);
    }

    /** A checkpoint directory itself, or the newest under {@code RUN/checkpoints}. */
    public static Path resolve(Path dirOrRun) {
        for (String f : List.of(TRAINER, OPTIMIZER, MODEL, CONFIG)) {
            if (Files.isRegularFile(dirOrRun.resolve(f))) {
                return dirOrRun; // a checkpoint directory; read() names any file it lacks
            }
        }
        RunDirectory run = new RunDirectory(dirOrRun, null);
        List<Path> checkpoints = run.checkpointDirs();
        if (!checkpoints.isEmpty()) {
            return checkpoints.getLast();
        }
        if (!Files.exists(dirOrRun)) {
            throw new IllegalArgumentException("checkpoint " + dirOrRun + " does not exist");
        }
        if (run.looksLikeRun()) {
            throw new IllegalArgumentException(dirOrRun + " holds no complete checkpoint to resume from (the run"
                    + " stopped before writing its first one): start it afresh without --resume");
        }
        throw new IllegalArgumentException(dirOrRun + " is neither a training checkpoint (no " + TRAINER
                + ") nor a run directory with checkpoints/step-*");
    }

    /** The checkpoint directory name of an update count, sortable by name. */
    public static String name(long step) {
        return String.format(java.util.Locale.ROOT, PREFIX + "%08d", step);
    }
}
