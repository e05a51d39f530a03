package io.based4j.train;

import io.based4j.config.ModelConfig;
import io.based4j.json.Json;
import io.based4j.model.Initializer;
import io.based4j.tensor.Tensor;
import io.based4j.train.data.TokenDataset;
import io.based4j.train.data.WindowSampler;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The language-model training loop, readable top to bottom: sample windows of the token shards, run forward and
 * backward over the micro-batches of an update, clip and apply AdamW at the scheduled rate, log, evaluate,
 * checkpoint. Windows are a pure function of (seed, update, index), so a resumed run sees the batches the
 * uninterrupted run would have seen and reproduces its losses exactly.
 */
public final class Trainer {
    private final TrainConfig cfg;
    private final TrainBackend backend;
    private final PrintWriter out;
    private final boolean terminal;
    private boolean overwrite;

    /** What a run did. */
    public record Result(long firstStep, long lastStep, List<Double> losses, Double valLoss, Path checkpoint,
                         double seconds, double tokensPerSecond) {
    }

    public Trainer(TrainConfig cfg, TrainBackend backend, PrintWriter out, boolean terminal) {
        this.cfg = cfg;
        this.backend = backend;
        this.out = out;
        this.terminal = terminal;
    }

    /** Lets a fresh run replace the checkpoints and metrics of an earlier run in the same directory. */
    public Trainer overwrite(boolean value) {
        this.overwrite = value;
        return this;
    }

