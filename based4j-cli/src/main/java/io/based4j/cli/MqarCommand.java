package io.based4j.cli;

import io.based4j.backend.TrainingBackend;
import io.based4j.train.Progress;
import io.based4j.train.mqar.MqarGenerator;
import io.based4j.train.mqar.MqarRecord;
import io.based4j.train.mqar.MqarSlice;
import io.based4j.train.mqar.MqarTrainer;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "mqar", mixinStandardHelpOptions = true,
        description = "Multi-query associative recall: the recall benchmark of the BASED paper.",
        subcommands = {MqarCommand.Train.class, MqarSweepCommand.class})
final class MqarCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(name = "train", mixinStandardHelpOptions = true,
            description = {"Train a two-layer MQAR model (short conv + mixer) and print its recall per test slice",
                    "and its state size in bytes."})
    static final class Train implements Callable<Integer> {
        @Option(names = "--mixer", paramLabel = "KIND", defaultValue = "based",
                description = "based, attention or sliding (default ${DEFAULT-VALUE}).")
        String mixer;

        @Option(names = "--d-model", paramLabel = "D", defaultValue = "64", description = "Model width (default ${DEFAULT-VALUE}).")
        int dModel;

        @Option(names = "--feature-dim", paramLabel = "F", defaultValue = "16",
                description = "BASED Taylor feature dimension (default ${DEFAULT-VALUE}).")
        int featureDim;

        @Option(names = "--window", paramLabel = "W", defaultValue = "64",
                description = "Sliding window: keys each query sees back (default ${DEFAULT-VALUE}).")
        int window;

        @Option(names = "--heads", paramLabel = "H", defaultValue = "1", description = "Mixer heads (default ${DEFAULT-VALUE}).")
        int heads;

        @Option(names = "--lr", paramLabel = "LR", defaultValue = "3.2e-3",
                description = "Peak learning rate (the paper takes the best of 1e-3, 3.2e-3, 1e-2, 3.2e-2; default ${DEFAULT-VALUE}).")
        double lr;

        @Option(names = "--epochs", paramLabel = "N", defaultValue = "32", description = "Epochs; the cosine schedule ends at the last (default ${DEFAULT-VALUE}).")
        int epochs;

        @Option(names = "--train", paramLabel = "SLICES", defaultValue = "paper",
                description = "Training mixture: 'paper' or L:KV:COUNT,... (e.g. 64:4:20000).")
        String train;

        @Option(names = "--test", paramLabel = "SLICES", defaultValue = "paper",
                description = "Test slices: 'paper' (1000 each of (64,4) .. (1024,256)) or L:KV:COUNT,...")
        String test;

        @Option(names = "--json", paramLabel = "FILE", description = "Also write the result as JSON.")
        Path json;

        @CommandLine.Mixin
        MqarRunOptions options = new MqarRunOptions();

        @CommandLine.Mixin
        TrainDeviceOptions deviceOptions = new TrainDeviceOptions();

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws IOException {
            MqarTrainer.Run run = run();
            if (json != null) {
                OutputFiles.checkWritable("--json", json);
            }
            PrintWriter out = spec.commandLine().getOut();
            MqarTrainer.Result r;
            try (TrainingBackend backend = deviceOptions.open()) {
                // the progress lines go to standard error, the scores below to standard output
                r = new MqarTrainer(run, backend, spec.commandLine().getErr(), Progress.stderrTerminal()).train();
            }
            if (r.stop() == MqarTrainer.Stop.DIVERGED) {
                throw new IllegalStateException(r.detail());
            }
            out.println();
            out.printf(Locale.ROOT, "%-16s %10s %10s%n", "test slice", "accuracy", "loss");
            for (MqarTrainer.SliceScore s : r.scores()) {
                out.printf(Locale.ROOT, "%-16s %10.4f %10.4f%n", "L " + s.slice().seqLen() + ", kv " + s.slice().numKv(),
                        s.accuracy(), s.loss());
            }
            out.printf(Locale.ROOT, "%-16s %10.4f%n", "all", r.accuracy());
            out.printf(Locale.ROOT, "state: %,d bytes (2^%.2f, MQAR-SPEC formula); %,d parameters%n", r.stateBytes(),
                    Math.log(r.stateBytes()) / Math.log(2), r.parameters());
            out.printf(Locale.ROOT, "%s accuracy %.4f after %,d updates in %s (%.1f minutes)%n",
                    r.reached() ? "reached" : "stopped at", r.accuracy(), r.steps(), Progress.duration(r.seconds()),
                    r.seconds() / 60);
            out.flush();
            if (json != null) {
                OutputFiles.writeJson(json, MqarRecord.of(run, r, deviceOptions.device, deviceOptions.precisionName()));
            }
            return 0;
        }

        /** The run the options describe; an option value out of range is a usage error. */
        private MqarTrainer.Run run() {
            positive("--d-model", dModel);
            positive("--feature-dim", featureDim);
            positive("--window", window);
            positive("--heads", heads);
            positive("--epochs", epochs);
            if (!(lr > 0)) {
                throw new UsageException("--lr must be > 0, got " + lr);
            }
            options.check();
            MqarRunOptions o = options;
            try {
                return new MqarTrainer.Run(mixer, dModel, featureDim, window, heads, lr, o.weightDecay, epochs,
                        o.batch, o.warmup, MqarSlice.parse("--train", train, MqarGenerator.paperTrain()),
                        MqarSlice.parse("--test", test, MqarGenerator.paperTest()), o.seed, o.evalEvery, o.target,
                        o.maxMinutes);
            } catch (IllegalArgumentException e) {
                throw new UsageException(e.getMessage()); // a mixer or slice the options name, out of range
            }
        }

        private static void positive(String name, int v) {
            if (v < 1) {
                throw new UsageException(name + " must be >= 1, got " + v);
            }
        }
    }
}
