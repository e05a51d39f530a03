package io.based4j.train.mqar;

import io.based4j.config.ModelConfig;
import io.based4j.memory.Sizes;
import io.based4j.model.Initializer;
import io.based4j.train.AdamW;
import io.based4j.train.LrSchedule;
import io.based4j.train.ModelSpec;
import io.based4j.train.Progress;
import io.based4j.train.Seeds;
import io.based4j.backend.TrainingBackend;
import io.based4j.train.TrainMemory;
import io.based4j.train.TrainModel;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Trains the paper's two-layer MQAR models (MQAR-SPEC: a short-convolution layer, then the mixer under test; no
 * MLP, no positional embedding, tied embeddings, pre-norm) and scores recall per test slice. Batches hold examples
 * of one slice; an epoch visits every training example once, in an order drawn from the seed.
 */
public final class MqarTrainer {
    /**
     * Test tokens per forward call when scoring at least (long test sequences go in smaller batches); as many as
     * the largest training batch holds where that is more (memory the training passes take anyway).
     */
    private static final int EVAL_TOKENS = 1 << 14;

    /**
     * One MQAR run.
     *
     * @param mixer {@code based}, {@code attention} or {@code sliding}
     * @param window keys a sliding-window query sees back (the state holds {@code window} keys and values)
     * @param heads heads of the mixer (BASED and attention use one in the paper's figure)
     * @param evalEvery updates between test evaluations (0: once per epoch)
     * @param target stop once the accuracy over the whole test set exceeds this
     */
    public record Run(String mixer, int dModel, int featureDim, int window, int heads, double lr, double weightDecay,
                      int epochs, int batchSize, int warmupSteps, List<MqarSlice> train, List<MqarSlice> test,
                      long seed, int evalEvery, double target, double maxMinutes) {
        public Run {
            if (!MqarModel.MIXERS.contains(mixer)) {
                throw new IllegalArgumentException("unknown MQAR mixer '" + mixer + "' (based, attention, sliding)");
            }
            if (train.isEmpty() || test.isEmpty()) {
                throw new IllegalArgumentException("MQAR needs at least one train and one test slice");
            }
        }

        /** The model's config.json: conv layer, then the mixer ({@link MqarModel#configMap}). */
        public Map<String, Object> configMap() {
            return model().configMap(heads);
        }

        public long stateBytes() {
            return MqarGenerator.stateBytes(mixer, dModel, featureDim, window);
        }

        /** The model under test, with the sizes that apply to its mixer. */
        public MqarModel model() {
            return new MqarModel(mixer, dModel, mixer.equals("based") ? featureDim : 0,
                    mixer.equals("sliding") ? window : 0);
        }
    }

    /** Accuracy of one test slice. */
    public record SliceScore(MqarSlice slice, double accuracy, double loss) {
    }

    /** Why a run ended. */
    public enum Stop {
        /** the test accuracy passed the target */
        TARGET("target"),
        /** every epoch was trained */
        EPOCHS("epochs"),
        /** the run's time limit was up */
        TIME_LIMIT("time_limit"),
        /** an update's gradients were not finite (the learning rate is too high) */
        DIVERGED("diverged"),
        /** the run was paused, its state saved to go on from ({@link Pause}): not an end, never recorded */
        PAUSED("paused");

        private final String key;

        Stop(String key) {
            this.key = key;
        }

        /** The name result records use. */
        public String key() {
            return key;
        }
    }

    /**
     * The outcome: scores at the last evaluation, updates and epochs trained, time taken, and why it ended
     * ({@code detail}: what diverged, or null).
     */
    public record Result(List<SliceScore> scores, double accuracy, long steps, double epochs, double seconds,
                         Stop stop, String detail, long stateBytes, long parameters) {
        public boolean reached() {
            return stop == Stop.TARGET;
        }
    }

    private final Run run;
    private final TrainingBackend backend;
    private final PrintWriter out;
    private final boolean terminal;
    private boolean updateLines = true;

    public MqarTrainer(Run run, TrainingBackend backend, PrintWriter out, boolean terminal) {
        this.run = run;
        this.backend = backend;
        this.out = out;
        this.terminal = terminal;
    }

