package io.based4j.train.mqar;

import io.based4j.backend.TrainingBackend;
import io.based4j.json.Json;
import io.based4j.train.JsonLinesFile;
import io.based4j.train.Progress;
import io.based4j.train.RunLock;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;

/**
 * An MQAR sweep: every model of a {@link MqarGrid} trained at every learning rate, on examples generated once and
 * shared by all runs, each finished run appended to {@code DIR/results.jsonl} as one {@link MqarRecord} line. The
 * sweep resumes: records already in the file are runs done, and only the others are trained; a torn last line (a
 * sweep stopped while writing it) is cut off with a note. A lock on the directory keeps two sweeps out of it.
 * After each run, {@code DIR/best.jsonl} holds the best record of each model (the paper reports the best of its
 * learning rates), with the number of runs it was chosen from. Several runs may train at the same time
 * ({@link Options#parallel}).
 */
public final class MqarSweep {
    /** The records of the finished runs, one a line. */
    public static final String RESULTS = "results.jsonl";
    /** The best record of each model, one a line, rewritten whole after each run. */
    public static final String BEST = "best.jsonl";
    /**
     * One line per start that trained runs: when it started, its wall-clock seconds (examples generated and runs
     * trained), the runs it trained, found done and left, how many at a time, and where.
     */
    public static final String STARTS = "starts.jsonl";
    /**
     * The saved state of runs paused when a start's time was up ({@link Options#stopAfterMinutes}), a folder a run;
     * the next start goes on from them first and removes each once its record is kept.
     */
    public static final String PAUSED = "paused";

    /** Relative difference below which two learning rates are one (a rate read back from JSON is the same double). */
    private static final double LR_TOLERANCE = 1e-9;

    /**
     * How every run trains besides its model and learning rate.
     *
     * @param maxMinutes a time limit for each run (0: none)
     * @param stopAfterMinutes after this long (0: never) no new run starts and the runs training pause, their state
     *                         saved under {@link #PAUSED}; the sweep goes on where it stopped when started again
     * @param device the device the runs train on, as the records name it
     * @param precision what they compute in, as the records name it
     * @param parallel runs trained at the same time, each on its own backend in a thread of its own (on a GPU: its
     *                 own stream, so that the small models' kernels share the device); 1: one after another
     */
    public record Options(int batch, double weightDecay, int warmup, long seed, int evalEvery, double target,
                          double maxMinutes, double stopAfterMinutes, String device, String precision,
                          int parallel) {
        public Options {
            if (parallel < 1) {
                throw new IllegalArgumentException("parallel runs must be >= 1, got " + parallel);
            }
        }

        /** One run at a time. */
        public Options(int batch, double weightDecay, int warmup, long seed, int evalEvery, double target,
                       double maxMinutes, double stopAfterMinutes, String device, String precision) {
            this(batch, weightDecay, warmup, seed, evalEvery, target, maxMinutes, stopAfterMinutes, device, precision,
                    1);
        }
    }

    /** The best run of one model, chosen from {@code runs} records. */
    public record Best(MqarModel model, Map<String, Object> record, int runs) {
        public double accuracy() {
            return MqarRecord.accuracy(record);
        }

        public double lr() {
            return MqarRecord.lr(record);
        }
    }

    /**
     * What the sweep did: runs trained now, runs found done, runs left for a later start (after
     * {@code stopAfterMinutes}), and the best record of each model in the results.
     */
    public record Outcome(int ran, int skipped, int left, List<Best> best, double seconds, Starts starts) {
    }

    /**
     * What the starts on a sweep's folder add up to ({@link #STARTS}): how many, their seconds, their runs. Null in an
     * {@link Outcome} when the log could not be read.
     */
    public record Starts(int count, double seconds, int runs) {
    }

    /** A run of the grid: its place in the grid (from 1), model and learning rate. */
    record Planned(int index, MqarModel model, double lr) {
    }

    /**
     * The order runs start in: the grid's one after another; with several at a time, the widest models first (the
     * grid's order within a width), so that the runs still going when fewer than {@code parallel} are left, and the
     * device is no longer full, are the quickest.
     */
    static List<Planned> startOrder(List<Planned> pending, int parallel) {
        List<Planned> out = new ArrayList<>(pending);
        if (parallel > 1) {
            out.sort(Comparator.comparingInt((Planned p) -> p.model().dModel()).reversed());
        }
        return out;
    }

