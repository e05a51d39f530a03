package io.based4j.train;

import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.yaml.snakeyaml.LoaderOptions;
import org.yaml.snakeyaml.Yaml;
import org.yaml.snakeyaml.constructor.SafeConstructor;

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

    /** Reads a settings file (YAML, of which JSON is a subset); relative paths are relative to the file's folder. */
    public static TrainConfig read(Path file) {
        String text;
        try {
            text = Files.readString(file);
        } catch (IOException e) {
            throw new Settings.SettingsException("cannot read training settings " + file + ": " + e.getMessage());
        }
        Object root;
        try {
            String name = file.getFileName().toString();
            root = name.endsWith(".json") ? Json.parse(text) : new Yaml(new SafeConstructor(new LoaderOptions())).load(text);
        } catch (RuntimeException e) {
            throw new Settings.SettingsException(file + " is not valid " + (file.toString().endsWith(".json") ? "JSON" : "YAML")
                    + ": " + e.getMessage().lines().findFirst().orElse(""));
        }
        if (!(root instanceof Map)) {
            throw new Settings.SettingsException(file + ": expected a map of sections (model, data, train, optimizer, ...)");
        }
        @SuppressWarnings("unchecked")
        Settings s = new Settings(file.toString(), "", (Map<String, Object>) root);
        Path base = file.toAbsolutePath().getParent();
        return from(s, base);
    }

    /** Reads the sections of a settings tree. */
    public static TrainConfig from(Settings s, Path base) {
        Map<String, Object> model = ModelSpec.configMap(s.section("model"), base);
        ModelSpec.parse("model settings", model);

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

        Path dataDir = (base == null ? Path.of(dir) : base.resolve(dir)).normalize();
        Path outDir = (base == null ? Path.of(out) : base.resolve(out)).normalize();
        return new TrainConfig(model, dataDir, seqLen, batch, accum, steps, seed, lr, minLr, warmup, warmupInit, adam,
                evalInterval, evalBatches, ckptInterval, logInterval, outDir);
    }
}