    /**
     * Whether progress lines of updates are printed when {@code out} is not a terminal (a line every ten updates;
     * on by default). Evaluations are always printed, and a terminal always gets the progress bar.
     */
    public MqarTrainer updateLines(boolean print) {
        this.updateLines = print;
        return this;
    }

    /**
     * Where a run keeps its state when it must stop before it ends, and when it must (asked after each update, at a
     * point where the run can go on from exactly: the update counted, the evaluation of that update made). A run
     * given a {@code dir} that holds such a state goes on from it: the same updates, on the same device and
     * precision, as had it never stopped.
     */
    public record Pause(java.nio.file.Path dir, java.util.function.BooleanSupplier due) {
    }

    /** Checks that the run fits, then generates its examples and trains. */
    public Result train() {
        long t0 = System.nanoTime();
        ModelConfig config = config();
        checkMemory(config, true);
        return train(config, MqarData.generate(run.train(), run.test(), run.seed()), t0, null);
    }

    /**
     * Trains on examples generated before ({@link MqarData#generate} of this run's slices and seed), as the runs
     * of a sweep share them.
     *
     * @throws IllegalArgumentException when {@code data} holds other slices or comes from another seed
     */
    public Result train(MqarData data) {
        return train(data, null);
    }

    /**
     * {@link #train(MqarData)}, going on from the state in {@code pause.dir()} where there is one, and saving the
     * state there and returning a result that stops with {@link Stop#PAUSED} when {@code pause.due()} says so before
     * the run ends (its seconds those of all its parts). A finished run leaves the saved state as it was (the caller
     * removes it once the result is kept).
     *
     * @throws IllegalArgumentException when the saved state is of another run, or incomplete
     */
    public Result train(MqarData data, Pause pause) {
        long t0 = System.nanoTime();
        if (!data.matches(run.train(), run.test(), run.seed())) {
            throw new IllegalArgumentException("the MQAR examples given are not those of this run (slices "
                    + run.train() + " and " + run.test() + ", seed " + run.seed() + ")");
        }
        ModelConfig config = config();
        checkMemory(config, false);
        return train(config, data, t0, pause);
    }

    /** Whether {@code dir} holds the saved state of a paused run. */
    public static boolean paused(java.nio.file.Path dir) {
        return java.nio.file.Files.isRegularFile(dir.resolve(io.based4j.train.Checkpoint.TRAINER));
    }

    /**
     * What a paused run's state records of the run, to be the same when it goes on: what names it and its settings,
     * as its result record holds them ({@link MqarRecord}), and the backend and precision it trains on.
     */
    private Map<String, Object> pauseFacts() {
        Map<String, Object> facts = MqarRecord.runKey(run);
        facts.putAll(MqarRecord.settings(run));
        facts.put("backend", backend.name());
        facts.put("precision", backend.precisionName());
        return facts;
    }

    /**
     * Checks, before anything is generated or allocated, that the run fits on the backend with its examples held
     * in memory.
     *
     * @throws io.based4j.memory.NotEnoughMemoryException naming what does not fit
     */
    public void checkMemory() {
        checkMemory(config(), true);
    }

    private ModelConfig config() {
        return ModelSpec.parse("MQAR model", run.configMap());
    }