    private final Path dir;
    private final MqarGrid grid;
    private final Options options;
    private final Supplier<TrainingBackend> backends;
    private final PrintWriter err;
    private final boolean terminal;

    /**
     * @param backends opens the backend of one run (each run gets its own, closed when it ends, so that nothing one
     *                 run leaves on a device is carried into the next)
     * @param err where progress goes
     * @param terminal whether {@code err} is a terminal (progress bars redrawn in place)
     */
    public MqarSweep(Path dir, MqarGrid grid, Options options, Supplier<TrainingBackend> backends, PrintWriter err,
                     boolean terminal) {
        this.dir = dir;
        this.grid = grid;
        this.options = options;
        this.backends = backends;
        this.err = err;
        this.terminal = terminal;
    }

    /** The run of {@code model} at {@code lr} with the sweep's settings. */
    MqarTrainer.Run run(MqarModel model, double lr) {
        return new MqarTrainer.Run(model.mixer(), model.dModel(), model.featureDim(), model.window(), 1, lr,
                options.weightDecay(), grid.epochs(), options.batch(), options.warmup(), grid.train(), grid.test(),
                options.seed(), options.evalEvery(), options.target(), options.maxMinutes());
    }

    /**
     * Runs what is left of the sweep.
     *
     * @throws RunLock.BusyException when another sweep holds the directory
     * @throws IllegalArgumentException when a record in the results was trained with other settings, or a line
     *                                  before the last is not a record
     */
    public Outcome run() {
        long t0 = System.nanoTime();
        try (RunLock lock = RunLock.acquire(dir, "MQAR sweep", "give another --out")) {
            JsonLinesFile results = new JsonLinesFile(dir.resolve(RESULTS));
            List<JsonLinesFile.Line> records = readResults(results);
            List<Planned> pending = new ArrayList<>();
            int index = 0;
            for (MqarModel model : grid.models()) {
                for (double lr : grid.lrs()) {
                    index++;
                    if (!done(records, model, lr)) {
                        pending.add(new Planned(index, model, lr));
                    }
                }
            }
            pending = startOrder(pending, options.parallel());
            // runs paused by the previous start go on first (they were the first to start)
            List<Planned> resumed = new ArrayList<>();
            for (Planned p : pending) {
                if (MqarTrainer.paused(pausedDir(p))) {
                    resumed.add(p);
                }
            }
            pending.removeAll(resumed);
            pending.addAll(0, resumed);
            int skipped = grid.runs() - pending.size();
            err.printf(Locale.ROOT, "MQAR sweep into %s: grid %s, %s; %d done already, %d to run%s%n", dir,
                    grid.name(), grid.describe(), skipped, pending.size(),
                    resumed.isEmpty() ? "" : " (" + resumed.size() + " going on from where they were paused)");
            err.flush();
            int ran = 0;
            JsonLinesFile starts = new JsonLinesFile(dir.resolve(STARTS));
            String startedAt = java.time.Instant.now().toString();
            pausedNow.set(0);
            stopDue = stopWhen != null ? stopWhen : () -> options.stopAfterMinutes() > 0
                    && (System.nanoTime() - t0) / 60e9 > options.stopAfterMinutes();
            if (!pending.isEmpty()) {
                checkMemory(pending);
                MqarData data = generate();
                ran = options.parallel() == 1 ? runInTurn(pending, data, results, records, t0)
                        : runTogether(pending, data, results, records, t0);
            }
            double seconds = (System.nanoTime() - t0) / 1e9;
            if (ran > 0 || pausedNow.get() > 0) {
                Map<String, Object> start = new LinkedHashMap<>();
                start.put("started", startedAt);
                start.put("seconds", seconds);
                start.put("ran", ran);
                start.put("paused", pausedNow.get());
                start.put("found_done", skipped);
                start.put("left", pending.size() - ran);
                start.put("parallel", options.parallel());
                start.put("device", options.device());
                start.put("precision", options.precision());
                starts.append(start, true);
            }
            return new Outcome(ran, skipped, pending.size() - ran, writeBest(records), seconds, sumStarts(starts));
        }
    }

