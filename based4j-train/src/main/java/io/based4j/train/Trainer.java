package io.based4j.train;

import io.based4j.backend.TrainingBackend;
import io.based4j.config.ModelConfig;
import io.based4j.model.Initializer;
import io.based4j.tensor.Tensor;
import io.based4j.train.data.TokenDataset;
import io.based4j.train.data.WindowSampler;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
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
    private final TrainingBackend backend;
    private final PrintWriter out;
    private final boolean terminal;
    private boolean overwrite;

    /** What a run did. */
    public record Result(long firstStep, long lastStep, List<Double> losses, Double valLoss, Path checkpoint,
                         double seconds, double tokensPerSecond) {
    }

    /**
     * @param out receives the progress and the notes of the run (the command line gives it standard error)
     * @param terminal whether {@code out} is a terminal, where the progress line is redrawn in place
     */
    public Trainer(TrainConfig cfg, TrainingBackend backend, PrintWriter out, boolean terminal) {
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
     *
     * <p>Everything that can be checked without the run directory (the data, the windows, the vocabulary) is
     * checked first; then the run directory is locked for this process, and only then is anything in it read,
     * cleaned or written.
     */
    public Result run(Path resume, long stopAt) {
        if (resume != null && !Files.exists(resume)) {
            throw new IllegalArgumentException("checkpoint " + resume + " does not exist");
        }
        if (Files.exists(cfg.out()) && !Files.isDirectory(cfg.out())) {
            throw new IllegalArgumentException("train.out " + cfg.out() + " is not a directory");
        }
        TrainMemory.check(cfg.model(), cfg.batchSize(), cfg.seqLen(), backend);
        try (Arena arena = Arena.ofShared();
             TokenDataset train = TokenDataset.open(cfg.data(), "train");
             TokenDataset val = openValidation()) {
            ModelConfig config = cfg.model();
            checkVocabulary(train, config);
            WindowSampler sampler = new WindowSampler(train, cfg.seqLen() + 1, Seeds.derive(cfg.seed(), Seeds.DATA));
            checkValidation(val);
            try (RunLock lock = lockRunDirectory()) {
                RunDirectory dir = new RunDirectory(cfg.out(), out);
                dir.cleanLeftovers();
                Map<String, Object> facts = RunFacts.of(cfg, train.count());
                Start s = resume == null ? fresh(dir, config, facts, arena)
                        : resume(dir, resume, config, facts, arena);
                out.printf(Locale.ROOT, "model: %d layers %s, d %d, %,d parameters; data: %,d train tokens%s; %,d"
                                + " tokens per update (%d x %d x %d)%n", config.nLayer(), layerKinds(config),
                        config.dModel(), s.model().parameterCount(), train.count(), val == null ? ""
                                : String.format(Locale.ROOT, ", %,d validation tokens", val.count()),
                        cfg.tokensPerStep(), cfg.gradAccum(), cfg.batchSize(), cfg.seqLen());
                return loop(s, sampler, val, Math.min(cfg.steps(), stopAt), dir, facts);
            }
        }
    }

    /** Where a run begins: the model, its optimizer and the updates already done. */
    private record Start(TrainModel model, AdamW opt, long step) {
    }

    private RunLock lockRunDirectory() {
        try {
            return RunLock.acquire(cfg.out());
        } catch (RunLock.BusyException e) {
            throw overwrite ? new RunLock.BusyException("--overwrite refused: " + e.getMessage()) : e;
        }
    }

    /** A new run: refuses a directory with checkpoints unless told to overwrite, then clears what a run wrote. */
    private Start fresh(RunDirectory dir, ModelConfig config, Map<String, Object> facts, Arena arena) {
        if (!dir.checkpointDirs().isEmpty()) {
            if (!overwrite) {
                throw new IllegalArgumentException(cfg.out() + " already holds checkpoints of a run: continue it with"
                        + " --resume " + cfg.out() + ", start over with --overwrite, or set another train.out");
            }
            out.println("--overwrite: removing the checkpoints and metrics of the earlier run in " + cfg.out());
        } else if (Files.exists(dir.metrics())) {
            out.println(cfg.out() + " holds no checkpoint of an earlier run (it stopped before its first one):"
                    + " starting afresh");
        }
        if (overwrite) {
            dir.clear();
        } else {
            dir.clearLog();
        }
        dir.writeFacts(runRecord(config, facts));
        Map<String, Tensor> init = Initializer.stateDict(config, Seeds.derive(cfg.seed(), Seeds.INIT), arena);
        TrainModel model = new TrainModel(config, init, backend, "initializer");
        return new Start(model, new AdamW(model, cfg.optimizer()), 0);
    }

    /**
     * Continues from a checkpoint of the same run (same model and {@link RunFacts}). Checkpoints of this run
     * directory past it are retired and the metrics log is cut back to it.
     */
    private Start resume(RunDirectory dir, Path resume, ModelConfig config, Map<String, Object> facts, Arena arena) {
        Checkpoint.Loaded ck = Checkpoint.read(resume, arena);
        String diff = RunFacts.modelDifference(ck.config().raw(), config.raw());
        if (diff != null) {
            throw new IllegalArgumentException("checkpoint " + ck.dir() + " holds a different model than the settings"
                    + " describe: " + diff);
        }
        RunFacts.check(ck.trainer(), facts, ck.dir().resolve(Checkpoint.TRAINER).toString());
        Path ckRun = ck.dir().toAbsolutePath().getParent();
        if (ckRun != null && ckRun.getFileName().toString().equals(RunDirectory.CHECKPOINTS)) {
            // checkpoints of older versions record only some facts; the run's start recorded them all
            RunDirectory origin = new RunDirectory(ckRun.getParent(), null);
            Map<String, Object> started = origin.readFacts();
            if (started != null) {
                Map<String, Object> missing = new LinkedHashMap<>(started);
                missing.keySet().removeAll(ck.trainer().keySet());
                RunFacts.check(missing, facts, origin.runFile().toString());
            }
        }
        long start = ck.step();
        if (start >= cfg.steps()) {
            throw new IllegalArgumentException("checkpoint " + ck.dir() + " is at update " + start + " and train.steps"
                    + " is " + cfg.steps() + ": nothing is left to train (raise train.steps or --steps)");
        }
        TrainModel model = new TrainModel(ck.config(), ck.params(), backend, ck.dir().toString());
        AdamW opt = new AdamW(model, cfg.optimizer());
        opt.restore(ck.optimizer(), start, ck.dir().resolve(Checkpoint.OPTIMIZER).toString());
        MetricsLog log = new MetricsLog(dir.metrics());
        MetricsLog.Cut cut = log.cutAfter(start, out); // checked before anything is moved
        dir.retireAfter(start);
        log.apply(cut);
        if (dir.readFacts() == null) {
            dir.writeFacts(runRecord(config, facts));
        }
        out.printf(Locale.ROOT, "resuming from %s at update %d%n", ck.dir(), start);
        String wroteOn = ck.trainer().get("backend") + " " + ck.trainer().getOrDefault("precision", "f64");
        String runsOn = backend.name() + " " + backend.precisionName();
        if (ck.trainer().get("backend") != null && !wroteOn.equals(runsOn)) {
            out.println("note: the checkpoint was written on " + wroteOn + " and the run continues on " + runsOn
                    + ": the losses will not repeat the uninterrupted run's exactly (only a resume on the same device"
                    + " and precision does)");
        }
        return new Start(model, opt, start);
    }

    /** What {@code run.json} records: the model and the run facts, with the time they were recorded. */
    private static Map<String, Object> runRecord(ModelConfig config, Map<String, Object> facts) {
        Map<String, Object> run = new LinkedHashMap<>();
        run.put("format", "based4j-run");
        run.put("version", 1L);
        run.put("recorded", Instant.now().truncatedTo(ChronoUnit.SECONDS).toString());
        run.put("model", config.raw());
        run.putAll(facts);
        return run;
    }

    private Result loop(Start s, WindowSampler sampler, TokenDataset val, long end, RunDirectory dir,
                        Map<String, Object> runFacts) {
        TrainModel model = s.model();
        AdamW opt = s.opt();
        long start = s.step();
        MetricsLog metrics = new MetricsLog(dir.metrics());
        int seqLen = cfg.seqLen();
        int batch = cfg.batchSize();
        LrSchedule schedule = cfg.schedule();
        double scale = 1.0 / ((double) batch * seqLen * cfg.gradAccum());
        Progress progress = new Progress(out, terminal, cfg.steps());
        List<Double> losses = new ArrayList<>();
        List<List<TrainingBackend.Readout>> pending = new ArrayList<>();
        Double valLoss = null;
        Path lastCheckpoint = null;
        long t0 = System.nanoTime();
        long tokens = 0;
        try (BatchPrefetcher batches = new BatchPrefetcher(sampler, batch, seqLen)) {
            for (long step = start; step < end; step++) {
                List<TrainingBackend.Readout> micro = new ArrayList<>(cfg.gradAccum());
                double lr = schedule.lr(step);
                AdamW.Norm gradNorm;
                if (cfg.gradAccum() == 1) {
                    // one pass an update: a step the backend may record once and replay
                    BatchPrefetcher.Batch mb = batches.next(step);
                    TrainModel.Step taken = model.trainStep(mb.ids(), mb.targets(), batch, seqLen, scale, opt, lr);
                    micro.add(taken.loss());
                    gradNorm = taken.norm();
                } else {
                    model.zeroGrad();
                    for (int i = 0; i < cfg.gradAccum(); i++) {
                        BatchPrefetcher.Batch mb = batches.next(step * cfg.gradAccum() + i);
                        micro.add(model.trainPass(mb.ids(), mb.targets(), batch, seqLen, scale));
                    }
                    gradNorm = opt.update(lr);
                }
                pending.add(micro);
                tokens += cfg.tokensPerStep();
                long done = step + 1;
                boolean logged = done % cfg.logInterval() == 0 || done == end || done == start + 1;
                boolean checkpoint = done == cfg.steps()
                        || (cfg.checkpointInterval() > 0 && done % cfg.checkpointInterval() == 0);
                // the device is waited for only here: to read the losses when they are logged or saved
                if (logged || checkpoint || pending.size() * cfg.gradAccum() >= MAX_PENDING_LOSSES) {
                    resolve(pending, scale, losses);
                }
                double loss = logged || checkpoint ? losses.getLast() : Double.NaN;
                double seconds = (System.nanoTime() - t0) / 1e9;
                double tokPerS = tokens / seconds;
                if (logged) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("step", done);
                    m.put("loss", loss);
                    m.put("lr", lr);
                    m.put("grad_norm", gradNorm.value());
                    m.put("tokens", done * cfg.tokensPerStep());
                    m.put("tokens_per_s", tokPerS);
                    metrics.append(m);
                    progress.update(done, String.format(Locale.ROOT, "loss %.4f lr %.2e gnorm %.3f %,.0f tok/s", loss,
                            lr, gradNorm.value(), tokPerS), (end - done) * seconds / (done - start));
                }
                if (val != null && cfg.evalInterval() > 0 && (done % cfg.evalInterval() == 0 || done == cfg.steps())) {
                    valLoss = evaluate(model, val);
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("step", done);
                    m.put("val_loss", valLoss);
                    m.put("val_ppl", Math.exp(valLoss));
                    metrics.append(m);
                    progress.message(String.format(Locale.ROOT, "update %d: validation loss %.4f, perplexity %.2f",
                            done, valLoss, Math.exp(valLoss)));
                }
                if (checkpoint) {
                    lastCheckpoint = dir.checkpoints().resolve(Checkpoint.name(done));
                    Map<String, Object> facts = new LinkedHashMap<>();
                    facts.put("step", done);
                    facts.put("tokens", done * cfg.tokensPerStep());
                    facts.put("loss", loss);
                    if (valLoss != null) {
                        facts.put("val_loss", valLoss);
                    }
                    facts.put("backend", backend.name());
                    facts.put("precision", backend.precisionName());
                    facts.putAll(runFacts);
                    opt.requireFinite();
                    Checkpoint.write(lastCheckpoint, model, opt, facts);
                    progress.message("update " + done + ": checkpoint " + lastCheckpoint);
                }
            }
        }
        resolve(pending, scale, losses);
        opt.requireFinite();
        progress.finish();
        double seconds = (System.nanoTime() - t0) / 1e9;
        return new Result(start, end, losses, valLoss, lastCheckpoint, seconds, tokens / Math.max(seconds, 1e-9));
    }

    /** Losses queued on the device at most before the trainer reads them (well under the CUDA backend's ring). */
    private static final int MAX_PENDING_LOSSES = 256;

    /** Reads the queued steps' losses (each the sum of its micro-batches' times {@code scale}) into losses. */
    private static void resolve(List<List<TrainingBackend.Readout>> pending, double scale, List<Double> losses) {
        for (List<TrainingBackend.Readout> step : pending) {
            double sum = 0;
            for (TrainingBackend.Readout r : step) {
                sum += r.value();
            }
            losses.add(sum * scale);
        }
        pending.clear();
    }

    /** Mean loss over fixed, evenly spaced validation windows. */
    public double evaluate(TrainModel model, TokenDataset val) {
        int seqLen = cfg.seqLen();
        int batch = cfg.batchSize();
        int window = seqLen + 1;
        int maxWindows = (int) Math.min(Integer.MAX_VALUE, (long) cfg.evalBatches() * batch);
        long[] starts = WindowSampler.evalStarts(val.count(), window, maxWindows);
        if (starts.length == 0) {
            throw valTooShort(val);
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

    /**
     * The validation split, or null when the data's manifest declares it empty (a note says so when evaluation is
     * on). Any other problem with it is an error, found before training starts: a missing or corrupt shard (too few
     * tokens for one evaluation window is {@link #checkValidation}'s).
     */
    private TokenDataset openValidation() {
        if (!TokenDataset.hasTokens(cfg.data(), "val")) {
            if (cfg.evalInterval() > 0) {
                out.println("note: " + cfg.data() + " holds an empty validation split (tokenized with --val-fraction"
                        + " 0): validation is skipped");
            }
            return null;
        }
        return TokenDataset.open(cfg.data(), "val");
    }

    /** The validation split, when validation runs, must hold one window (found before training, not after it). */
    private void checkValidation(TokenDataset val) {
        if (val != null && cfg.evalInterval() > 0 && val.count() < cfg.seqLen() + 1) {
            throw valTooShort(val);
        }
    }

    private IllegalArgumentException valTooShort(TokenDataset val) {
        return new IllegalArgumentException("the " + val.split() + " split in " + val.dir() + " holds " + val.count()
                + " tokens, fewer than one window of " + (cfg.seqLen() + 1) + " (data.seq_len + 1): use a shorter"
                + " data.seq_len, more validation data, or eval.interval: 0 to skip validation");
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
}