    private Result train(ModelConfig config, MqarData data, long t0, Pause pause) {
        List<MqarSet> trainSets = data.train();
        List<MqarSet> testSets = data.test();
        try (Arena arena = Arena.ofShared()) {
            // as the reference MQAR trainer (Zoology) sets it up: PyTorch's AdamW defaults, decay on every parameter
            AdamW.Settings adamw = new AdamW.Settings(0.9, 0.999, 1e-8, run.weightDecay(), 1.0);
            TrainModel model;
            AdamW opt;
            long resumed = 0;
            double secondsBefore = 0;
            Map<String, Object> facts = pauseFacts();
            if (pause != null && paused(pause.dir())) {
                io.based4j.train.Checkpoint.Loaded ck;
                try {
                    ck = io.based4j.train.Checkpoint.read(pause.dir(), arena);
                } catch (IllegalArgumentException | io.based4j.checkpoint.CheckpointException e) {
                    throw new IllegalArgumentException("the paused run in " + pause.dir() + " cannot go on: "
                            + e.getMessage() + " (remove " + pause.dir() + " to train the run afresh)", e);
                }
                String differs = MqarRecord.difference(ck.trainer(), facts);
                if (differs != null) {
                    throw new IllegalArgumentException(ck.dir() + " holds a paused run with " + differs + " "
                            + ck.trainer().get(differs) + ", not " + facts.get(differs)
                            + ": remove it to train this run afresh");
                }
                resumed = ck.step();
                if (ck.trainer().get("seconds") instanceof Number n) {
                    secondsBefore = n.doubleValue();
                }
                model = new TrainModel(ck.config(), ck.params(), backend, ck.dir().toString());
                opt = new AdamW(model, adamw, p -> true);
                opt.restore(ck.optimizer(), resumed, ck.dir().resolve(io.based4j.train.Checkpoint.OPTIMIZER)
                        .toString());
            } else {
                model = new TrainModel(config, Initializer.stateDict(config, Seeds.derive(run.seed(), Seeds.INIT),
                        arena), backend, "initializer");
                opt = new AdamW(model, adamw, p -> true);
            }
            // one set of activations, as large as the largest pass, serves every training and test shape
            model.reserveActivations(Math.toIntExact(largestPass().tokens()));
            int[][] plan = epochPlan(trainSets, 0);
            long steps = (long) plan.length * run.epochs();
            LrSchedule schedule = new LrSchedule(run.lr(), run.warmupSteps(), 0.0, 0.0, steps);
            out.printf(Locale.ROOT, "MQAR %s: d %d%s, %,d parameters, state %,d bytes (2^%.1f); %d updates of %d"
                            + " (%d epochs); test %s%n", run.mixer(), run.dModel(), mixerDetail(), model.parameterCount(),
                    run.stateBytes(), Math.log(run.stateBytes()) / Math.log(2), steps, run.batchSize(), run.epochs(),
                    run.test());
            int evalEvery = run.evalEvery() > 0 ? run.evalEvery() : plan.length;
            int perEpoch = plan.length;
            if (resumed > 0) {
                out.printf(Locale.ROOT, "going on from update %d (%s)%n", resumed, pause.dir());
            }
            Progress progress = new Progress(out, terminal, steps);
            List<SliceScore> scores = List.of();
            double accuracy = 0;
            long step = resumed;
            Stop stop = Stop.EPOCHS;
            String detail = null;
            double lossSum = 0;
            int lossCount = 0;
            List<TrainingBackend.Readout> pendingLosses = new ArrayList<>();
            List<Integer> pendingCounts = new ArrayList<>();
            try {
                outer:
                for (int epoch = (int) (resumed / perEpoch); epoch < run.epochs(); epoch++) {
                    if (epoch > 0) {
                        plan = epochPlan(trainSets, epoch);
                    }
                    int first = epoch == resumed / perEpoch ? (int) (resumed % perEpoch) : 0;
                    for (int bi = first; bi < plan.length; bi++) {
                        int[] b = plan[bi];
                        MqarSet set = trainSets.get(b[0]);
                        int n = b.length - 1;
                        int len = set.seqLen();
                        int[] ids = new int[n * len];
                        int[] targets = new int[n * len];
                        for (int i = 0; i < n; i++) {
                            System.arraycopy(set.inputs(), b[i + 1] * len, ids, i * len, len);
                            System.arraycopy(set.targets(), b[i + 1] * len, targets, i * len, len);
                        }
                        int counted = 0;
                        for (int t : targets) {
                            counted += t == TrainingBackend.IGNORE_INDEX ? 0 : 1;
                        }
                        double lr = schedule.lr(step);
                        TrainModel.Step s = model.trainStep(ids, targets, n, len, 1.0 / Math.max(1, counted), opt,
                                lr);
                        TrainingBackend.Readout loss = s.loss();
                        AdamW.Norm norm = s.norm();
                        step++;
                        pendingCounts.add(counted);
                        pendingLosses.add(loss);
                        double seconds = (System.nanoTime() - t0) / 1e9;
                        if (step % 10 == 0 || step == steps) {
                            // the device is waited for only here, to read the losses of the steps since the last
                            // report
                            for (int i = 0; i < pendingLosses.size(); i++) {
                                int c = pendingCounts.get(i);
                                lossSum += c == 0 ? 0 : pendingLosses.get(i).value() / c;
                                lossCount++;
                            }
                            pendingCounts.clear();
                            pendingLosses.clear();
                            double gnorm = norm.value();
                            if (terminal || updateLines) {
                                progress.update(step, String.format(Locale.ROOT,
                                        "loss %.4f lr %.2e gnorm %.3f acc %.3f", lossSum / lossCount, lr, gnorm,
                                        accuracy), (steps - step) * seconds / step);
                            }
                            lossSum = 0;
                            lossCount = 0;
                        }
                        if (step % evalEvery == 0 || step == steps) {
                            opt.requireFinite();
                            scores = evaluate(model, testSets);
                            accuracy = overall(scores);
                            progress.message(String.format(Locale.ROOT,
                                    "update %d (epoch %d, %s): test accuracy %.4f", step, epoch + 1,
                                    Progress.duration(seconds), accuracy));
                            if (accuracy > run.target()) {
                                stop = Stop.TARGET;
                                break outer;
                            }
                        }
                        if (run.maxMinutes() > 0 && secondsBefore + seconds > run.maxMinutes() * 60) {
                            progress.message("stopping: the time limit of " + run.maxMinutes() + " minutes is up");
                            stop = Stop.TIME_LIMIT;
                            break outer;
                        }
                        if (pause != null && step < steps && pause.due().getAsBoolean()) {
                            Map<String, Object> saved = new java.util.LinkedHashMap<>(facts);
                            saved.put("step", step);
                            saved.put("seconds", secondsBefore + (System.nanoTime() - t0) / 1e9);
                            io.based4j.train.Checkpoint.write(pause.dir(), model, opt, saved);
                            progress.message(String.format(Locale.ROOT, "paused after update %d of %d: its state"
                                    + " is in %s", step, steps, pause.dir()));
                            stop = Stop.PAUSED;
                            break outer;
                        }
                    }
                }
            } catch (AdamW.DivergedException e) {
                // a failed update leaves the weights as they were: the model is scored as it stands
                progress.message("stopping: " + e.getMessage());
                stop = Stop.DIVERGED;
                detail = e.getMessage();
                scores = List.of();
            }
            progress.finish();
            if (scores.isEmpty() && stop != Stop.PAUSED) {
                scores = evaluate(model, testSets);
                accuracy = overall(scores);
            }
            model.releaseActivations();
            return new Result(scores, accuracy, step, (double) step / perEpoch,
                    secondsBefore + (System.nanoTime() - t0) / 1e9, stop, detail, run.stateBytes(),
                    model.parameterCount());
        }
    }