    /**
     * The starts recorded in {@code file} (a torn last line, left by a kill, is left out with a note). The log only
     * informs: a file that cannot be read is named in a note, and the sum left out (null), the sweep's work being done.
     */
    private Starts sumStarts(JsonLinesFile file) {
        JsonLinesFile.Contents read;
        try {
            read = file.read(o -> o.get("seconds") instanceof Number && o.get("ran") instanceof Number,
                    "a sweep start (a JSON object with seconds and ran)", err);
        } catch (IllegalArgumentException | java.io.UncheckedIOException e) {
            err.println("MQAR sweep: the starts are not summed: " + e.getMessage());
            return null;
        }
        if (read == null) {
            return new Starts(0, 0, 0);
        }
        double seconds = 0;
        int runs = 0;
        for (JsonLinesFile.Line l : read.lines()) {
            seconds += ((Number) l.object().get("seconds")).doubleValue();
            runs += ((Number) l.object().get("ran")).intValue();
        }
        return new Starts(read.lines().size(), seconds, runs);
    }

    /** The runs one after another; returns how many ran. */
    private int runInTurn(List<Planned> pending, MqarData data, JsonLinesFile results,
                          List<JsonLinesFile.Line> records, long t0) {
        int ran = 0;
        for (Planned p : pending) {
            if (pastStop(t0, pending.size() - ran)) {
                break;
            }
            Map<String, Object> record = train(p, data, terminal);
            if (record == null) {
                continue;  // paused: the time is up, and the next turn stops
            }
            finished(p, record, results, records);
            ran++;
        }
        return ran;
    }

