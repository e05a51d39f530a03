package io.based4j.train;

import io.based4j.config.ModelConfig;
import io.based4j.json.IoErrors;
import io.based4j.json.Json;
import io.based4j.json.JsonException;
import io.based4j.model.TrainingActivations;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;
import org.yaml.snakeyaml.error.Mark;
import org.yaml.snakeyaml.error.MarkedYAMLException;
import org.yaml.snakeyaml.error.YAMLException;

/**
 * Everything a training run is told: the model shape, the data, the optimizer and schedule, the batch, and when to
 * evaluate, log and checkpoint. Read from a JSON or YAML file (see {@link #read}); every field has the default of
 * BASED-SPEC section 6 scaled to a small run, and an unknown field is an error.
 *
 * @param modelConfig the config.json of the model to train
 * @param data directory of token shards ({@code train-*.bin}, {@code val-*.bin})
 * @param seqLen tokens per training sequence
 * @param batchSize sequences per micro-batch
 * @param gradAccum micro-batches per update
 * @param out run directory: metrics.jsonl and checkpoints/
 */
public record TrainConfig(Map<String, Object> modelConfig, Path data, int seqLen, int batchSize, int gradAccum,
                          long steps, long seed, double lr, double minLr, int warmupSteps, double warmupInitLr,
                          AdamW.Settings optimizer, int evalInterval, int evalBatches, int checkpointInterval,
                          int logInterval, Path out) {

    public ModelConfig model() {
        return ModelSpec.parse("model settings", modelConfig);
    }

    public LrSchedule schedule() {
        return new LrSchedule(lr, warmupSteps, warmupInitLr, minLr, steps);
    }

    /** The same run with another number of updates (the schedule stretches to it). */
    public TrainConfig withSteps(long newSteps) {
        if (newSteps < 1) {
            throw new IllegalArgumentException("the number of updates must be >= 1, got " + newSteps);
        }
        return new TrainConfig(modelConfig, data, seqLen, batchSize, gradAccum, newSteps, seed, lr, minLr, warmupSteps,
                warmupInitLr, optimizer, evalInterval, evalBatches, checkpointInterval, logInterval, out);
    }

    /** Tokens per update. */
    public long tokensPerStep() {
        return (long) seqLen * batchSize * gradAccum;
    }

    /** Largest settings file read (1 MiB): a settings file is a few dozen lines, under 2 KB. */
    public static final long MAX_FILE_BYTES = 1L << 20;

    /**
     * Most YAML aliases ({@code *name}) to collections in one settings file. Settings need few if any; a small
     * number keeps a file of nested aliases ("billion laughs") from expanding into an enormous tree.
     */
    static final int MAX_YAML_COLLECTION_ALIASES = 16;

    /**
     * Reads a settings file (YAML, of which JSON is a subset; a {@code .json} file is read as strict JSON);
     * relative paths are relative to the file's folder. The file is refused unread above {@link #MAX_FILE_BYTES},
     * and nesting beyond {@link Json#MAX_DEPTH} levels is refused in either syntax.
     */
    public static TrainConfig read(Path file) {
        Settings s = readSettings(file, "training settings", "a map of sections (model, data, train, optimizer, ...)");
        Path base = file.toAbsolutePath().getParent();
        return from(s, base);
    }

    /**
     * Reads a settings file ({@code what}: "training settings") as {@link #read} does, into the settings of its
     * top-level map; {@code expected} says what that map holds, for a file whose top level is not one.
     */
    public static Settings readSettings(Path file, String what, String expected) {
        boolean json = file.getFileName() != null && file.getFileName().toString().endsWith(".json");
        String text;
        try {
            text = Json.readFile(file, MAX_FILE_BYTES);
        } catch (JsonException e) {
            throw new Settings.SettingsException(file + ": " + e.getMessage());
        } catch (IOException e) {
            throw new Settings.SettingsException("cannot read " + what + " " + file + ": " + IoErrors.reason(e));
        }
        Object root;
        try {
            root = json ? Json.parse(text, MAX_FILE_BYTES) : parseYaml(text);
        } catch (JsonException e) {
            throw new Settings.SettingsException(file + " is not valid JSON: " + e.getMessage());
        } catch (YAMLException e) {
            throw new Settings.SettingsException(file + " is not valid YAML: " + yamlProblem(e));
        }
        if (!(root instanceof Map)) {
            throw new Settings.SettingsException(file + ": expected " + expected);
        }
        if (!json) {
            checkTree(file, root, Collections.newSetFromMap(new IdentityHashMap<>()),
                    Collections.newSetFromMap(new IdentityHashMap<>()));
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> map = (Map<String, Object>) root;
        return new Settings(file.toString(), "", map);
    }

    /** Loads YAML with limits on nesting, length and aliases, refusing duplicate and recursive keys. */
    private static Object parseYaml(String text) {
        LoaderOptions options = new LoaderOptions();
        options.setNestingDepthLimit(Json.MAX_DEPTH);
        options.setCodePointLimit((int) MAX_FILE_BYTES);
        options.setMaxAliasesForCollections(MAX_YAML_COLLECTION_ALIASES);
        options.setAllowRecursiveKeys(false);
        options.setAllowDuplicateKeys(false);
        return new Yaml(new SafeConstructor(options)).load(text);
    }

    /** A YAML error in one line: the problem and where it is. */
    private static String yamlProblem(YAMLException e) {
        if (e instanceof MarkedYAMLException m && m.getProblem() != null) {
            Mark at = m.getProblemMark();
            return m.getProblem() + (at == null ? "" : " at line " + (at.getLine() + 1) + ", column " + (at.getColumn() + 1));
        }
        String msg = e.getMessage();
        if (msg == null || msg.isBlank()) {
            return "unreadable";
        }
        if (msg.startsWith("Nesting Depth exceeded")) {
            return "collections nest deeper than the limit of " + Json.MAX_DEPTH + " levels";
        }
        return msg.lines().findFirst().orElse("").strip();
    }

    /**
     * Checks a loaded YAML tree: every key is a string (settings are named), and no collection contains itself
     * (YAML aliases can build cycles, which nothing downstream could walk). {@code done} holds the collections
     * already checked, so shared ones (aliases) are walked once.
     */
    private static void checkTree(Path file, Object node, Set<Object> path, Set<Object> done) {
        if (!(node instanceof Map<?, ?> || node instanceof List<?>) || done.contains(node)) {
            return;
        }
        if (!path.add(node)) {
            throw new Settings.SettingsException(file + ": a YAML alias makes a collection contain itself");
        }
        if (node instanceof Map<?, ?> map) {
            for (Map.Entry<?, ?> e : map.entrySet()) {
                if (!(e.getKey() instanceof String)) {
                    throw new Settings.SettingsException(file + ": setting names must be text, found the key '"
                            + Settings.shorten(e.getKey()) + "'");
                }
                checkTree(file, e.getValue(), path, done);
            }
        } else {
            for (Object o : (List<?>) node) {
                checkTree(file, o, path, done);
            }
        }
        path.remove(node);
        done.add(node);
    }

    /** Longest Java array: a micro-batch's token windows, and each of its activations, are held in one array. */
    static final long MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

    /** Refuses a micro-batch whose tokens, or whose widest activation, cannot be held in one array. */
    private static void checkMicroBatch(Settings s, ModelConfig model, int seqLen, int batch) {
        String hint = "; lower train.batch_size (and raise train.grad_accum) or data.seq_len";
        long windows = (long) batch * (seqLen + 1L);
        if (windows > MAX_ARRAY_LENGTH) {
            throw s.problem("train.batch_size " + batch + " x (data.seq_len " + seqLen + " + 1) = " + windows
                    + " tokens per micro-batch, more than one array holds (" + MAX_ARRAY_LENGTH + ")" + hint);
        }
        long tokens = (long) batch * seqLen;
        long width = TrainingActivations.widest(model);
        if (tokens > MAX_ARRAY_LENGTH / width) {
            throw s.problem("train.batch_size " + batch + " x data.seq_len " + seqLen + " = " + tokens
                    + " tokens per micro-batch, times " + width + " values per token in the model's widest activation,"
                    + " is more than one array holds (" + MAX_ARRAY_LENGTH + ")" + hint);
        }
    }

    /** Reads the sections of a settings tree. */
    public static TrainConfig from(Settings s, Path base) {
        Map<String, Object> model = ModelSpec.configMap(s.section("model"), base);
        ModelConfig modelConfig = ModelSpec.parse(s.source() + ": model", model);

        Settings data = s.section("data");
        String dir = data.string("dir", null);
        if (dir == null) {
            throw new Settings.SettingsException("data.dir must name a folder of token shards (made by"
                    + " 'based4j data tokenize')");
        }
        int seqLen = data.integer("seq_len", 256, 2, 1 << 20);
        data.finish();

        Settings train = s.section("train");
        long steps = train.integer("steps", 1000L, 1L, Long.MAX_VALUE / 2);
        int batch = train.integer("batch_size", 8, 1, 1 << 20);
        int accum = train.integer("grad_accum", 1, 1, 1 << 20);
        long seed = train.integer("seed", 0L, Long.MIN_VALUE, Long.MAX_VALUE);
        int logInterval = train.integer("log_interval", 10, 1, Integer.MAX_VALUE);
        String out = train.string("out", "runs/train");
        train.finish();

        Settings opt = s.section("optimizer");
        double lr = opt.number("lr", 8e-4, 1e-12, 10);
        double minLr = opt.number("min_lr", lr / 10, 0, lr);
        int warmup = opt.integer("warmup_steps", (int) Math.min(200, steps / 10), 0, Integer.MAX_VALUE);
        double warmupInit = opt.number("warmup_init_lr", Math.min(1e-6, lr), 0, lr);
        java.util.List<Double> betas = opt.numbers("betas");
        if (betas != null && betas.size() != 2) {
            throw opt.error("betas", "two numbers", betas);
        }
        AdamW.Settings d = AdamW.Settings.DEFAULTS;
        AdamW.Settings adam = new AdamW.Settings(betas == null ? d.beta1() : betas.get(0),
                betas == null ? d.beta2() : betas.get(1), opt.number("eps", d.eps(), 1e-30, 1),
                opt.number("weight_decay", d.weightDecay(), 0, 10), opt.number("grad_clip", d.gradClip(), 0, 1e12));
        opt.finish();

        Settings eval = s.section("eval");
        int evalInterval = eval.integer("interval", 100, 0, Integer.MAX_VALUE);
        int evalBatches = eval.integer("batches", 8, 1, 1 << 20);
        eval.finish();

        Settings ckpt = s.section("checkpoint");
        int ckptInterval = ckpt.integer("interval", 500, 0, Integer.MAX_VALUE);
        ckpt.finish();
        s.finish();
        checkMicroBatch(s, modelConfig, seqLen, batch);

        Path dataDir = (base == null ? Path.of(dir) : base.resolve(dir)).normalize();
        Path outDir = (base == null ? Path.of(out) : base.resolve(out)).normalize();
        return new TrainConfig(model, dataDir, seqLen, batch, accum, steps, seed, lr, minLr, warmup, warmupInit, adam,
                evalInterval, evalBatches, ckptInterval, logInterval, outDir);
    }
}