    /**
     * Checks, before the examples are generated or the model initialized, that the run fits: the examples of every
     * slice, and a pass over the largest batch of tokens (a training batch, or a batch of test examples when scoring).
     */
    private void checkMemory(ModelConfig config, boolean withExamples) {
        long examples = 0;
        for (List<MqarSlice> slices : List.of(run.train(), run.test())) {
            for (MqarSlice s : slices) {
                examples = Sizes.plus(examples, Sizes.times(s.count(), s.seqLen()));
            }
        }
        Pass largest = largestPass();
        // inputs and targets: two ints per token (not counted again when they are held already)
        TrainMemory.of(config, backend, SETTINGS).withHostData(withExamples ? Sizes.product(2, Integer.BYTES,
                examples) : 0, "examples", "fewer examples (the COUNT of the --train and --test slices)")
                .check(largest.batch(), largest.seqLen());
    }

    /** A pass of {@code batch} sequences of {@code seqLen} tokens. */
    private record Pass(long batch, long seqLen) {
        long tokens() {
            return batch * seqLen;
        }
    }

    /** The largest pass of the run (the first of the most tokens): a training batch, or a batch of test examples. */
    private Pass largestPass() {
        Pass most = new Pass(1, 1);
        for (MqarSlice s : run.train()) {
            Pass p = new Pass(Math.max(1, Math.min(run.batchSize(), s.count())), s.seqLen());
            most = p.tokens() > most.tokens() ? p : most;
        }
        for (MqarSlice s : run.test()) {
            Pass p = new Pass(evalBatch(s), s.seqLen());
            most = p.tokens() > most.tokens() ? p : most;
        }
        return most;
    }

