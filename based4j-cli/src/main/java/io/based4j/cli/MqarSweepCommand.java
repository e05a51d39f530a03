package io.based4j.cli;

import io.based4j.cli.plot.Headless;
import io.based4j.cli.plot.MqarPlot;
import io.based4j.train.Progress;
import io.based4j.train.mqar.MqarGenerator;
import io.based4j.train.mqar.MqarGrid;
import io.based4j.train.mqar.MqarModel;
import io.based4j.train.mqar.MqarSlice;
import io.based4j.train.mqar.MqarSweep;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "sweep", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"The recall study of the BASED paper's figure 2: train every model of a grid",
                "at every learning rate, and report the best rate of each model against its",
                "state size.",
                "",
                "Each finished run is appended to DIR/results.jsonl (one record a line, as",
                "docs/mqar/RESULTS.md describes). The same command started again goes on",
                "where it stopped: runs with a record are not trained again. The best run of",
                "each model goes to DIR/best.jsonl and the table on standard output, the",
                "chart to DIR/recall.png (the paper's points dashed beside). The examples are",
                "generated once and shared by all runs.",
                "",
                "Grids: 'default' (MQAR-SPEC: BASED d 48, 64, 128 x f 8, 16, 24; sliding",
                "window d 128, w 8 .. 1024; attention d 64, 128; lr 1e-3, 3.2e-3, 1e-2,",
                "3.2e-2; 32 epochs of the paper's 180,000 examples: meant for a GPU),",
                "'quick' (4 models, 2 rates, 8 epochs of 30,000 examples: a smoke run), or a",
                "YAML/JSON file (docs/mqar/SWEEP.md):",
                "  lrs: [1e-3, 1e-2]          # optional, as are epochs, train and test",
                "  models:",
                "    - {mixer: based, d_model: [64, 128], feature_dim: [8, 16]}",
                "    - {mixer: sliding, d_model: 128, window: [32, 64]}",
                "    - {mixer: attention, d_model: 64}",
                ""})
final class MqarSweepCommand implements Callable<Integer> {
    /** The chart written beside the results. */
    static final String CHART = "recall.png";

    @Option(names = "--out", paramLabel = "DIR", required = true,
            description = "Directory of the sweep: results.jsonl, best.jsonl, recall.png (made when missing).")
    Path out;

    @Option(names = "--grid", paramLabel = "GRID", defaultValue = "default",
            description = "default, quick, or a YAML/JSON grid file. Default: ${DEFAULT-VALUE}.")
    String grid;

    @Option(names = "--lrs", paramLabel = "LIST", description = "Learning rates, e.g. 1e-3,3.2e-3 (default: the grid's).")
    String lrs;

    @Option(names = "--epochs", paramLabel = "N", description = "Epochs of every run (default: the grid's).")
    Integer epochs;

    @Option(names = "--train", paramLabel = "SLICES",
            description = "Training mixture: 'paper' or L:KV:COUNT,... (default: the grid's).")
    String train;

    @Option(names = "--test", paramLabel = "SLICES",
            description = "Test slices: 'paper' or L:KV:COUNT,... (default: the grid's).")
    String test;

    @Option(names = "--stop-after", paramLabel = "M", defaultValue = "0",
            description = "After M minutes (0: no limit) start no new run and pause the runs training, their state "
                    + "saved under DIR/" + MqarSweep.PAUSED + " (each goes on from it, update for update, when the "
                    + "same command runs again).")
    double stopAfter;

    @Option(names = "--parallel", paramLabel = "N",
            description = "Runs trained at the same time, each on its own backend (on a GPU its own stream: the small"
                    + " models share the device); 1 to " + MAX_PARALLEL + " (default " + GPU_PARALLEL + " on a GPU,"
                    + " where a few runs side by side keep it busy, 1 on the CPU).")
    Integer parallel;

    /** Most runs at a time: each holds its own backend (about 2 GiB of GPU memory at the paper's shapes). */
    static final int MAX_PARALLEL = 64;
    /**
     * Runs at a time on a GPU by default: on an H200 twelve MQAR runs took the same time 3, 6 or 12 at a time, the
     * device being the limit from about 3 on.
     */
    static final int GPU_PARALLEL = 4;

    @CommandLine.Mixin
    MqarRunOptions options = new MqarRunOptions();

