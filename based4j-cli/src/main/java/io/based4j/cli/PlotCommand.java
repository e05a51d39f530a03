package io.based4j.cli;

import io.based4j.cli.plot.BenchPlot;
import io.based4j.cli.plot.ComparePlot;
import io.based4j.cli.plot.Headless;
import io.based4j.cli.plot.MetricsPlot;
import io.based4j.cli.plot.MqarPlot;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "plot", mixinStandardHelpOptions = true,
        description = {"PNG charts of what based4j writes: training curves, MQAR recall against",
                "state size, benchmark throughput, a language-model comparison. Each also",
                "prints its numbers as a table."},
        subcommands = {PlotCommand.Metrics.class, PlotCommand.Mqar.class, PlotCommand.Bench.class,
                PlotCommand.Compare.class})
final class PlotCommand implements Runnable {
    /** Smallest and largest image side accepted, in pixels. */
    static final int MIN_PIXELS = 200;
    static final int MAX_PIXELS = 10_000;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    /** The options every chart takes: where it goes, its size and its title. */
    static final class ChartOptions {
        @Option(names = {"-o", "--out"}, paramLabel = "FILE", description = "The PNG to write (replaced whole; default"
                + " ${DEFAULT-VALUE}).")
        Path out;

        @Option(names = "--width", paramLabel = "PX", defaultValue = "1000",
                description = "Image width in pixels (default ${DEFAULT-VALUE}).")
        int width;

        @Option(names = "--height", paramLabel = "PX", defaultValue = "650",
                description = "Image height in pixels (default ${DEFAULT-VALUE}).")
        int height;

        @Option(names = "--title", paramLabel = "TEXT", description = "The chart's title.")
        String title;

        /**
         * Checks the options and the output file against the inputs before anything is read, then draws the chart
         * and writes it beside {@code out}, renamed into place once whole.
         */
        void write(List<Path> inputs, CommandLine cl, Chart chart) throws IOException {
            if (width < MIN_PIXELS || width > MAX_PIXELS || height < MIN_PIXELS || height > MAX_PIXELS) {
                throw new UsageException(String.format(Locale.ROOT, "--width and --height must be between %d and"
                        + " %d pixels, got %d x %d", MIN_PIXELS, MAX_PIXELS, width, height));
            }
            checkMemory();
            OutputFiles.checkWritable("--out", out);
            for (Path input : inputs) {
                if (Files.exists(out) && Files.exists(input) && Files.isSameFile(out, input)) {
                    throw new UsageException("--out " + out + " is the input " + input + ": give another file");
                }
            }
            Headless.prepare();
            PrintWriter err = cl.getErr();
            byte[] png = chart.draw(cl.getOut(), note -> {
                err.println("[based4j] " + note);
                err.flush();
            });
            OutputFiles.write(out, png);
            err.printf(Locale.ROOT, "[based4j] wrote %s (%d x %d)%n", out, width, height);
            err.flush();
        }

        /** The image is drawn whole in memory, 4 bytes a pixel: refused at once where the heap cannot hold it. */
        private void checkMemory() {
            long needed = 4L * width * height;
            Runtime rt = Runtime.getRuntime();
            long free = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
            if (needed > free) {
                throw new IllegalArgumentException(String.format(Locale.ROOT, "a %d x %d image needs %,d MiB (4"
                        + " bytes a pixel) but the Java heap has %,d MiB free; draw a smaller one, or give Java"
                        + " more with JAVA_OPTS=-Xmx<size>", width, height, needed >> 20, free >> 20));
            }
        }
    }

    /** Draws one chart: prints its table on {@code out}, notes on {@code notes}; returns the PNG. */
    @FunctionalInterface
    interface Chart {
        byte[] draw(PrintWriter out, Consumer<String> notes) throws IOException;
    }