    /** How the command line names the settings a memory check refers to. */
    private static final TrainMemory.Settings SETTINGS = new TrainMemory.Settings("--batch", "slice length L",
            "--d-model");

    /** Test examples scored per forward call. */
    private int evalBatch(MqarSlice slice) {
        long tokens = EVAL_TOKENS;
        for (MqarSlice s : run.train()) {
            tokens = Math.max(tokens, (long) Math.min(run.batchSize(), s.count()) * s.seqLen());
        }
        return (int) Math.max(1, Math.min(slice.count(), tokens / slice.seqLen()));
    }

    private String mixerDetail() {
        return switch (run.mixer()) {
            case "based" -> ", feature dim " + run.featureDim();
            case "sliding" -> ", window " + run.window();
            default -> "";
        };
    }

    /** Batches of one epoch: {@code {slice, example...}}, examples shuffled within slices, batches shuffled. */
    private int[][] epochPlan(List<MqarSet> sets, int epoch) {
        SplittableRandom r = new SplittableRandom(Seeds.derive(run.seed(), 1000 + epoch));
        List<int[]> batches = new ArrayList<>();
        for (int s = 0; s < sets.size(); s++) {
            int count = sets.get(s).count();
            int[] order = new int[count];
            for (int i = 0; i < count; i++) {
                order[i] = i;
            }
            for (int i = count - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            for (int from = 0; from < count; from += run.batchSize()) {
                int n = Math.min(run.batchSize(), count - from);
                int[] b = new int[n + 1];
                b[0] = s;
                System.arraycopy(order, from, b, 1, n);
                batches.add(b);
            }
        }
        for (int i = batches.size() - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int[] t = batches.get(i);
            batches.set(i, batches.get(j));
            batches.set(j, t);
        }
        return batches.toArray(int[][]::new);
    }

    /**
     * Per-slice accuracy: exact argmax match at the query positions, averaged per example, then over examples. The
     * activations of the test batches stay with the model (for the next evaluation) until it releases them.
     */
    public List<SliceScore> evaluate(TrainModel model, List<MqarSet> sets) {
        List<SliceScore> scores = new ArrayList<>();
        for (MqarSet set : sets) {
            int len = set.seqLen();
            int per = evalBatch(set.slice());
            double accSum = 0;
            double lossSum = 0;
            long counted = 0;
            for (int from = 0; from < set.count(); from += per) {
                int n = Math.min(per, set.count() - from);
                int[] ids = java.util.Arrays.copyOfRange(set.inputs(), from * len, (from + n) * len);
                int[] targets = java.util.Arrays.copyOfRange(set.targets(), from * len, (from + n) * len);
                TrainModel.Pass p = model.forward(ids, targets, n, len, false, 0);
                // every example of a slice has numKv queries, so the mean over queries is the mean of per-example means
                accSum += (double) p.correct() / set.numKv();
                lossSum += p.lossSum();
                counted += p.counted();
            }
            scores.add(new SliceScore(set.slice(), accSum / set.count(), lossSum / Math.max(1, counted)));
        }
        return scores;
    }

    /** Accuracy over the whole test set: the per-example accuracies averaged over all examples. */
    static double overall(List<SliceScore> scores) {
        double sum = 0;
        long n = 0;
        for (SliceScore s : scores) {
            sum += s.accuracy() * s.slice().count();
            n += s.slice().count();
        }
        return n == 0 ? 0 : sum / n;
    }
}