    /**
     * Trains from scratch, or from {@code resume} (a checkpoint or run directory) when not null, until the configured
     * step count, or until update {@code stopAt} when that is smaller (a run stopped early, as if killed after it).
     */
    public Result run(Path resume, long stopAt) {
        TrainMemory.check(cfg.model(), cfg.batchSize(), cfg.seqLen(), backend);
        try (Arena arena = Arena.ofShared();
             TokenDataset train = TokenDataset.open(cfg.data(), "train");
             TokenDataset val = openValidation()) {
            ModelConfig config = cfg.model();
            TrainModel model;
            AdamW opt;
            long start;
            if (resume != null) {
                Checkpoint.Loaded ck = Checkpoint.read(resume, arena);
                if (!sameModel(ck.config().raw(), config.raw())) {
                    throw new IllegalArgumentException("checkpoint " + ck.dir() + " holds a different model than the"
                            + " settings describe (compare its config.json with the model section)");
                }
                model = new TrainModel(ck.config(), ck.params(), backend, ck.dir().toString());
                opt = new AdamW(model, cfg.optimizer());
                start = ck.step();
                opt.restore(ck.optimizer(), start, ck.dir().resolve(Checkpoint.OPTIMIZER).toString());
                truncateMetrics(start);
                out.printf(Locale.ROOT, "resuming from %s at update %d%n", ck.dir(), start);
            } else {
                Map<String, Tensor> init = Initializer.stateDict(config, Seeds.derive(cfg.seed(), Seeds.INIT), arena);
                model = new TrainModel(config, init, backend, "initializer");
                opt = new AdamW(model, cfg.optimizer());
                start = 0;
                Path checkpoints = cfg.out().resolve("checkpoints");
                if (Files.isDirectory(checkpoints)) {
                    if (!overwrite) {
                        throw new IllegalArgumentException(cfg.out() + " already holds checkpoints of a run: continue it"
                                + " with --resume " + cfg.out() + ", start over with --overwrite, or set another"
                                + " train.out");
                    }
                    Checkpoint.deleteTree(checkpoints);
                }
                Files.createDirectories(cfg.out());
                Files.deleteIfExists(metricsFile());
            }
            checkVocabulary(train, config);
            out.printf(Locale.ROOT, "model: %d layers %s, d %d, %,d parameters; data: %,d train tokens%s; %,d tokens"
                            + " per update (%d x %d x %d)%n", config.nLayer(), layerKinds(config), config.dModel(),
                    model.parameterCount(), train.count(), val == null ? "" : String.format(Locale.ROOT,
                            ", %,d validation tokens", val.count()), cfg.tokensPerStep(), cfg.gradAccum(),
                    cfg.batchSize(), cfg.seqLen());
            return loop(model, opt, train, val, start, Math.min(cfg.steps(), stopAt));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private Result loop(TrainModel model, AdamW opt, TokenDataset train, TokenDataset val, long start, long end) {
        int seqLen = cfg.seqLen();
        int batch = cfg.batchSize();
        int window = seqLen + 1;
        WindowSampler sampler = new WindowSampler(train, window, Seeds.derive(cfg.seed(), Seeds.DATA));
        LrSchedule schedule = cfg.schedule();
        int[] windows = new int[batch * window];
        int[] ids = new int[batch * seqLen];
        int[] targets = new int[batch * seqLen];
        double scale = 1.0 / ((double) batch * seqLen * cfg.gradAccum());
        Progress progress = new Progress(out, terminal, cfg.steps());
        List<Double> losses = new ArrayList<>();
        Double valLoss = null;
        Path lastCheckpoint = null;
        long t0 = System.nanoTime();
        long tokens = 0;
        for (long step = start; step < end; step++) {
            model.zeroGrad();
            double lossSum = 0;
            for (int micro = 0; micro < cfg.gradAccum(); micro++) {
                sampler.batch(step * cfg.gradAccum() + micro, batch, windows);
                split(windows, batch, seqLen, ids, targets);
                lossSum += model.forward(ids, targets, batch, seqLen, true, scale).lossSum();
            }
            double loss = lossSum * scale;
            double lr = schedule.lr(step);
            double gradNorm = opt.update(lr);
            losses.add(loss);
            tokens += cfg.tokensPerStep();
            long done = step + 1;
            double seconds = (System.nanoTime() - t0) / 1e9;
            double tokPerS = tokens / seconds;
            if (done % cfg.logInterval() == 0 || done == end || done == start + 1) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("step", done);
                m.put("loss", loss);
                m.put("lr", lr);
                m.put("grad_norm", gradNorm);
                m.put("tokens", done * cfg.tokensPerStep());
                m.put("tokens_per_s", tokPerS);
                appendMetrics(m);
                progress.update(done, String.format(Locale.ROOT, "loss %.4f lr %.2e gnorm %.3f %,.0f tok/s", loss, lr,
                        gradNorm, tokPerS), (end - done) * seconds / (done - start));
            }
            if (val != null && cfg.evalInterval() > 0 && (done % cfg.evalInterval() == 0 || done == cfg.steps())) {
                valLoss = evaluate(model, val);
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("step", done);
                m.put("val_loss", valLoss);
                m.put("val_ppl", Math.exp(valLoss));
                appendMetrics(m);
                progress.message(String.format(Locale.ROOT, "update %d: validation loss %.4f, perplexity %.2f", done,
                        valLoss, Math.exp(valLoss)));
            }
            if (done == cfg.steps() || (cfg.checkpointInterval() > 0 && done % cfg.checkpointInterval() == 0)) {
                lastCheckpoint = cfg.out().resolve("checkpoints").resolve(Checkpoint.name(done));
                Map<String, Object> facts = new LinkedHashMap<>();
                facts.put("step", done);
                facts.put("tokens", done * cfg.tokensPerStep());
                facts.put("seed", cfg.seed());
                facts.put("loss", loss);
                if (valLoss != null) {
                    facts.put("val_loss", valLoss);
                }
                facts.put("backend", backend.name());
                Checkpoint.write(lastCheckpoint, model, opt, facts);
                progress.message("update " + done + ": checkpoint " + lastCheckpoint);
            }
        }
        progress.finish();
        double seconds = (System.nanoTime() - t0) / 1e9;
        return new Result(start, end, losses, valLoss, lastCheckpoint, seconds, tokens / Math.max(seconds, 1e-9));
    }

    /** Mean loss over fixed, evenly spaced validation windows. */
    public double evaluate(TrainModel model, TokenDataset val) {
        int seqLen = cfg.seqLen();
        int batch = cfg.batchSize();
        int window = seqLen + 1;
        long[] starts = WindowSampler.evalStarts(val.count(), window, cfg.evalBatches() * batch);
        if (starts.length == 0) {
            throw new IllegalArgumentException("the validation split has " + val.count() + " tokens, fewer than one"
                    + " window of " + window);
        }
        int[] windows = new int[batch * window];
        int[] ids = new int[batch * seqLen];
        int[] targets = new int[batch * seqLen];
        double sum = 0;
        long count = 0;
        for (int from = 0; from < starts.length; from += batch) {
            int n = Math.min(batch, starts.length - from);
            for (int i = 0; i < n; i++) {
                val.read(starts[from + i], windows, i * window, window);
            }
            split(windows, n, seqLen, ids, targets);
            int[] idsN = n == batch ? ids : java.util.Arrays.copyOf(ids, n * seqLen);
            int[] tN = n == batch ? targets : java.util.Arrays.copyOf(targets, n * seqLen);
            TrainModel.Pass p = model.forward(idsN, tN, n, seqLen, false, 0);
            sum += p.lossSum();
            count += p.counted();
        }
        return sum / count;
    }

    /** Windows of {@code seqLen + 1} tokens into inputs (all but the last) and targets (all but the first). */
    static void split(int[] windows, int batch, int seqLen, int[] ids, int[] targets) {
        for (int b = 0; b < batch; b++) {
            System.arraycopy(windows, b * (seqLen + 1), ids, b * seqLen, seqLen);
            System.arraycopy(windows, b * (seqLen + 1) + 1, targets, b * seqLen, seqLen);
        }
    }

    private TokenDataset openValidation() {
        try {
            return TokenDataset.open(cfg.data(), "val");
        } catch (IllegalArgumentException e) {
            if (cfg.evalInterval() > 0) {
                out.println("no validation shards in " + cfg.data() + ": validation is skipped");
            }
            return null;
        }
    }

    private void checkVocabulary(TokenDataset data, ModelConfig config) {
        int vocab = data.vocabSize();
        if (vocab > config.vocabSize()) {
            throw new IllegalArgumentException("the data in " + cfg.data() + " was tokenized with a vocabulary of "
                    + vocab + " tokens but the model has vocab_size " + config.vocabSize());
        }
    }

    private static String layerKinds(ModelConfig config) {
        List<String> kinds = new ArrayList<>();
        for (int i = 0; i < config.nLayer(); i++) {
            kinds.add(config.layer(i).kind());
        }
        return "[" + String.join(" ", kinds) + "]";
    }

    private static boolean sameModel(Map<String, Object> a, Map<String, Object> b) {
        return Json.write(a).equals(Json.write(b));
    }

    private Path metricsFile() {
        return cfg.out().resolve("metrics.jsonl");
    }

    private void appendMetrics(Map<String, Object> line) {
        try {
            Files.writeString(metricsFile(), Json.write(line) + "\n", StandardCharsets.UTF_8,
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + metricsFile() + ": " + e.getMessage(), e);
        }
    }

    /** Drops metric lines past the update a run resumes from (they belong to the run that was cut short). */
    private void truncateMetrics(long step) throws IOException {
        Path f = metricsFile();
        if (!Files.exists(f)) {
            return;
        }
        List<String> keep = new ArrayList<>();
        for (String line : Files.readAllLines(f)) {
            Object s = line.isBlank() ? null : Json.parseObject(line).get("step");
            if (s instanceof Number n && n.longValue() <= step) {
                keep.add(line);
            }
        }
        Path tmp = f.resolveSibling(f.getFileName() + ".tmp");
        Files.write(tmp, keep);
        Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