    /**
     * {@link Options#parallel} runs at a time, in the grid's order, each finished run appended as it ends (so the
     * results' order is the order they finished in). No run starts after {@code stopAfterMinutes}; the first run
     * that fails stops the others from starting and is thrown once the running ones have ended.
     */
    private int runTogether(List<Planned> pending, MqarData data, JsonLinesFile results,
                            List<JsonLinesFile.Line> records, long t0) {
        AtomicInteger started = new AtomicInteger();
        AtomicInteger ran = new AtomicInteger();
        AtomicReference<RuntimeException> failure =
                new AtomicReference<>();
        AtomicBoolean stopped = new AtomicBoolean();
        int threads = Math.min(options.parallel(), pending.size());
        err.printf(Locale.ROOT, "%d runs at a time%n", threads);
        err.flush();
        List<Thread> workers = new ArrayList<>();
        for (int w = 0; w < threads; w++) {
            workers.add(Thread.ofPlatform().name("mqar-run-" + w).start(() -> {
                while (failure.get() == null && !stopped.get()) {
                    int i = started.getAndIncrement();
                    if (i >= pending.size()) {
                        return;
                    }
                    synchronized (this) {
                        if (stopped.get() || pastStop(t0, pending.size() - ran.get())) {
                            stopped.set(true);
                            return;
                        }
                    }
                    try {
                        Map<String, Object> record = train(pending.get(i), data, false);
                        if (record == null) {
                            continue;  // paused: the time is up, and the next start is refused above
                        }
                        synchronized (this) {
                            finished(pending.get(i), record, results, records);
                        }
                        ran.incrementAndGet();
                    } catch (RuntimeException | Error e) {
                        failure.compareAndSet(null, e instanceof RuntimeException r ? r
                                : new IllegalStateException(e.toString(), e));
                        return;
                    }
                }
            }));
        }
        for (Thread t : workers) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while the runs were training", e);
            }
        }
        if (failure.get() != null) {
            throw failure.get();
        }
        return ran.get();
    }

    /** Whether the start's time is up ({@link #stopDue}), saying so with the runs left. */
    private boolean pastStop(long t0, int left) {
        if (stopDue.getAsBoolean()) {
            double minutes = (System.nanoTime() - t0) / 60e9;
            err.printf(Locale.ROOT, "stopping after %s (--stop-after %s minutes): %d of %d runs left;"
                            + " run the same command again to go on%n", Progress.duration(minutes * 60),
                    options.stopAfterMinutes(), left, grid.runs());
            err.flush();
            return true;
        }
        return false;
    }

    /**
     * Whether this start's time is up: no new run starts and the runs training pause. Once
     * {@link Options#stopAfterMinutes} have passed since the start, unless {@link #stopWhen} says otherwise.
     */
    private java.util.function.BooleanSupplier stopDue;
    private java.util.function.BooleanSupplier stopWhen;
    /** Runs paused by this start. */
    private final java.util.concurrent.atomic.AtomicInteger pausedNow = new java.util.concurrent.atomic.AtomicInteger();

    /** Sets when the start's time is up (for tests: a count of updates rather than minutes). */
    MqarSweep stopWhen(java.util.function.BooleanSupplier due) {
        this.stopWhen = due;
        return this;
    }

    /** Where the run of {@code p} keeps its state while paused: a folder named after its model and rate. */
    Path pausedDir(Planned p) {
        String name = String.format(Locale.ROOT, "%s-d%d-%s-lr%.3e", p.model().mixer(), p.model().dModel(),
                switch (p.model().mixer()) {
                    case "based" -> "f" + p.model().featureDim();
                    case "sliding" -> "w" + p.model().window();
                    default -> "full";
                }, p.lr());
        return dir.resolve(PAUSED).resolve(name);
    }

    /**
     * A finished run: appended to the results, the best rewritten, then the state it was paused with (if it was)
     * removed, its record being kept.
     */
    private void finished(Planned p, Map<String, Object> record, JsonLinesFile results,
                          List<JsonLinesFile.Line> records) {
        results.append(record, true);
        records.add(new JsonLinesFile.Line(records.size() + 1, Json.write(record), record));
        writeBest(records);
        Path paused = pausedDir(p);
        if (Files.exists(paused)) {
            io.based4j.train.Checkpoint.deleteTree(paused);
        }
    }

    /**
     * The records of the results file, checked against the sweep's settings; a torn last line is cut off (with a
     * note) once the others are known to be good.
     */
    private List<JsonLinesFile.Line> readResults(JsonLinesFile results) {
        JsonLinesFile.Contents read = results.read(MqarRecord::readable, "an MQAR result record (a JSON object with"
                + " mixer, d_model, lr and accuracy)", err);
        if (read == null) {
            return new ArrayList<>();
        }
        Map<String, Object> settings = MqarRecord.settings(run(grid.models().getFirst(), grid.lrs().getFirst()));
        for (JsonLinesFile.Line line : read.lines()) {
            String differs = MqarRecord.difference(line.object(), settings);
            if (differs != null) {
                throw new IllegalArgumentException(String.format(Locale.ROOT, "%s: line %d (%s, lr %s) was trained"
                                + " with %s %s, and this sweep trains with %s %s: give another --out, or the same"
                                + " settings to go on with that sweep", results.file(), line.number(),
                        MqarRecord.model(line.object()).label(), MqarRecord.lr(line.object()), differs,
                        line.object().get(differs) == null ? "(none)" : line.object().get(differs), differs,
                        settings.get(differs)));
            }
        }
        results.rewrite(read, read.lines());
        return new ArrayList<>(read.lines());
    }

    private static boolean done(List<JsonLinesFile.Line> records, MqarModel model, double lr) {
        for (JsonLinesFile.Line l : records) {
            double other = MqarRecord.lr(l.object());
            if (MqarRecord.model(l.object()).equals(model)
                    && Math.abs(other - lr) <= LR_TOLERANCE * Math.max(Math.abs(other), Math.abs(lr))) {
                return true;
            }
        }
        return false;
    }

    /** Checks, before the examples are generated, that each model left to train fits with them in memory. */
    private void checkMemory(List<Planned> pending) {
        Set<MqarModel> models = new LinkedHashSet<>();
        for (Planned p : pending) {
            models.add(p.model());
        }
        try (TrainingBackend backend = backends.get()) {
            for (MqarModel m : models) {
                new MqarTrainer(run(m, grid.lrs().getFirst()), backend, err, terminal).checkMemory();
            }
        }
    }

    /** The examples every run shares, generated once. */
    private MqarData generate() {
        long t0 = System.nanoTime();
        long examples = 0;
        for (MqarSlice s : grid.train()) {
            examples += s.count();
        }
        long bytes = MqarData.bytes(grid.train()) + MqarData.bytes(grid.test());
        err.printf(Locale.ROOT, "generating %,d training examples %s and the test set %s (%,d MiB in all), seed %d%n",
                examples, grid.train(), grid.test(), bytes >> 20, options.seed());
        err.flush();
        MqarData data = MqarData.generate(grid.train(), grid.test(), options.seed());
        err.printf(Locale.ROOT, "generated in %.1f s%n", (System.nanoTime() - t0) / 1e9);
        err.flush();
        return data;
    }

    /**
     * Trains one run on its own backend; returns its record. {@code bars}: progress redrawn in place (one run at a
     * time on a terminal); otherwise a line when the run starts and one when it ends.
     */
    private Map<String, Object> train(Planned p, MqarData data, boolean bars) {
        String what = String.format(Locale.ROOT, "run %d/%d: %s, lr %.2e", p.index(), grid.runs(), p.model(), p.lr());
        synchronized (err) {
            err.println(what);
            err.flush();
        }
        MqarTrainer.Run run = run(p.model(), p.lr());
        MqarTrainer.Result r;
        try (TrainingBackend backend = backends.get()) {
            r = new MqarTrainer(run, backend, err, bars).updateLines(false).train(data,
                    new MqarTrainer.Pause(pausedDir(p), stopDue));
        }
        if (r.stop() == MqarTrainer.Stop.PAUSED) {
            pausedNow.incrementAndGet();
            synchronized (err) {
                err.printf(Locale.ROOT, "%s: paused after %,d updates (%.1f epochs) in %s%n", what, r.steps(),
                        r.epochs(), Progress.duration(r.seconds()));
                err.flush();
            }
            return null;
        }
        synchronized (err) {
            err.printf(Locale.ROOT, "%s: accuracy %.4f after %,d updates (%.1f epochs, %s) in %s%n", what,
                    r.accuracy(), r.steps(), r.epochs(), ending(r), Progress.duration(r.seconds()));
            err.flush();
        }
        return MqarRecord.of(run, r, options.device(), options.precision());
    }

    private static String ending(MqarTrainer.Result r) {
        return switch (r.stop()) {
            case TARGET -> "passed the target";
            case EPOCHS -> "every epoch";
            case TIME_LIMIT -> "time limit";
            case DIVERGED -> "diverged";
            case PAUSED -> "paused";
        };
    }

    /**
     * The best record of each model among {@code records}, with the number of records it was chosen from, in order
     * of mixer (based, sliding, attention), state size and width. Of records with equal accuracy the first wins.
     */
    static List<Best> best(List<JsonLinesFile.Line> records) {
        Map<MqarModel, Best> best = new LinkedHashMap<>();
        for (JsonLinesFile.Line l : records) {
            MqarModel m = MqarRecord.model(l.object());
            Best mine = new Best(m, l.object(), 1);
            best.merge(m, mine, (a, b) -> new Best(m, b.accuracy() > a.accuracy() ? b.record() : a.record(),
                    a.runs() + b.runs()));
        }
        List<Best> out = new ArrayList<>(best.values());
        out.sort(Comparator.<Best>comparingInt(b -> MqarModel.MIXERS.indexOf(b.model().mixer()))
                .thenComparingLong(b -> b.model().stateBytes())
                .thenComparingInt(b -> b.model().dModel()));
        return out;
    }

    /** Rewrites {@link #BEST} from {@code records}; returns what it holds. */
    private List<Best> writeBest(List<JsonLinesFile.Line> records) {
        List<Best> best = best(records);
        List<Map<String, Object>> lines = new ArrayList<>();
        for (Best b : best) {
            Map<String, Object> line = new LinkedHashMap<>(b.record());
            line.put("runs", (long) b.runs());
            lines.add(line);
        }
        new JsonLinesFile(dir.resolve(BEST)).replace(lines);
        return best;
    }
}