    @Command(name = "metrics", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Training curves of 'based4j train' runs.",
                    "",
                    "Training loss as logged (faint) and smoothed, validation loss (points), and",
                    "the learning rate in a panel below, against the update. Give run directories",
                    "or their metrics.jsonl; several runs are compared, named by their",
                    "directories. Prints each run's last step, loss, best validation loss and",
                    "learning rate."})
    static final class Metrics implements Callable<Integer> {
        @Parameters(paramLabel = "RUN", arity = "1..*", description = "A run directory or its metrics.jsonl.")
        List<Path> runs;

        @Mixin
        ChartOptions chart = new ChartOptions();

        @Option(names = "--smooth", paramLabel = "W", defaultValue = "0.9",
                description = "Weight of the moving average that smooths the training loss, in [0, 1); 0 draws"
                        + " the loss as logged only (default ${DEFAULT-VALUE}).")
        double smooth;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        Metrics() {
            chart.out = Path.of("loss.png");
        }

        @Override
        public Integer call() throws IOException {
            if (!(smooth >= 0 && smooth < 1)) {
                throw new UsageException("--smooth must be at least 0 and below 1, got " + smooth);
            }
            chart.write(runs, spec.commandLine(), (out, notes) -> MetricsPlot.render(runs, smooth, chart.title,
                    chart.width, chart.height, out, notes));
            return 0;
        }
    }

    @Command(name = "mqar", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"MQAR recall against state size, as in the BASED paper's figure 2.",
                    "",
                    "Accuracy against recurrent state bytes (log scale), one curve per",
                    "architecture; prints the table of points. Where several records describe one",
                    "model (learning rates or seeds tried), its best accuracy is drawn, as the",
                    "paper reports the best of its learning rates.",
                    "",
                    "Input: JSON Lines (one record per line), or a JSON file holding one record or",
                    "an array of them ('mqar train --json' writes one). A record (the format is",
                    "docs/mqar/RESULTS.md):",
                    "  {\"mixer\": \"based\", \"d_model\": 64, \"feature_dim\": 16, \"lr\": 0.0032,",
                    "   \"state_bytes\": 39780, \"accuracy\": 0.99075}",
                    "Required: mixer (based, attention, sliding or another name; 'architecture'",
                    "is read too), state_bytes (> 0, counted as MQAR-SPEC does) and accuracy (0",
                    "to 1). Read when there: d_model, feature_dim (BASED), window (sliding), lr.",
                    "Other fields are passed over."})
    static final class Mqar implements Callable<Integer> {
        @Parameters(paramLabel = "RESULTS", arity = "1..*", description = "JSON Lines or JSON files of MQAR results.")
        List<Path> files;

        @Mixin
        ChartOptions chart = new ChartOptions();

        @Option(names = "--paper", description = "Also draw the paper's published points (dashed; MQAR-SPEC).")
        boolean paper;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        Mqar() {
            chart.out = Path.of("mqar.png");
        }

        @Override
        public Integer call() throws IOException {
            chart.write(files, spec.commandLine(), (out, notes) -> MqarPlot.render(files, paper, chart.title,
                    chart.width, chart.height, out, notes));
            return 0;
        }
    }

    @Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Throughput measured by 'bench train', 'bench gpu' or 'bench cpu'.",
                    "",
                    "Bars with their values: training tokens/s and model FLOPs utilisation per",
                    "shape and sequence length ('bench train'), or prefill and decode tokens/s per",
                    "prompt length and batch ('bench gpu', 'bench cpu'). Several files of one",
                    "benchmark are compared side by side. Prints the table."})
    static final class Bench implements Callable<Integer> {
        @Parameters(paramLabel = "BENCH.json", arity = "1..*", description = "JSON written by a bench command.")
        List<Path> files;

        @Mixin
        ChartOptions chart = new ChartOptions();

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        Bench() {
            chart.out = Path.of("bench.png");
        }

        @Override
        public Integer call() throws IOException {
            chart.write(files, spec.commandLine(), (out, notes) -> BenchPlot.render(files, chart.title, chart.width,
                    chart.height, out, notes));
            return 0;
        }
    }

    @Command(name = "compare", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Perplexity and recall of language models against their state size.",
                    "",
                    "Reads the compare.json of scripts/lm-compare.sh (docs/compare/README.md) and",
                    "places each model by its recurrent state per sequence (log scale): validation",
                    "perplexity above, in-context recall accuracy below. A model whose state grows",
                    "with the context (attention) is drawn at each context measured. Prints the",
                    "table. Read from each of \"models\": name (or label), state_bytes (context",
                    "length to bytes), val_perplexity, recall_in_context (0 to 1); a model without",
                    "state bytes, or with neither value, is left out with a note."})
    static final class Compare implements Callable<Integer> {
        @Parameters(paramLabel = "COMPARE.json", description = "The comparison's compare.json.")
        Path file;

        @Mixin
        ChartOptions chart = new ChartOptions();

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        Compare() {
            chart.out = Path.of("compare.png");
        }

        @Override
        public Integer call() throws IOException {
            chart.write(List.of(file), spec.commandLine(), (out, notes) -> ComparePlot.render(file, chart.title,
                    chart.width, chart.height, out, notes));
            return 0;
        }
    }
}