    @CommandLine.Mixin
    TrainDeviceOptions deviceOptions = new TrainDeviceOptions();

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        options.check();
        deviceOptions.check();
        if (!(stopAfter >= 0)) {
            throw new UsageException("--stop-after must be >= 0 minutes, got " + stopAfter);
        }
        if (parallel == null) {
            parallel = deviceOptions.device.equals("cpu") ? 1 : GPU_PARALLEL;
        }
        if (parallel < 1 || parallel > MAX_PARALLEL) {
            throw new UsageException("--parallel must be between 1 and " + MAX_PARALLEL + ", got " + parallel);
        }
        MqarGrid g = grid();
        if (Files.exists(out, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(out)) {
            throw new IllegalArgumentException("--out " + out + ": is not a directory");
        }
        PrintWriter err = spec.commandLine().getErr();
        MqarSweep.Options o = new MqarSweep.Options(options.batch, options.weightDecay, options.warmup, options.seed,
                options.evalEvery, options.target, options.maxMinutes, stopAfter, deviceOptions.device,
                deviceOptions.precisionName(), parallel);
        MqarSweep.Outcome outcome = new MqarSweep(out, g, o, deviceOptions::open, err,
                Progress.stderrTerminal()).run();
        printTable(outcome.best(), spec.commandLine().getOut());
        MqarSweep.Starts starts = outcome.starts();
        err.printf(Locale.ROOT, "[based4j] %d runs trained now in %s, %d found done%s; results in %s%s%n",
                outcome.ran(), Progress.duration(outcome.seconds()), outcome.skipped(),
                outcome.left() > 0 ? ", " + outcome.left() + " left" : "", out.resolve(MqarSweep.RESULTS),
                starts != null && starts.count() > 1 ? String.format(Locale.ROOT,
                        "; the %d starts on %s took %s for %d runs (%s)", starts.count(), out,
                        Progress.duration(starts.seconds()), starts.runs(), MqarSweep.STARTS) : "");
        err.flush();
        drawChart(err);
        return 0;
    }

    /** The grid the options name, with the options that override it; a value out of range is bad usage. */
    private MqarGrid grid() {
        if (epochs != null && (epochs < 1 || epochs > 1 << 20)) {
            throw new UsageException("--epochs must be between 1 and " + (1 << 20) + ", got " + epochs);
        }
        if (!grid.equals("default") && !grid.equals("quick") && !Files.exists(Path.of(grid))) {
            throw new UsageException("--grid " + grid + ": no such file (give default, quick, or a YAML or JSON"
                    + " grid file)");
        }
        List<Double> rates;
        List<MqarSlice> trainSlices;
        List<MqarSlice> testSlices;
        try {
            rates = lrs == null ? null : MqarGrid.parseLrs("--lrs", lrs);
            trainSlices = train == null ? null : MqarSlice.parse("--train", train, MqarGenerator.paperTrain());
            testSlices = test == null ? null : MqarSlice.parse("--test", test, MqarGenerator.paperTest());
        } catch (IllegalArgumentException e) {
            throw new UsageException(e.getMessage());
        }
        // a grid file that is wrong is an error in that file (exit 1), not in the command line
        return MqarGrid.named(grid).with(rates, epochs, trainSlices, testSlices);
    }

    /** The best run of each model: the figure's points. */
    static void printTable(List<MqarSweep.Best> best, PrintWriter out) {
        String row = "%-10s %7s %-7s %13s %6s %9s %9s %5s %s%n";
        out.printf(Locale.ROOT, row, "mixer", "d_model", "dial", "state bytes", "log2", "accuracy", "best lr", "runs",
                "stop");
        for (MqarSweep.Best b : best) {
            MqarModel m = b.model();
            long state = m.stateBytes();
            Object stop = b.record().get("stop");
            out.printf(Locale.ROOT, row, m.mixer(), m.dModel(), m.dial(), String.format(Locale.ROOT, "%,d", state),
                    String.format(Locale.ROOT, "%.2f", Math.log(state) / Math.log(2)),
                    String.format(Locale.ROOT, "%.4f", b.accuracy()), String.format(Locale.ROOT, "%.2e", b.lr()),
                    b.runs(), stop == null ? "-" : stop);
        }
        out.flush();
    }

    /**
     * Draws accuracy against state size from the results, beside them. A Java runtime without AWT (the GPU
     * bundle's) cannot draw: a note says how to draw the chart elsewhere.
     */
    private void drawChart(PrintWriter err) throws IOException {
        Path results = out.resolve(MqarSweep.RESULTS);
        Path png = out.resolve(CHART);
        if (!Files.exists(results)) {
            return;
        }
        try {
            Headless.prepare();
        } catch (IllegalStateException e) {
            err.println("[based4j] " + CHART + " not drawn: " + e.getMessage() + "; or draw it elsewhere with"
                    + " 'based4j plot mqar " + results + " --paper --out " + CHART + "'");
            err.flush();
            return;
        }
        // the table of points was printed above, from the same records
        byte[] chart = MqarPlot.render(List.of(results), true, null, 1000, 650, new PrintWriter(Writer.nullWriter()),
                note -> err.println("[based4j] " + note));
        OutputFiles.write(png, chart);
        err.println("[based4j] wrote " + png);
        err.flush();
    }
}
